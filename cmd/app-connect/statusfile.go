package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
)

// statusFileInterval is how often status.json is rewritten (conduit.md §11).
const statusFileInterval = 10 * time.Second

// maxAppInfo is the longest AppInfo mPower shows, in characters.
const maxAppInfo = 160

// statusFilePath is where status.json goes: admin.status_file, else
// $APP_DIR/status.json when app-manager set APP_DIR, else nowhere ("").
func statusFilePath(cfg config.Config) string {
	if cfg.Admin.StatusFile != "" {
		return cfg.Admin.StatusFile
	}
	if d := os.Getenv("APP_DIR"); d != "" {
		return filepath.Join(d, "status.json")
	}
	return ""
}

// statusFile keeps mPower's status.json current: {"pid": <int>, "AppInfo": "…"}.
type statusFile struct {
	path  string
	log   *slog.Logger
	pid   int
	every time.Duration

	mu       sync.Mutex
	st       *state
	stopped  bool
	failures int

	stop chan struct{}
	done chan struct{}
}

// statusDocument is the file's content.
type statusDocument struct {
	PID     int    `json:"pid"`
	AppInfo string `json:"AppInfo"`
}

// startStatusFile writes path now (AppInfo "starting" until Attach) and then
// every 10 s until Stop or ctx ends. An empty path writes nothing.
func startStatusFile(ctx context.Context, path string, log *slog.Logger) *statusFile {
	return startStatusFileEvery(ctx, path, statusFileInterval, log)
}

func startStatusFileEvery(ctx context.Context, path string, every time.Duration, log *slog.Logger) *statusFile {
	s := &statusFile{path: path, log: log, pid: os.Getpid(), every: every, stop: make(chan struct{}), done: make(chan struct{})}
	if path == "" {
		close(s.done)
		return s
	}
	s.write()
	go s.loop(ctx)
	return s
}

func (s *statusFile) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
			s.write()
		}
	}
}

// Attach makes the summary come from st from now on, and writes it.
func (s *statusFile) Attach(st *state) {
	if s == nil || s.path == "" {
		return
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	s.write()
}

// Stop ends the rewriting and writes a final "stopped" status (pid 0, as the
// shipped file's "Not started").
func (s *statusFile) Stop() {
	if s == nil || s.path == "" {
		return
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.writeDoc(statusDocument{PID: 0, AppInfo: "stopped " + time.Now().UTC().Format("2006-01-02 15:04:05Z")})
}

func (s *statusFile) write() {
	s.mu.Lock()
	st, stopped := s.st, s.stopped
	s.mu.Unlock()
	if stopped {
		return
	}
	info := "starting"
	if st != nil {
		info = appInfo(st.status())
	}
	s.writeDoc(statusDocument{PID: s.pid, AppInfo: info})
}

// writeDoc replaces the file atomically: a temporary file in the same
// directory renamed over it, so app-manager never reads half a document.
func (s *statusFile) writeDoc(d statusDocument) {
	err := writeFileAtomic(s.path, d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		if s.failures == 1 || s.failures%60 == 0 {
			s.log.Warn("status file not written", "path", s.path, "failures", s.failures, "err", err)
		}
		return
	}
	s.failures = 0
}

func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("status file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".status-*.tmp")
	if err != nil {
		return fmt.Errorf("status file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("status file: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("status file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("status file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("status file: %w", err)
	}
	return nil
}

// appInfo is the one-line summary mPower shows, at most 160 characters:
// "up 3h12m, fwd 41.2k, queue 0, dropped 0, dead 0, remote up, lns up, js 12/12 ok".
func appInfo(d statusDoc) string {
	var fwd, queue uint64
	var dropped, dead int64
	remote := "none"
	for _, a := range d.Applications {
		fwd += a.Forwarded
		queue += uint64(a.QueueRows)
		dropped += a.Dropped
		dead += a.DeadLettered
		if remote == "none" || remote == forward.StateUp {
			remote = a.State // the first application not up, else up
		}
	}
	parts := []string{
		"up " + shortDuration(time.Duration(d.UptimeSeconds)*time.Second),
		"fwd " + shortCount(fwd),
		"queue " + shortCount(queue),
		"dropped " + shortCount(uint64(dropped)),
		"dead " + shortCount(uint64(dead)),
		"remote " + remote,
	}
	if d.Storage.State == "full" || d.Storage.State == "low" {
		parts = append(parts, "storage "+d.Storage.State) // full: new messages wait in the local broker
	}
	if d.Local.Connected {
		parts = append(parts, "lns up")
	} else {
		parts = append(parts, "lns down")
	}
	if len(d.Joins) > 0 {
		var ok, all uint64
		for _, j := range d.Joins {
			all += j.Count
			if j.Result == "Success" {
				ok += j.Count
			}
		}
		parts = append(parts, "js "+shortCount(ok)+"/"+shortCount(all)+" ok")
	}
	if len(d.LastErrors) > 0 {
		parts = append(parts, "last error "+d.LastErrors[len(d.LastErrors)-1].Message)
	}
	return truncateRunes(strings.Join(parts, ", "), maxAppInfo)
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// shortDuration is 45s, 12m, 3h12m or 4d03h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// shortCount is 999, 41.2k or 3.1M.
func shortCount(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d", n)
	case n < 1_000_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
