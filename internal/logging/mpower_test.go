package logging

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// mPower's defaultApp.log is read when mPower answers; a silent or broken
// mPower gives nothing after at most the timeout (logging cannot wait).
func TestReadMPower(t *testing.T) {
	mp := sim.NewMPower()
	mp.SetDefaultApp(sim.DefaultApp(""))
	srv := httptest.NewServer(mp)
	defer srv.Close()
	ctx := context.Background()
	m := config.Default().MPower
	m.API = srv.URL
	got, ok := ReadMPower(ctx, m)
	if want := (config.AppLog{Destination: "SYSLOG", Level: 30, Path: "/var/log/lora-cloud-connector.log"}); !ok || got != want {
		t.Fatalf("got %+v %v, want %+v", got, ok, want)
	}

	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"success","result":{"enabled":"yes"}}`))
	}))
	defer broken.Close()
	m.API = broken.URL
	if got, ok := ReadMPower(ctx, m); ok {
		t.Fatalf("unreadable document: %+v", got)
	}

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	m.API, m.Timeout = hang.URL, 200*time.Millisecond
	if got, ok := ReadMPower(ctx, m); ok {
		t.Fatalf("silent mPower: %+v", got)
	}
}

// mPower's level applies live only where app-connect.yml leaves log.level
// unset and mPower has a log object.
func TestApplyMPowerLevel(t *testing.T) {
	debug := config.AppLog{Destination: "SYSLOG", Level: 50}
	for _, tc := range []struct {
		name string
		yaml config.Log
		d    config.AppLog
		want slog.Level
	}{
		{"mPower's level", config.Log{}, debug, slog.LevelDebug},
		{"the YAML file wins", config.Log{Level: "warn"}, debug, slog.LevelWarn},
		{"no mPower log object", config.Log{}, config.AppLog{}, slog.LevelWarn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			level := new(slog.LevelVar)
			level.Set(slog.LevelWarn)
			ApplyMPowerLevel(level, tc.yaml, tc.d)
			if level.Level() != tc.want {
				t.Fatalf("level %s, want %s", level.Level(), tc.want)
			}
		})
	}
	ApplyMPowerLevel(nil, config.Log{}, debug) // a fixed level: nothing to set
}
