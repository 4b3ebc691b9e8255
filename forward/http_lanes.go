package forward

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// DefaultHTTPLanes is how many HTTP requests an application may have in
// flight: a cellular backhaul's 100–600 ms round trip would otherwise cap the
// drain at one batch per round trip.
const DefaultHTTPLanes = 16

// laneQueue bounds the rows waiting on one lane; when a lane whose head
// keeps failing has this many, the application takes no more rows from its
// feed until the lane moves (memory stays bounded; the database keeps them).
const laneQueue = 64

// lane delivers the rows of the devices hashed to it, in order: a failed
// head blocks only the rows behind it on this lane.
type lane struct {
	a      *Application
	router *laneRouter
	mu     sync.Mutex
	rows   []cache.Row
	wake   chan struct{}
}

func (l *lane) push(r cache.Row) bool {
	l.mu.Lock()
	full := len(l.rows) >= laneQueue
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

// head returns up to n rows at the front of the lane.
func (l *lane) head(n int) []cache.Row {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, len(l.rows))
	out := make([]cache.Row, n)
	copy(out, l.rows[:n])
	return out
}

// pop removes n rows from the front; it reports whether the lane had been full.
func (l *lane) pop(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	wasFull := len(l.rows) >= laneQueue
	rest := copy(l.rows, l.rows[n:])
	clear(l.rows[rest:])
	l.rows = l.rows[:rest]
	return wasFull
}

// deliverHTTP takes rows from the feed and spreads them over the lanes by
// DevEUI (laneRouter), so each device's rows keep their order while several
// requests are in flight; it returns when ctx ends (rows not yet acknowledged stay queued).
func (a *Application) deliverHTTP(ctx context.Context) {
	n := a.Settings.Delivery.HTTPLanes
	if n <= 0 {
		n = DefaultHTTPLanes
	}
	a.feed.Rewind(0) // this instance starts from the oldest queued row
	lr := &laneRouter{bound: map[cache.EUI64]*binding{}}
	room := make(chan struct{}, 1) // a full lane moved
	var wg sync.WaitGroup
	for range n {
		l := &lane{a: a, router: lr, wake: make(chan struct{}, 1)}
		lr.lanes = append(lr.lanes, l)
		wg.Add(1)
		go func() { defer wg.Done(); l.run(ctx, room) }()
	}
	defer wg.Wait()
	var held *cache.Row // a row whose lane was full
	b := a.retryBackoff()
	for {
		if held != nil {
			if !lr.push(*held) {
				select {
				case <-room:
					continue
				case <-ctx.Done():
					return
				}
			}
			held = nil
		}
		rows, err := a.feed.Take(ctx, 64)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("reading the outbox failed", "err", err)
			if !b.Sleep(ctx) {
				return
			}
			continue
		}
		b.Reset()
		if len(rows) == 0 {
			select {
			case <-a.feed.Wake():
				continue
			case <-ctx.Done():
				return
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

// run delivers the lane's rows: batches of uplinks where the remote API takes
// them, single messages otherwise; retryable failures back off on this lane
// only; permanent refusals dead-letter the row.
func (l *lane) run(ctx context.Context, room chan<- struct{}) {
	a := l.a
	b := a.retryBackoff()
	failing := false
	singles := 0 // rows to send one by one after a refused batch
	settle := func(rows []cache.Row) {
		l.router.release(rows)
		if l.pop(len(rows)) {
			select {
			case room <- struct{}{}:
			default:
			}
		}
	}
	// A stop (rebuild, removal) ends the loop at once, but the request in
	// flight finishes under a.flight (Manager.stopLocked's grace): an
	// answered row is settled, not resent by the next instance.
	post := ctx
	if a.flight != nil {
		post = a.flight
	}
	for {
		if ctx.Err() != nil {
			return
		}
		rows := l.head(a.batchMax)
		if len(rows) == 0 {
			select {
			case <-l.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		n := 1
		if singles == 0 && a.batching.Load() {
			n = batchable(rows)
		}
		var reply []byte
		var err error
		if n >= 2 {
			reply, err = a.http.Post(post, batchPath(a.Settings.EUI), a.batchBody(rows[:n]), 0)
			var se *StatusError
			if errors.As(err, &se) && se.Status == 404 {
				if a.batching.Swap(false) {
					a.log.Warn("the remote API has no batch route (404): sending uplinks one by one", "path", batchPath(a.Settings.EUI))
				}
				continue
			}
			if IsPermanent(err) {
				singles = n // find the refused row by sending the batch's rows singly
				continue
			}
		} else {
			n = 1
			reply, err = a.http.Post(post, rowPath(rows[0]), a.body(rows[0]), 0)
		}
		if err == nil {
			a.queue.Delete(rows[:n])
			settle(rows[:n])
			a.delivered(rows[:n])
			singles = max(singles-n, 0)
			if failing {
				a.log.Info("delivery resumed", "path", rowPath(rows[0]))
				failing = false
				a.setState(StateUp, nil)
			}
			b.Reset()
			if rowKind(rows[0]) == lnsbridge.KindUp {
				a.handleDownlinks(post, reply, "up answer") // the answer of a request that finished while stopping too
			}
			continue
		}
		if ctx.Err() != nil {
			return // stopping: the row stays queued for the next start
		}
		head := rows[0]
		if IsPermanent(err) {
			a.queue.DeadLetter(rows[:1])
			settle(rows[:1])
			singles = max(singles-1, 0)
			a.log.Error("remote refused a message for good; dead-lettered", "kind", head.Kind, "path", rowPath(head), "err", err)
			continue
		}
		a.Counters.Failures.Add(1)
		d := b.Next()
		a.queue.RecordFailure(head.ID, time.Now().Add(d))
		if !failing {
			a.log.Warn("delivery failed, retrying with backoff", "path", rowPath(head), "err", err, "retry_in", d.Round(time.Millisecond))
			failing = true
		} else {
			a.log.Debug("delivery failed again", "path", rowPath(head), "err", err, "retry_in", d.Round(time.Millisecond))
		}
		a.setState(StateRetrying, err)
		if !sleep(ctx, d) {
			return
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
