package lnsbridge

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

func TestLoraQuery(t *testing.T) {
	bin := testpeer.GoBuild(t, "../cmd/conduit-sim")
	read := func(name string) json.RawMessage {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var appnets, sessions, gateways []json.RawMessage
	json.Unmarshal(read("appnet-list.json"), &appnets)
	json.Unmarshal(read("session-list.json"), &sessions)
	json.Unmarshal(read("gateways-list.json"), &gateways)
	dir, err := sim.InstallLoraQuery(filepath.Join(t.TempDir(), "lq"), bin, sim.LoraQueryState{Appnets: appnets, Sessions: sessions, Gateways: gateways})
	if err != nil {
		t.Fatal(err)
	}
	lq := LoraQuery{Path: dir.Path(), Timeout: 10 * time.Second}
	ctx := context.Background()

	nets, bad, err := lq.Appnets(ctx)
	if err != nil || len(bad) != 0 || len(nets) != 2 || nets[0].EUI != "8b-6c-f0-8e-ee-df-1b-b6" || nets[1].URL != "mqtt://broker.example.net:1883" {
		t.Fatalf("appnets %+v %v %v", nets, bad, err)
	}
	a, found, err := lq.Appnet(ctx, "6C4EEF66F47986A6")
	if err != nil || !found || a.AppNetID != "6a1b2c3d4e5f60718293a4b5" {
		t.Fatalf("appnet get %+v %v %v", a, found, err)
	}
	if _, found, err := lq.Appnet(ctx, "00-00-00-00-00-00-00-01"); err != nil || found {
		t.Fatalf("unknown appnet: found %v err %v", found, err)
	}
	if _, _, err := lq.Appnet(ctx, "$(reboot)"); err == nil || !strings.Contains(err.Error(), "EUI") {
		t.Fatalf("hostile AppEUI: %v", err)
	}
	sess, err := lq.Sessions(ctx)
	if err != nil || len(sess) < 2 || sess[0].DevEUI != "00-11-00-11-00-11-00-11" || sess[0].AppEUI != "6c-4e-ef-66-f4-79-86-a6" {
		t.Fatalf("sessions %+v %v", sess, err)
	}
	gws, err := lq.GatewayEUIs(ctx)
	if err != nil || len(gws) != 1 || gws[0] != "00-80-00-00-d0-00-01-ff" {
		t.Fatalf("gateways %v %v", gws, err)
	}
	calls, _ := dir.Calls()
	for _, c := range calls {
		if c[0] != "-x" || strings.Contains(strings.Join(c, " "), "reboot") {
			t.Fatalf("argv %q", c)
		}
	}
	if len(calls) != 5 { // the hostile EUI never reached the command
		t.Fatalf("%d runs: %q", len(calls), calls)
	}
	// Not JSON, missing command, output cap.
	if _, err := (LoraQuery{Path: "/bin/echo"}).Run(ctx, "appnet", "list", "json"); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("echo: %v", err)
	}
	if _, err := (LoraQuery{Path: filepath.Join(t.TempDir(), "none")}).Run(ctx, "help"); err == nil {
		t.Fatal("missing command accepted")
	}
	if _, err := (LoraQuery{Path: dir.Path(), MaxOutput: 10}).Run(ctx, "session", "list", "json"); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("cap: %v", err)
	}
}
