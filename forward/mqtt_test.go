package forward

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

const (
	tAppEUI  = "8b-6c-f0-8e-ee-df-1b-b6"
	tDevEUI  = "00-80-00-ff-ff-00-00-03"
	tGwEUI   = "00-80-00-00-00-01-b5-fc"
	tUUIDRaw = "8ffa106fc751cfcd630080918d516837"
	tUUID    = "8ffa106f-c751-cfcd-6300-80918d516837"
)

var tIdentity = Identity{UUIDRaw: tUUIDRaw, UUID: tUUID, GatewayEUIs: []string{tGwEUI}}

// recMsg is one message seen on the remote broker.
type recMsg struct {
	Topic    string
	Payload  string
	QoS      byte
	Retained bool
}

// observer is a cloud-side client subscribed to everything.
type observer struct {
	mu   sync.Mutex
	msgs []recMsg
	c    paho.Client
}

func newObserver(t *testing.T, broker, id string) *observer {
	t.Helper()
	o := &observer{}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(100 * time.Millisecond).SetOrderMatters(true).
		SetOnConnectHandler(func(c paho.Client) { c.SubscribeMultiple(map[string]byte{"#": 2, "$iothub/#": 2}, nil) }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			o.mu.Lock()
			o.msgs = append(o.msgs, recMsg{m.Topic(), string(m.Payload()), m.Qos(), m.Retained()})
			o.mu.Unlock()
		})
	o.c = paho.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(0) })
	return o
}

func (o *observer) all() []recMsg {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]recMsg(nil), o.msgs...)
}

func (o *observer) reset() {
	o.mu.Lock()
	o.msgs = nil
	o.mu.Unlock()
}

