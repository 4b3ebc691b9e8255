package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// The HTTP conformance of forward (conduit.md §6), end to end on a simulated
// gateway (gateway_test.go): the local broker's events in, the remote API's
// requests out.

// The conformance table: for each API version with an HTTP URL, each LNS input
// produces exactly the requests conduit.md §6 lists; the same over HTTPS to a
// server that verifies the gateway's client certificate.
func TestHTTPConformance(t *testing.T) {
	const gwEUI = "00-80-00-00-d0-00-01-ff"
	dashed := "029998e0-6156-cdd4-4523-264b523115c1"
	tests := []struct {
		api, eui string
		app, gw  string // expected APP and GW-UUID path levels
		https    bool   // HTTPS with a client certificate
	}{
		{"1.0", "ff-ff-ff-ff-ff-ff-ff-ff", "ff-ff-ff-ff-ff-ff-ff-ff", gwTestUUID, false},
		{"1.0", "16-EA-76-F6-AB-66-3D-80", "16-ea-76-f6-ab-66-3d-80", gwTestUUID, false},
		{"1.1", "16-ea-76-f6-ab-66-3d-80", "ff-ff-ff-ff-ff-ff-ff-ff", dashed, false}, // forced to the catch-all
		{"1.1.1", "16-ea-76-f6-ab-66-3d-80", "ff-ff-ff-ff-ff-ff-ff-ff", dashed, false},
		{"1.0", "16-ea-76-f6-ab-66-3d-80", "16-ea-76-f6-ab-66-3d-80", gwTestUUID, true},
		{"1.1.1", "16-ea-76-f6-ab-66-3d-80", "ff-ff-ff-ff-ff-ff-ff-ff", dashed, true},
	}
	for _, tc := range tests {
		name := tc.api + " " + tc.eui
		if tc.https {
			name += " https"
		}
		t.Run(name, func(t *testing.T) {
			h := newGateway(t, 1)
			var app json.RawMessage
			if tc.https {
				p := newPKI(t, "127.0.0.1")
				srv := mtlsServer(t, p, h.sink)
				app = withOptions(t, sim.DefaultAppWith(srv.URL+"/tenant", tc.api, tc.eui, nil),
					map[string]any{"server_cert": p.caPEM, "client_cert": p.clientCert, "apikey": p.clientKey, "check_hostname": true})
			} else {
				srv := httptest.NewServer(h.sink)
				t.Cleanup(srv.Close)
				app = sim.DefaultAppWith(srv.URL+"/tenant", tc.api, tc.eui, nil)
			}
			h.mpower.SetDefaultApp(app)
			h.start()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dev := h.fleet.Devices()[0]
			jt, jp := h.fleet.Joined(0)
			ut, up, _ := h.fleet.Uplink(0)
			mt, mp := h.fleet.Moved(0)
			// An uplink of an AppEUI the 1.0 filter does not take.
			other := bytes.ReplaceAll(up, []byte(dev.AppEUI), []byte("00-00-00-00-00-00-00-09"))
			otherTopic := strings.Replace(ut, dev.AppEUI, "00-00-00-00-00-00-00-09", 1)
			filterOff := tc.app == "ff-ff-ff-ff-ff-ff-ff-ff"
			// One at a time, so that no two uplinks wait together (they would be batched).
			requests := func() int { return h.sink.Stats().Requests }
			waitUntil(t, "init", func() bool { return requests() == 1 })
			h.publishOne(ctx, jt, jp)
			waitUntil(t, "joined", func() bool { return requests() == 2 })
			h.publishOne(ctx, ut, up)
			waitUntil(t, "up", func() bool { return requests() == 3 })
			h.publishOne(ctx, mt, mp) // HTTP sends nothing for moved
			h.publishOne(ctx, otherTopic, other)
			if filterOff {
				waitUntil(t, "the other AppEUI's up", func() bool { return requests() == 4 })
			}
			time.Sleep(300 * time.Millisecond) // nothing more may come
			type req struct{ method, path string }
			var got []req
			var bodies = map[string][]byte{}
			for _, r := range h.sink.Recorded() {
				got = append(got, req{r.Method, r.Path})
				bodies[r.Path] = r.Body
			}
			base := "/tenant/api/v1/lorawan/"
			want := []req{
				{"POST", base + tc.app + "/" + tc.gw + "/init"},
				{"POST", base + dev.AppEUI + "/" + dev.DevEUI + "/joined"},
				{"POST", base + dev.AppEUI + "/" + dev.DevEUI + "/up"},
			}
			if filterOff {
				want = append(want, req{"POST", base + "00-00-00-00-00-00-00-09/" + dev.DevEUI + "/up"})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("requests\n got %v\nwant %v", got, want)
			}
			if string(bodies[want[0].path]) != `{"gateways_euis":["`+gwEUI+`"]}` {
				t.Errorf("init body %s", bodies[want[0].path])
			}
			if !bytes.Equal(bodies[want[2].path], up) {
				t.Errorf("uplink body changed:\n%s\n%s", bodies[want[2].path], up)
			}
			var joined map[string]any
			if err := json.Unmarshal(bodies[want[1].path], &joined); err != nil || joined["deveui"] != dev.DevEUI || joined["appeui"] != dev.AppEUI || joined["time"] == nil {
				t.Errorf("joined body %s", bodies[want[1].path])
			}
			checkSink(t, "default", h.sink, false)
		})
	}
}

