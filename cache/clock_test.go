package cache

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// monotonic reports whether t carries a monotonic clock reading (time.Time's
// String prints it as a final "m=±<value>" field): only then do Sub and Since
// ignore jumps of the wall clock.
func monotonic(t time.Time) bool { return strings.Contains(t.String(), " m=") }

// A row read back from the database is aged on the monotonic clock, as one
// handed over in memory: after the wall clock jumps by hours (NTP), its
// delivery latency and its queue's age stay what they are, never hours or
// negative. Before, Peek and OldestQueued returned the stored wall-clock
// time, and time.Since of it moved with every jump.
func TestStoredTimesReadBackOnMonotonicClock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clock.db")
	db := openTest(t, path)
	ob := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 20})
	enq := time.Now()
	rows := rowsFor("a", 0, 2)
	rows[0].EnqueuedAt = enq
	if _, err := ob.Append(ctx, rows); err != nil { // rows[1]: the outbox's own clock
		t.Fatal(err)
	}
	next := time.Now().Add(30 * time.Second)
	ob.RecordFailure(rows[0].ID, next)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := ob.Peek(ctx, "a", 0, 10)
	if err != nil || len(got) != 2 {
		t.Fatal(got, err)
	}
	for i, r := range got {
		if !monotonic(r.EnqueuedAt) {
			t.Errorf("row %d read back: enqueued at %v, without a monotonic reading (aged by the wall clock)", i, r.EnqueuedAt)
		}
	}
	if d := got[0].EnqueuedAt.Sub(enq); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("enqueued at read back %v from %v", d, enq)
	}
	if !monotonic(got[0].NextAttemptAt) || got[0].NextAttemptAt.Sub(next).Abs() > time.Millisecond {
		t.Errorf("next attempt at %v, stored %v", got[0].NextAttemptAt, next)
	}
	oldest, ok, err := ob.OldestQueued(ctx, "a")
	if err != nil || !ok || !monotonic(oldest) || oldest.Sub(enq).Abs() > time.Millisecond {
		t.Errorf("oldest queued %v %v %v, want %v with a monotonic reading", oldest, ok, err, enq)
	}

	// A later process (the monotonic clock starts again) ages the earlier
	// process's rows by the wall clock across the restart.
	ob.Close()
	ob2 := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 20})
	got, err = ob2.Peek(ctx, "a", 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if age := time.Since(got[0].EnqueuedAt); age < 0 || age > time.Since(enq)+2*time.Millisecond {
		t.Errorf("after a restart: age %v, want [0, %v]", age, time.Since(enq))
	}
}

func TestStampsRoundTrip(t *testing.T) {
	s := newStamps(time.Now())
	if s.base.Nanosecond()%int(time.Millisecond) != 0 || !monotonic(s.base) {
		t.Fatalf("base %v: not on a whole millisecond with a monotonic reading", s.base)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"wall time, earlier", time.UnixMilli(s.baseMs - 3_600_000_123)},
		{"wall time, later", time.UnixMilli(s.baseMs + 7_200_000_456)},
		{"1970", time.UnixMilli(0)},
		{"monotonic, earlier", s.base.Add(-1500 * time.Microsecond)},
		{"monotonic, later", s.base.Add(2500 * time.Microsecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := s.store(tc.at)
			back := s.load(ms)
			if d := back.Sub(tc.at); d > 0 || d <= -time.Millisecond {
				t.Errorf("load(store(%v)) = %v (%v off)", tc.at, back, d)
			}
			if s.store(back) != ms {
				t.Errorf("store(load(%d)) = %d", ms, s.store(back))
			}
		})
	}
	// A damaged value is read as stored, without overflowing.
	if got := s.load(1 << 62); !got.Equal(time.UnixMilli(1 << 62)) {
		t.Errorf("load(1<<62) = %v", got)
	}
}
