package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// writeTempConfig writes an app-connect.yml in a temporary directory.
func writeTempConfig(t *testing.T, yml string) string {
	t.Helper()
	return testpeer.TempFile(t, "app-connect.yml", yml)
}

func TestCommandLine(t *testing.T) {
	t.Setenv("APP_DIR", "")
	t.Setenv("CONFIG_DIR", "")
	// mPower: one answering with a typo in the Default App URL (--skip-mpower
	// does not ask it), one not answering. check-config's own checks are
	// internal/configcheck's tests.
	typo := sim.NewMPower()
	typo.SetDefaultApp(sim.DefaultApp("htps://example.com/tenant"))
	typoSrv := httptest.NewServer(typo)
	defer typoSrv.Close()
	down := httptest.NewServer(nil)
	down.Close()

	good := writeTempConfig(t, "lns:\n  broker: tcp://127.0.0.1:1883\nmpower:\n  api: "+down.URL+"\n")
	badURL := writeTempConfig(t, "mpower:\n  api: "+typoSrv.URL+"\n")
	tests := []struct {
		name       string
		args       []string
		code       int
		out, errTx string
	}{
		{"version", []string{"version"}, 0, "app-connect ", ""},
		{"--version", []string{"--version"}, 0, "app-connect ", ""},
		{"help", []string{"help"}, 0, "usage: app-connect [run] [--config FILE]", ""},
		{"--help", []string{"--help"}, 0, "usage: app-connect [run] [--config FILE]", ""},
		{"-h", []string{"-h"}, 0, "Commands:", ""},
		{"help claim", []string{"help", "claim"}, 0, "  --all-or-nothing\n", ""},
		{"command --help lists --flags", []string{"check-config", "--help"}, 0, "  --config FILE\n", ""},
		{"status --help", []string{"status", "-h"}, 0, "  --watch\n", ""},
		{"check-config ok names the file", []string{"check-config", "--config", good}, 0, good + ": configuration OK\n", ""},
		{"check-config asks mPower", []string{"check-config", "--config", badURL}, 1, "", "mPower defaultApp: url \"htps://example.com/tenant\""},
		{"check-config --skip-mpower", []string{"check-config", "--config", badURL, "--skip-mpower"}, 0, badURL + ": configuration OK\n", ""},
		{"selftest", []string{"selftest"}, 0, "selftest: sqlite", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "app-connect: unknown command \"frobnicate\" (see app-connect --help)\n"},
		{"unknown flag", []string{"check-config", "--bogus"}, 2, "",
			"app-connect check-config: flag provided but not defined: --bogus (see app-connect check-config --help)\n"},
		{"stray argument", []string{"version", "extra"}, 2, "", "app-connect version: unexpected argument \"extra\" (see app-connect --help)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.errTx) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if tc.code == 0 && errb.Len() > 0 {
				t.Fatalf("stderr on success: %s", errb.String())
			}
			if strings.Contains(out.String()+errb.String(), "level=") || strings.Contains(out.String()+errb.String(), "msg=") {
				t.Fatalf("log-formatted line in CLI output:\n%s%s", out.String(), errb.String())
			}
		})
	}
}

// check-config --status-file writes the refusal into status.json.
func TestCheckConfigWritesTheRefusal(t *testing.T) {
	bad := writeTempConfig(t, "lns:\n  brokr: x\n")
	status := filepath.Join(t.TempDir(), "status.json")
	var out, errb bytes.Buffer
	if code := realMain([]string{"check-config", "--config", bad, "--status-file", status}, &out, &errb); code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	// The reason is the first line check-config printed (config's wording).
	var d admin.FileDocument
	if err := json.Unmarshal(b, &d); err != nil || d.PID != 0 || d.AppInfo != "not started: "+strings.TrimSuffix(errb.String(), "\n") ||
		!strings.HasPrefix(d.AppInfo, "not started: "+bad+":2: lns.brokr: unknown key") {
		t.Fatalf("status.json %s (%v); check-config said %q", b, err, errb.String())
	}
}

// memory.gc_percent is applied unless GOGC is set in the environment (the
// Go runtime applied that one at start and it stays).
func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return v
			}
			return ""
		}
	}
	if got := setGCPercent(config.Memory{GCPercent: 30}, env("")); got != 30 {
		t.Fatalf("setGCPercent = %d, want 30", got)
	}
	if got := debug.SetGCPercent(70); got != 30 {
		t.Fatalf("GC percentage in force %d, want 30 (memory.gc_percent)", got)
	}
	// GOGC set: the runtime's setting (70 here) stays.
	if got := setGCPercent(config.Memory{GCPercent: 30}, env("70")); got != 70 {
		t.Fatalf("with GOGC set: setGCPercent = %d, want 70", got)
	}
	if got := debug.SetGCPercent(100); got != 70 {
		t.Fatalf("with GOGC set: GC percentage in force %d, want 70", got)
	}
}
