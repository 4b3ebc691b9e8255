package admin

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

	"github.com/lorawan-gateway/app-connect/config"
)

// StatusFileInterval is how often status.json is rewritten (conduit.md §11).
const StatusFileInterval = 10 * time.Second

// StatusFilePath is where status.json goes: admin.status_file, else
// $APP_DIR/status.json when app-manager set APP_DIR, else nowhere ("").
func StatusFilePath(cfg config.Config) string {
	if cfg.Admin.StatusFile != "" {
		return cfg.Admin.StatusFile
	}
	if d := os.Getenv("APP_DIR"); d != "" {
		return filepath.Join(d, "status.json")
	}
	return ""
}

// StatusFile keeps mPower's status.json current: {"pid": <int>, "AppInfo": "…"}.
type StatusFile struct {
	path  string
	log   *slog.Logger
	pid   int
	every time.Duration
	st    *State

	mu       sync.Mutex
	stopped  bool
	failures int

	stop chan struct{}
	done chan struct{}
}

// FileDocument is the file's content.
type FileDocument struct {
	PID     int    `json:"pid"`
	AppInfo string `json:"AppInfo"`
}

// StartStatusFile writes st's AppInfo to path now (start-up shows its step
// from the first second) and then every interval until Stop or ctx ends. An
// empty path writes nothing.
func StartStatusFile(ctx context.Context, path string, every time.Duration, st *State, log *slog.Logger) *StatusFile {
	s := &StatusFile{path: path, log: log, pid: os.Getpid(), every: every, st: st, stop: make(chan struct{}), done: make(chan struct{})}
	if path == "" {
		close(s.done)
		return s
	}
	s.write()
	go s.loop(ctx)
	return s
}

func (s *StatusFile) loop(ctx context.Context) {
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

// Refresh rewrites the file now (after a start-up step changed).
func (s *StatusFile) Refresh() {
	if s == nil || s.path == "" {
		return
	}
	s.write()
}

// Stop ends the rewriting and writes a final "stopped" status (pid 0, as the
// shipped file's "Not started"). A nil or disabled StatusFile does nothing.
func (s *StatusFile) Stop() {
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
	s.writeDoc(FileDocument{PID: 0, AppInfo: "stopped " + time.Now().UTC().Format("2006-01-02 15:04:05Z")})
}

func (s *StatusFile) write() {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return
	}
	s.writeDoc(FileDocument{PID: s.pid, AppInfo: AppInfo(s.st.Status())})
}

// writeDoc replaces the file atomically: a temporary file in the same
// directory renamed over it, so app-manager never reads half a document.
func (s *StatusFile) writeDoc(d FileDocument) {
	err := WriteFileAtomic(s.path, d)
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

// WriteFileAtomic writes v as JSON to path through a temporary file in the
// same directory renamed over it.
func WriteFileAtomic(path string, v any) error {
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

// WriteRefusal writes the reason the program was not started (an invalid
// configuration) into status.json, pid 0, so mPower's app list shows it.
// A reason of several lines (several configuration errors) shows its first
// line and how many more there are.
func WriteRefusal(path, reason string) error {
	lines := strings.Split(strings.TrimSpace(reason), "\n")
	info := "not started: " + lines[0]
	if len(lines) > 1 {
		info += fmt.Sprintf(" (and %d more)", len(lines)-1)
	}
	return WriteFileAtomic(path, FileDocument{PID: 0, AppInfo: truncateRunes(info, MaxAppInfo)})
}
