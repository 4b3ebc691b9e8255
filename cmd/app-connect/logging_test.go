package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

func TestMPowerLogLevel(t *testing.T) {
	for in, want := range map[int]slog.Level{
		100: slog.LevelDebug, 60: slog.LevelDebug, 50: slog.LevelDebug, 30: slog.LevelInfo,
		20: slog.LevelWarn, 10: slog.LevelError, 0: levelCritical, 42: slog.LevelInfo, -1: slog.LevelInfo,
	} {
		if got := mpowerLogLevel(in); got != want {
			t.Errorf("mpowerLogLevel(%d) = %v, want %v", in, got, want)
		}
	}
}

func TestApplyMPowerLog(t *testing.T) {
	unset := config.DefaultLog()
	mp := config.AppLog{Destination: "FILE", Level: 20, Path: "/var/log/lora-cloud-connector.log"}
	got := applyMPowerLog(unset, mp)
	if got.Level != "warn" || got.Destination != config.LogFile || got.File != mp.Path {
		t.Fatalf("unset YAML: %+v", got)
	}
	set := unset
	set.Level, set.Destination, set.File = "debug", config.LogSyslog, "/tmp/x.log"
	if got := applyMPowerLog(set, mp); got != set {
		t.Fatalf("the YAML file must win: %+v", got)
	}
	if got := applyMPowerLog(unset, config.AppLog{}); got != unset {
		t.Fatalf("absent mPower log: %+v", got)
	}
	if got := applyMPowerLog(unset, config.AppLog{Destination: "SYSLOG", Level: 0}); got.Level != "critical" || got.Destination != config.LogSyslog {
		t.Fatalf("critical: %+v", got)
	}
	if errs := applyMPowerLog(unset, mp).Validate(); len(errs) > 0 {
		t.Fatalf("mapped settings invalid: %v", errs)
	}
}

func TestLoggerFileRotationAndLiveLevel(t *testing.T) {
	dir := t.TempDir()
	cfg := config.DefaultLog()
	cfg.Destination, cfg.File, cfg.MaxBytes, cfg.Backups, cfg.Level = config.LogFile, filepath.Join(dir, "a.log"), 16<<10, 2, "info"
	log, closeLog, err := newLogger(cfg, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden at info")
	levelVarOf(log).Set(slog.LevelDebug)
	log.Debug("shown after the level change")
	for i := range 1000 {
		log.Info("filler line to force rotation", "i", i, "password", "s3cr3t-value")
	}
	closeLog()
	var all []byte
	for _, name := range []string{"a.log", "a.log.1", "a.log.2"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(b) > 16<<10 {
			t.Errorf("%s is %d bytes, cap 16384", name, len(b))
		}
		all = append(all, b...)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.log.3")); !os.IsNotExist(err) {
		t.Errorf("a third backup kept: %v", err)
	}
	if bytes.Contains(all, []byte("s3cr3t-value")) || !bytes.Contains(all, []byte("password=[redacted]")) {
		t.Error("a password attribute was not redacted")
	}
	if !bytes.Contains(all, []byte("i=999")) {
		t.Error("the last line is missing")
	}
}

func TestLoggerDestinations(t *testing.T) {
	var errb bytes.Buffer
	cfg := config.DefaultLog()
	cfg.Destination = config.LogStderr
	log, closeLog, err := newLogger(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to stderr")
	closeLog()
	if !strings.Contains(errb.String(), "msg=\"to stderr\"") {
		t.Fatalf("stderr: %q", errb.String())
	}
	// syslog: the local socket when there is one, else stderr with a warning.
	errb.Reset()
	cfg.Destination = config.LogSyslog
	log, closeLog, err = newLogger(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to syslog")
	closeLog()
	if fellBack := strings.Contains(errb.String(), "no syslog socket"); fellBack != strings.Contains(errb.String(), "to syslog") {
		t.Fatalf("syslog fallback inconsistent: %q", errb.String())
	}
	cfg.Destination, cfg.File = config.LogFile, filepath.Join(t.TempDir(), "f", "\x00bad")
	if _, _, err := newLogger(cfg, &errb); err == nil {
		t.Fatal("an unopenable log file was accepted")
	}
}

func TestReloadAppliesTheLevel(t *testing.T) {
	var errb bytes.Buffer
	cfg := config.DefaultLog()
	cfg.Destination = config.LogStderr
	log, closeLog, err := newLogger(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	path := writeTempConfig(t, "log:\n  level: debug\n")
	if _, err := reload(path, log); err != nil {
		t.Fatal(err)
	}
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug not enabled after reload")
	}
	// An invalid file changes nothing.
	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(path, log); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("level changed by a bad file")
	}
	// Level left unset: the current one (mPower's) stays.
	if err := os.WriteFile(path, []byte("log:\n  destination: stderr\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(path, log); err != nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatalf("unset level: %v", err)
	}
}
