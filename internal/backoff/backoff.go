// Package backoff is the project's one retry-delay schedule and its one rule
// for which HTTP statuses are worth retrying. Every loop that waits between
// attempts (remote delivery and connection, outbox commits, the mPower API at
// boot, start-up steps, the admin endpoint's listen) and every client that
// classifies an HTTP status (remote HTTP delivery, the Join Server client)
// uses it, so the behaviour is the same everywhere.
package backoff

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"
)

// Backoff is an exponential delay with jitter: each Next returns a random
// duration in [d/2, d], then doubles d up to Max. It is not safe for
// concurrent use; each retry loop owns its own.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a Backoff starting at min and capped at max. A non-positive min
// becomes one second; a max below min becomes min.
func New(min, max time.Duration) *Backoff {
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max, cur: min}
}

// Next returns the delay before the next attempt and advances the schedule.
func (b *Backoff) Next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d/2 + rand.N(d/2+1)
}

// Reset starts the schedule again from its minimum (after a success).
func (b *Backoff) Reset() { b.cur = b.min }

// Sleep waits for Next or until ctx ends; it reports whether the full delay
// elapsed (false: ctx ended first).
func (b *Backoff) Sleep(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// RetryableStatus reports whether an HTTP status may succeed if the same
// request is sent again later: 408 Request Timeout, 429 Too Many Requests and
// every 5xx.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// PermanentStatus reports whether an HTTP status is a client error that no
// retry can cure: every 4xx except those RetryableStatus accepts.
func PermanentStatus(code int) bool {
	return code >= 400 && code < 500 && !RetryableStatus(code)
}
