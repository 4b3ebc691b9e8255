package config_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/config"
)

// joinFixtures is joinclient's testdata, the one copy of the interop fixture.
var joinFixtures = filepath.Join("..", "joinclient", "testdata")

func TestJoinConfigValidate(t *testing.T) {
	if errs := config.DefaultJoin().Validate(); len(errs) != 0 {
		t.Fatalf("defaults invalid: %v", errs)
	}
	var j config.Join
	if err := yaml.Unmarshal([]byte("budget: 2500ms\nlisten: '[::1]:8651'\nnet_id: '000013'\n"), &j); err != nil || j.Budget != 2500*time.Millisecond {
		t.Fatalf("decode: %+v %v", j, err)
	}
	good := config.Join{
		Enabled: true, ProxyListen: "127.0.0.1:8651", Budget: 3 * time.Second, NetID: "000013", NSID: "70B3D5FFFE000001",
		ASID: "conduit-1.example.com", InteropDir: "interop", KEKFile: "keks.yml",
		ClientCertFile: "interop/semtech/cert.pem", ClientKeyFile: "interop/semtech/key.pem",
		MaxInFlight: 32, MaxInFlightPerJoinServer: 16, BreakerTimeouts: 5, BreakerCoolDown: 30 * time.Second,
	}.Resolve(joinFixtures)
	if errs := good.Validate(); len(errs) != 0 {
		t.Fatalf("valid config refused: %v", errs)
	}
	for _, tc := range []struct {
		name string
		mod  func(*config.Join)
		key  string
		msg  string
	}{
		{"non-loopback listen", func(j *config.Join) { j.ProxyListen = "0.0.0.0:8651" }, "join.listen", "not a loopback address"},
		{"budget too small", func(j *config.Join) { j.Budget = 100 * time.Millisecond }, "join.budget", "between"},
		{"budget too large", func(j *config.Join) { j.Budget = time.Minute }, "join.budget", "between"},
		{"net_id", func(j *config.Join) { j.NetID = "13" }, "join.net_id", "6 hex digits"},
		{"ns_id", func(j *config.Join) { j.NSID = "XYZ" }, "join.ns_id", "16 hex digits"},
		{"interop_dir required when enabled", func(j *config.Join) { j.InteropDir = "" }, "join.interop_dir", "must be set"},
		{"interop_dir without config.yml", func(j *config.Join) { j.InteropDir = filepath.Join(joinFixtures, "interop", "tti") }, "join.interop_dir", "no config.yml"},
		{"kek_file missing", func(j *config.Join) { j.KEKFile = filepath.Join(joinFixtures, "nope.yml") }, "join.kek_file", "no such file"},
		{"cert without key", func(j *config.Join) { j.ClientKeyFile = "" }, "join.client_tls.key", "together"},
		{"no joins in flight", func(j *config.Join) { j.MaxInFlight = 0 }, "join.max_in_flight", "must be 1..1024, got 0"},
		{"per Join Server above the total", func(j *config.Join) { j.MaxInFlightPerJoinServer = 33 }, "join.max_in_flight_per_join_server", "must be 1..join.max_in_flight (32), got 33"},
		{"breaker never opens", func(j *config.Join) { j.BreakerTimeouts = 0 }, "join.breaker_timeouts", "must be at least 1, got 0"},
		{"cool-down too short", func(j *config.Join) { j.BreakerCoolDown = time.Millisecond }, "join.breaker_cool_down", "must be between 1s and 1h, got 1ms"},
		{"cert and key mismatch", func(j *config.Join) { j.ClientKeyFile = filepath.Join(joinFixtures, "keks.yml") }, "join.client_tls.certificate", "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := good
			tc.mod(&j)
			errs := j.Validate()
			if len(errs) != 1 || errs[0].Key != tc.key || !strings.Contains(errs[0].Err.Error(), tc.msg) {
				t.Fatalf("errors %v, want %s: %s", errs, tc.key, tc.msg)
			}
		})
	}
}
