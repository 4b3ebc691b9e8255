package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// replies returns the messages on topics ending in _res (or Azure method replies).
func replies(ms []recMsg) []recMsg {
	var out []recMsg
	for _, m := range ms {
		if strings.HasSuffix(m.Topic, "_res") || strings.HasPrefix(m.Topic, "$iothub/methods/res/") {
			out = append(out, m)
		}
	}
	return out
}

// onTopic is the last message on a topic.
func onTopic(t *testing.T, ms []recMsg, topic string) recMsg {
	t.Helper()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Topic == topic {
			return ms[i]
		}
	}
	t.Fatalf("no message on %s in %v", topic, ms)
	return recMsg{}
}

// noReplies fails when a request reply appears within wait.
func noReplies(t *testing.T, obs *observer, wait time.Duration) {
	t.Helper()
	time.Sleep(wait)
	if r := replies(obs.all()); len(r) > 0 {
		t.Fatalf("unexpected replies %v", r)
	}
}

// Each request kind, in the v1.0 and v1.1 topic forms, with and without rid:
// the exact reply topic and body, QoS 1, not retained; requests addressed to
// another gateway or in the other version's form are not answered.
func TestMQTTRemoteRequests(t *testing.T) {
	e := newReqEnv(t)
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	all := config.RequestOptions{API: true, Lora: true, Log: true}
	const otherUUIDRaw, otherUUID = "00000000000000000000000000000001", "00000000-0000-0000-0000-000000000001"
	cases := []struct{ kind, payload, want string }{
		{RequestLora, `{"command":"device count","rid":1}`, `{"result":{"count":9},"rid":1}`},
		{RequestLora, `{"command":"device count"}`, `{"result":{"count":9}}`},
		{RequestLora, `{"command":"device count","rid":"abc"}`, `{"result":{"count":9},"rid":"abc"}`},
		{RequestLog, `{"file":"/var/log/messages","lines":5,"filter":"OTHER","rid":7}`, `{"result":"line 297 other thing\nline 300 other thing\n","rid":7}`},
		{RequestLog, `{"file":"messages","lines":2}`, `{"result":"line 300 lora-network-server event\nline 300 other thing\n"}`},
		{RequestAPI, `{"method":"GET","path":"/api/system","body":"","rid":5}`, `{"code":200,"result":{"apikey":"REDACTED","firmware":"7.0.1"},"rid":5,"status":"success"}`},
		{RequestAPI, `{"method":"GET","path":"/api/system"}`, `{"code":200,"result":{"apikey":"REDACTED","firmware":"7.0.1"},"status":"success"}`},
		{RequestAPI, `{"method":"DELETE","path":"/api/system","rid":6}`, `{"code":403,"error":"DELETE /api/system is not allowed (remote_requests.api_allow)","rid":6,"status":"fail"}`},
	}
	for _, v := range []struct {
		name, eui, version, prefix string
		strangers                  []string // request topics that must stay unanswered
	}{
		{"1.0", tAppEUI, config.API10, "lorawan/" + tAppEUI + "/" + tUUIDRaw,
			[]string{"lorawan/" + tAppEUI + "/" + otherUUIDRaw + "/lora_req", "lorawan/" + tUUIDRaw + "/lora_req", "lorawan/" + tUUID + "/lora_req"}},
		{"1.1", config.CatchAll, config.API11, "lorawan/" + tUUID,
			[]string{"lorawan/" + otherUUID + "/lora_req", "lorawan/" + config.CatchAll + "/" + tUUIDRaw + "/lora_req", "lorawan/" + tUUIDRaw + "/lora_req"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			obs := newObserver(t, mq.URL(), "observer-req-"+v.name)
			r := startMQTTApp(t, AppSettings{EUI: v.eui, Name: "default", Source: "default", APIVersion: v.version,
				URL: "mqtt://" + mq.Addr(), RequestOptions: all}, nil, nil, AppServices{Requests: e.q})
			obs.wait(t, "init", has(v.prefix+"/init")) // this version's own init: the other one's is retained on the broker
			for i, c := range cases {
				obs.reset()
				obs.publish(t, v.prefix+"/"+c.kind, c.payload, false)
				topic := v.prefix + "/" + strings.TrimSuffix(c.kind, "_req") + "_res"
				got := onTopic(t, obs.wait(t, topic, has(topic)), topic)
				if got.Payload != c.want || got.QoS != 1 || got.Retained {
					t.Errorf("case %d %s %s:\n got %s (qos %d retained %v)\nwant %s", i, c.kind, c.payload, got.Payload, got.QoS, got.Retained, c.want)
				}
			}
			obs.reset()
			for _, s := range v.strangers {
				obs.publish(t, s, `{"command":"device count","rid":1}`, false)
			}
			noReplies(t, obs, 300*time.Millisecond)
			// Replies are not retained: a new subscriber gets none.
			late := newObserver(t, mq.URL(), "late-"+v.name)
			noReplies(t, late, 300*time.Millisecond)
			r.stop()
		})
	}
}

