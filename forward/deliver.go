package forward

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/backoff"
)

// transport is what an application's delivery loop drives (ARCHITECTURE §4):
// HTTP(S) (http_transport.go), MQTT(S)/WSS with its inbound side, and Azure
// IoT Hub over MQTT (mqtt*.go). Each implementation owns its connection
// state; the loop (Application.Run) owns the feed, the lanes by DevEUI, the
// backoff, dead-lettering and deletes.
type transport interface {
	// open connects (HTTP: init; MQTT: connect, subscribe, init). The loop
	// retries a failed open with backoff. lost is closed when the connection
	// is gone (nil for a transport whose requests stand alone, HTTP): the
	// loop then ends its lanes and opens again, and the rows not acknowledged
	// are offered again. ctx lasts as long as the application runs: what open
	// starts (downlink polling, the inbound side) may keep it.
	open(ctx context.Context) (lost <-chan struct{}, err error)
	// deliver sends rows, the head of one lane, oldest first, and says what
	// became of them (result). The calls of one lane are sequential; lanes
	// call concurrently. rows is reused after the call: keep copies, not it.
	deliver(ctx context.Context, rows []cache.Row) result
	// close sends the close notice on the transport's own connection.
	close(ctx context.Context)
	// shape is how many lanes the loop runs and how many rows it offers to
	// one deliver call.
	shape() (lanes, rows int)
}

// result is what became of the rows of one deliver call. The first acked
// were acknowledged by the remote side: the loop deletes them. When err is
// set, rows[acked] was not: refused for good (refused: the loop dead-letters
// it and goes on with the next) or retryable (the lane backs off, at least
// retryAfter, and offers it again). With err nil and acked < len(rows) the
// transport took fewer rows this time; the next call offers the rest.
type result struct {
	acked      int
	err        error
	refused    bool
	retryAfter time.Duration
}

// outageWaiter is a transport with something to do while it cannot connect
// (MQTT's backhaul detection); it waits d like sleep.
type outageWaiter interface {
	outageWait(ctx context.Context, d time.Duration) bool
}

// errConnectionLost ends a session whose transport reported no cause.
var errConnectionLost = errors.New("connection lost")

// Run opens the transport (retrying with backoff), then delivers the
// application's rows on its lanes until ctx ends; after a lost connection it
// opens again. Rows stay in the outbox until the remote side acknowledged
// them (or refused them for good).
func (a *Application) Run(ctx context.Context) {
	if a.tr == nil {
		<-ctx.Done() // misconfigured: rows stay queued
		return
	}
	defer a.setState(StateStopped, nil)
	b := a.retryBackoff()
	failing := false
	for first := true; ctx.Err() == nil; first = false {
		lost, err := a.tr.open(ctx)
		if err == nil {
			b.Reset()
			failing = false
			a.setState(StateUp, nil)
			err = a.session(ctx, lost, first)
			if ctx.Err() != nil {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		a.Counters.Failures.Add(1)
		a.setState(StateRetrying, err)
		d := b.Next()
		if !failing {
			a.log.Warn("remote application unreachable, retrying with backoff; rows stay queued", "err", err, "retry_in", d.Round(time.Millisecond))
			failing = true
		} else {
			a.log.Debug("remote application still unreachable", "err", err, "retry_in", d.Round(time.Millisecond))
		}
		wait := sleep
		if w, ok := a.tr.(outageWaiter); ok {
			wait = w.outageWait
		}
		if !wait(ctx, d) {
			return
		}
	}
}

// Close sends the close notice (5 s timeout); errors are logged only.
func (a *Application) Close(ctx context.Context) {
	if a.tr != nil {
		a.tr.close(ctx)
		a.setState(StateStopped, nil)
	}
}

// laneQueue bounds the rows waiting on one lane (or the rows a deliver call
// is offered, when more); when a lane whose head keeps failing has this many,
// the application takes no more rows from its feed until the lane moves
// (memory stays bounded; the database keeps them).
const laneQueue = 64

// session takes rows from the feed and spreads them over the lanes by DevEUI
// (laneRouter), so each device's rows keep their order while several
// deliveries are in flight. It returns when ctx ends (nil) or lost is closed
// (why), once every lane stopped; rows not yet acknowledged stay queued and
// are read again by the next session.
func (a *Application) session(ctx context.Context, lost <-chan struct{}, first bool) error {
	if !first {
		// The deletions of what the last connection delivered are committed
		// before the queue is read again, or they would be resent.
		if err := a.queue.Sync(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("outbox sync failed", "err", err)
		}
	}
	a.feed.Rewind(0) // from the oldest queued row
	nLanes, take := a.tr.shape()
	sess, end := context.WithCancel(ctx)
	take = max(take, 1)
	s := &laneSession{a: a, lost: lost, take: take, limit: max(laneQueue, take), room: make(chan struct{}, 1)}
	lr := &laneRouter{bound: map[cache.EUI64]*binding{}}
	if nLanes <= 1 {
		// One lane: this goroutine takes the rows and delivers them itself,
		// no hand-off to another goroutine per row.
		defer end()
		return s.single(sess, &lane{s: s, router: lr, wake: make(chan struct{}, 1)})
	}
	var wg sync.WaitGroup
	for range nLanes {
		l := &lane{s: s, router: lr, wake: make(chan struct{}, 1)}
		lr.lanes = append(lr.lanes, l)
		wg.Add(1)
		go func() { defer wg.Done(); l.run(sess) }()
	}
	defer func() { end(); wg.Wait() }()
	var held *cache.Row // a row whose lane was full
	b := a.retryBackoff()
	for {
		if held != nil {
			if !lr.push(*held) {
				select {
				case <-s.room:
					continue
				case <-lost:
					return s.why()
				case <-ctx.Done():
					return nil
				}
			}
			held = nil
		}
		rows, err := a.feed.Take(ctx, 64)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Error("reading the outbox failed", "err", err)
			if !b.Sleep(ctx) {
				return nil
			}
			continue
		}
		b.Reset()
		if len(rows) == 0 {
			select {
			case <-a.feed.Wake():
				continue
			case <-lost:
				return s.why()
			case <-ctx.Done():
				return nil
			}
		}
		for i, r := range rows {
			if !lr.push(r) {
				// The lane is full: keep this row and the ones after it in the
				// feed's order; they are taken again after a rewind.
				held = &rows[i]
				if i+1 < len(rows) {
					a.feed.Rewind(rows[i].ID)
				}
				break
			}
		}
	}
}

// single is the session of a transport with one lane, delivered from the
// goroutine that takes the rows from the feed.
func (s *laneSession) single(ctx context.Context, l *lane) error {
	a := s.a
	l.router.lanes = []*lane{l}
	b := a.retryBackoff()
	for {
		if room := s.limit - l.len(); room > 0 {
			rows, err := a.feed.Take(ctx, room)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.Error("reading the outbox failed", "err", err)
				if !b.Sleep(ctx) {
					return nil
				}
				continue
			}
			b.Reset()
			for _, r := range rows {
				l.router.push(r) // room was checked: never full
			}
		}
		if l.len() == 0 {
			select {
			case <-a.feed.Wake():
				continue
			case <-s.lost:
				return s.why()
			case <-ctx.Done():
				return nil
			}
		}
		if !l.step(ctx) {
			if s.isLost() {
				return s.why()
			}
			return nil
		}
	}
}

