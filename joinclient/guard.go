package joinclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Defaults of the per-Join-Server guard (see ClientOptions).
const (
	DefaultMaxInFlightPerJS = DefaultMaxInFlight / 2
	DefaultBreakerTimeouts  = 5
	DefaultBreakerCoolDown  = 30 * time.Second
)

// Breaker states, as exported by JoinServerState.
const (
	BreakerClosed   = "closed"    // requests flow
	BreakerOpen     = "open"      // requests answered at once with a timeout until the cool-down ends
	BreakerHalfOpen = "half_open" // cool-down over: the next request is a probe
)

// guard protects the proxy from one bad Join Server: a bulkhead (its own bound
// on requests in flight, so that a Join Server that never answers cannot take
// every slot of the proxy's global bound) and a circuit breaker (after
// threshold consecutive timeouts its requests fail at once with ErrTimeout for
// coolDown, then one probe request decides whether it closes again).
type guard struct {
	js        string
	limit     int
	threshold int
	coolDown  time.Duration
	log       *slog.Logger
	now       func() time.Time

	mu          sync.Mutex
	inFlight    int
	consecutive int       // consecutive timeouts
	openUntil   time.Time // zero: closed
	probing     bool      // a half-open probe is in flight
	busy        uint64    // refused by the bulkhead
	shorted     uint64    // answered at once by the open breaker
	opened      uint64    // times the breaker opened
}

func newGuard(js string, opts ClientOptions, log *slog.Logger) *guard {
	g := &guard{js: js, limit: opts.MaxInFlight, threshold: opts.BreakerTimeouts, coolDown: opts.BreakerCoolDown, log: log, now: time.Now}
	if g.limit <= 0 {
		g.limit = DefaultMaxInFlightPerJS
	}
	if g.threshold <= 0 {
		g.threshold = DefaultBreakerTimeouts
	}
	if g.coolDown <= 0 {
		g.coolDown = DefaultBreakerCoolDown
	}
	return g
}

// errCircuitOpen is wrapped in the ErrTimeout of a short-circuited request.
var errCircuitOpen = errors.New("circuit open after consecutive timeouts")

// enter admits a request or refuses it: ErrBusy when the Join Server's own
// bound is reached, ErrTimeout (wrapping errCircuitOpen) while the breaker is
// open or a probe is in flight. probe reports that this request is the
// half-open probe. The caller must call leave after an admitted request.
func (g *guard) enter() (probe bool, kind error, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.openUntil.IsZero() {
		now := g.now()
		if now.Before(g.openUntil) || g.probing {
			g.shorted++
			return false, ErrTimeout, fmt.Errorf("%w (%d); answering at once until %s", errCircuitOpen, g.consecutive, g.openUntil.UTC().Format(time.RFC3339))
		}
		probe = true
	}
	if g.inFlight >= g.limit {
		g.busy++
		return false, ErrBusy, fmt.Errorf("%d requests in flight to this Join Server", g.inFlight)
	}
	g.inFlight++
	if probe {
		g.probing = true
	}
	return probe, nil, nil
}

// leave ends an admitted request with its outcome: timedOut when the Join
// Server let the join budget run out, cancelled when the caller gave up for
// another reason (a raced request that lost), which counts neither way.
func (g *guard) leave(probe, timedOut, cancelled bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	if probe {
		g.probing = false
	}
	switch {
	case cancelled:
		return
	case !timedOut:
		if !g.openUntil.IsZero() {
			g.log.Info("joinclient: Join Server answers again; circuit closed", "js", g.js)
		}
		g.consecutive, g.openUntil = 0, time.Time{}
		return
	}
	g.consecutive++
	if probe || (g.openUntil.IsZero() && g.consecutive >= g.threshold) {
		if g.openUntil.IsZero() {
			g.opened++
			g.log.Warn("joinclient: Join Server keeps timing out; circuit open, its requests are answered at once with a timeout (logged once until it answers again)",
				"js", g.js, "consecutive_timeouts", g.consecutive, "cool_down", g.coolDown)
		}
		g.openUntil = g.now().Add(g.coolDown)
	}
}

// run calls f inside the guard, or refuses to: then it returns the kind of
// the refusal (ErrBusy or ErrTimeout) and why, and f is not called. f's error
// decides the outcome recorded by the breaker.
func (g *guard) run(ctx context.Context, f func() error) (refusedKind, refusal error) {
	probe, kind, err := g.enter()
	if err != nil {
		return kind, err
	}
	ferr := f()
	cancelled := errors.Is(ctx.Err(), context.Canceled)
	g.leave(probe, !cancelled && errors.Is(ferr, ErrTimeout), cancelled)
	return nil, nil
}

// JoinServerState is the guard and header-warning state of one Join Server,
// for /status and /metrics.
type JoinServerState struct {
	JoinServer          string            `json:"join_server"`
	InFlight            int               `json:"in_flight"`
	MaxInFlight         int               `json:"max_in_flight"`
	Busy                uint64            `json:"busy_total"`            // refused by the per-Join-Server bound
	Breaker             string            `json:"breaker"`               // BreakerClosed, BreakerOpen or BreakerHalfOpen
	ConsecutiveTimeouts int               `json:"consecutive_timeouts"`  // since its last answer
	BreakerOpened       uint64            `json:"breaker_opened_total"`  // times the breaker opened
	ShortCircuited      uint64            `json:"short_circuited_total"` // answered at once while open
	HeaderWarnings      map[string]uint64 `json:"header_warnings"`       // answer-header mismatch kind → count (spec §7.6)
}

func (g *guard) state() JoinServerState {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := JoinServerState{
		JoinServer: g.js, InFlight: g.inFlight, MaxInFlight: g.limit, Busy: g.busy,
		Breaker: BreakerClosed, ConsecutiveTimeouts: g.consecutive, BreakerOpened: g.opened, ShortCircuited: g.shorted,
	}
	if !g.openUntil.IsZero() {
		s.Breaker = BreakerOpen
		if !g.now().Before(g.openUntil) {
			s.Breaker = BreakerHalfOpen
		}
	}
	return s
}