// wait returns the messages once pred holds (fails after 10 s).
func (o *observer) wait(t *testing.T, what string, pred func([]recMsg) bool) []recMsg {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := o.all(); pred(m) {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; got %v", what, o.all())
	return nil
}

func has(topic string) func([]recMsg) bool {
	return func(ms []recMsg) bool {
		for _, m := range ms {
			if m.Topic == topic {
				return true
			}
		}
		return false
	}
}

func (o *observer) publish(t *testing.T, topic, payload string, retained bool) {
	t.Helper()
	if tok := o.c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// fakeSink records local publishes.
type fakeSink struct {
	mu  sync.Mutex
	got []string // "down <dev> <payload>" or "clear <dev>"
}

func (s *fakeSink) Publish(_ context.Context, dev string, p []byte) error {
	s.mu.Lock()
	s.got = append(s.got, "down "+dev+" "+string(p))
	s.mu.Unlock()
	return nil
}

func (s *fakeSink) Clear(_ context.Context, dev string) error {
	s.mu.Lock()
	s.got = append(s.got, "clear "+dev)
	s.mu.Unlock()
	return nil
}

func (s *fakeSink) take(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		if len(s.got) >= n {
			out := s.got
			s.got = nil
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("local publishes %v, want %d", s.got, n)
	return nil
}

func (s *fakeSink) none(t *testing.T, wait time.Duration) {
	t.Helper()
	time.Sleep(wait)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) != 0 {
		t.Fatalf("unexpected local publishes %v", s.got)
	}
}

// mqttOf is an MQTT application's transport.
func mqttOf(a *Application) *mqttTransport { return a.tr.(*mqttTransport) }

func testLogger(t *testing.T, buf *bytes.Buffer) *slog.Logger {
	if os.Getenv("MQTT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if buf != nil {
		return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newOutbox(t *testing.T) *cache.Outbox {
	t.Helper()
	ctx := context.Background()
	db, err := cache.Open(ctx, t.TempDir()+"/q.db", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ob, err := db.NewOutbox(ctx, cache.Limits{MaxRows: 100000, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

// runningApp is an MQTT application under test.
type runningApp struct {
	app    *Application
	ob     *cache.Outbox
	sink   *fakeSink
	cancel context.CancelFunc
	done   chan struct{}
}

func startMQTTApp(t *testing.T, s AppSettings, poll *PollList, log *slog.Logger, svc ...AppServices) *runningApp {
	t.Helper()
	if s.Delivery.RetryMin == 0 {
		s.Delivery = config.Delivery{RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond}
	}
	if log == nil {
		log = testLogger(t, nil)
	}
	r := &runningApp{ob: newOutbox(t), sink: &fakeSink{}, done: make(chan struct{})}
	app, err := NewApplication(s, tIdentity, r.ob, r.sink, poll, nil, log, svc...)
	if err != nil {
		t.Fatal(err)
	}
	r.app = app
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); app.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop ends the delivery loop and sends close, as the Manager does.
func (r *runningApp) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	r.cancel()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.app.Close(ctx)
}

func (r *runningApp) add(t *testing.T, kind, appEUI, dev, body string) {
	t.Helper()
	row := testRow(r.app.Settings.EUI, kind, appEUI, dev, body)
	if _, err := r.ob.Append(context.Background(), []cache.Row{row}); err != nil {
		t.Fatal(err)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return reflect.DeepEqual(x, y)
}

const (
	tUplink = `{"tmst":1,"port":5,"deveui":"` + tDevEUI + `","appeui":"` + tAppEUI + `","data":"QAE=","fcnt":7}`
	tJoined = `{"appeui":"` + tAppEUI + `","deveui":"` + tDevEUI + `","time":"2023-09-13T16:52:20.498194Z"}`
	tMoved  = `[{"gweui":"` + tGwEUI + `"}]`
)

// expect is one expected remote publish.
type expect struct {
	topic   string
	payload string // JSON-equal; exact when plain is set
	qos     byte
	plain   bool
}

// localCase is a remote message and the local publish it must cause.
type localCase struct {
	topic, payload string
	want           string // "" for none
}

func TestMQTTConformance(t *testing.T) {
	url := "mqtt://{broker}"
	dl := `{"data":"QA=="}`
	dlWith := `{"deveui":"` + tDevEUI + `","data":"QA=="}`
	cases := []struct {
		name      string
		s         AppSettings
		clientID  string
		initTopic string
		closeT    string
		connected string // 1.1.1
		events    []expect
		locals    []localCase
	}{
		{
			name:      "1.0",
			s:         AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: url},
			clientID:  "lorawan/" + tAppEUI + "/" + tUUIDRaw,
			initTopic: "lorawan/" + tAppEUI + "/" + tUUIDRaw + "/init",
			closeT:    "lorawan/" + tAppEUI + "/" + tUUIDRaw + "/close",
			events: []expect{
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/up", tUplink, 1, true},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tUUIDRaw + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/moved", tMoved, 1, false},
			},
			locals: []localCase{
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/down", dl, "down " + tDevEUI + " " + dl},
				{"lorawan/" + tUUIDRaw + "/" + tDevEUI + "/down", dl, "down " + tDevEUI + " " + dl},
				{"lorawan/" + tGwEUI + "/" + tDevEUI + "/down", dl, "down " + tDevEUI + " " + dl},
				{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/down", dlWith, "down " + tDevEUI + " " + dlWith},
				{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/down", dl, ""}, // deveui required
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/clear", "", "clear " + tDevEUI},
				{"lorawan/" + tUUIDRaw + "/" + tDevEUI + "/clear", "anything", "clear " + tDevEUI},
				{"lorawan/" + tGwEUI + "/" + tDevEUI + "/clear", "", "clear " + tDevEUI},
				{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/clear", `{"deveui":"` + tDevEUI + `"}`, "clear " + tDevEUI},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/down", `{"data":"QA==","port":300}`, ""}, // validation
				{"lorawan/" + tAppEUI + "/00-00-00-00-00-00-00-09/down", dl, ""},                   // not subscribed
			},
		},
		{
			name:      "1.1",
			s:         AppSettings{EUI: config.CatchAll, APIVersion: config.API11, URL: url},
			clientID:  "lorawan/" + config.CatchAll + "/" + tUUID,
			initTopic: "lorawan/" + tUUID + "/init",
			closeT:    "lorawan/" + tUUID + "/close",
			events: []expect{
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/up", tUplink, 1, true},
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/moved", tMoved, 1, false},
			},
			locals: []localCase{
				{"lorawan/" + tUUID + "/down", dlWith, "down " + tDevEUI + " " + dlWith},
				{"lorawan/" + tUUID + "/down", dl, ""},                              // §15 #7: no deveui, refused
				{"lorawan/" + tUUID + "/clear", `{"deveui":"` + tDevEUI + `"}`, ""}, // 1.1 has no clear
			},
		},
		{
			name:      "1.1.1",
			s:         AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: url, Options: config.AppOptions{ClientID: "my-gateway"}},
			clientID:  "my-gateway",
			initTopic: "lorawan/" + tUUID + "/init",
			closeT:    "lorawan/" + tUUID + "/close",
			connected: "lorawan/" + tUUID + "/connected",
			events: []expect{
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/up", tUplink, 1, true},
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/moved", tMoved, 1, false},
			},
			locals: []localCase{
				{"lorawan/" + tUUID + "/down", dlWith, "down " + tDevEUI + " " + dlWith},
				{"lorawan/" + tUUID + "/clear", `{"deveui":"` + tDevEUI + `"}`, "clear " + tDevEUI},
				{"lorawan/" + tUUID + "/clear", ``, ""}, // no DevEUI anywhere
			},
		},
		{
			name:      "1.1.1 encodeHex",
			s:         AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: url, EncodeHex: true},
			clientID:  "lorawan/" + config.CatchAll + "/" + tUUID,
			initTopic: "lorawan/" + tUUID + "/init",
			closeT:    "lorawan/" + tUUID + "/close",
			connected: "lorawan/" + tUUID + "/connected",
			events: []expect{
				{"lorawan/" + tUUID + "/" + tAppEUI + "/" + tDevEUI + "/up", strings.Replace(tUplink, `"QAE="`, `"4001","data-format":"hexadecimal"`, 1), 1, false},
			},
			locals: []localCase{
				{"lorawan/" + tUUID + "/down", `{"deveui":"` + tDevEUI + `","data":"40"}`, "down " + tDevEUI + ` {"data":"QA==","deveui":"` + tDevEUI + `"}`},
				{"lorawan/" + tUUID + "/down", dlWith, ""}, // QA== is not hex
			},
		},
		{
			name: "1.0 custom templates",
			s: AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: url, Options: config.AppOptions{
				UplinkTopic: "acme/%(gwuuid)s/%(deveui)s/p%(port)s/up", DownlinkTopic: "acme/%(deveui)s/cmd/+"}},
			clientID:  "lorawan/" + tAppEUI + "/" + tUUIDRaw,
			initTopic: "lorawan/" + tAppEUI + "/" + tUUIDRaw + "/init",
			closeT:    "lorawan/" + tAppEUI + "/" + tUUIDRaw + "/close",
			events: []expect{
				{"acme/" + tUUIDRaw + "/" + tDevEUI + "/p5/up", tUplink, 1, true},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tUUIDRaw + "/" + tDevEUI + "/joined", tJoined, 1, false},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/moved", tMoved, 1, false},
			},
			locals: []localCase{
				{"acme/" + tDevEUI + "/cmd/x", dl, "down " + tDevEUI + " " + dl},
				{"acme/" + tDevEUI + "/cmd/y", `{"deveui":"00-00-00-00-00-00-00-01","data":"QA=="}`, `down 00-00-00-00-00-00-00-01 {"deveui":"00-00-00-00-00-00-00-01","data":"QA=="}`},
				{"lorawan/" + tAppEUI + "/" + tDevEUI + "/down", dl, "down " + tDevEUI + " " + dl},
			},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
			tc.s.URL = strings.Replace(tc.s.URL, "{broker}", mq.Addr(), 1)
			obs := newObserver(t, mq.URL(), fmt.Sprintf("observer-%d", i))
			poll := NewPollList()
			poll.Add(tDevEUI)
			r := startMQTTApp(t, tc.s, poll, nil)
			if got := mqttOf(r.app).clientID; got != tc.clientID {
				t.Errorf("client id %q, want %q", got, tc.clientID)
			}
			first := tc.initTopic
			if tc.connected != "" {
				first = tc.connected
			}
			ms := obs.wait(t, "init", has(first))
			// init first (retained QoS 1), then connected (QoS 0).
			if ms[0].Topic != tc.initTopic || ms[0].QoS != 1 {
				t.Fatalf("first message %+v, want init", ms[0])
			}
			var in initMessage
			if err := json.Unmarshal([]byte(ms[0].Payload), &in); err != nil || !reflect.DeepEqual(in.GatewaysEUIs, []string{tGwEUI}) ||
				in.APIVersion != tc.s.APIVersion || in.AppVersion != ProtocolAppVersion || !strings.HasSuffix(in.Time, "Z") || len(in.Time) != len("2023-09-13T16:49:44.960920Z") {
				t.Fatalf("init payload %s", ms[0].Payload)
			}
			if !strings.HasPrefix(ms[0].Payload, `{"gateways_euis":`) {
				t.Errorf("init key order: %s", ms[0].Payload)
			}
			if tc.connected != "" && (ms[1].Topic != tc.connected || ms[1].QoS != 0 || ms[1].Payload != "") {
				t.Fatalf("second message %+v, want connected", ms[1])
			}
			obs.reset()
			// Remote → local.
			for _, lc := range tc.locals {
				obs.publish(t, lc.topic, lc.payload, false)
				if lc.want == "" {
					r.sink.none(t, 150*time.Millisecond)
					continue
				}
				got := r.sink.take(t, 1)
				if len(got) != 1 || !localEqual(got[0], lc.want) {
					t.Errorf("%s %q → %v, want %q", lc.topic, lc.payload, got, lc.want)
				}
			}
			obs.reset()
			// LNS → remote.
			r.add(t, "up", tAppEUI, tDevEUI, tUplink)
			if len(tc.events) > 1 {
				r.add(t, "joined", tAppEUI, tDevEUI, tJoined)
				r.add(t, "moved", tAppEUI, tDevEUI, tMoved)
			}
			obs.wait(t, "events", func(ms []recMsg) bool { return len(ms) >= len(tc.events) })
			time.Sleep(100 * time.Millisecond)
			ms = obs.all()
			if len(ms) != len(tc.events) {
				t.Fatalf("got %d messages %v, want %d", len(ms), ms, len(tc.events))
			}
			for j, e := range tc.events {
				m := ms[j]
				if m.Topic != e.topic || m.QoS != e.qos || (e.plain && m.Payload != e.payload) || !jsonEqual(m.Payload, e.payload) {
					t.Errorf("event %d: %+v, want %+v", j, m, e)
				}
			}
			waitRows(t, r.ob, r.app.Settings.EUI, 0)
			obs.reset()
			r.stop()
			if ms := obs.wait(t, "close", has(tc.closeT)); len(ms) != 1 || ms[0].Payload != "" || ms[0].QoS != 1 {
				t.Errorf("close %+v", ms)
			}
			// Retained on the broker: init only (events are not retained; an
			// empty retained close deletes itself, as in the original).
			late := newObserver(t, mq.URL(), fmt.Sprintf("late-%d", i))
			late.wait(t, "retained init", has(tc.initTopic))
			time.Sleep(100 * time.Millisecond)
			var retained []string
			for _, m := range late.all() {
				if m.Retained {
					retained = append(retained, m.Topic)
				}
			}
			if !reflect.DeepEqual(retained, []string{tc.initTopic}) {
				t.Errorf("retained topics %v, want %v", retained, []string{tc.initTopic})
			}
		})
	}
}

// localEqual compares "down <dev> <json>" records JSON-wise.
func localEqual(got, want string) bool {
	gp := strings.SplitN(got, " ", 3)
	wp := strings.SplitN(want, " ", 3)
	if len(gp) != len(wp) {
		return false
	}
	if len(gp) < 3 {
		return got == want
	}
	return gp[0] == wp[0] && gp[1] == wp[1] && jsonEqual(gp[2], wp[2])
}

func waitRows(t *testing.T, ob *cache.Outbox, app string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for ob.Stats(app).Rows != n {
		if time.Now().After(deadline) {
			t.Fatalf("outbox rows %d, want %d", ob.Stats(app).Rows, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMQTTRetainedDownlinkActedOnceAndCleared(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	obs := newObserver(t, mq.URL(), "observer")
	topic := "lorawan/" + tUUID + "/down"
	payload := `{"deveui":"` + tDevEUI + `","data":"QA=="}`
	obs.publish(t, topic, payload, true) // waiting on the broker before we subscribe
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtt://" + mq.Addr()}, nil, nil)
	got := r.sink.take(t, 1)
	if !localEqual(got[0], "down "+tDevEUI+" "+payload) {
		t.Fatalf("local %v", got)
	}
	r.sink.none(t, 300*time.Millisecond)
	// The retained message is gone: a new subscriber sees nothing on the topic.
	late := newObserver(t, mq.URL(), "late")
	late.c.Subscribe(topic, 1, nil).WaitTimeout(time.Second)
	time.Sleep(200 * time.Millisecond)
	for _, m := range late.all() {
		if m.Topic == topic && m.Payload != "" {
			t.Fatalf("retained downlink not cleared: %+v", m)
		}
	}
}

// proxy is a TCP proxy whose connections can be cut.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestMQTTLastWillAndReconnect(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	obs := newObserver(t, mq.URL(), "observer")
	px := newProxy(t, mq.Addr())
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtt://" + px.ln.Addr().String()}, nil, nil)
	connected := "lorawan/" + tUUID + "/connected"
	obs.wait(t, "connected", has(connected))
	px.cut()
	ms := obs.wait(t, "second connected", func(ms []recMsg) bool {
		n := 0
		for _, m := range ms {
			if m.Topic == connected {
				n++
			}
		}
		return n == 2
	})
	var topics []string
	for _, m := range ms {
		topics = append(topics, strings.TrimPrefix(m.Topic, "lorawan/"+tUUID+"/"))
	}
	if want := []string{"init", "connected", "disconnected", "connected"}; !reflect.DeepEqual(topics, want) {
		t.Fatalf("sequence %v, want %v (init once per instance, will on the cut)", topics, want)
	}
	for _, m := range ms {
		if m.Topic == "lorawan/"+tUUID+"/disconnected" && (m.QoS != 1 || m.Payload != "") {
			t.Fatalf("will %+v", m)
		}
	}
	// A clean stop sends close, not the will.
	obs.reset()
	r.stop()
	obs.wait(t, "close", has("lorawan/"+tUUID+"/close"))
	time.Sleep(200 * time.Millisecond)
	if has("lorawan/" + tUUID + "/disconnected")(obs.all()) {
		t.Fatal("will published on a clean stop")
	}
	obs.publish(t, "lorawan/"+tUUID+"/close", "", true)
	obs.publish(t, "lorawan/"+tUUID+"/init", "", true)
}

func TestMQTTBrokerRestartLosesNothing(t *testing.T) {
	outage := 10 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	maxQ := 1000000
	dir := t.TempDir()
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueued: &maxQ,
		Extra: []string{"persistence true", "persistence_location " + dir + "/"}})
	obs := newObserver(t, mq.URL(), "observer")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API11, URL: "mqtt://" + mq.Addr(),
		Delivery: config.Delivery{RetryMin: 100 * time.Millisecond, RetryMax: time.Second},
		Backhaul: config.BackhaulDetect{Enabled: true, Port: 7, Payload: "69B71D", Timeout: 600}}, nil, nil)
	obs.wait(t, "init", has("lorawan/"+tUUID+"/init"))
	devs := []string{"00-00-00-00-00-00-00-01", "00-00-00-00-00-00-00-02"}
	const rate = 50
	total := int((outage + 4*time.Second).Seconds() * rate)
	stopAt, startAt := rate, rate+int(outage.Seconds()*rate)
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for i := 0; i < total; i++ {
		<-tick.C
		switch i {
		case stopAt:
			mq.Stop()
		case startAt:
			mq.Restart()
		}
		dev := devs[i%len(devs)]
		r.add(t, "up", tAppEUI, dev, fmt.Sprintf(`{"deveui":"%s","fcnt":%d}`, dev, i/len(devs)))
	}
	waitRows(t, r.ob, config.CatchAll, 0)
	want := total / len(devs)
	for _, dev := range devs {
		topic := "lorawan/" + tUUID + "/" + tAppEUI + "/" + dev + "/up"
		obs.wait(t, "all uplinks of "+dev, func(ms []recMsg) bool {
			next := 0
			for _, m := range ms {
				if m.Topic != topic {
					continue
				}
				var u struct{ Fcnt int }
				json.Unmarshal([]byte(m.Payload), &u)
				switch {
				case u.Fcnt == next:
					next++
				case u.Fcnt > next:
					t.Fatalf("%s: fcnt %d arrived before %d (lost or reordered)", dev, u.Fcnt, next)
				}
			}
			return next == want
		})
	}
	if r.app.Counters.Forwarded.Load() != uint64(total) {
		t.Fatalf("forwarded %d, want %d", r.app.Counters.Forwarded.Load(), total)
	}
	// backhaulDetect: one local downlink per device during the outage (timeout
	// 600 s), the hex payload sent as those bytes (§15 #3: 69B71D → abcd).
	r.sink.mu.Lock()
	got := append([]string(nil), r.sink.got...)
	r.sink.mu.Unlock()
	sortStrings(got)
	var want2 []string
	for _, dev := range devs {
		want2 = append(want2, "down "+dev+` {"port":7,"data":"abcd"}`)
	}
	if !reflect.DeepEqual(got, want2) {
		t.Fatalf("backhaul downlinks %v, want %v", got, want2)
	}
}

// serverPEM returns the PEM certificate and key of a pki's server.
func serverPEM(t *testing.T, p *pki) (string, string) {
	t.Helper()
	kd, err := x509.MarshalECPrivateKey(p.server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.server.Certificate[0]})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

// waitState waits until the application is up (want true) or has failed to connect.
func waitConnected(t *testing.T, a *Application, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, lastErr := a.State()
		if want && st == StateUp {
			return
		}
		if !want && st == StateRetrying && lastErr != "" {
			time.Sleep(300 * time.Millisecond)
			if st, _ := a.State(); st == StateUp {
				t.Fatal("connected, want refused")
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, lastErr := a.State()
	t.Fatalf("state %s (%s), want connected=%v", st, lastErr, want)
}

func TestMQTTSClientCertificate(t *testing.T) {
	good := newPKI(t, "127.0.0.1")
	other := newPKI(t, "127.0.0.1")
	cert, key := serverPEM(t, good)
	port, lines := testpeer.TLSLines(t, testpeer.TLSListener{CAPEM: good.caPEM, CertPEM: cert, KeyPEM: key, RequireCertificate: true})
	testpeer.StartMosquitto(t, testpeer.MosquittoOptions{Extra: lines})
	url := fmt.Sprintf("mqtts://127.0.0.1:%d", port)
	for _, tc := range []struct {
		name string
		opts config.AppOptions
		ok   bool
	}{
		{"right certificate", config.AppOptions{ServerCert: good.caPEM, ClientCert: good.clientCert, APIKey: good.clientKey}, true},
		{"no certificate", config.AppOptions{ServerCert: good.caPEM}, false},
		{"certificate of another CA", config.AppOptions{ServerCert: good.caPEM, ClientCert: other.clientCert, APIKey: other.clientKey}, false},
		{"server not trusted", config.AppOptions{ServerCert: other.caPEM, ClientCert: good.clientCert, APIKey: good.clientKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API11, URL: url, Options: tc.opts}, nil, testLogger(t, &logs))
			waitConnected(t, r.app, tc.ok)
			r.stop()
			if strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Fatal("key material logged")
			}
		})
	}
}

func TestMQTTUsernamePassword(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{Extra: testpeer.PasswordLines(t, map[string]string{"gw": "s3cret-pass"})})
	for _, tc := range []struct {
		name, user, pass string
		ok               bool
	}{
		{"right password", "gw", "s3cret-pass", true},
		{"wrong password", "gw", "wrong-pass", false},
		{"anonymous", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API11, URL: "mqtt://" + mq.Addr(),
				Options: config.AppOptions{Username: tc.user, Password: tc.pass}}, nil, testLogger(t, &logs))
			waitConnected(t, r.app, tc.ok)
			r.stop()
			if tc.pass != "" && strings.Contains(logs.String(), tc.pass) {
				t.Fatal("password logged")
			}
		})
	}
}

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
	if mqttOf(r.app).brokerURL != "wss://"+ws+"/mqtt" {
		t.Fatalf("broker url %s", mqttOf(r.app).brokerURL)
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
	s := AppSettings{EUI: config.CatchAll, APIVersion: config.API11}
	d := mqttDeps{log: testLogger(t, nil)}
	tr, err := newMQTTTransport(s, ep, tIdentity, d)
	if err != nil {
		t.Fatal(err)
	}
	if tr.brokerURL != "wss://broker.example.net:443/mqtt" || tr.tls == nil || tr.tls.ServerName != "broker.example.net" {
		t.Fatalf("url %s tls %v", tr.brokerURL, tr.tls)
	}
	ep, _ = config.ParseEndpoint("mqtts://broker.example.net")
	if tr, _ = newMQTTTransport(s, ep, tIdentity, d); tr.brokerURL != "ssl://broker.example.net:8883" || tr.tls == nil {
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

// Templates get the gateway's serial as gwserial (uplinks and subscriptions).
func TestTemplateGatewayKeys(t *testing.T) {
	app, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: "1.1", URL: "mqtt://127.0.0.1:1",
		Options: config.AppOptions{DownlinkTopic: "acme/%(gwserial)s/%(deveui)s/down"}, Delivery: config.Default().Delivery},
		Identity{UUIDRaw: "029998E06156CDD44523264B523115C1", UUID: "029998e0-6156-cdd4-4523-264b523115c1", Serial: "19186550"},
		nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]json.RawMessage{}
	mqttOf(app).addGatewayKeys(keys)
	if string(keys["gwserial"]) != `"19186550"` || string(keys["gwuuid"]) != `"029998e0-6156-cdd4-4523-264b523115c1"` {
		t.Fatalf("keys %s %s", keys["gwserial"], keys["gwuuid"])
	}
	fs := mqttOf(app).deviceFilters("00-11-00-11-00-11-00-11", "6c-4e-ef-66-f4-79-86-a6")
	if _, ok := fs["acme/19186550/00-11-00-11-00-11-00-11/down"]; !ok {
		t.Fatalf("filters %v", fs)
	}
}
