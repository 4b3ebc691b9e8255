package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

func writeTempConfig(t *testing.T, yml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app-connect.yml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readStatusFile(t *testing.T, path string) statusDocument {
	t.Helper()
	var d statusDocument
	readJSON(t, path, &d)
	return d
}

func TestStatusFileContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	sf := startStatusFileEvery(context.Background(), path, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	if d := readStatusFile(t, path); d.PID != os.Getpid() || d.AppInfo != "starting" {
		t.Fatalf("before attach %+v", d)
	}
	joins := newJoinCounts()
	joins.add("remote/js", "Success")
	joins.add("remote/js", "Success")
	joins.add("remote/js", "UnknownDevEUI")
	st := &state{started: time.Now().Add(-(3*time.Hour + 12*time.Minute + 5*time.Second)), joins: joins}
	st.ensure(slog.New(slog.DiscardHandler))
	sf.Attach(st)
	d := readStatusFile(t, path)
	if d.PID != os.Getpid() || d.AppInfo != "up 3h12m, fwd 0, queue 0, dropped 0, dead 0, remote none, lns down, js 2/3 ok" {
		t.Fatalf("after attach %+v", d)
	}
	// Rewritten on its own.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a rewrite", func() (struct{}, bool) {
		_, err := os.Stat(path)
		return struct{}{}, err == nil
	})
	sf.Stop()
	sf.Stop() // idempotent
	d = readStatusFile(t, path)
	if d.PID != 0 || !strings.HasPrefix(d.AppInfo, "stopped ") {
		t.Fatalf("after stop %+v", d)
	}
	// Nothing but status.json in the directory: no temporary file left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}
}

// A reader polling as fast as it can while the file is rewritten every
// millisecond never sees a missing, empty or partial document.
func TestStatusFileRewriteIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sf := startStatusFileEvery(ctx, path, time.Millisecond, slog.New(slog.DiscardHandler))
	st := &state{started: time.Now()}
	st.ensure(slog.New(slog.DiscardHandler))
	sf.Attach(st)
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(500 * time.Millisecond)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(path)
				var d statusDocument
				if err != nil || json.Unmarshal(b, &d) != nil || d.PID != os.Getpid() || d.AppInfo == "" {
					bad.Add(1)
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	sf.Stop()
	if bad.Load() != 0 || reads.Load() < 100 {
		t.Fatalf("%d bad reads out of %d", bad.Load(), reads.Load())
	}
}

func TestStatusFileDisabledAndUnwritable(t *testing.T) {
	sf := startStatusFile(context.Background(), "", slog.New(slog.DiscardHandler))
	sf.Attach(&state{})
	sf.Stop()
	var nilSF *statusFile
	nilSF.Attach(&state{})
	nilSF.Stop()
	statusFileOf(context.Background()).Attach(&state{}) // run called directly, as tests do

	logs := &syncBuffer{}
	sf = startStatusFileEvery(context.Background(), filepath.Join(t.TempDir(), "missing", "status.json"), 5*time.Millisecond,
		slog.New(slog.NewTextHandler(logs, nil)))
	time.Sleep(50 * time.Millisecond)
	sf.Stop()
	if n := strings.Count(logs.String(), "status file not written"); n != 1 {
		t.Fatalf("%d warnings, want 1 (not one per attempt):\n%s", n, logs.String())
	}
}

func TestAppInfoSummary(t *testing.T) {
	d := statusDoc{
		UptimeSeconds: 2*86400 + 5*3600,
		Local:         lnsbridge.LocalStats{Connected: true},
		Applications: []appStatus{
			{State: "up", Forwarded: 41_234, QueueRows: 3, Dropped: 2, DeadLettered: 1},
			{State: "retrying", Forwarded: 1_500_000, QueueRows: 1200},
		},
	}
	if got := appInfo(d); got != "up 2d05h, fwd 1.5M, queue 1.2k, dropped 2, dead 1, remote retrying, lns up" {
		t.Fatalf("AppInfo %q", got)
	}
	d.LastErrors = []loggedError{{Message: strings.Repeat("very long error ", 20)}}
	if got := appInfo(d); utf8.RuneCountInString(got) != maxAppInfo || !strings.HasSuffix(got, "…") {
		t.Fatalf("AppInfo of %d characters: %q", utf8.RuneCountInString(got), got)
	}
}

func TestStatusFilePath(t *testing.T) {
	cfg := config.Default()
	t.Setenv("APP_DIR", "")
	if p := statusFilePath(cfg); p != "" {
		t.Fatalf("no APP_DIR: %q", p)
	}
	t.Setenv("APP_DIR", "/var/config/app/app-connect")
	if p := statusFilePath(cfg); p != "/var/config/app/app-connect/status.json" {
		t.Fatalf("APP_DIR: %q", p)
	}
	cfg.Admin.StatusFile = "/tmp/s.json"
	if p := statusFilePath(cfg); p != "/tmp/s.json" {
		t.Fatalf("admin.status_file: %q", p)
	}
}
