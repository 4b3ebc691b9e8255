package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// fcntRecorder is an HTTP application recording the fcnt of every uplink
// per device, in arrival order (single posts and batches alike).
type fcntRecorder struct {
	mu  sync.Mutex
	got map[string][]uint32 // DevEUI → fcnts
}

func (f *fcntRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/init") || strings.HasSuffix(r.URL.Path, "/close") {
		w.Write([]byte(`{}`))
		return
	}
	type up struct {
		DevEUI string `json:"deveui"`
		FCnt   uint32 `json:"fcnt"`
	}
	b, _ := io.ReadAll(r.Body)
	var ups []up
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		json.Unmarshal(b, &ups)
	} else {
		var u up
		json.Unmarshal(b, &u)
		ups = append(ups, u)
	}
	f.mu.Lock()
	for _, u := range ups {
		f.got[u.DevEUI] = append(f.got[u.DevEUI], u.FCnt)
	}
	f.mu.Unlock()
	w.Write([]byte(`[]`))
}

func (f *fcntRecorder) fcnts(dev string) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint32(nil), f.got[dev]...)
}

func (f *fcntRecorder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.got {
		n += len(g)
	}
	return n
}

// While mPower's defaultApp names an API version this build does not speak,
// the default app is misconfigured and takes every event under the catch-all
// (the appnet too is misconfigured: the version is global). Fixed to 1.0
// with an AppEUI filter, each queued row goes where the fixed configuration
// routes it: the default app's devices to the default app, the appnet's to
// the appnet, each device's uplinks in order and before those that arrive
// after the fix; rows no application takes stay under the catch-all for the
// removal grace period. No row is unrouted while the version is unknown.
func TestUnknownAPIVersionQueuesThenRoutesPerRowOnceFixed(t *testing.T) {
	defRec, netRec := &fcntRecorder{got: map[string][]uint32{}}, &fcntRecorder{got: map[string][]uint32{}}
	defSrv, netSrv := httptest.NewServer(defRec), httptest.NewServer(netRec)
	defer defSrv.Close()
	defer netSrv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ob := newOutbox(t)
	log := testLogger(t, nil)
	mgr := runManager(ctx, t, ob, nil, log)
	delivery := config.Delivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: 5 * time.Second}
	id := Identity{UUIDRaw: "U", UUID: "u"}
	const defEUI, netEUI, noneEUI = "16-ea-76-f6-ab-66-3d-80", "8b-6c-f0-8e-ee-df-1b-b6", "6c-4e-ef-66-f4-79-86-a6"
	appnets := []config.Appnet{{EUI: netEUI, AppNetID: "A", URL: netSrv.URL}}
	doc := func(version string) []byte {
		return fmt.Appendf(nil, `{"enabled":true,"apiVersion":%q,"eui":%q,"url":%q}`, version, defEUI, defSrv.URL)
	}

	_, err := config.ParseDefaultApp(doc("9.9"))
	if err == nil {
		t.Fatal("version 9.9 accepted")
	}
	bad, ok := config.MisconfiguredDefaultApp(doc("9.9"), err)
	if !ok {
		t.Fatal("enabled flag not read")
	}
	mgr.Apply(ctx, BuildDesired(bad, nil, false, appnets, delivery, id, log))
	apps := mgr.Router().Applications()
	if len(apps) != 2 {
		t.Fatalf("%d applications, want the default app and the appnet", len(apps))
	}
	for _, a := range apps {
		if st, reason := a.State(); st != StateMisconfigured || !strings.Contains(reason, `apiVersion: "9.9" not supported`) {
			t.Fatalf("%s: state %q reason %q", a.Settings.EUI, st, reason)
		}
	}
	if apps[0].Settings.EUI != config.CatchAll {
		t.Fatalf("default app under %s, want the catch-all", apps[0].Settings.EUI)
	}

	in := NewIntake(ob, nil, mgr.Router(), nil, log)
	go in.Run(ctx, nil)
	var acked atomic.Int32
	devs := map[string]string{"00-00-00-00-00-00-00-01": defEUI, "00-00-00-00-00-00-00-02": netEUI, "00-00-00-00-00-00-00-03": noneEUI}
	send := func(from, to uint32) {
		for f := from; f < to; f++ {
			for dev, app := range devs {
				in.Handle(Message{Kind: lnsbridge.KindUp, DevEUI: dev, AppEUI: app,
					Body: fmt.Appendf(nil, `{"deveui":%q,"appeui":%q,"fcnt":%d}`, dev, app, f), Ack: func() { acked.Add(1) }})
			}
		}
		for acked.Load() < int32(int(to)*len(devs)) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	const n = 30
	send(0, n)
	// A moved event is queued too (the transport is unknown); HTTP sends
	// nothing for it once the application is known to speak HTTP.
	in.Handle(Message{Kind: lnsbridge.KindMoved, DevEUI: "00-00-00-00-00-00-00-01", AppEUI: defEUI,
		Body: []byte(`{"deveui":"00-00-00-00-00-00-00-01"}`), Ack: func() { acked.Add(1) }})
	for acked.Load() < n*int32(len(devs))+1 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	acked.Add(-1)
	if s := ob.Stats(config.CatchAll); s.Rows != n*len(devs)+1 {
		t.Fatalf("catch-all queue %d rows, want %d", s.Rows, n*len(devs)+1)
	}
	if st := in.Stats(); st.Unrouted != 0 {
		t.Fatalf("unrouted while the version is unknown: %+v", st)
	}

	fixed, err := config.ParseDefaultApp(doc("1.0"))
	if err != nil {
		t.Fatal(err)
	}
	mgr.Apply(ctx, BuildDesired(fixed, nil, false, appnets, delivery, id, log)) // fixed live
	send(n, 2*n)                                                                // the default app's and the appnet's go straight to them now
	for (defRec.count() < 2*n || netRec.count() < 2*n) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	for dev, rec := range map[string]*fcntRecorder{"00-00-00-00-00-00-00-01": defRec, "00-00-00-00-00-00-00-02": netRec} {
		got := rec.fcnts(dev)
		if len(got) != 2*n {
			t.Fatalf("device %s: %d uplinks, want %d: %v", dev, len(got), 2*n, got)
		}
		for i, f := range got {
			if f != uint32(i) {
				t.Fatalf("device %s: order %v", dev, got)
			}
		}
	}
	if defRec.count() != 2*n || netRec.count() != 2*n {
		t.Fatalf("cross-delivery: default %d, appnet %d", defRec.count(), netRec.count())
	}
	// The third device's AppEUI is nobody's: its queued rows stay under the
	// catch-all (grace period), its new uplinks are unrouted.
	if s := ob.Stats(config.CatchAll); s.Rows != n {
		t.Fatalf("catch-all keeps %d rows, want the %d nobody takes", s.Rows, n)
	}
	if st := in.Stats(); st.Unrouted != n {
		t.Fatalf("intake %+v, want %d unrouted after the fix", st, n)
	}
	mgr.Stop(ctx)
}

