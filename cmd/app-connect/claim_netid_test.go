package main

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// Without join.net_id or --net-id, claims carry the gateway's own NetID from
// mPower (loraNetwork lora.netID), as the join proxy does.
func TestClaimHomeNetIDFromMPower(t *testing.T) {
	e := newClaimEnv(t)
	mp := sim.NewMPower()
	mp.SetLoraNetwork(sim.LoraNetwork("00-80-00-00-d0-00-01-ff", "127.0.0.1", 1883)) // netID 000013
	srv := httptest.NewServer(mp)
	defer srv.Close()
	cfg := "mpower:\n  api: " + srv.URL + "\njoin:\n  ns_id: \"70B3D5FFFE000001\"\n  as_id: conduit-1.example.com\n"
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.run(t, "", "claim", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", claimTokens[0])
	if code != 0 || !strings.Contains(out, "home NetID 000013") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if d, _ := e.tti.Device(claimPump1); d.HomeNetID != "000013" {
		t.Fatalf("claimed with home NetID %q", d.HomeNetID)
	}
	// mPower not answering: the clear error names both ways to set it.
	srv.Close()
	e2 := newClaimEnv(t)
	if err := os.WriteFile(e2.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = e2.run(t, "", "claim", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", claimTokens[0])
	if code != 2 || !strings.Contains(errOut, "no home NetID") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
