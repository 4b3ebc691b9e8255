package forward

import (
	"context"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

// The YAML file's default_app block changed on SIGHUP reaches the running
// default app: rebuilt with the new URL on the same queue, and an unchanged
// block leaves the instance running.
func TestAppsSetDefaultOverrideAppliesLive(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr := runManager(ctx, t, newOutbox(t), nil, testLogger(t, nil))
	defer mgr.Stop(context.Background())
	override := func(url string) *config.DefaultApp {
		return &config.DefaultApp{Enabled: true, EUI: config.CatchAll, APIVersion: config.API11, URL: url}
	}
	cfg := config.Default()
	cfg.DefaultAppOverride = override("http://127.0.0.1:1/a")
	apps := NewApps(ctx, AppsOptions{Config: cfg, Manager: mgr, Default: *cfg.DefaultAppOverride, Log: testLogger(t, nil), Identity: tIdentity})
	only := func() *Application {
		t.Helper()
		as := mgr.Router().Applications()
		if len(as) != 1 {
			t.Fatalf("%d applications, want the default app", len(as))
		}
		return as[0]
	}
	first := only()
	if first.Settings.URL != "http://127.0.0.1:1/a" {
		t.Fatalf("URL %s", first.Settings.URL)
	}
	apps.SetDefaultOverride(ctx, override("http://127.0.0.1:1/a"))
	if only() != first {
		t.Fatal("an unchanged default_app block rebuilt the application")
	}
	apps.SetDefaultOverride(ctx, override("http://127.0.0.1:1/b"))
	if a := only(); a == first || a.Settings.URL != "http://127.0.0.1:1/b" {
		t.Fatalf("after the change: same instance %v, URL %s", a == first, a.Settings.URL)
	}
}