// Rows an earlier run left under the catch-all, with a configuration that no
// longer has a catch-all default app, go where it routes each of them.
func TestCatchAllRowsOfAnEarlierRunRoutedPerRow(t *testing.T) {
	rec := &fcntRecorder{got: map[string][]uint32{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ob := newOutbox(t)
	log := testLogger(t, nil)
	const appEUI, dev = "16-ea-76-f6-ab-66-3d-80", "00-00-00-00-00-00-00-01"
	var rows []cache.Row
	for f := range 20 {
		rows = append(rows, testRow(config.CatchAll, string(lnsbridge.KindUp), appEUI, dev, fmt.Sprintf(`{"deveui":%q,"fcnt":%d}`, dev, f)))
	}
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	mgr := runManager(ctx, t, ob, nil, log)
	delivery := config.Delivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: 5 * time.Second}
	mgr.Apply(ctx, BuildDesired(config.DefaultApp{Enabled: true, EUI: appEUI, APIVersion: config.API10, URL: srv.URL}, nil, false, nil, delivery, Identity{UUIDRaw: "U", UUID: "u"}, log))
	for rec.count() < 20 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	got := rec.fcnts(dev)
	for i, f := range got {
		if f != uint32(i) {
			t.Fatalf("order %v", got)
		}
	}
	if len(got) != 20 || ob.Stats(config.CatchAll).Rows != 0 {
		t.Fatalf("delivered %v, catch-all keeps %d", got, ob.Stats(config.CatchAll).Rows)
	}
	mgr.Stop(ctx)
}

// A moved event queued while the application's URL was wrong (its transport
// unknown) is not posted once the URL is fixed to HTTP: HTTP sends nothing
// for moved.
func TestMovedQueuedWhileMisconfiguredNotPostedOverHTTP(t *testing.T) {
	rec := &fcntRecorder{got: map[string][]uint32{}}
	var movedPosts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/moved") {
			movedPosts.Add(1)
		}
		rec.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ob := newOutbox(t)
	log := testLogger(t, nil)
	mgr := runManager(ctx, t, ob, nil, log)
	delivery := config.Delivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: 5 * time.Second}
	id := Identity{UUIDRaw: "U", UUID: "u"}
	def := func(url string) config.DefaultApp {
		return config.DefaultApp{Enabled: true, EUI: config.CatchAll, APIVersion: config.API11, URL: url}
	}
	mgr.Apply(ctx, BuildDesired(def("htps://example.com"), nil, false, nil, delivery, id, log))
	in := NewIntake(ob, nil, mgr.Router(), nil, log)
	go in.Run(ctx, nil)
	const dev, app = "00-00-00-00-00-00-00-01", "16-ea-76-f6-ab-66-3d-80"
	var acked atomic.Int32
	for f := range 10 {
		if f == 5 {
			in.Handle(Message{Kind: lnsbridge.KindMoved, DevEUI: dev, AppEUI: app, Body: []byte(`{"deveui":"` + dev + `"}`), Ack: func() { acked.Add(1) }})
		}
		in.Handle(Message{Kind: lnsbridge.KindUp, DevEUI: dev, AppEUI: app, Body: fmt.Appendf(nil, `{"deveui":%q,"fcnt":%d}`, dev, f), Ack: func() { acked.Add(1) }})
	}
	for acked.Load() < 11 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if s := ob.Stats(config.CatchAll); s.Rows != 11 {
		t.Fatalf("queued %d rows, want 11", s.Rows)
	}
	mgr.Apply(ctx, BuildDesired(def(srv.URL), nil, false, nil, delivery, id, log))
	for ob.Stats(config.CatchAll).Rows > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	got := rec.fcnts(dev)
	if movedPosts.Load() != 0 || len(got) != 10 {
		t.Fatalf("moved posts %d, uplinks %v", movedPosts.Load(), got)
	}
	for i, f := range got {
		if f != uint32(i) {
			t.Fatalf("order %v", got)
		}
	}
	mgr.Stop(ctx)
}
