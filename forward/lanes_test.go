package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// Several requests in flight on lanes chosen by DevEUI: 200 devices, a
// remote answering in 0–50 ms and failing 10 % of requests with 503 →
// every device's uplinks arrive complete and in FCnt order, and more than
// one request was in flight at a time.
func TestHTTPLanesKeepOrderPerDevice(t *testing.T) {
	const devices, perDevice = 200, 10
	var (
		mu                  sync.Mutex
		got                 = map[string][]uint32{}
		inFlight, maxFlight atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxFlight.Load(); n > m && !maxFlight.CompareAndSwap(m, n); m = maxFlight.Load() {
		}
		if strings.HasSuffix(r.URL.Path, "/init") {
			w.Write([]byte(`{}`))
			return
		}
		time.Sleep(time.Duration(rand.N(50)) * time.Millisecond)
		if rand.N(10) == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ups := make([]struct {
			DevEUI string `json:"deveui"`
			FCnt   uint32 `json:"fcnt"`
		}, 1)
		dec := json.NewDecoder(r.Body)
		if strings.Count(r.URL.Path, "/") == 5 { // batch: /api/v1/lorawan/<app>/up
			if err := dec.Decode(&ups); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		} else {
			if err := dec.Decode(&ups[0]); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		}
		mu.Lock()
		for _, u := range ups {
			got[u.DevEUI] = append(got[u.DevEUI], u.FCnt)
		}
		mu.Unlock()
		w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ob := newOutbox(t)
	app, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: "1.0", URL: srv.URL,
		Delivery: config.Delivery{RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, HTTPTimeout: 5 * time.Second}},
		Identity{UUIDRaw: "U", UUID: "u"}, ob, nil, nil, nil, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	go func() { app.Run(runCtx); close(done) }()
	var rows []cache.Row
	for f := range perDevice {
		for d := range devices {
			dev := fmt.Sprintf("00-00-00-00-00-00-%02x-%02x", d>>8, d&0xff)
			rows = append(rows, testRow(config.CatchAll, "up", "00-00-00-00-00-00-00-aa", dev, fmt.Sprintf(`{"deveui":%q,"fcnt":%d}`, dev, f)))
		}
		if _, err := ob.Append(ctx, rows); err != nil { // in several commits, while delivery runs
			t.Fatal(err)
		}
		rows = rows[:0]
	}
	for app.Counters.Forwarded.Load() < devices*perDevice && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	t.Logf("forwarded %d, queue %+v, failures %d", app.Counters.Forwarded.Load(), ob.Stats(config.CatchAll), app.Counters.Failures.Load())
	mu.Lock()
	defer mu.Unlock()
	if len(got) != devices {
		t.Fatalf("%d devices delivered, want %d", len(got), devices)
	}
	for dev, fcnts := range got {
		if len(fcnts) != perDevice {
			t.Fatalf("%s: %d uplinks %v", dev, len(fcnts), fcnts)
		}
		for i, f := range fcnts {
			if f != uint32(i) {
				t.Fatalf("%s: order %v", dev, fcnts)
			}
		}
	}
	if maxFlight.Load() < 2 {
		t.Fatalf("at most %d request in flight: no lanes", maxFlight.Load())
	}
	if app.Counters.Failures.Load() == 0 {
		t.Fatal("no 503 was retried; the test proves nothing")
	}
}
