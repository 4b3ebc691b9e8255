package admin

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/lorawan-gateway/app-connect/internal/logging"
)

func readStatusFile(t *testing.T, path string) FileDocument {
	t.Helper()
	var d FileDocument
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v: %s", path, err, b)
	}
	return d
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var discard = slog.New(slog.DiscardHandler)

func TestStatusFileContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	st := NewState("v1", nil)
	sf := StartStatusFile(context.Background(), path, 20*time.Millisecond, st, discard)
	if d := readStatusFile(t, path); d.PID != os.Getpid() || d.AppInfo != "starting" {
		t.Fatalf("at start %+v", d)
	}
	st.Startup.Step("opening the database")
	st.Startup.Failed(errors.New("schema version 99 is newer than this program knows (3): downgrade refused"))
	sf.Refresh()
	if d := readStatusFile(t, path); d.AppInfo != "starting: opening the database (failed 1×): schema version 99 is newer than this program knows (3): downgrade refused" {
		t.Fatalf("while starting %+v", d)
	}
	st.Started = time.Now().Add(-(3*time.Hour + 12*time.Minute + 5*time.Second))
	st.Joins.Add("remote/js", "Success")
	st.Joins.Add("remote/js", "UnknownDevEUI")
	st.Joins.Add("remote/js", "Success")
	st.Startup.Running()
	sf.Refresh()
	d := readStatusFile(t, path)
	if d.PID != os.Getpid() || d.AppInfo != "up 3h12m, forwarded 0, queue 0, dropped 0, dead-lettered 0, unrouted 0, remote none, lns down, joins 2/3 ok" {
		t.Fatalf("running %+v", d)
	}
	// Rewritten on its own.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a rewrite", func() bool { _, err := os.Stat(path); return err == nil })
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
	sf := StartStatusFile(ctx, path, time.Millisecond, NewState("v1", nil), discard)
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(500 * time.Millisecond)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(path)
				var d FileDocument
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
	sf := StartStatusFile(context.Background(), "", time.Second, NewState("v1", nil), discard)
	sf.Refresh()
	sf.Stop()
	var nilSF *StatusFile
	nilSF.Refresh()
	nilSF.Stop()

	var logs strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	sf = StartStatusFile(context.Background(), filepath.Join(t.TempDir(), "missing", "status.json"), 5*time.Millisecond,
		NewState("v1", nil), slog.New(slog.NewTextHandler(w, nil)))
	time.Sleep(50 * time.Millisecond)
	sf.Stop()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "status file not written"); n != 1 {
		t.Fatalf("%d warnings, want 1 (not one per attempt):\n%s", n, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestAppInfoSummary(t *testing.T) {
	d := Status{
		UptimeSeconds: 2*86400 + 5*3600,
		Startup:       StartupStatus{State: StateRunning},
		Local:         LocalStatus{Connected: true},
		Intake:        IntakeStatus{Unrouted: 5},
		Applications: []AppStatus{
			{State: "up", EventsForwarded: 41_234, QueueRows: 3, EventsDropped: 2, EventsDeadLettered: 1},
			{State: "retrying", EventsForwarded: 1_500_000, QueueRows: 1200},
		},
	}
	if got := AppInfo(d); got != "up 2d05h, forwarded 1.5M, queue 1.2k, dropped 2, dead-lettered 1, unrouted 5, remote retrying, lns up" {
		t.Fatalf("AppInfo %q", got)
	}
	d.LastErrors = []logging.LoggedError{{Message: strings.Repeat("very long error ", 20)}}
	if got := AppInfo(d); utf8.RuneCountInString(got) != MaxAppInfo || !strings.HasSuffix(got, "…") {
		t.Fatalf("AppInfo of %d characters: %q", utf8.RuneCountInString(got), got)
	}
}

func TestStatusFilePath(t *testing.T) {
	cfg := config.Default()
	t.Setenv("APP_DIR", "")
	if p := StatusFilePath(cfg); p != "" {
		t.Fatalf("no APP_DIR: %q", p)
	}
	t.Setenv("APP_DIR", "/var/config/app/app-connect")
	if p := StatusFilePath(cfg); p != "/var/config/app/app-connect/status.json" {
		t.Fatalf("APP_DIR: %q", p)
	}
	cfg.Admin.StatusFile = "/tmp/s.json"
	if p := StatusFilePath(cfg); p != "/tmp/s.json" {
		t.Fatalf("admin.status_file: %q", p)
	}
}

func TestWriteRefusal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	if err := WriteRefusal(path, "app-connect.yml:2: lns.brokr: unknown key"); err != nil {
		t.Fatal(err)
	}
	if d := readStatusFile(t, path); d.PID != 0 || d.AppInfo != "not started: app-connect.yml:2: lns.brokr: unknown key" {
		t.Fatalf("%+v", d)
	}
	if err := WriteRefusal(path, "a.yml:2: x: bad\na.yml:3: y: bad\na.yml:4: z: bad\n"); err != nil {
		t.Fatal(err)
	}
	if d := readStatusFile(t, path); d.AppInfo != "not started: a.yml:2: x: bad (and 2 more)" {
		t.Fatalf("%+v", d)
	}
}
