package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/sim"
)

func writeTempConfig(t *testing.T, yml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app-connect.yml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandLine(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", "..", "joinclient", "testdata", "claiming", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("APP_DIR", "")
	t.Setenv("CONFIG_DIR", "")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// mPower: one answering with a typo in the Default App URL, one not answering.
	typo := sim.NewMPower()
	typo.SetDefaultApp(sim.DefaultApp("htps://example.com/tenant"))
	typoSrv := httptest.NewServer(typo)
	defer typoSrv.Close()
	goodMP := sim.NewMPower()
	goodMP.SetDefaultApp(sim.DefaultApp("https://example.com/tenant"))
	goodSrv := httptest.NewServer(goodMP)
	defer goodSrv.Close()
	down := httptest.NewServer(nil)
	down.Close()

	good := write("good.yml", "lns:\n  broker: tcp://127.0.0.1:1883\nmpower:\n  api: "+down.URL+"\n")
	goodAsked := write("asked.yml", "mpower:\n  api: "+goodSrv.URL+"\n")
	bad := write("bad.yml", "lns:\n  brokr: tcp://127.0.0.1:1883\n")
	badURL := write("typo.yml", "mpower:\n  api: "+typoSrv.URL+"\n")
	interop, err := filepath.Abs(filepath.Join("..", "..", "joinclient", "testdata", "interop"))
	if err != nil {
		t.Fatal(err)
	}
	noASID := write("no-as-id.yml", "join:\n  enabled: true\n  interop_dir: "+interop+"\nmpower:\n  api: "+down.URL+"\n")
	withJoin := write("join.yml", "join:\n  interop_dir: "+interop+"\n  as_id: conduit-1.example.com\nmpower:\n  api: "+down.URL+"\n")
	claimMissing := write("claim.yml", "claim:\n  dir: "+repo+"\nmpower:\n  api: "+down.URL+"\n")
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
		{"check-config says mPower was not asked", []string{"check-config", "--config", good}, 0,
			"mPower Default App settings not checked: mPower did not answer at " + down.URL, ""},
		{"check-config checks mPower's settings", []string{"check-config", "--config", goodAsked}, 0,
			"mPower Default App: enabled, API 1.0, https://example.com:443\n", ""},
		{"check-config refuses mPower's bad URL", []string{"check-config", "--config", badURL}, 1, "",
			"mPower defaultApp: url \"htps://example.com/tenant\": scheme \"htps\" not supported (want http, https, mqtt, mqtts or wss)\n"},
		{"check-config --skip-mpower", []string{"check-config", "--config", badURL, "--skip-mpower"}, 0, badURL + ": configuration OK\n", ""},
		{"check-config warnings are plain lines", []string{"check-config", "--config", withJoin}, 0,
			"warning: joinclient: Join Server uses plain http (js=fallback/js, file=", ""},
		{"check-config join error, one prefix", []string{"check-config", "--config", noASID}, 1, "", "joinclient: join.as_id is required"},
		{"check-config names file line key", []string{"check-config", "--config", bad}, 1, "", bad + ":2: lns.brokr: unknown key"},
		{"check-config missing file", []string{"check-config", "--config", filepath.Join(dir, "nope.yml")}, 1, "", "nope.yml"},
		{"check-config claiming repository problems", []string{"check-config", "--config", claimMissing}, 1, "", "tti/js.yml:3: tls.root-ca: cannot read"},
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
			if strings.Contains(errb.String(), "join: joinclient:") || strings.Contains(errb.String(), "claim: joinclient:") {
				t.Fatalf("doubled prefix: %s", errb.String())
			}
			if strings.Contains(out.String()+errb.String(), "level=") || strings.Contains(out.String()+errb.String(), "msg=") {
				t.Fatalf("log-formatted line in CLI output:\n%s%s", out.String(), errb.String())
			}
		})
	}
}

