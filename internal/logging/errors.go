package logging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LoggedError is one error log line, for /status.
type LoggedError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	Err     string    `json:"err,omitempty"`
}

// ErrorRing keeps the last error log records. A nil *ErrorRing keeps nothing.
type ErrorRing struct {
	mu    sync.Mutex
	buf   []LoggedError
	next  int
	total uint64
}

// RingSize is how many error records an ErrorRing keeps.
const RingSize = 10

func (r *ErrorRing) add(e LoggedError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.buf) < RingSize {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % RingSize
}

// Snapshot lists the kept errors, oldest first, and how many were logged in all.
func (r *ErrorRing) Snapshot() ([]LoggedError, uint64) {
	out := []LoggedError{}
	if r == nil {
		return out, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out = append(out, r.buf[r.next:]...)
	out = append(out, r.buf[:r.next]...)
	return out, r.total
}

// ringHandler passes every record on and keeps the error records in ring
// (error records are kept even when the level hides them).
type ringHandler struct {
	slog.Handler
	ring  *ErrorRing
	level *slog.LevelVar
}

func (t ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || t.Handler.Enabled(ctx, l)
}

func (t ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e := LoggedError{Time: r.Time.UTC(), Message: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				e.Err = RedactAttr(nil, a).Value.String()
				return false
			}
			return true
		})
		t.ring.add(e)
	}
	if !t.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return t.Handler.Handle(ctx, r)
}

func (t ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ringHandler{Handler: t.Handler.WithAttrs(as), ring: t.ring, level: t.level}
}

func (t ringHandler) WithGroup(name string) slog.Handler {
	return ringHandler{Handler: t.Handler.WithGroup(name), ring: t.ring, level: t.level}
}
