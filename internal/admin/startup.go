package admin

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Start-up states.
const (
	StateStarting = "starting"
	StateRunning  = "running"
)

// Startup is the start-up progress: the step in progress, how often it was
// tried and its last error. Safe for concurrent use; a nil *Startup records
// nothing.
type Startup struct {
	mu  sync.Mutex
	now func() time.Time
	s   StartupStatus
}

// NewStartup starts in state starting, without a step yet.
func NewStartup() *Startup {
	s := &Startup{now: time.Now}
	s.s.State = StateStarting
	return s
}

// StartupStatus is the start-up progress at one moment.
type StartupStatus struct {
	State       string    `json:"state"`          // starting or running
	Step        string    `json:"step,omitempty"` // the step in progress while starting
	StepSince   time.Time `json:"step_since,omitzero"`
	Attempts    int       `json:"attempts,omitempty"` // failed attempts of the step
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Step records that step is in progress (a new step clears the last error).
func (s *Startup) Step(step string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = StartupStatus{State: StateStarting, Step: step, StepSince: s.now().UTC().Truncate(time.Second)}
}

// Failed records a failed attempt of the step in progress.
func (s *Startup) Failed(err error) {
	if s == nil || err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s.Attempts++
	s.s.LastError = err.Error()
	s.s.LastErrorAt = s.now().UTC().Truncate(time.Second)
}

// Running records that start-up is complete.
func (s *Startup) Running() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = StartupStatus{State: StateRunning}
}

// Snapshot reads the progress.
func (s *Startup) Snapshot() StartupStatus {
	if s == nil {
		return StartupStatus{State: StateRunning}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

// Noted records err as the last error of the step in progress without
// counting an attempt (a component that retries on its own reported it).
// After start-up it does nothing.
func (s *Startup) Noted(err string) {
	if s == nil || err == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s.State != StateStarting {
		return
	}
	s.s.LastError = err
	s.s.LastErrorAt = s.now().UTC().Truncate(time.Second)
}

// StartupErrors wraps h so that, while start-up is in progress, the "err"
// attribute of every warning or error record becomes the step's last error
// (components that wait on their own, such as the mPower client at boot, log
// their failures this way). Every record still goes to h.
func StartupErrors(h slog.Handler, s *Startup) slog.Handler {
	return startupErrors{Handler: h, s: s}
}

type startupErrors struct {
	slog.Handler
	s *Startup
}

func (t startupErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				t.s.Noted(a.Value.String())
				return false
			}
			return true
		})
	}
	return t.Handler.Handle(ctx, r)
}

func (t startupErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return startupErrors{Handler: t.Handler.WithAttrs(as), s: t.s}
}

func (t startupErrors) WithGroup(name string) slog.Handler {
	return startupErrors{Handler: t.Handler.WithGroup(name), s: t.s}
}