// Without --config, check-config checks the custom app's file (as Start
// picks it) and names it; with none, it says that no file was checked.
func TestCheckConfigWithoutFlag(t *testing.T) {
	appDir := t.TempDir()
	t.Setenv("APP_DIR", appDir)
	t.Setenv("CONFIG_DIR", filepath.Join(appDir, "config"))
	var out, errb bytes.Buffer
	if code := realMain([]string{"check-config"}, &out, &errb); code != 0 ||
		!strings.HasPrefix(out.String(), "no configuration file checked: none given with --config and none at "+appDir+"/app-connect.yml, "+appDir+"/config/app-connect.yml, /var/config/app/app-connect/app-connect.yml") ||
		!strings.HasSuffix(out.String(), "built-in defaults: configuration OK\n") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	if err := os.MkdirAll(filepath.Join(appDir, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	shipped := filepath.Join(appDir, "config", "app-connect.yml")
	if err := os.WriteFile(shipped, []byte("lns:\n  brokr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"check-config"}, &out, &errb); code != 1 || !strings.HasPrefix(errb.String(), shipped+":2: lns.brokr: unknown key") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	// The operator's own file wins, as in Start.
	own := filepath.Join(appDir, "app-connect.yml")
	if err := os.WriteFile(own, []byte("mpower:\n  api: http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := realMain([]string{"check-config"}, &out, &errb); code != 0 || !strings.HasSuffix(out.String(), own+": configuration OK\n") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
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

// SIGHUP applies the level live and names every other changed setting as
// needing a restart; an invalid file changes nothing.
func TestReloadNamesWhatItAppliedAndWhatNeedsARestart(t *testing.T) {
	path := writeTempConfig(t, "log:\n  level: info\n")
	old, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	level := new(slog.LevelVar)
	if err := os.WriteFile(path, []byte("log:\n  level: debug\ndelivery:\n  retry_min: 2s\nlns:\n  password: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(path, old, log, level, nil); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug {
		t.Fatal("debug not enabled after reload")
	}
	for _, want := range []string{
		`msg="reload: applied live" config=` + path + ` settings=log.level log_level=debug`,
		`msg="reload: changed settings need a restart to take effect (Start restart)" config=` + path + ` settings="delivery.retry_min, lns.password"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "configuration reloaded") {
		t.Errorf("log:\n%s", logs.String())
	}
	// An invalid file changes nothing.
	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(path, old, log, level, nil); err == nil || !strings.Contains(err.Error(), "log.level") || level.Level() != slog.LevelDebug {
		t.Fatalf("reload of a bad file: %v", err)
	}
	// Level left unset: the current one (mPower's) stays; nothing changed.
	if err := os.WriteFile(path, []byte("log:\n  destination: stderr\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs2 syncBuffer
	old2, _ := config.Load(path)
	if _, err := reload(path, old2, slog.New(slog.NewTextHandler(&logs2, nil)), level, nil); err != nil || level.Level() != slog.LevelDebug ||
		!strings.Contains(logs2.String(), "reload: configuration unchanged") {
		t.Fatalf("unset level: %v\n%s", err, logs2.String())
	}
}

// SIGHUP applies a changed default_app block live (to the applications once
// they are built) and reports it by name; the next reload of the same file
// finds nothing changed.
func TestReloadAppliesDefaultAppLive(t *testing.T) {
	path := writeTempConfig(t, "default_app:\n  enabled: true\n  apiVersion: \"1.1\"\n  url: http://127.0.0.1:1/a\n")
	old, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("default_app:\n  enabled: true\n  apiVersion: \"1.1\"\n  url: http://127.0.0.1:1/b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var got []*config.DefaultApp
	set := func(o *config.DefaultApp) bool { got = append(got, o); return true }
	running, err := reload(path, old, log, new(slog.LevelVar), set)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] == nil || got[0].URL != "http://127.0.0.1:1/b" || running.DefaultAppOverride.URL != "http://127.0.0.1:1/b" {
		t.Fatalf("applied %+v, running %+v", got, running.DefaultAppOverride)
	}
	if want := `msg="reload: applied live" config=` + path + ` settings=default_app`; !strings.Contains(logs.String(), want) || strings.Contains(logs.String(), "need a restart") {
		t.Fatalf("log lacks %q or names a restart:\n%s", want, logs.String())
	}
	if _, err := reload(path, running, log, new(slog.LevelVar), set); err != nil || len(got) != 1 || !strings.Contains(logs.String(), "reload: configuration unchanged") {
		t.Fatalf("second reload: %v, applied %d times\n%s", err, len(got), logs.String())
	}
	// Before the applications exist, the change needs a restart.
	var logs2 syncBuffer
	if _, err := reload(path, old, slog.New(slog.NewTextHandler(&logs2, nil)), new(slog.LevelVar), func(*config.DefaultApp) bool { return false }); err != nil ||
		!strings.Contains(logs2.String(), "settings=default_app") || !strings.Contains(logs2.String(), "need a restart") {
		t.Fatalf("not built yet: %v\n%s", err, logs2.String())
	}
}
