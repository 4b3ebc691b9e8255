package admin

import (
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
