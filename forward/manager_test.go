package forward

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

// The applications' goroutines live under the context passed to Run, the
// caller's: cancelling it ends every delivery loop and what each started
// (downlink polling), Run returns only once every loop returned, and no
// goroutine is left behind.
func TestManagerRunContextEndsEveryApplication(t *testing.T) {
	ob := newOutbox(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // no idle connection outlives the test's accounting
		if strings.HasSuffix(r.URL.Path, "/init") {
			w.Write([]byte(`{"downlink_query_interval":0.05}`)) // ready: downlink polling starts
		}
	}))
	defer srv.Close()
	base := runtime.NumGoroutine()

	m := NewManager(ob, nil, testLogger(t, nil))
	slow := config.Delivery{RetryMin: time.Hour, RetryMax: time.Hour, HTTPTimeout: 10 * time.Second}
	const euiD, euiA, euiB = "00-00-00-00-00-00-00-0d", "00-00-00-00-00-00-00-0a", "00-00-00-00-00-00-00-0b"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Set up before Run starts: Run starts them.
	m.Apply(ctx, Desired{
		Identity: tIdentity,
		Default:  &AppSettings{EUI: euiD, Name: "default", Source: "default", APIVersion: config.API10, URL: srv.URL, Delivery: slow},
		Appnets: []AppSettings{
			{EUI: euiA, Name: "appnet A", Source: "appnet", APIVersion: config.API10, URL: "http://127.0.0.1:1/a", Delivery: slow}, // unreachable: backing off
			{EUI: euiB, Name: "appnet B", Source: "appnet", APIVersion: config.API10, URL: "http://127.0.0.1:1/b", Delivery: slow, Invalid: "broken"},
		},
	})
	def := m.Router().Route(Message{AppEUI: euiD})
	if st, _ := def.State(); st != StateStarting {
		t.Fatalf("default app %s before Run, want %s", st, StateStarting)
	}
	ran := make(chan struct{})
	go func() { defer close(ran); m.Run(ctx) }()
	waitFor(t, "the default app up and the unreachable one retrying", func() bool {
		d, _ := def.State()
		a, _ := m.Router().Route(Message{AppEUI: euiA}).State()
		return d == StateUp && a == StateRetrying
	})
	if n := runtime.NumGoroutine(); n < base+3 {
		t.Fatalf("%d goroutines running, want at least %d (two delivery loops and a poller)", n, base+3)
	}

	cancel()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	for _, eui := range []string{euiD, euiA} {
		if st, _ := m.Router().Route(Message{AppEUI: eui}).State(); st != StateStopped {
			t.Errorf("application %s is %s when Run returned, want %s", eui, st, StateStopped)
		}
	}
	waitFor(t, "every goroutine the applications started gone", func() bool { return runtime.NumGoroutine() <= base })
}

// waitFor polls cond until it holds, failing after a generous time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("timed out waiting for %s\n%s", what, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
