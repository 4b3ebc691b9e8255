package logging

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

func TestMPowerLogLevel(t *testing.T) {
	for in, want := range map[int]slog.Level{
		100: slog.LevelDebug, 60: slog.LevelDebug, 50: slog.LevelDebug, 30: slog.LevelInfo,
		20: slog.LevelWarn, 10: slog.LevelError, 0: LevelCritical, 42: slog.LevelInfo, -1: slog.LevelInfo,
	} {
		if got := MPowerLevel(in); got != want {
			t.Errorf("MPowerLevel(%d) = %v, want %v", in, got, want)
		}
	}
}

func TestApplyMPowerLog(t *testing.T) {
	unset := config.DefaultLog()
	mp := config.AppLog{Destination: "FILE", Level: 20, Path: "/var/log/lora-cloud-connector.log"}
	got := ApplyMPower(unset, mp)
	if got.Level != "warn" || got.Destination != config.LogFile || got.File != mp.Path {
		t.Fatalf("unset YAML: %+v", got)
	}
	set := unset
	set.Level, set.Destination, set.File = "debug", config.LogSyslog, "/tmp/x.log"
	if got := ApplyMPower(set, mp); got != set {
		t.Fatalf("the YAML file must win: %+v", got)
	}
	if got := ApplyMPower(unset, config.AppLog{}); got != unset {
		t.Fatalf("absent mPower log: %+v", got)
	}
	if got := ApplyMPower(unset, config.AppLog{Destination: "SYSLOG", Level: 0}); got.Level != "critical" || got.Destination != config.LogSyslog {
		t.Fatalf("critical: %+v", got)
	}
	if errs := ApplyMPower(unset, mp).Validate(); len(errs) > 0 {
		t.Fatalf("mapped settings invalid: %v", errs)
	}
}

func TestLoggerFileRotationAndLiveLevel(t *testing.T) {
	dir := t.TempDir()
	cfg := config.DefaultLog()
	cfg.Destination, cfg.File, cfg.MaxBytes, cfg.Backups, cfg.Level = config.LogFile, filepath.Join(dir, "a.log"), 16<<10, 2, "info"
	log, err := New(cfg, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden at info")
	log.Level.Set(slog.LevelDebug)
	log.Debug("shown after the level change")
	for i := range 1000 {
		log.Info("filler line to force rotation", "i", i, "password", "s3cr3t-value")
	}
	log.Close()
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
	log, err := New(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to stderr")
	log.Close()
	if !strings.Contains(errb.String(), "msg=\"to stderr\"") {
		t.Fatalf("stderr: %q", errb.String())
	}
	// syslog: the local socket when there is one, else stderr with a warning.
	errb.Reset()
	cfg.Destination = config.LogSyslog
	log, err = New(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to syslog")
	log.Close()
	if fellBack := strings.Contains(errb.String(), "no syslog socket"); fellBack != strings.Contains(errb.String(), "to syslog") {
		t.Fatalf("syslog fallback inconsistent: %q", errb.String())
	}
	cfg.Destination, cfg.File = config.LogFile, filepath.Join(t.TempDir(), "f", "\x00bad")
	if _, err := New(cfg, &errb); err == nil {
		t.Fatal("an unopenable log file was accepted")
	}
}

func TestErrorRingKeepsTheLastErrorsRedacted(t *testing.T) {
	cfg := config.DefaultLog()
	cfg.Destination, cfg.Level = config.LogStderr, "critical"
	var errb bytes.Buffer
	log, err := New(cfg, &errb)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range 12 {
		log.Error("remote unreachable", "err", "dial "+strconv.Itoa(i), "password", "hunter2")
	}
	got, total := log.Errors.Snapshot()
	if len(got) != RingSize || total != 12 || got[0].Err != "dial 2" || got[9].Err != "dial 11" || got[9].Message != "remote unreachable" {
		t.Fatalf("kept %+v (%d)", got, total)
	}
	if errb.Len() != 0 {
		t.Fatalf("errors written below the level: %q", errb.String())
	}
}
