package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFlagSetHelpAndErrors(t *testing.T) {
	var out, errb bytes.Buffer
	fs := NewFlagSet("app-connect x", "usage: app-connect x [--in FILE]\n", &out, &errb)
	fs.String("in", "", "input `file`")
	fs.Bool("dry-run", false, "do nothing")
	fs.Duration("timeout", 10*time.Second, "per request")
	if code := Parse(fs, []string{"--help"}, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("--help: %d %q", code, errb.String())
	}
	want := "usage: app-connect x [--in FILE]\n\nFlags:\n  --dry-run\n      do nothing\n  --in FILE\n      input file\n  --timeout DURATION\n      per request (default 10s)\n"
	if out.String() != want {
		t.Fatalf("help:\n%s\nwant:\n%s", out.String(), want)
	}
	for _, tc := range []struct{ arg, want string }{
		{"-bogus", "app-connect x: flag provided but not defined: --bogus (see app-connect x --help)\n"},
		{"--timeout=soon", "app-connect x: invalid value \"soon\" for flag --timeout: parse error (see app-connect x --help)\n"},
		{"--in", "app-connect x: flag needs an argument: --in (see app-connect x --help)\n"},
		{"--dry-run=maybe", "app-connect x: invalid boolean value \"maybe\" for --dry-run: parse error (see app-connect x --help)\n"},
	} {
		errb.Reset()
		if code := Parse(fs, []string{tc.arg}, &errb); code != 2 || errb.String() != tc.want {
			t.Errorf("%s: %d %q, want %q", tc.arg, code, errb.String(), tc.want)
		}
	}
	if code := Parse(fs, []string{"--in", "a"}, &errb); code != -1 {
		t.Fatalf("good flags: %d", code)
	}
}

func TestPlainLogger(t *testing.T) {
	var b bytes.Buffer
	log := NewLogger(&b, slog.LevelWarn)
	log.Info("hidden")
	log.With("js", "tti").Warn("Join Server uses plain http", "line", 3, "password", "hunter2")
	log.Error("failed")
	if got := b.String(); got != "warning: Join Server uses plain http (js=tti, line=3, password=[redacted])\nerror: failed\n" {
		t.Fatalf("%q", got)
	}
	if strings.Contains(b.String(), "level=") {
		t.Fatal("log-formatted")
	}
}
