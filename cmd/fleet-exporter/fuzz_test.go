package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// FuzzIntake: whatever topic, path and body a peer sends, the exporter
// neither panics nor holds more than its caps, and what it serves stays one
// line per sample (no label value can break the exposition).
func FuzzIntake(f *testing.F) {
	_, body := sim.GatewayStatus(1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 1)
	f.Add("lorawan/00000000-0000-4000-8000-000000000001/status", "/api/v1/lorawan/ff/00000000000040008000000000000001/status", body)
	f.Add("lorawan/a/b/status", "/status", []byte(`{"type":"status"}`))
	f.Add("lorawan//status", "//api/v1/lorawan///status", []byte("{"))
	f.Fuzz(func(t *testing.T, topic, path string, body []byte) {
		fl := &Fleet{MaxGateways: 2, MaxApps: 1, Stale: time.Minute, Expire: time.Hour}
		if gw, ok := gatewayOfTopic(topic); ok {
			fl.Accept("mqtt", gw, body)
			fl.AcceptRetained(gw, body)
		}
		if gw, ok := gatewayOfPath(path); ok {
			fl.Accept("http", gw, body)
		}
		fl.Accept("http", "", body)
		if fl.Len() > 2 {
			t.Fatalf("%d gateways held, cap 2", fl.Len())
		}
		var buf bytes.Buffer
		if err := writeMetrics(&buf, fl.snapshot()); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "# ") && !strings.HasPrefix(line, "appconnect_fleet_") {
				t.Fatalf("exposition line %q", line)
			}
		}
	})
}