func TestBatchingAndBatchRouteFallback(t *testing.T) {
	for _, batchRoute := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch route %v", batchRoute), func(t *testing.T) {
			h := newGateway(t, 10)
			h.sink.SetBatchRoute(batchRoute)
			h.sink.FailFor(1500*time.Millisecond, 503) // let a backlog build up
			h.start()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			h.publish(ctx, 10) // a burst of 100 uplinks
			h.waitAll(time.Minute)
			h.checkOrder(false)
			s := h.sink.Stats()
			if s.Unique != 100 || s.Duplicates != 0 {
				t.Fatalf("sink %+v", s)
			}
			batches := 0
			for _, r := range h.sink.Recorded() {
				if r.Path == "/tenant/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/up" && r.Status == 200 {
					var arr []json.RawMessage
					if err := json.Unmarshal(r.Body, &arr); err != nil || len(arr) < 2 || len(arr) > 10 {
						t.Fatalf("batch of %d (%v)", len(arr), err)
					}
					batches++
				}
			}
			if batchRoute && batches == 0 {
				t.Fatal("no batch was sent")
			}
			if !batchRoute && (batches != 0 || !strings.Contains(h.logs.String(), "no batch route")) {
				t.Fatalf("batches %d after a 404 batch route", batches)
			}
			// The outage and the batch route's 404 are injected; a batch the
			// sink refuses (a joined event in it) is not.
			checkSink(t, "default", h.sink, true)
			if batchRoute {
				for _, b := range h.sink.Batches() {
					if b.Status != 200 && b.Status != 503 {
						t.Fatalf("batch answered %d: %s", b.Status, b.Err)
					}
				}
			}
		})
	}
}

func TestDownlinksFromAnswersAndPolls(t *testing.T) {
	h := newGateway(t, 1)
	h.sink.SetInitReply(json.RawMessage(`{"timeout":20,"queue_size":10,"downlink_query_interval":1}`))
	dev := h.fleet.Devices()[0]
	downs := h.watchLocalDownlinks()
	h.sink.QueueDownlink(json.RawMessage(`{"deveui":"` + dev.DevEUI + `","data":"AQID","port":2}`))
	h.sink.QueueDownlink(json.RawMessage(`{"deveui":"` + dev.DevEUI + `","data":"AQID","port":300}`)) // hostile: refused
	h.sink.QueuePollDownlink(json.RawMessage(`{"deveui":"` + dev.DevEUI + `","data":"BAU=","port":3,"confirmed_note":"kept"}`))
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.publish(ctx, 1)
	waitUntil(t, "two downlinks", func() bool { return len(downs()) >= 2 })
	time.Sleep(200 * time.Millisecond)
	want := []string{
		"lora/" + dev.DevEUI + `/down {"deveui":"` + dev.DevEUI + `","data":"AQID","port":2}`,
		"lora/" + dev.DevEUI + `/down {"deveui":"` + dev.DevEUI + `","data":"BAU=","port":3,"confirmed_note":"kept"}`,
	}
	if got := downs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("downlinks\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(h.logs.String(), "port = 300 out of range") {
		t.Fatalf("hostile downlink not refused with a reason:\n%s", h.logs.Tail(20))
	}
	var poll *sim.Request
	for _, r := range h.sink.Recorded() {
		if r.Method == "GET" {
			poll = &r
			break
		}
	}
	if poll == nil || poll.Path != "/tenant/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/down" || string(poll.Body) != `["`+dev.DevEUI+`"]` {
		t.Fatalf("poll %+v", poll)
	}
	checkSink(t, "default", h.sink, false)
}