// Flags off: no subscription, so no reply and nothing run; with the topic
// subscribed but the Requests refusing, a clear error and no data.
func TestMQTTRemoteRequestsFlagsOff(t *testing.T) {
	e := newReqEnv(t)
	e.q.Enabled = config.RequestOptions{}
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	prefix := "lorawan/" + tUUID
	payload := `{"command":"session list json","file":"messages","method":"GET","path":"/api/system","rid":3}`

	obs := newObserver(t, mq.URL(), "observer-off")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, Source: "default", APIVersion: config.API111, URL: "mqtt://" + mq.Addr()},
		nil, nil, AppServices{Requests: e.q})
	obs.wait(t, "init", has(prefix+"/init"))
	calls := len(e.calls())
	for _, k := range []string{RequestAPI, RequestLora, RequestLog} {
		obs.publish(t, prefix+"/"+k, payload, false)
	}
	noReplies(t, obs, 300*time.Millisecond)
	r.stop()

	obs.reset()
	startMQTTApp(t, AppSettings{EUI: config.CatchAll, Source: "default", APIVersion: config.API111, URL: "mqtt://" + mq.Addr(),
		RequestOptions: config.RequestOptions{API: true, Lora: true, Log: true}}, nil, nil, AppServices{Requests: e.q})
	obs.wait(t, "connected", has(prefix+"/connected"))
	want := map[string]string{
		RequestAPI:  `{"code":403,"error":"api requests are not enabled on this gateway (mPower requestOptions)","rid":3,"status":"fail"}`,
		RequestLora: `{"error":"lora requests are not enabled on this gateway (mPower requestOptions)","result":"command rejected: lora requests are not enabled on this gateway (mPower requestOptions)","rid":3}`,
		RequestLog:  `{"error":"log requests are not enabled on this gateway (mPower requestOptions)","result":"command rejected: log requests are not enabled on this gateway (mPower requestOptions)","rid":3}`,
	}
	for _, k := range []string{RequestAPI, RequestLora, RequestLog} {
		obs.publish(t, prefix+"/"+k, payload, false)
		topic := prefix + "/" + replyKind(k)
		if got := onTopic(t, obs.wait(t, topic, has(topic)), topic); got.Payload != want[k] {
			t.Errorf("%s: got %s\nwant %s", k, got.Payload, want[k])
		}
	}
	if len(e.calls()) != calls {
		t.Fatal("a refused request reached lora-query")
	}
}

// gateRunner is a lora-query that answers only once its gate opens.
type gateRunner struct{ started, gate chan struct{} }

func (g *gateRunner) RunRaw(ctx context.Context, _ ...string) ([]byte, error) {
	select {
	case g.started <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
		return []byte(`{"count":1}`), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// One request at a time with a bounded queue: overflow gets an error reply
// at once, and a request being served does not hold up uplinks.
func TestMQTTRemoteRequestsQueue(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	g := &gateRunner{started: make(chan struct{}, 1), gate: make(chan struct{})}
	policy := config.DefaultRemoteRequests()
	policy.PerMinute = 1000
	q := &Requests{Policy: policy, Enabled: config.RequestOptions{Lora: true}, LNS: true, Lora: g}
	obs := newObserver(t, mq.URL(), "observer-queue")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, Source: "default", APIVersion: config.API11, URL: "mqtt://" + mq.Addr(),
		RequestOptions: config.RequestOptions{Lora: true}}, nil, nil, AppServices{Requests: q})
	prefix := "lorawan/" + tUUID
	obs.wait(t, "init", has(prefix+"/init"))
	req := func(rid int) {
		obs.publish(t, prefix+"/lora_req", fmt.Sprintf(`{"command":"device count","rid":%d}`, rid), false)
	}
	req(1)
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("first request not served")
	}
	n := 2 + mqttRequestQueue
	for rid := 2; rid <= n+1; rid++ {
		req(rid)
	}
	busy := func(ms []recMsg) bool { return len(replies(ms)) >= 2 }
	for i, m := range replies(obs.wait(t, "overflow replies", busy)) {
		want := fmt.Sprintf(`{"error":"busy: too many requests queued, try again later","result":"command rejected: busy: too many requests queued, try again later","rid":%d}`, n+i)
		if m.Payload != want {
			t.Errorf("overflow reply %s, want %s", m.Payload, want)
		}
	}
	r.add(t, "up", tAppEUI, tDevEUI, tUplink)
	upTopic := "lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/up"
	obs.wait(t, "uplink while a request is served", has(upTopic))
	close(g.gate)
	ms := obs.wait(t, "all replies", func(ms []recMsg) bool { return len(replies(ms)) >= n+1 })
	var got []string
	for _, m := range replies(ms)[2:] {
		got = append(got, m.Payload)
	}
	for i, p := range got {
		if want := fmt.Sprintf(`{"result":{"count":1},"rid":%d}`, i+1); p != want {
			t.Errorf("reply %d: %s, want %s", i, p, want)
		}
	}
}