// laneSession is what the lanes of one session share.
type laneSession struct {
	a     *Application
	lost  <-chan struct{}
	take  int           // rows offered to one deliver call
	limit int           // rows one lane holds
	room  chan struct{} // a full lane moved

	mu      sync.Mutex
	lostErr error // the error a lane saw when the connection was lost
}

func (s *laneSession) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

func (s *laneSession) sawLost(err error) {
	s.mu.Lock()
	if s.lostErr == nil {
		s.lostErr = err
	}
	s.mu.Unlock()
}

func (s *laneSession) why() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lostErr == nil {
		return errConnectionLost
	}
	return s.lostErr
}

// lane delivers the rows of the devices bound to it, in order, calling the
// transport directly from its goroutine: a failed head blocks only the rows
// behind it on this lane.
type lane struct {
	s      *laneSession
	router *laneRouter
	st     laneState   // owned by the goroutine delivering the lane
	buf    []cache.Row // head's, owned by the goroutine delivering the lane
	mu     sync.Mutex
	rows   []cache.Row
	wake   chan struct{}
}

func (l *lane) push(r cache.Row) bool {
	l.mu.Lock()
	full := len(l.rows) >= l.s.limit
	if !full {
		l.rows = append(l.rows, r)
	}
	l.mu.Unlock()
	if !full {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return !full
}

func (l *lane) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rows)
}

// head returns up to n rows at the front of the lane, in a buffer the next
// call reuses (a deliver call and the settling after it do not keep it).
func (l *lane) head(n int) []cache.Row {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, len(l.rows))
	l.buf = append(l.buf[:0], l.rows[:n]...)
	return l.buf
}

// pop removes n rows from the front; it reports whether the lane had been full.
func (l *lane) pop(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	wasFull := len(l.rows) >= l.s.limit
	rest := copy(l.rows, l.rows[n:])
	clear(l.rows[rest:])
	l.rows = l.rows[:rest]
	return wasFull
}

// settle takes rows the lane finished with off it.
func (l *lane) settle(rows []cache.Row) {
	l.router.release(rows)
	if l.pop(len(rows)) {
		select {
		case l.s.room <- struct{}{}:
		default:
		}
	}
}

