package forward

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

func TestBuildDesired(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	appnets := []config.Appnet{{EUI: "00-00-00-00-00-00-00-0a", AppNetID: "A", URL: "http://a"}, {EUI: "00-00-00-00-00-00-00-0d", AppNetID: "D", URL: "http://d"}}
	def := config.DefaultApp{Enabled: true, EUI: "00-00-00-00-00-00-00-0d", APIVersion: "1.0", URL: "http://def", EncodeHex: true}
	disabled := def
	disabled.Enabled = false
	override := config.DefaultApp{Enabled: true, EUI: config.CatchAll, APIVersion: "1.1", URL: "http://yaml"}
	tests := []struct {
		name         string
		def          config.DefaultApp
		override     *config.DefaultApp
		whenDisabled bool
		wantDefault  string // URL, "" for none
		wantAPI      string
	}{
		{"enabled", def, nil, false, "http://def", "1.0"},
		{"disabled", disabled, nil, false, "", "1.0"},
		{"disabled but used", disabled, nil, true, "http://def", "1.0"},
		{"yaml block replaces mPower", disabled, &override, false, "http://yaml", "1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := BuildDesired(tc.def, tc.override, tc.whenDisabled, appnets, config.Default().Delivery, Identity{}, log)
			got := ""
			if d.Default != nil {
				got = d.Default.URL
			}
			if got != tc.wantDefault || len(d.Appnets) != 2 {
				t.Fatalf("default %q, %d appnets", got, len(d.Appnets))
			}
			for _, a := range d.Appnets {
				if a.APIVersion != tc.wantAPI { // apiVersion and encodeHex are global
					t.Fatalf("appnet %s API %s", a.EUI, a.APIVersion)
				}
			}
		})
	}
}

// The manager: the default app takes over an appnet with its EUI; routing by
// AppEUI; a removed application's rows are kept for the grace period, then
// dropped and counted.
func TestManagerRoutingAndRemovedGrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{}`)) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := cache.Open(ctx, filepath.Join(t.TempDir(), "m.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := db.NewOutbox(ctx, cache.Limits{MaxRows: 100, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	m := runManager(ctx, t, ob, nil, slog.New(slog.DiscardHandler))
	delivery := config.Default().Delivery
	a := AppSettings{EUI: "00-00-00-00-00-00-00-0a", Name: "A", APIVersion: "1.0", URL: srv.URL + "/a", Delivery: delivery}
	d := AppSettings{EUI: "00-00-00-00-00-00-00-0d", Name: "D", APIVersion: "1.0", URL: srv.URL + "/d", Delivery: delivery}
	def := AppSettings{EUI: "00-00-00-00-00-00-00-0d", Name: "default", APIVersion: "1.0", URL: srv.URL + "/def", Delivery: delivery}
	m.Apply(ctx, Desired{Default: &def, Appnets: []AppSettings{a, d}})
	r := m.Router()
	if got := r.Route(Message{AppEUI: d.EUI}); got == nil || got.Settings.Name != "default" {
		t.Fatalf("EUI of both the default app and an appnet went to %+v", got)
	}
	if got := r.Route(Message{AppEUI: a.EUI}); got == nil || got.Settings.Name != "A" {
		t.Fatalf("appnet A: %+v", got)
	}
	if got := r.Route(Message{AppEUI: "00-00-00-00-00-00-00-ff"}); got != nil {
		t.Fatalf("unknown AppEUI routed to %s", got.Settings.Name)
	}
	if len(r.Applications()) != 2 {
		t.Fatalf("%d applications", len(r.Applications()))
	}
	// A removed application: its rows stay, then go after the grace period.
	if _, err := ob.Append(ctx, []cache.Row{testRow("gone", "up", "00-00-00-00-00-00-00-01", "00-00-00-00-00-00-00-02", `{}`)}); err != nil {
		t.Fatal(err)
	}
	gone := AppSettings{EUI: "gone", Name: "gone", APIVersion: "1.0", URL: "mqtt://127.0.0.1:1", Delivery: delivery}
	m.Apply(ctx, Desired{Default: &def, Appnets: []AppSettings{a, gone}})
	m.Apply(ctx, Desired{Default: &def, Appnets: []AppSettings{a}})
	m.DropExpired(ctx, ob, time.Hour)
	if s := ob.Stats("gone"); s.Rows != 1 {
		t.Fatalf("rows dropped before the grace period: %+v", s)
	}
	m.DropExpired(ctx, ob, 0)
	if s := ob.Stats("gone"); s.Rows != 0 || s.Dropped != 1 {
		t.Fatalf("after the grace period: %+v", s)
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, 5*time.Second)
	defer stopCancel()
	m.Stop(stopCtx)
}
