package configcheck

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// Each check names what is wrong in one plain line (no log formatting, no
// doubled prefix); mPower's settings are checked when it answers.
func TestRun(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", "..", "joinclient", "testdata", "claiming", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	interop, err := filepath.Abs(filepath.Join("..", "..", "joinclient", "testdata", "interop"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string { return testpeer.TempFile(t, name, content) }
	// mPower: one answering with a typo in the Default App URL, one answering
	// well, one not answering.
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
	noASID := write("no-as-id.yml", "join:\n  enabled: true\n  interop_dir: "+interop+"\nmpower:\n  api: "+down.URL+"\n")
	withJoin := write("join.yml", "join:\n  interop_dir: "+interop+"\n  as_id: conduit-1.example.com\nmpower:\n  api: "+down.URL+"\n")
	claimMissing := write("claim.yml", "claim:\n  dir: "+repo+"\nmpower:\n  api: "+down.URL+"\n")
	tests := []struct {
		name       string
		opts       Options
		code       int
		out, errTx string
	}{
		{"ok names the file", Options{AskMPower: true, Path: good}, 0, good + ": configuration OK\n", ""},
		{"says mPower was not asked", Options{AskMPower: true, Path: good}, 0,
			"mPower Default App settings not checked: mPower did not answer at " + down.URL, ""},
		{"checks mPower's settings", Options{AskMPower: true, Path: goodAsked}, 0,
			"mPower Default App: enabled, API 1.0, https://example.com:443\n", ""},
		{"refuses mPower's bad URL", Options{AskMPower: true, Path: badURL}, 1, "",
			"mPower defaultApp: url \"htps://example.com/tenant\": scheme \"htps\" not supported (want http, https, mqtt, mqtts or wss)\n"},
		{"warnings are plain lines", Options{AskMPower: true, Path: withJoin}, 0,
			"warning: joinclient: Join Server uses plain http (js=fallback/js, file=", ""},
		{"join error, one prefix", Options{AskMPower: true, Path: noASID}, 1, "", "joinclient: join.as_id is required"},
		{"names file line key", Options{AskMPower: true, Path: bad}, 1, "", bad + ":2: lns.brokr: unknown key"},
		{"missing file", Options{AskMPower: true, Path: filepath.Join(t.TempDir(), "nope.yml")}, 1, "", "nope.yml"},
		{"claiming repository problems", Options{AskMPower: true, Path: claimMissing}, 1, "", "tti/js.yml:3: tls.root-ca: cannot read"},
		{"mPower not asked", Options{Path: badURL}, 0, badURL + ": configuration OK\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), tc.opts, &out, &errb)
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

// Without --config (Path), check-config checks the custom app's file (as Start
// picks it) and names it; with none, it says that no file was checked.
func TestWithoutPath(t *testing.T) {
	appDir := t.TempDir()
	t.Setenv("APP_DIR", appDir)
	t.Setenv("CONFIG_DIR", filepath.Join(appDir, "config"))
	var out, errb bytes.Buffer
	if code := Run(context.Background(), Options{AskMPower: true}, &out, &errb); code != 0 ||
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
	if code := Run(context.Background(), Options{AskMPower: true}, &out, &errb); code != 1 || !strings.HasPrefix(errb.String(), shipped+":2: lns.brokr: unknown key") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	// The operator's own file wins, as in Start.
	own := filepath.Join(appDir, "app-connect.yml")
	if err := os.WriteFile(own, []byte("mpower:\n  api: http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Run(context.Background(), Options{AskMPower: true}, &out, &errb); code != 0 || !strings.HasSuffix(out.String(), own+": configuration OK\n") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
}
