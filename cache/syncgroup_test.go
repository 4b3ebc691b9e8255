package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for the sync groups' rules.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).Add(d)
}

// countingSync counts syncs and fails while err is set.
type countingSync struct {
	n   atomic.Int64
	mu  sync.Mutex
	err error
}

func (s *countingSync) sync() error {
	s.n.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func waitSynced(t *testing.T, what string, s Synced) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not synced after 10 s", what)
		return nil
	}
}

// notSynced checks that s is still waiting a moment later.
func notSynced(t *testing.T, what string, s Synced) {
	t.Helper()
	select {
	case <-s.Done():
		t.Fatalf("%s: synced at once, want it to wait for company", what)
	case <-time.After(30 * time.Millisecond):
	}
}

// The rules that decide when a shared sync starts, on a clock the test
// sets: the timer (an hour here) never fires, so every sync below was
// started by a rule.
func TestSyncGroupRules(t *testing.T) {
	const hour = time.Hour
	type join struct {
		at     time.Duration // clock reading when the commit joins
		weight int
		waits  bool // the sync must not have started after this join
	}
	for _, tc := range []struct {
		name  string
		joins []join
		syncs int64 // syncs once every commit is durable
		same  [][2]int
	}{
		{name: "a commit after a quiet spell syncs at once",
			joins: []join{{at: 0, weight: 1}}, syncs: 1},
		{name: "commits close together share a sync started by the one that finds the group half a delay old",
			joins: []join{{at: 0, weight: 1}, {at: 10 * time.Minute, weight: 1, waits: true}, {at: 20 * time.Minute, weight: 1, waits: true}, {at: 40 * time.Minute, weight: 1}},
			syncs: 2, same: [][2]int{{1, 2}, {2, 3}}},
		{name: "half the broker's window waiting starts the sync",
			joins: []join{{at: 0, weight: 1}, {at: time.Minute, weight: 4, waits: true}, {at: 2 * time.Minute, weight: 5, waits: true}, {at: 3 * time.Minute, weight: 1}},
			syncs: 2, same: [][2]int{{1, 2}, {2, 3}}},
		{name: "a commit long after the last one does not wait",
			joins: []join{{at: 0, weight: 1}, {at: 2 * hour, weight: 1}}, syncs: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{}
			s := &countingSync{}
			g := newSyncGroups(s.sync, clock.now, hour)
			defer g.close()
			var got []Synced
			for i, j := range tc.joins {
				clock.set(j.at)
				sy := g.join(j.weight, false)
				got = append(got, sy)
				if j.waits {
					notSynced(t, "commit "+string(rune('0'+i)), sy)
				} else if err := waitSynced(t, "commit "+string(rune('0'+i)), sy); err != nil {
					t.Fatal(err)
				}
			}
			for i, sy := range got {
				if err := waitSynced(t, "commit "+string(rune('0'+i)), sy); err != nil {
					t.Fatal(err)
				}
			}
			if n := s.n.Load(); n != tc.syncs {
				t.Errorf("%d syncs for %d commits, want %d", n, len(tc.joins), tc.syncs)
			}
			for _, p := range tc.same {
				if got[p[0]].g != got[p[1]].g {
					t.Errorf("commits %d and %d were synced apart, want one shared sync", p[0], p[1])
				}
			}
		})
	}
}

// A lone commit that waits for company is synced by the timer.
func TestSyncGroupTimer(t *testing.T) {
	clock := &fakeClock{}
	clock.set(0)
	s := &countingSync{}
	g := newSyncGroups(s.sync, clock.now, 50*time.Millisecond)
	defer g.close()
	if err := waitSynced(t, "first", g.join(1, false)); err != nil {
		t.Fatal(err)
	}
	// The clock stands still: the second commit is not sparse and its group
	// never ages, so only the timer can sync it.
	if err := waitSynced(t, "second", g.join(1, false)); err != nil {
		t.Fatal(err)
	}
	if n := s.n.Load(); n != 2 {
		t.Errorf("%d syncs, want 2", n)
	}
}

// durable waits for a sync of its own at once and takes the waiting commits
// along; a failed sync is reported to every commit it covered; closing syncs
// what waits, and later commits are refused.
func TestSyncGroupWaitFailureClose(t *testing.T) {
	clock := &fakeClock{}
	clock.set(0)
	s := &countingSync{}
	g := newSyncGroups(s.sync, clock.now, time.Hour)
	waitSynced(t, "first", g.join(1, false))
	clock.set(time.Minute)
	waiting := g.join(1, false)
	notSynced(t, "waiting", waiting)
	if err := g.wait(); err != nil {
		t.Fatal(err)
	}
	if err := waitSynced(t, "waiting", waiting); err != nil {
		t.Fatal(err)
	}

	injected := errors.New("fdatasync: input/output error (injected)")
	s.mu.Lock()
	s.err = injected
	s.mu.Unlock()
	clock.set(2 * time.Minute)
	a := g.join(1, false)
	if err := g.wait(); !errors.Is(err, injected) {
		t.Fatalf("wait: %v, want the sync's error", err)
	}
	if err := waitSynced(t, "a", a); !errors.Is(err, injected) {
		t.Fatalf("commit covered by the failed sync: %v, want the sync's error", err)
	}
	s.mu.Lock()
	s.err = nil
	s.mu.Unlock()

	clock.set(3 * time.Minute)
	b := g.join(1, false)
	notSynced(t, "b", b)
	before := s.n.Load()
	g.close()
	if err := waitSynced(t, "b at close", b); err != nil {
		t.Fatal(err)
	}
	if s.n.Load() != before+1 {
		t.Errorf("close did not sync the waiting commit")
	}
	if err := waitSynced(t, "after close", g.join(1, false)); !errors.Is(err, ErrClosed) {
		t.Errorf("commit after close: %v, want ErrClosed", err)
	}
}

// Commits of an outbox that follow each other closely share the WAL's
// fdatasync, and each is durable once its Synced is done.
func TestCommitSharesTheSync(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir()+"/x.db")
	if db.wal == nil {
		t.Fatal("no WAL syncer on Linux: commits would be synced inside SQLite, one fsync each")
	}
	o := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	const commits = 20
	before := db.wal.syncs()
	var synced []Synced
	for i := range commits {
		_, s, err := o.Commit(ctx, rowsFor("app", i, 1), 1)
		if err != nil {
			t.Fatal(err)
		}
		synced = append(synced, s)
	}
	for i, s := range synced {
		if err := waitSynced(t, "commit", s); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	n := db.wal.syncs() - before
	if n == 0 || n >= commits {
		t.Fatalf("%d commits made %d syncs, want at least one and fewer than one each", commits, n)
	}
	t.Logf("%d commits, %d syncs", commits, n)
}