// A downlink or clear for a device that routes to another application is
// refused, logged and counted, whatever the way it came (conduit.md §7.5 step 6).
func TestMQTTDownlinkForAnotherApplicationRefused(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	const mine, theirs, unknown = "00-00-00-00-00-00-00-01", "00-00-00-00-00-00-00-02", "00-00-00-00-00-00-00-03"
	const otherApp = "aa-aa-aa-aa-aa-aa-aa-aa"
	owner := func(dev string) string {
		switch dev {
		case mine:
			return tAppEUI
		case theirs:
			return otherApp
		}
		return ""
	}
	down := func(dev string) string { return `{"deveui":"` + dev + `","data":"QA=="}` }

	t.Run("mqtt", func(t *testing.T) {
		obs := newObserver(t, mq.URL(), "observer-foreign")
		r := startMQTTApp(t, AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: "mqtt://" + mq.Addr()}, nil, nil,
			AppServices{Owner: owner})
		app := "lorawan/" + tAppEUI + "/" + tUUIDRaw
		obs.wait(t, "init", has(app+"/init"))
		obs.publish(t, app+"/down", down(theirs), false)
		obs.publish(t, app+"/clear", `{"deveui":"`+theirs+`"}`, false)
		r.sink.none(t, 300*time.Millisecond)
		if n := r.app.Counters.DownlinksRefused.Load(); n != 2 {
			t.Fatalf("refused count %d, want 2", n)
		}
		obs.publish(t, app+"/down", down(mine), false)
		obs.publish(t, app+"/down", down(unknown), false)
		if got := r.sink.take(t, 2); !strings.Contains(got[0], mine) || !strings.Contains(got[1], unknown) {
			t.Fatalf("own and unknown devices: %v", got)
		}
	})
	t.Run("azure", func(t *testing.T) {
		obs := newObserver(t, mq.URL(), "observer-foreign-az")
		r := startMQTTApp(t, AppSettings{EUI: tAppEUI, APIVersion: config.API111, URL: "mqtt://" + mq.Addr(),
			Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw-2"}}, nil, nil, AppServices{Owner: owner})
		waitConnected(t, r.app, true)
		time.Sleep(200 * time.Millisecond)
		obs.publish(t, "devices/gw-2/messages/devicebound/x", down(theirs), false)
		obs.publish(t, "$iothub/methods/POST/downlink/?$rid=4", down(theirs), false)
		m := onTopic(t, obs.wait(t, "method reply", has("$iothub/methods/res/0/?$rid=4")), "$iothub/methods/res/0/?$rid=4")
		if !strings.Contains(m.Payload, "another application") || !strings.Contains(m.Payload, `"rid":"4"`) {
			t.Fatalf("method reply %s", m.Payload)
		}
		r.sink.none(t, 200*time.Millisecond)
		if n := r.app.Counters.DownlinksRefused.Load(); n != 2 {
			t.Fatalf("refused count %d, want 2", n)
		}
		obs.publish(t, "devices/gw-2/messages/devicebound/x", down(mine), false)
		r.sink.take(t, 1)
	})
}

// Azure direct methods api_req, lora_req and log_req go through the same
// Requests and reply with the topic's rid (conduit.md §7.6).
func TestMQTTAzureRequests(t *testing.T) {
	e := newReqEnv(t)
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	obs := newObserver(t, mq.URL(), "observer-az-req")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, Source: "default", APIVersion: config.API111, URL: "mqtt://" + mq.Addr(),
		Options:        config.AppOptions{CloudService: "AZURE", ClientID: "gw-3"},
		RequestOptions: config.RequestOptions{API: true, Lora: true, Log: true}}, nil, nil, AppServices{Requests: e.q})
	waitConnected(t, r.app, true)
	time.Sleep(200 * time.Millisecond)
	for _, c := range []struct{ method, rid, payload, want string }{
		{RequestLora, "8", `{"command":"device count"}`, `{"result":{"count":9},"rid":"8"}`},
		{RequestLora, "9", `{"command":"device count","rid":1}`, `{"result":{"count":9},"rid":"9"}`},
		{RequestLog, "10", `{"file":"messages","lines":1}`, `{"result":"line 300 other thing\n","rid":"10"}`},
		{RequestAPI, "11", `{"method":"GET","path":"/api/system"}`, `{"code":200,"result":{"apikey":"REDACTED","firmware":"7.0.1"},"rid":"11","status":"success"}`},
		{RequestLora, "12", `{"command":"device list json; reboot"}`, ""},
	} {
		obs.publish(t, "$iothub/methods/POST/"+c.method+"/?$rid="+c.rid, c.payload, false)
		topic := "$iothub/methods/res/0/?$rid=" + c.rid
		m := onTopic(t, obs.wait(t, topic, has(topic)), topic)
		if c.want == "" {
			var v map[string]any
			if json.Unmarshal([]byte(m.Payload), &v) != nil || v["error"] == nil || v["rid"] != c.rid {
				t.Errorf("%s: %s", c.method, m.Payload)
			}
			continue
		}
		if m.Payload != c.want || m.QoS != 1 {
			t.Errorf("%s rid %s: got %s (qos %d)\nwant %s", c.method, c.rid, m.Payload, m.QoS, c.want)
		}
	}
}

