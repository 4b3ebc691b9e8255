package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// An enabled application with a wrong URL is still an application: its
// events are routed and queued (and acknowledged after their commit), its
// state is misconfigured with the reason; once the URL is fixed live every
// queued uplink is delivered, in order. Events no application takes are
// counted as unrouted.
func TestMisconfiguredApplicationQueuesUntilFixed(t *testing.T) {
	var mu sync.Mutex
	var got []uint32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/init") || strings.HasSuffix(r.URL.Path, "/close") {
			w.Write([]byte(`{}`))
			return
		}
		var ups []struct {
			FCnt uint32 `json:"fcnt"`
		}
		body := json.NewDecoder(r.Body)
		if strings.HasSuffix(r.URL.Path, "/"+config.CatchAll+"/up") {
			body.Decode(&ups)
		} else {
			ups = append(ups, struct {
				FCnt uint32 `json:"fcnt"`
			}{})
			body.Decode(&ups[0])
		}
		mu.Lock()
		for _, u := range ups {
			got = append(got, u.FCnt)
		}
		mu.Unlock()
		w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ob := newOutbox(t)
	log := testLogger(t, nil)
	mgr := runManager(ctx, t, ob, nil, log)
	delivery := config.Delivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: 5 * time.Second}
	def := func(url string) config.DefaultApp {
		return config.DefaultApp{Enabled: true, EUI: config.CatchAll, APIVersion: config.API10, URL: url}
	}
	id := Identity{UUIDRaw: "U", UUID: "u"}
	mgr.Apply(ctx, BuildDesired(def("htps://"+strings.TrimPrefix(srv.URL, "http://")), nil, false, nil, delivery, id, log))

	apps := mgr.Router().Applications()
	if len(apps) != 1 {
		t.Fatalf("%d applications, want the misconfigured default app", len(apps))
	}
	if st, reason := apps[0].State(); st != StateMisconfigured || !strings.Contains(reason, "htps") {
		t.Fatalf("state %q reason %q", st, reason)
	}
	in := NewIntake(ob, nil, mgr.Router(), nil, log)
	go in.Run(ctx, nil)
	const n = 50
	var acked atomic.Int32
	const dev = "00-11-22-33-44-55-66-77"
	for f := range n {
		in.Handle(Message{Kind: lnsbridge.KindUp, DevEUI: dev, AppEUI: "70-b3-d5-7e-d0-00-00-01",
			Body: fmt.Appendf(nil, `{"deveui":%q,"fcnt":%d}`, dev, f), Ack: func() { acked.Add(1) }})
	}
	for acked.Load() < n && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if s := ob.Stats(config.CatchAll); s.Rows != n {
		t.Fatalf("queued %d rows, want %d (stats %+v)", s.Rows, n, in.Stats())
	}
	if st := in.Stats(); st.Unrouted != 0 || st.Stored != n {
		t.Fatalf("intake %+v", st)
	}

	mgr.Apply(ctx, BuildDesired(def(srv.URL), nil, false, nil, delivery, id, log)) // fixed live
	for ob.Stats(config.CatchAll).Rows > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := mgr.Router().Applications()[0].State(); st != StateUp {
		t.Fatalf("state after the fix %q", st)
	}
	mu.Lock()
	if len(got) != n {
		t.Fatalf("delivered %v", got)
	}
	for i, f := range got {
		if f != uint32(i) {
			t.Fatalf("order %v", got)
		}
	}
	mu.Unlock()

	// No application at all takes an event: dropped and counted as unrouted.
	mgr.Apply(ctx, BuildDesired(config.DefaultApp{}, nil, false, nil, delivery, id, log))
	in.Handle(Message{Kind: lnsbridge.KindUp, DevEUI: dev, AppEUI: "70-b3-d5-7e-d0-00-00-01", Body: []byte(`{}`), Ack: func() { acked.Add(1) }})
	for acked.Load() < n+1 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if st := in.Stats(); st.Unrouted != 1 {
		t.Fatalf("intake %+v", st)
	}
	mgr.Stop(ctx)
}