// run delivers the lane's rows through the transport from the lane's own
// goroutine until ctx ends or the connection is lost.
func (l *lane) run(ctx context.Context) {
	for ctx.Err() == nil {
		if l.len() == 0 {
			select {
			case <-l.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if !l.step(ctx) {
			return
		}
	}
}

// laneState is what a lane keeps between its deliver calls.
type laneState struct {
	b       *backoff.Backoff
	failing bool
}

// step makes one deliver call with the rows at the lane's head:
// acknowledged rows are deleted, a row refused for good is dead-lettered, a
// retryable failure backs off on this lane only. It returns false when the
// lane must stop: ctx ended or the connection was lost.
func (l *lane) step(ctx context.Context) bool {
	a := l.s.a
	if l.st.b == nil {
		l.st.b = a.retryBackoff()
	}
	// A stop (rebuild, removal) ends the loop at once, but the delivery in
	// flight finishes under a.flight (Manager.stopLocked's grace): an
	// answered row is settled, not resent by the next instance.
	post := ctx
	if a.flight != nil {
		post = a.flight
	}
	rows := l.head(l.s.take)
	if len(rows) == 0 {
		return true
	}
	res := a.tr.deliver(post, rows)
	if res.err == nil && res.acked <= 0 {
		res.err = errors.New("forward: the transport took no row") // never stall in a busy loop
	}
	if n := min(res.acked, len(rows)); n > 0 {
		a.queue.Delete(rows[:n])
		l.settle(rows[:n])
		a.delivered(rows[:n])
		if l.st.failing {
			a.log.Info("delivery resumed", "deveui", rows[0].DevEUI)
			l.st.failing = false
			a.setState(StateUp, nil)
		}
		l.st.b.Reset()
	}
	if res.err == nil || res.acked >= len(rows) {
		return true
	}
	if ctx.Err() != nil {
		return false // stopping: the row stays queued for the next start
	}
	if l.s.isLost() {
		l.s.sawLost(res.err)
		return false // the session ends; the next one offers the row again
	}
	head := rows[res.acked : res.acked+1]
	if res.refused {
		a.queue.DeadLetter(head)
		l.settle(head)
		a.log.Error("remote refused a message for good; dead-lettered", "kind", head[0].Kind, "deveui", head[0].DevEUI, "err", res.err)
		return true
	}
	a.Counters.Failures.Add(1)
	d := max(l.st.b.Next(), res.retryAfter)
	a.queue.RecordFailure(head[0].ID, time.Now().Add(d))
	if !l.st.failing {
		a.log.Warn("delivery failed, retrying with backoff", "deveui", head[0].DevEUI, "err", res.err, "retry_in", d.Round(time.Millisecond))
		l.st.failing = true
	} else {
		a.log.Debug("delivery failed again", "deveui", head[0].DevEUI, "err", res.err, "retry_in", d.Round(time.Millisecond))
	}
	a.setState(StateRetrying, res.err)
	return sleep(ctx, d)
}

// laneRouter binds each device to one lane while the device has rows on it
// (so its rows keep their order), and a device with none to the least loaded
// lane (so an uneven spread of devices does not leave lanes idle).
type laneRouter struct {
	lanes []*lane
	mu    sync.Mutex
	bound map[cache.EUI64]*binding // DevEUI → its lane while it has rows there
}

type binding struct {
	l    *lane
	rows int
}

// push queues a row on its device's lane; false when that lane is full.
func (lr *laneRouter) push(r cache.Row) bool {
	if len(lr.lanes) == 1 {
		return lr.lanes[0].push(r) // nothing to choose: no binding to keep
	}
	dev := r.DevEUI
	lr.mu.Lock()
	defer lr.mu.Unlock()
	b := lr.bound[dev]
	if b == nil {
		best := lr.lanes[0]
		for _, l := range lr.lanes[1:] {
			if l.len() < best.len() {
				best = l
			}
		}
		b = &binding{l: best}
	}
	if !b.l.push(r) {
		return false
	}
	b.rows++
	lr.bound[dev] = b
	return true
}

// release unbinds the devices of rows a lane finished with.
func (lr *laneRouter) release(rows []cache.Row) {
	if len(lr.lanes) == 1 {
		return
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	for _, r := range rows {
		dev := r.DevEUI
		if b := lr.bound[dev]; b != nil {
			if b.rows--; b.rows <= 0 {
				delete(lr.bound, dev)
			}
		}
	}
}

// delivered counts rows the remote side acknowledged.
func (a *Application) delivered(rows []cache.Row) {
	a.Counters.Forwarded.Add(uint64(len(rows)))
	if a.latency == nil {
		return
	}
	now := time.Now()
	for _, r := range rows {
		a.latency.Observe(max(now.Sub(r.EnqueuedAt), 0))
	}
}