// Two Lens appnets and the default app: each device's uplinks reach its own
// application; one appnet's URL changes while uplinks flow and nothing is lost.
func TestAppnetsRoutingAndLiveChange(t *testing.T) {
	h := newGateway(t, 3) // the default app's devices
	const euiA, euiB = "8b-6c-f0-8e-ee-df-1b-b6", "6c-4e-ef-66-f4-79-86-a6"
	sinkA, sinkB, sinkB2 := sim.NewSink(""), sim.NewSink(""), sim.NewSink("")
	var urls []string
	for _, s := range []*sim.Sink{sinkA, sinkB, sinkB2} {
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	defSrv := httptest.NewServer(h.sink)
	t.Cleanup(defSrv.Close)
	// API 1.0 with the default app's own EUI: appnets keep their devices.
	h.mpower.SetDefaultApp(sim.DefaultAppWith(defSrv.URL+"/tenant", "1.0", "16-ea-76-f6-ab-66-3d-80", nil))
	state := sim.LoraQueryState{
		Gateways: []json.RawMessage{json.RawMessage(`{"gweui":"00-80-00-00-d0-00-01-ff"}`)},
		Appnets:  []json.RawMessage{sim.Appnet(euiA, "A", urls[0]), sim.Appnet(euiB, "B", urls[1])},
	}
	lq := h.withLoraQuery(state)
	h.cfg.MPower.PollInterval = time.Second
	h.start()
	fleetA := sim.NewFleet(3, euiA, "00-80-00-00-d0-00-01-ff", 2)
	fleetB := sim.NewFleet(3, euiB, "00-80-00-00-d0-00-01-ff", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// B's URL changes while its uplinks flow.
		time.Sleep(700 * time.Millisecond)
		state.Appnets[1] = sim.Appnet(euiB, "B", urls[2])
		if err := lq.SetState(state); err != nil {
			t.Error(err)
		}
	}()
	for _, f := range []*sim.Fleet{h.fleet, fleetA, fleetB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Run(ctx, f, 30, 60); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.waitAll(time.Minute)
	if err := sinkA.Wait(ctx, fleetA.Expected()); err != nil {
		t.Fatal(err)
	}
	// B's uplinks are split between the old and the new URL: together, all of them, in order.
	waitUntil(t, "appnet B's uplinks", func() bool {
		return sinkB.Stats().Unique+sinkB2.Stats().Unique >= 90
	})
	for _, d := range fleetB.Devices() {
		got := append(sinkB.Received(d.DevEUI), sinkB2.Received(d.DevEUI)...)
		for i, f := range got {
			if int(f) != i {
				t.Fatalf("device %s of appnet B: fcnts %v", d.DevEUI, got)
			}
		}
	}
	if sinkB2.Stats().Unique == 0 || sinkB.Stats().Closes != 1 || sinkB2.Stats().Inits != 1 {
		t.Fatalf("the change did not rebuild appnet B: old %+v new %+v", sinkB.Stats(), sinkB2.Stats())
	}
	// No cross-delivery.
	if h.sink.Stats().Unique != 90 || sinkA.Stats().Unique != 90 {
		t.Fatalf("default %d, A %d", h.sink.Stats().Unique, sinkA.Stats().Unique)
	}
	calls, _ := lq.Calls()
	for _, c := range calls {
		if len(c) < 2 || c[0] != "-x" {
			t.Fatalf("lora-query called with %q", c)
		}
	}
	for name, s := range map[string]*sim.Sink{"default": h.sink, "A": sinkA, "B": sinkB, "B2": sinkB2} {
		checkSink(t, name, s, false)
	}
}

// After a reboot with neither mPower nor lora-query answering, the cached
// application info still routes uplinks; they are delivered once the remote
// side is reachable again.
func TestRebootWithoutNetworkUsesCachedApps(t *testing.T) {
	h := newGateway(t, 2)
	const euiA = "8b-6c-f0-8e-ee-df-1b-b6"
	sinkA := sim.NewSink("")
	srvA := httptest.NewServer(sinkA)
	t.Cleanup(srvA.Close)
	defSrv := httptest.NewServer(h.sink)
	t.Cleanup(defSrv.Close)
	h.mpower.SetDefaultApp(sim.DefaultAppWith(defSrv.URL+"/tenant", "1.0", "16-ea-76-f6-ab-66-3d-80", nil))
	lq := h.withLoraQuery(sim.LoraQueryState{Appnets: []json.RawMessage{sim.Appnet(euiA, "A", srvA.URL)}})
	h.cfg.MPower.BootWait = time.Second
	stop := h.start()
	stop() // first run: the application info is now cached

	// Reboot: mPower refuses, lora-query is gone, both remote APIs are down for a while.
	h.mpower.RefuseFor(time.Hour)
	h.cfg.Gateway.LoraQuery = filepath.Join(lq.Dir, "missing-lora-query")
	h.sink.FailFor(3*time.Second, 503)
	sinkA.FailFor(3*time.Second, 503)
	h.start()
	h.waitSubscribed(2)
	fleetA := sim.NewFleet(2, euiA, "00-80-00-00-d0-00-01-ff", 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 10)
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Run(ctx, fleetA, 10, 0); err != nil {
		t.Fatal(err)
	}
	h.waitAll(time.Minute)
	if err := sinkA.Wait(ctx, fleetA.Expected()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"using the cached copy", "using the cached one"} {
		if !strings.Contains(h.logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, h.logs.Tail(30))
		}
	}
	checkSink(t, "default", h.sink, true) // both remote APIs were down for a while
	checkSink(t, "A", sinkA, true)
}

// A device of an appnet the list does not have joins: app-connect asks
// `appnet get`, sets the appnet up and forwards the join and the uplinks; a
// device from the start-up session list is on its application's poll list.
func TestUnknownAppnetResolvedOnJoin(t *testing.T) {
	h := newGateway(t, 1)
	const euiC = "00-00-00-00-00-00-0c-0c"
	sinkC := sim.NewSink("")
	sinkC.SetInitReply(json.RawMessage(`{"downlink_query_interval":1}`))
	srvC := httptest.NewServer(sinkC)
	t.Cleanup(srvC.Close)
	h.mpower.SetDefaultApp(sim.DefaultApp("")) // mPower's disabled default
	polled := "00-00-00-00-00-00-0c-99"
	lq := h.withLoraQuery(sim.LoraQueryState{
		Hidden:   []json.RawMessage{sim.Appnet(euiC, "C", srvC.URL)},
		Sessions: []json.RawMessage{json.RawMessage(`{"deveui":"` + polled + `","appeui":"` + euiC + `","app_senc_key":"2b7e151628aed2a6abf7158809cf4f3c"}`)},
	})
	h.start()
	fleetC := sim.NewFleet(2, euiC, "00-80-00-00-d0-00-01-ff", 7)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Run(ctx, fleetC, 5, 100); err != nil {
		t.Fatal(err)
	}
	if err := sinkC.Wait(ctx, fleetC.Expected()); err != nil {
		t.Fatal(err)
	}
	if s := sinkC.Stats(); s.Joined != 2 || s.Inits != 1 {
		t.Fatalf("appnet C %+v", s)
	}
	calls, _ := lq.Calls()
	gets := 0
	for _, c := range calls {
		if strings.Join(c, " ") == "-x appnet get "+euiC {
			gets++
		}
	}
	if gets != 1 {
		t.Fatalf("%d appnet get calls (rate limit: one per AppEUI per minute): %q", gets, calls)
	}
	// The session-list device is polled for even though it never joined here.
	waitUntil(t, "a poll", func() bool { return sinkC.Stats().Polls > 0 })
	for _, r := range sinkC.Recorded() {
		if r.Method == "GET" && !strings.Contains(string(r.Body), polled) {
			t.Fatalf("poll list %s lacks the session device", r.Body)
		}
	}
	if strings.Contains(h.logs.String(), "2b7e151628aed2a6abf7158809cf4f3c") {
		t.Fatal("a session key reached the logs")
	}
	checkSink(t, "C", sinkC, false)
}

// withOptions sets options of a defaultApp document.
func withOptions(t *testing.T, app json.RawMessage, opts map[string]any) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(app, &m); err != nil {
		t.Fatal(err)
	}
	o, _ := m["options"].(map[string]any)
	if o == nil {
		o = map[string]any{}
	}
	for k, v := range opts {
		o[k] = v
	}
	m["options"] = o
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
