package forward

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

func statusBody(t *testing.T, b *statusreport.Builder) []byte {
	t.Helper()
	body, err := b.Build(statusreport.Snapshot{}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func testBuilder() *statusreport.Builder {
	return &statusreport.Builder{Gateway: statusreport.Gateway{UUID: tUUID, EUIs: []string{tGwEUI}}, Version: "test", Started: time.Now()}
}

// TestStatusMQTT: each API version publishes the report on its exact topic,
// QoS 1, retained (a subscriber arriving later gets it at once); Azure as a
// telemetry message with type=status, not retained.
func TestStatusMQTT(t *testing.T) {
	tests := []struct {
		name, version string
		opts          config.AppOptions
		topic         string
		retained      bool
	}{
		{"api 1.0", config.API10, config.AppOptions{}, "lorawan/" + tAppEUI + "/" + tUUIDRaw + "/status", true},
		{"api 1.1", config.API11, config.AppOptions{}, "lorawan/" + tUUID + "/status", true},
		{"api 1.1.1", config.API111, config.AppOptions{}, "lorawan/" + tUUID + "/status", true},
		{"azure", config.API111, config.AppOptions{CloudService: "AZURE", ClientID: "gw-1"},
			"devices/gw-1/messages/events/type=status&$.ct=application%2Fjson&$.ce=utf-8", false},
	}
	b := testBuilder()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
			r := startMQTTApp(t, AppSettings{EUI: tAppEUI, APIVersion: tc.version, URL: "mqtt://" + mq.Addr(), Options: tc.opts}, nil, nil)
			waitConnected(t, r.app, true)
			live := newObserver(t, mq.URL(), "status-live-"+tc.name)
			live.publish(t, "probe/live", "x", true) // retained: it comes back once subscribed
			live.wait(t, "the probe", has("probe/live"))
			body := statusBody(t, b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.app.PublishStatus(ctx, body); err != nil {
				t.Fatal(err)
			}
			got := live.wait(t, "the status report", has(tc.topic))
			for _, m := range got {
				if strings.HasSuffix(m.Topic, "status") || strings.Contains(m.Topic, "type=status") {
					if m.Topic != tc.topic || m.QoS != 1 || m.Payload != string(body) {
						t.Errorf("published %s qos %d %q, want %s qos 1 with the report", m.Topic, m.QoS, m.Payload, tc.topic)
					}
				}
			}
			late := newObserver(t, mq.URL(), "status-late-"+tc.name+string(rune('a'+i)))
			if tc.retained {
				ms := late.wait(t, "the retained report", has(tc.topic))
				for _, m := range ms {
					if m.Topic == tc.topic && (!m.Retained || m.Payload != string(body)) {
						t.Errorf("late subscriber got %+v, want the retained report", m)
					}
				}
			} else {
				time.Sleep(200 * time.Millisecond)
				if has(tc.topic)(late.all()) {
					t.Errorf("Azure report retained")
				}
			}
		})
	}
}

// TestStatusMQTTNotBuffered: while the broker is down a report fails at once
// and is never sent later (the client does not buffer it).
func TestStatusMQTTNotBuffered(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtt://" + mq.Addr()}, nil, nil)
	waitConnected(t, r.app, true)
	b := testBuilder()
	mq.Stop()
	waitConnected(t, r.app, false)
	stale := statusBody(t, b)
	if err := r.app.PublishStatus(context.Background(), stale); err == nil {
		t.Fatal("report accepted with the broker down")
	}
	mq.Restart()
	obs := newObserver(t, mq.URL(), "status-after")
	waitConnected(t, r.app, true)
	fresh := statusBody(t, b)
	if err := r.app.PublishStatus(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	ms := obs.wait(t, "the fresh report", has("lorawan/"+tUUID+"/status"))
	for _, m := range ms {
		if m.Payload == string(stale) {
			t.Fatal("the report of the outage was sent after it")
		}
	}
}

// statusServer is a remote HTTP API whose uplink routes always fail (a
// backlog builds in the outbox) and whose status route is down until up is set.
type statusServer struct {
	mu       sync.Mutex
	up       bool
	refused  []uint64 // sequence numbers of the reports refused
	accepted []uint64
	uplinks  int
}

func (s *statusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/init"):
		w.Write([]byte(`{}`))
	case strings.HasSuffix(r.URL.Path, "/"+tUUID+"/status"):
		rep, err := statusreport.Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !s.up {
			s.refused = append(s.refused, rep.Seq)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.accepted = append(s.accepted, rep.Seq)
		w.WriteHeader(http.StatusNoContent)
	default:
		s.uplinks++
		http.Error(w, "uplinks down", http.StatusServiceUnavailable)
	}
}

func (s *statusServer) counts() (refused, accepted []uint64, uplinks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.refused...), append([]uint64(nil), s.accepted...), s.uplinks
}

// TestStatusHTTPNeverQueued drives the sender against an HTTPS application
// (its own client certificate) whose uplinks are failing: reports are not
// queued behind the uplink backlog; a status route that is down for many
// intervals leaves no backlog of reports; the first one after recovery is new.
func TestStatusHTTPNeverQueued(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	srv := &statusServer{}
	ts := mtlsServer(t, p, srv)
	ob := newOutbox(t)
	app, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: ts.URL,
		Options:  config.AppOptions{ServerCert: p.caPEM, ClientCert: p.clientCert, APIKey: p.clientKey},
		Delivery: config.Delivery{RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: 5 * time.Second}},
		tIdentity, ob, nil, nil, nil, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &runningApp{app: app, ob: ob}
	for range 20 {
		r.add(t, "up", tAppEUI, tDevEUI, tUplink)
	}
	go app.Run(ctx)
	b := testBuilder()
	s := &statusreport.Sender{
		Interval: 30 * time.Millisecond,
		Report:   func() ([]byte, error) { return b.Build(statusreport.Snapshot{}).Encode() },
		Targets:  func() []statusreport.Target { return []statusreport.Target{{App: app.Settings.EUI, Publisher: app}} },
		Log:      testLogger(t, nil),
	}
	go s.Run(ctx)
	waitUntil(t, "six refused reports (an outage of six intervals)", func() bool { rf, _, _ := srv.counts(); return len(rf) >= 6 })
	srv.mu.Lock()
	srv.up = true
	lastRefused := srv.refused[len(srv.refused)-1]
	srv.mu.Unlock()
	waitUntil(t, "three accepted reports", func() bool { _, ac, _ := srv.counts(); return len(ac) >= 3 })
	cancel()
	refused, accepted, uplinks := srv.counts()
	if uplinks == 0 || ob.Stats(config.CatchAll).Rows != 20 {
		t.Fatalf("the uplink backlog did not build (%d attempts, %d rows)", uplinks, ob.Stats(config.CatchAll).Rows)
	}
	if accepted[0] <= lastRefused {
		t.Errorf("first report after recovery is seq %d, not newer than the last refused (%d)", accepted[0], lastRefused)
	}
	seen := map[uint64]bool{}
	for _, q := range append(refused, accepted...) {
		if seen[q] {
			t.Errorf("report %d sent twice", q)
		}
		seen[q] = true
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
