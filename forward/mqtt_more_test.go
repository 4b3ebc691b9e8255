package forward

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

func TestMQTTWebSocketTLS(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	b, err := sim.StartBrokerWith("127.0.0.1:0", sim.BrokerOptions{Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ws, err := b.AddWebsocket("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	obs := newObserver(t, b.URL(), "observer")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "wss://" + ws + "/mqtt",
		Options: config.AppOptions{ServerCert: p.caPEM}}, nil, nil)
	if r.app.mqtt.brokerURL != "wss://"+ws+"/mqtt" {
		t.Fatalf("broker url %s", r.app.mqtt.brokerURL)
	}
	obs.wait(t, "connected", has("lorawan/"+tUUID+"/connected"))
	r.add(t, "up", tAppEUI, tDevEUI, tUplink)
	up := "lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/up"
	ms := obs.wait(t, "uplink", has(up))
	for _, m := range ms {
		if m.Topic == up && m.Payload != tUplink {
			t.Fatalf("uplink %q", m.Payload)
		}
	}
	dl := `{"deveui":"` + tDevEUI + `","data":"QA=="}`
	obs.publish(t, "lorawan/"+tUUID+"/down", dl, false)
	if got := r.sink.take(t, 1); !localEqual(got[0], "down "+tDevEUI+" "+dl) {
		t.Fatalf("local %v", got)
	}
}

func TestMQTTWebSocketDefaultPath(t *testing.T) {
	ep, err := config.ParseEndpoint("wss://broker.example.net")
	if err != nil {
		t.Fatal(err)
	}
	a := &Application{Settings: AppSettings{EUI: config.CatchAll, APIVersion: config.API11}, log: testLogger(t, nil)}
	tr, err := newMQTTTransport(a, ep, tIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if tr.brokerURL != "wss://broker.example.net:443/mqtt" || tr.tls == nil || tr.tls.ServerName != "broker.example.net" {
		t.Fatalf("url %s tls %v", tr.brokerURL, tr.tls)
	}
	ep, _ = config.ParseEndpoint("mqtts://broker.example.net")
	if tr, _ = newMQTTTransport(a, ep, tIdentity); tr.brokerURL != "ssl://broker.example.net:8883" || tr.tls == nil {
		t.Fatalf("mqtts url %s", tr.brokerURL)
	}
}

// Devices that join after start-up get their v1.0 topics; moved drops only
// that device's topics (conduit.md §7.2, §15 #6); the catch-all uses each
// device's AppEUI.
func TestMQTTV10DeviceSubscriptions(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	const d1, d2, other = "00-00-00-00-00-00-00-01", "00-00-00-00-00-00-00-02", "11-22-33-44-55-66-77-88"
	dl := `{"data":"QA=="}`
	t.Run("application", func(t *testing.T) {
		obs := newObserver(t, mq.URL(), "observer-app")
		r := startMQTTApp(t, AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: "mqtt://" + mq.Addr()}, nil, nil)
		obs.wait(t, "init", has("lorawan/"+tAppEUI+"/"+tUUIDRaw+"/init"))
		obs.publish(t, "lorawan/"+tAppEUI+"/"+d1+"/down", dl, false)
		r.sink.none(t, 200*time.Millisecond) // not known yet
		r.add(t, "joined", tAppEUI, d1, `{}`)
		r.add(t, "joined", tAppEUI, d2, `{}`)
		obs.wait(t, "joins", has("lorawan/"+tUUIDRaw+"/"+d2+"/joined"))
		for _, topic := range []string{"lorawan/" + tAppEUI + "/" + d1 + "/down", "lorawan/" + tGwEUI + "/" + d2 + "/down"} {
			obs.publish(t, topic, dl, false)
			r.sink.take(t, 1)
		}
		r.add(t, "moved", tAppEUI, d1, `[]`)
		obs.wait(t, "moved", has("lorawan/"+tAppEUI+"/"+d1+"/moved"))
		obs.publish(t, "lorawan/"+tAppEUI+"/"+d1+"/down", dl, false)
		r.sink.none(t, 200*time.Millisecond)
		obs.publish(t, "lorawan/"+tAppEUI+"/"+d2+"/down", dl, false)
		obs.publish(t, "lorawan/"+tAppEUI+"/"+tUUIDRaw+"/down", `{"deveui":"`+d1+`","data":"QA=="}`, false)
		if got := r.sink.take(t, 2); !strings.Contains(got[0], d2) || !strings.Contains(got[1], d1) {
			t.Fatalf("after moved: %v", got)
		}
	})
	t.Run("catch-all", func(t *testing.T) {
		obs := newObserver(t, mq.URL(), "observer-all")
		r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API10, URL: "mqtt://" + mq.Addr()}, nil, nil)
		obs.wait(t, "init", has("lorawan/"+config.CatchAll+"/"+tUUIDRaw+"/init"))
		r.add(t, "up", other, d1, `{"data":"QA=="}`)
		obs.wait(t, "up", has("lorawan/"+other+"/"+d1+"/up"))
		obs.publish(t, "lorawan/"+other+"/"+d1+"/down", dl, false)
		if got := r.sink.take(t, 1); !strings.Contains(got[0], d1) {
			t.Fatalf("got %v", got)
		}
	})
}

