package settings

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// SIGHUP applies the level live and names every other changed setting as
// needing a restart; an invalid file changes nothing.
func TestReloadNamesWhatItAppliedAndWhatNeedsARestart(t *testing.T) {
	path := testpeer.TempFile(t, "app-connect.yml", "log:\n  level: info\n")
	old, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs testpeer.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	level := new(slog.LevelVar)
	if err := os.WriteFile(path, []byte("log:\n  level: debug\ndelivery:\n  retry_min: 2s\nlns:\n  password: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Reload(path, old, log, level, nil); err != nil {
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
	if _, err := Reload(path, old, log, level, nil); err == nil || !strings.Contains(err.Error(), "log.level") || level.Level() != slog.LevelDebug {
		t.Fatalf("reload of a bad file: %v", err)
	}
	// Level left unset: the current one (mPower's) stays; nothing changed.
	if err := os.WriteFile(path, []byte("log:\n  destination: stderr\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs2 testpeer.LogBuffer
	old2, _ := config.Load(path)
	if _, err := Reload(path, old2, slog.New(slog.NewTextHandler(&logs2, nil)), level, nil); err != nil || level.Level() != slog.LevelDebug ||
		!strings.Contains(logs2.String(), "reload: configuration unchanged") {
		t.Fatalf("unset level: %v\n%s", err, logs2.String())
	}
}

// SIGHUP applies a changed default_app block live (to the applications once
// they are built) and reports it by name; the next reload of the same file
// finds nothing changed.
func TestReloadAppliesDefaultAppLive(t *testing.T) {
	path := testpeer.TempFile(t, "app-connect.yml", "default_app:\n  enabled: true\n  apiVersion: \"1.1\"\n  url: http://127.0.0.1:1/a\n")
	old, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("default_app:\n  enabled: true\n  apiVersion: \"1.1\"\n  url: http://127.0.0.1:1/b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testpeer.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var got []*config.DefaultApp
	set := func(o *config.DefaultApp) bool { got = append(got, o); return true }
	running, err := Reload(path, old, log, new(slog.LevelVar), set)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] == nil || got[0].URL != "http://127.0.0.1:1/b" || running.DefaultAppOverride.URL != "http://127.0.0.1:1/b" {
		t.Fatalf("applied %+v, running %+v", got, running.DefaultAppOverride)
	}
	if want := `msg="reload: applied live" config=` + path + ` settings=default_app`; !strings.Contains(logs.String(), want) || strings.Contains(logs.String(), "need a restart") {
		t.Fatalf("log lacks %q or names a restart:\n%s", want, logs.String())
	}
	if _, err := Reload(path, running, log, new(slog.LevelVar), set); err != nil || len(got) != 1 || !strings.Contains(logs.String(), "reload: configuration unchanged") {
		t.Fatalf("second reload: %v, applied %d times\n%s", err, len(got), logs.String())
	}
	// Before the applications exist, the change needs a restart.
	var logs2 testpeer.LogBuffer
	if _, err := Reload(path, old, slog.New(slog.NewTextHandler(&logs2, nil)), new(slog.LevelVar), func(*config.DefaultApp) bool { return false }); err != nil ||
		!strings.Contains(logs2.String(), "settings=default_app") || !strings.Contains(logs2.String(), "need a restart") {
		t.Fatalf("not built yet: %v\n%s", err, logs2.String())
	}
}
