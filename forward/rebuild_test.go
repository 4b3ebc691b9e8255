package forward

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// A configuration change rebuilds only the application it changed: the
// others keep their instance (and so their connection and requests in flight).
func TestManagerRebuildsOnlyTheChangedApplication(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := runManager(ctx, t, newOutbox(t), nil, testLogger(t, nil), ManagerOptions{AppVersion: "9.9.9-test"})
	defer m.Stop(context.Background())
	const euiA, euiB, euiD = "00-00-00-00-00-00-00-0a", "00-00-00-00-00-00-00-0b", "00-00-00-00-00-00-00-0d"
	slow := config.Delivery{RetryMin: time.Hour, RetryMax: time.Hour}
	desired := func(urlB string) Desired {
		return Desired{
			Default: &AppSettings{EUI: euiD, Name: "default", Source: "default", APIVersion: config.API10, URL: "http://127.0.0.1:1/d", Delivery: slow},
			Appnets: []AppSettings{
				{EUI: euiA, Name: "appnet A", Source: "appnet", APIVersion: config.API10, URL: "http://127.0.0.1:1/a", Delivery: slow},
				{EUI: euiB, Name: "appnet B", Source: "appnet", APIVersion: config.API10, URL: urlB, Delivery: slow},
			},
		}
	}
	route := func(eui string) *Application { return m.Router().Route(Message{AppEUI: eui}) }
	m.Apply(ctx, desired("http://127.0.0.1:1/b"))
	a1, b1, d1 := route(euiA), route(euiB), route(euiD)
	if a1 == nil || b1 == nil || d1 == nil {
		t.Fatal("applications not set up")
	}
	for _, a := range []*Application{a1, b1, d1} {
		if a.Settings.AppVersion != "9.9.9-test" { // the MQTT init's app_version
			t.Fatalf("%s runs with app version %q, want the program's", a.Settings.Name, a.Settings.AppVersion)
		}
	}
	m.Apply(ctx, desired("http://127.0.0.1:1/b")) // unchanged
	if route(euiA) != a1 || route(euiB) != b1 || route(euiD) != d1 {
		t.Fatal("an unchanged configuration rebuilt applications")
	}
	m.Apply(ctx, desired("http://127.0.0.1:1/b2")) // only B changes
	if route(euiB) == b1 || route(euiB).Settings.URL != "http://127.0.0.1:1/b2" {
		t.Fatal("appnet B was not rebuilt with its new URL")
	}
	if route(euiA) != a1 || route(euiD) != d1 {
		t.Fatal("appnet B's change rebuilt the unchanged applications too")
	}
}

// recordingRemote is an HTTP application's remote side that records the
// uplinks it answered, and can hold the first one until released.
type recordingRemote struct {
	srv      *httptest.Server
	hold     bool
	inFlight chan struct{} // closed when the held uplink arrived
	release  chan struct{} // closing it answers the held uplink
	cut      chan struct{} // closed when the client gave up on the held uplink

	mu       sync.Mutex
	answered []string // uplink bodies answered 200
}

func newRecordingRemote(t *testing.T, hold bool) *recordingRemote {
	r := &recordingRemote{hold: hold, inFlight: make(chan struct{}), release: make(chan struct{}), cut: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if !strings.HasSuffix(req.URL.Path, "/up") {
			w.Write([]byte(`{}`)) // init, close
			return
		}
		r.mu.Lock()
		first := len(r.answered) == 0
		r.mu.Unlock()
		if r.hold && first {
			close(r.inFlight)
			select {
			case <-r.release:
			case <-req.Context().Done():
				close(r.cut)
				return
			}
		}
		r.mu.Lock()
		r.answered = append(r.answered, string(body))
		r.mu.Unlock()
		w.Write([]byte(`[]`))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recordingRemote) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.answered...)
}

// A rebuild is not a crash: the row whose request is in flight when the
// application's URL changes is answered by the old URL and deleted, and the
// new instance does not send it again.
func TestRebuildLetsTheRequestInFlightFinish(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ob := newOutbox(t)
	m := runManager(ctx, t, ob, nil, testLogger(t, nil))
	defer m.Stop(context.Background())
	const eui = "00-00-00-00-00-00-00-0b"
	old, next := newRecordingRemote(t, true), newRecordingRemote(t, false)
	settings := func(url string) Desired {
		return Desired{Appnets: []AppSettings{{EUI: eui, Name: "appnet B", Source: "appnet", APIVersion: config.API10, URL: url,
			Delivery: config.Delivery{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, HTTPTimeout: time.Minute}}}}
	}
	add := func(body string) {
		app := m.Router().Route(Message{AppEUI: eui})
		if _, err := ob.Append(ctx, []cache.Row{testRow(eui, "up", eui, "00-00-00-00-00-00-00-01", body)}); err != nil {
			t.Fatal(err)
		}
		app.Notify()
	}
	m.Apply(ctx, settings(old.srv.URL))
	add(`{"fcnt":1}`)
	<-old.inFlight
	applied := make(chan struct{})
	go func() { defer close(applied); m.Apply(ctx, settings(next.srv.URL)) }()
	// A stop that cuts the request shows within milliseconds; without a cut
	// the held answer is released after this bound (correct code passes
	// either way, only the cut can fail the test).
	select {
	case <-old.cut:
		<-applied
		t.Fatal("the rebuild cut the request in flight: its row will be sent again")
	case <-time.After(time.Second):
	}
	close(old.release)
	<-applied
	add(`{"fcnt":2}`)
	waitUntil := time.Now().Add(30 * time.Second)
	for len(next.got()) < 1 && time.Now().Before(waitUntil) {
		time.Sleep(10 * time.Millisecond)
	}
	if o, n := old.got(), next.got(); len(o) != 1 || o[0] != `{"fcnt":1}` || len(n) != 1 || n[0] != `{"fcnt":2}` {
		t.Fatalf("old URL answered %q, new URL %q; want fcnt 1 at the old one only, fcnt 2 at the new one", o, n)
	}
}

// runManager builds a Manager and runs it until ctx ends; the cleanup ends it
// and waits for Run to return.
func runManager(ctx context.Context, t *testing.T, q Queue, sink DownlinkSink, log *slog.Logger, opts ...ManagerOptions) *Manager {
	t.Helper()
	m := NewManager(q, sink, log, opts...)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}
