package cache

import (
	"context"
	"sync"
	"time"
)

// Synced tells when a commit survives a power cut. Outbox.Commit returns one:
// the rows are written to the WAL and handed to their feeds at once, and the
// fdatasync that makes them durable is shared with the commits of the next
// few tens of milliseconds (syncGroups).
type Synced struct{ g *syncGroup }

// Done is closed once the commit is durable or its sync failed (Err says
// which).
func (s Synced) Done() <-chan struct{} {
	if s.g == nil {
		return closedChan
	}
	return s.g.done
}

// Err is nil when the commit is durable; valid once Done is closed. A
// failed sync leaves it unknown whether the rows reached the flash: whoever
// holds them unacknowledged commits them again (a duplicate, never a loss).
func (s Synced) Err() error {
	if s.g == nil {
		return nil
	}
	return s.g.err
}

// Wait returns once the commit is durable (nil), its sync failed, or ctx
// ended.
func (s Synced) Wait(ctx context.Context) error {
	select {
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SyncResult is a Synced already done, with err: what a fake of the outbox
// returns.
func SyncResult(err error) Synced {
	s, end := NewSynced()
	end(err)
	return s
}

// NewSynced is a Synced that is done when end is called (once), with err:
// what a fake of the outbox whose syncs take their time returns.
func NewSynced() (s Synced, end func(err error)) {
	g := &syncGroup{done: make(chan struct{})}
	var once sync.Once
	return Synced{g}, func(err error) {
		once.Do(func() {
			g.err = err
			close(g.done)
		})
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// syncGroup is the commits one fdatasync covers.
type syncGroup struct {
	done chan struct{}
	err  error
}

// Tuning of the shared sync. LoRaWAN airtime is 50 ms–1.5 s per uplink and
// the rows reach their application before the sync, so waiting here delays
// only the local broker's acknowledgement; the flash's write cycles, the
// syncs and the wake-ups it saves are CPU on a single-core gateway.
const (
	// syncDelay is the longest a commit waits for company before its sync.
	syncDelay = 100 * time.Millisecond
	// syncUrgent: this many acknowledgements waiting sync at once; they hold
	// half the local broker's in-flight window (Mosquitto's
	// max_inflight_messages, 20 by default), and a full window stops the
	// broker sending.
	syncUrgent = 10
)

// syncGroups shares one fdatasync of the WAL between the commits that
// arrive within syncDelay of each other. A commit joins the open group; a
// goroutine syncs it (on the syncer's thread) when
//   - the commits are sparse (the last one came more than syncDelay earlier:
//     nobody is likely to share the sync, so it starts at once),
//   - the group is half syncDelay old when a commit joins it (the sync starts
//     in a moment the program is awake anyway, no timer wakes it),
//   - syncUrgent acknowledgements wait, or someone waits in durable,
//   - or syncDelay passed since the group opened (the timer).
//
// A commit is covered by any sync that starts after it, so the group is
// closed when its sync starts and later commits open the next one.
type syncGroups struct {
	sync  func() error
	now   func() time.Time
	delay time.Duration // syncDelay; tests shorten it

	mu     sync.Mutex
	open   *syncGroup // nil: no commit waits
	opened time.Time  // when open got its first commit
	weight int        // acknowledgements waiting on open
	urgent bool
	last   time.Time // the last commit that joined
	closed bool
	kick   chan struct{} // wakes the loop (capacity 1)
	stop   chan struct{}
	done   chan struct{} // closed when the loop ended
}

func newSyncGroups(sync func() error, now func() time.Time, delay time.Duration) *syncGroups {
	g := &syncGroups{sync: sync, now: now, delay: delay, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go g.loop()
	return g
}

// join adds a commit carrying weight acknowledgements to the open group and
// returns it; urgent starts the sync at once.
func (g *syncGroups) join(weight int, urgent bool) Synced {
	now := g.now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return Synced{&syncGroup{done: closedChan, err: ErrClosed}}
	}
	sparse := g.last.IsZero() || now.Sub(g.last) > g.delay
	g.last = now
	if g.open == nil {
		g.open, g.opened, g.weight, g.urgent = &syncGroup{done: make(chan struct{})}, now, 0, false
	}
	g.weight += weight
	g.urgent = g.urgent || urgent || sparse || g.weight >= syncUrgent || now.Sub(g.opened) >= g.delay/2
	s := Synced{g.open}
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
	return s
}

// wait is join for a caller that blocks until its commit is durable.
func (g *syncGroups) wait() error {
	s := g.join(0, true)
	<-s.Done()
	return s.Err()
}

func (g *syncGroups) loop() {
	defer close(g.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		g.mu.Lock()
		open, due := g.open, g.opened.Add(g.delay)
		urgent := open != nil && g.urgent
		g.mu.Unlock()
		if open != nil && !urgent {
			if d := due.Sub(g.now()); d > 0 {
				t.Reset(d)
			} else {
				urgent = true
			}
		}
		if !urgent {
			select {
			case <-g.kick:
				t.Stop()
				continue
			case <-t.C:
			case <-g.stop:
				t.Stop()
				g.flush()
				return
			}
		}
		g.flush()
	}
}

// flush closes the open group and syncs it.
func (g *syncGroups) flush() {
	g.mu.Lock()
	open := g.open
	g.open, g.urgent = nil, false
	g.mu.Unlock()
	if open == nil {
		return
	}
	open.err = g.sync()
	close(open.done)
}

// close syncs what waits and stops the loop; later commits get ErrClosed.
func (g *syncGroups) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	<-g.done
}