// The inbound dispatch never panics, and whatever it publishes locally is a
// valid downlink for a well-formed DevEUI.
func FuzzMQTTDispatch(f *testing.F) {
	for _, s := range []struct {
		topic, payload string
		retained       bool
	}{
		{"lorawan/" + tAppEUI + "/" + tDevEUI + "/down", `{"data":"QA=="}`, false},
		{"lorawan/" + tAppEUI + "/" + tDevEUI + "/clear", ``, true},
		{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/down", `{"deveui":"0011223344556677","data":"QA==","port":1}`, false},
		{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/clear", `{"deveui":5}`, false},
		{"acme/" + tDevEUI + "/cmd/x", `{"data":"QA==","ack":true}`, false},
		{"acme/x/cmd/y", `[1,2]`, false},
		{"#", "\x00", true},
		{"$iothub/methods/POST/downlink/?$rid=1", `{"deveui":"` + tDevEUI + `","data":"QA=="}`, false},
		{"$iothub/methods/POST/api_req/?$rid=x&y=%", `{}`, false},
		{"devices/gw-1/messages/devicebound/a", `{"deveui":"` + tDevEUI + `","data":"QA=="}`, false},
	} {
		f.Add(s.topic, []byte(s.payload), s.retained)
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte, retained bool) {
		sink := &fakeSink{}
		a, err := NewApplication(AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: "mqtt://127.0.0.1:1",
			Options: config.AppOptions{DownlinkTopic: "acme/%(deveui)s/cmd/+"}}, tIdentity, nil, sink, nil, nil, testLogger(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		a.mqtt.subscribeDevice(tDevEUI, tAppEUI, false)
		a.mqtt.dispatch(context.Background(), inbound{topic: topic, payload: payload, retained: retained})
		az, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtts://127.0.0.1:1",
			Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw-1"}}, tIdentity, nil, sink, nil, nil, testLogger(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		az.mqtt.dispatch(context.Background(), inbound{topic: topic, payload: payload, retained: retained})
		for _, g := range sink.got {
			parts := strings.SplitN(g, " ", 3)
			if _, err := config.NormalizeEUI(parts[1]); err != nil || parts[1] != strings.ToLower(parts[1]) {
				t.Fatalf("local publish for DevEUI %q", parts[1])
			}
			if parts[0] == "down" {
				if _, err := ValidateDownlink([]byte(parts[2]), parts[1], false, MaxDownlinkPayload); err != nil {
					t.Fatalf("invalid downlink published: %s: %v", parts[2], err)
				}
			}
		}
	})
}

func TestMQTTAzure(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	obs := newObserver(t, mq.URL(), "observer")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtt://" + mq.Addr(),
		Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw-1"}}, nil, nil)
	waitConnected(t, r.app, true)
	time.Sleep(200 * time.Millisecond) // subscriptions are in place once connected
	r.add(t, "joined", tAppEUI, tDevEUI, tJoined)
	r.add(t, "up", tAppEUI, tDevEUI, tUplink)
	r.add(t, "moved", tAppEUI, tDevEUI, tMoved)
	obs.wait(t, "uplink", has("devices/gw-1/messages/events/"))
	waitRows(t, r.ob, config.CatchAll, 0)
	dl := `{"appeui":"` + tAppEUI + `","deveui":"` + tDevEUI + `","data":"QA=="}`
	obs.publish(t, "devices/gw-1/messages/devicebound/%24.to=x", dl, false)
	if got := r.sink.take(t, 1); !localEqual(got[0], "down "+tDevEUI+" "+dl) {
		t.Fatalf("C2D: %v", got)
	}
	obs.publish(t, "devices/gw-1/messages/devicebound/x", `{"data":"QA=="}`, false) // deveui required
	r.sink.none(t, 150*time.Millisecond)
	obs.publish(t, "$iothub/methods/POST/downlink/?$rid=7", `{"deveui":"`+tDevEUI+`","data":"QA=="}`, false)
	r.sink.take(t, 1)
	obs.publish(t, "$iothub/methods/POST/lora_req/?$rid=8", `{"command":"x"}`, false)
	obs.publish(t, "$iothub/methods/POST/nope/?$rid=9", `{}`, false)
	obs.publish(t, "$iothub/methods/POST/downlink/?$rid=10", `{"deveui":"`+tDevEUI+`","data":"%%"}`, false)
	obs.wait(t, "replies", has("$iothub/methods/res/0/?$rid=10"))
	r.stop()
	time.Sleep(100 * time.Millisecond)
	ms := obs.all()
	replies := map[string]map[string]any{}
	var topics []string
	for _, m := range ms {
		if strings.HasPrefix(m.Topic, "$iothub/methods/res/") {
			var v map[string]any
			if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
				t.Fatalf("reply %s", m.Payload)
			}
			replies[m.Topic] = v
			continue
		}
		topics = append(topics, m.Topic)
	}
	// Only the uplink and the cloud's own messages: no init, joined, moved, connected, close, will.
	for _, tp := range topics {
		if !strings.HasPrefix(tp, "devices/gw-1/messages/") && !strings.HasPrefix(tp, "$iothub/methods/POST/") {
			t.Errorf("unexpected publish on %s", tp)
		}
	}
	for rid, want := range map[string]string{"7": "queued", "8": "not enabled", "9": "unknown method nope", "10": "data is not base64"} {
		v := replies["$iothub/methods/res/0/?$rid="+rid]
		if v == nil || v["rid"] != rid || !strings.Contains(fmt.Sprint(v["result"], v["error"]), want) {
			t.Errorf("reply to %s: %v, want %q", rid, v, want)
		}
	}
	if _, err := NewApplication(AppSettings{EUI: config.CatchAll, URL: "mqtts://hub.azure-devices.net", Options: config.AppOptions{CloudService: "AZURE"}},
		tIdentity, nil, nil, nil, nil, testLogger(t, nil)); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("empty client_id: %v", err)
	}
}