// The catch-all subscribes the v1.0 topics of devices it has not seen a row
// of yet with the AppEUI from the device table.
func TestMQTTCatchAllStartupAppEUI(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	const dev, devApp = "00-00-00-00-00-00-00-07", "11-22-33-44-55-66-77-88"
	poll := NewPollList()
	poll.Add(dev)
	obs := newObserver(t, mq.URL(), "observer-startup")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API10, URL: "mqtt://" + mq.Addr(),
		Options: config.AppOptions{DownlinkTopic: "acme/%(appeui)s/%(deveui)s/cmd"}}, poll, nil,
		AppServices{DeviceAppEUI: func(d string) (string, bool) { return devApp, d == dev }})
	obs.wait(t, "init", has("lorawan/"+config.CatchAll+"/"+tUUIDRaw+"/init"))
	for _, topic := range []string{"lorawan/" + devApp + "/" + dev + "/down", "acme/" + devApp + "/" + dev + "/cmd"} {
		obs.publish(t, topic, `{"data":"QA=="}`, false)
		if got := r.sink.take(t, 1); !strings.Contains(got[0], dev) {
			t.Fatalf("%s: %v", topic, got)
		}
	}
}

// Template precedence (conduit.md §7.4): an appnet under the default app's
// overrideTopicsForAllApps uses the default's templates; Azure appnets too.
func TestMQTTTemplatePrecedence(t *testing.T) {
	def := config.AppOptions{OverrideTopicsForAllApps: true, UplinkTopic: "acme/%(deveui)s/up", DownlinkTopic: "acme/%(deveui)s/down"}
	own := config.AppOptions{UplinkTopic: "mine/%(deveui)s/up", DownlinkTopic: "mine/%(deveui)s/down"}
	tests := []struct {
		name     string
		s        AppSettings
		up, down string
	}{
		{"appnet under override", AppSettings{Source: "appnet", Options: own, DefaultOptions: def}, def.UplinkTopic, def.DownlinkTopic},
		{"appnet without override", AppSettings{Source: "appnet", Options: own,
			DefaultOptions: config.AppOptions{UplinkTopic: def.UplinkTopic}}, own.UplinkTopic, own.DownlinkTopic},
		{"override with the version default", AppSettings{Source: "appnet", Options: own,
			DefaultOptions: config.AppOptions{OverrideTopicsForAllApps: true, UplinkTopic: topicsV11.uplinkDefault}}, own.UplinkTopic, own.DownlinkTopic},
		{"default app", AppSettings{Source: "default", Options: own, DefaultOptions: def}, own.UplinkTopic, own.DownlinkTopic},
		{"azure appnet", AppSettings{Source: "appnet", Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw"},
			DefaultOptions: config.AppOptions{UplinkTopic: "devices/%(client_id)s/messages/events/x"}}, "devices/%(client_id)s/messages/events/x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.EUI, s.APIVersion, s.URL = tAppEUI, config.API11, "mqtt://127.0.0.1:1"
			a, err := NewApplication(s, tIdentity, nil, nil, nil, nil, testLogger(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			if mqttOf(a).customUp != tc.up || mqttOf(a).customDown != tc.down {
				t.Fatalf("templates %q %q, want %q %q", mqttOf(a).customUp, mqttOf(a).customDown, tc.up, tc.down)
			}
		})
	}
}
