package admin

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/backoff"
)

// Progress shows the start-up step in progress and its failed attempts: the
// State's Startup, and whatever shows it at once (the daemon refreshes the
// status file).
type Progress interface {
	Step(what string)
	Failed(err error)
}

// RetryStep runs the start-up step what: f until it succeeds or ctx ends,
// with backoff (0.5 s doubling to 30 s, jittered), every failure shown
// through p and logged (the first and every tenth): no start-up step ends
// the process. The step and its last error are shown by /status,
// `app-connect status` and AppInfo. It fails only when ctx ends.
func RetryStep[T any](ctx context.Context, p Progress, log *slog.Logger, what string, f func(context.Context) (T, error)) (T, error) {
	p.Step(what)
	b := backoff.New(500*time.Millisecond, 30*time.Second)
	for attempt := 1; ; attempt++ {
		v, err := f(ctx)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		p.Failed(err)
		if attempt == 1 || attempt%10 == 0 {
			log.Error(what+" failed, retrying", "attempt", attempt, "err", err)
		}
		if !b.Sleep(ctx) {
			return v, fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}
