package joinclient

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is the guard's time source in tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestGuard(limit, threshold int, coolDown time.Duration, log *slog.Logger) (*guard, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := newGuard("js1", ClientOptions{MaxInFlight: limit, BreakerTimeouts: threshold, BreakerCoolDown: coolDown}, log)
	g.now = clk.now
	return g, clk
}

var (
	errTimedOut = &Error{Kind: ErrTimeout, Err: context.DeadlineExceeded}
	errAnswered = &ResultError{Code: ResultUnknownDevEUI}
)

// call runs one request through g; f's outcome is err. It reports whether f ran
// and the refusal kind otherwise.
func call(g *guard, ctx context.Context, err error) (ran bool, refused error) {
	kind, _ := g.run(ctx, func() error { ran = true; return err })
	return ran, kind
}

func TestGuardBreakerOpensProbesAndCloses(t *testing.T) {
	var logs bytes.Buffer
	g, clk := newTestGuard(4, 3, time.Minute, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()

	// Answers in between reset the count: two timeouts, an answer, two timeouts stay closed.
	for _, err := range []error{errTimedOut, errTimedOut, errAnswered, errTimedOut, errTimedOut} {
		if ran, _ := call(g, ctx, err); !ran {
			t.Fatal("request refused while the breaker is closed")
		}
	}
	if s := g.state(); s.Breaker != BreakerClosed || s.ConsecutiveTimeouts != 2 {
		t.Fatalf("after 2 consecutive timeouts: %+v", s)
	}
	call(g, ctx, errTimedOut) // the third opens it
	if s := g.state(); s.Breaker != BreakerOpen || s.BreakerOpened != 1 {
		t.Fatalf("after 3 consecutive timeouts: %+v", s)
	}
	for range 5 {
		if ran, kind := call(g, ctx, nil); ran || kind != ErrTimeout {
			t.Fatalf("open breaker: ran %v, refusal %v (want ErrTimeout at once)", ran, kind)
		}
	}
	if s := g.state(); s.ShortCircuited != 5 {
		t.Fatalf("short-circuited %d, want 5", s.ShortCircuited)
	}

	// Cool-down over: half open; the probe times out → open again, not logged again.
	clk.t = clk.t.Add(time.Minute)
	if s := g.state(); s.Breaker != BreakerHalfOpen {
		t.Fatalf("after the cool-down: %s", s.Breaker)
	}
	if ran, _ := call(g, ctx, errTimedOut); !ran {
		t.Fatal("the probe was not sent")
	}
	if ran, _ := call(g, ctx, nil); ran {
		t.Fatal("a request was sent right after a failed probe")
	}
	if n := strings.Count(logs.String(), "circuit open"); n != 1 {
		t.Fatalf("opening logged %d times, want once:\n%s", n, logs.String())
	}
	if s := g.state(); s.BreakerOpened != 1 {
		t.Fatalf("a failed probe counted as a new opening: %+v", s)
	}

	// While a probe is in flight the others are answered at once.
	clk.t = clk.t.Add(time.Minute)
	probe, kind, err := g.enter()
	if !probe || err != nil {
		t.Fatalf("probe not admitted: %v %v", kind, err)
	}
	if ran, kind := call(g, ctx, nil); ran || kind != ErrTimeout {
		t.Fatal("a second request went out during the probe")
	}
	g.leave(probe, false, false) // the probe is answered: closed
	if s := g.state(); s.Breaker != BreakerClosed || s.ConsecutiveTimeouts != 0 {
		t.Fatalf("after a successful probe: %+v", s)
	}
	if !strings.Contains(logs.String(), "circuit closed") {
		t.Fatalf("closing not logged:\n%s", logs.String())
	}
	if ran, _ := call(g, ctx, nil); !ran {
		t.Fatal("closed breaker refused a request")
	}
}

// A raced request cancelled because another Join Server won is neither a
// timeout nor an answer.
func TestGuardCancelledCountsNeitherWay(t *testing.T) {
	g, _ := newTestGuard(4, 2, time.Minute, slog.New(slog.DiscardHandler))
	call(g, context.Background(), errTimedOut)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call(g, ctx, &Error{Kind: ErrTransport, Err: context.Canceled})
	if s := g.state(); s.ConsecutiveTimeouts != 1 || s.Breaker != BreakerClosed {
		t.Fatalf("after a cancelled request: %+v", s)
	}
	call(g, context.Background(), errTimedOut)
	if s := g.state(); s.Breaker != BreakerOpen {
		t.Fatalf("second timeout did not open: %+v", s)
	}
}

func TestGuardBulkhead(t *testing.T) {
	g, _ := newTestGuard(2, 5, time.Minute, slog.New(slog.DiscardHandler))
	for range 2 {
		if _, kind, err := g.enter(); err != nil {
			t.Fatalf("refused below the bound: %v", kind)
		}
	}
	if ran, kind := call(g, context.Background(), nil); ran || !errors.Is(kind, ErrBusy) {
		t.Fatalf("third request: ran %v kind %v, want ErrBusy", ran, kind)
	}
	if s := g.state(); s.InFlight != 2 || s.MaxInFlight != 2 || s.Busy != 1 {
		t.Fatalf("state %+v", s)
	}
	g.leave(false, false, false)
	if ran, _ := call(g, context.Background(), nil); !ran {
		t.Fatal("refused after a slot was freed")
	}
}

func TestGuardDefaults(t *testing.T) {
	g := newGuard("js", ClientOptions{}, slog.New(slog.DiscardHandler))
	if g.limit != DefaultMaxInFlightPerJS || g.threshold != DefaultBreakerTimeouts || g.coolDown != DefaultBreakerCoolDown {
		t.Fatalf("defaults %d %d %s", g.limit, g.threshold, g.coolDown)
	}
}
