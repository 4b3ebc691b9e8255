package forward

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/backoff"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Appender is the outbox's write side as a re-routing uses it: it returns
// once the rows are durable.
type Appender interface {
	Append(ctx context.Context, rows []cache.Row) (dropped map[string]int, err error)
}

// Committer is the outbox's write side as the intake uses it: Commit hands
// the rows to their applications at once and tells through synced when they
// are durable (acks acknowledgements wait on it).
type Committer interface {
	Commit(ctx context.Context, rows []cache.Row, acks int) (dropped map[string]int, synced cache.Synced, err error)
}

// DeviceStore remembers devices (DevEUI → AppEUI, JoinEUI, last seen).
type DeviceStore interface {
	PutDevices(ctx context.Context, devs []cache.Device) error
}

// IntakeStats counts what the intake did.
type IntakeStats struct {
	Received uint64 // messages taken from the local broker
	Stored   uint64 // rows committed to the outbox
	Acked    uint64 // messages acknowledged to the local broker, their rows durable
	Unrouted uint64 // messages no application takes
	Ignored  uint64 // messages the application's protocol does not forward (moved over HTTP)
	Commits  uint64 // outbox transactions
}

// Resolver finds the application of an AppEUI no application takes yet (Lens
// `appnet get`); nil when there is none. It is rate-limited by its owner.
type Resolver interface {
	Resolve(ctx context.Context, appEUI string) *Application
}

// Intake turns local messages into outbox rows with group commit. Handle
// takes each message straight from the local broker's callback; Run is the
// single committer: every message that arrived while the previous commit ran
// goes into the next one, and a commit starts at once, or after at most
// lingerMax while more messages are likely to share it (see fill). A message
// is acknowledged only once its commit is durable: the committer goes on with
// the next batch while the outbox syncs (the sync is shared between commits,
// cache.Synced), and a goroutine of its own acknowledges each batch when its
// sync ends. Routing happens in the committer, so the broker's callback
// never waits on lora-query.
type Intake struct {
	out      Committer
	devices  DeviceStore
	router   *Router
	resolver Resolver // may be nil
	log      *slog.Logger
	now      func() time.Time
	// MaxBatch bounds one commit.
	MaxBatch int

	received, stored, acked, unrouted, ignored, commits atomic.Uint64

	mu       sync.Mutex
	cond     sync.Cond // signalled when pending shrinks or the committer stops
	pending  []Message // handed over by Handle, not yet taken by the committer
	spare    []Message // the committer's previous batch, reused
	wake     chan struct{}
	stopped  bool
	maxQueue int // Handle blocks beyond this (back-pressure into the broker's window)
	// lastArrival and gap (between the last two messages) tell the committer
	// whether more messages are likely to arrive within lingerMax.
	lastArrival time.Time
	gap         time.Duration

	synced   chan syncedBatch // commits waiting for their sync, to the acknowledger
	unsynced atomic.Int64     // batches sent on synced and not yet acknowledged or queued again

	seen         map[string]deviceSeen // owned by Run's goroutine
	failing      int                   // failed commit attempts in a row; owned by Run's goroutine
	failLogged   time.Time             // when a failure streak was last logged; owned by Run's goroutine
	streakLogged bool                  // the current streak was logged
	dropped      map[string]int        // rows dropped by the caps since dropLogged; owned by Run's goroutine
	dropLogged   time.Time
	unrouteLo    map[string]bool // devices already logged as unrouted
}

// syncedBatch is a committed batch whose messages are acknowledged once
// synced is done.
type syncedBatch struct {
	synced cache.Synced
	msgs   []Message
}

type deviceSeen struct {
	app      string
	lastSave time.Time
}

// NewIntake builds the intake.
func NewIntake(out Committer, devices DeviceStore, router *Router, resolver Resolver, log *slog.Logger) *Intake {
	if log == nil {
		log = slog.Default()
	}
	in := &Intake{
		out: out, devices: devices, router: router, resolver: resolver, log: log, now: time.Now,
		MaxBatch: 1000, seen: map[string]deviceSeen{}, unrouteLo: map[string]bool{},
		wake: make(chan struct{}, 1), maxQueue: 4096, synced: make(chan syncedBatch, 64),
	}
	in.cond.L = &in.mu
	return in
}

// Stats returns the counters.
func (in *Intake) Stats() IntakeStats {
	return IntakeStats{
		Received: in.received.Load(), Stored: in.stored.Load(), Acked: in.acked.Load(), Unrouted: in.unrouted.Load(),
		Ignored: in.ignored.Load(), Commits: in.commits.Load(),
	}
}

// Handle queues one message for the next commit. It is meant to be called
// from the local broker's delivery callback: it blocks only while 4,096
// messages already wait (the broker's in-flight window then holds the rest)
// and returns at once, without acknowledging, once the committer stopped.
func (in *Intake) Handle(m Message) { in.queue(m, true) }

// HandleEvent is Handle for an event of the local broker client: it is the
// lnsbridge.Handler the client calls.
func (in *Intake) HandleEvent(e lnsbridge.Incoming) {
	ev := e.Event
	in.queue(Message{Kind: ev.Kind, DevEUI: ev.DevEUI, AppEUI: ev.AppEUI, JoinEUI: ev.JoinEUI, FCnt: ev.FCnt, Body: ev.Body, Ack: e.Ack}, true)
}

func (in *Intake) queue(m Message, block bool) {
	in.mu.Lock()
	for block && len(in.pending) >= in.maxQueue && !in.stopped {
		in.cond.Wait()
	}
	if in.stopped {
		in.mu.Unlock()
		return // not acknowledged: the broker keeps it for the next start
	}
	in.pending = append(in.pending, m)
	n := len(in.pending)
	now := time.Now()
	in.gap, in.lastArrival = now.Sub(in.lastArrival), now
	in.mu.Unlock()
	if n == 1 || n == brokerWindow {
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
}

// Run is the committer: it commits what Handle queued, and what msgs carries
// (nil when everything comes through Handle), until ctx ends or msgs is
// closed. Messages not yet committed when it returns are not acknowledged:
// the broker keeps them.
func (in *Intake) Run(ctx context.Context, msgs <-chan Message) {
	acked := make(chan struct{})
	go in.acknowledge(ctx, acked)
	defer func() {
		in.mu.Lock()
		in.stopped = true
		in.pending = nil
		in.cond.Broadcast()
		in.mu.Unlock()
		close(in.synced)
		<-acked
	}()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	closed := false // msgs was closed: return once what it carried is committed
	for {
		in.fill(ctx, linger)
		batch := in.take()
		if len(batch) == 0 {
			// What a failed sync gives back is queued before its batch
			// leaves unsynced: seen after the count, the queue is final.
			if closed && in.unsynced.Load() == 0 && in.queued() == 0 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-in.wake:
				continue
			case m, ok := <-msgs:
				if !ok {
					msgs, closed = nil, true
					continue
				}
				in.queue(m, false)
			drain:
				for {
					select {
					case m, ok := <-msgs:
						if !ok {
							msgs, closed = nil, true
							break drain
						}
						in.queue(m, false)
					default:
						break drain
					}
				}
				continue
			}
		}
		if !in.commit(ctx, batch) {
			return
		}
	}
}

// brokerWindow is the local broker's in-flight window (Mosquitto's
// max_inflight_messages, 20 by default): with that many messages waiting no
// more arrive until some are acknowledged, so the commit starts at once.
const brokerWindow = 20

// lingerMax is how long a commit may wait for more messages to share its
// fsync while fewer than brokerWindow wait. LoRaWAN airtime is 50 ms–1.5 s
// per uplink: a few milliseconds are invisible, the flash's write cycles
// and the CPU saved are not.
const lingerMax = 3 * time.Millisecond

// fill lets a small batch wait up to lingerMax for company; never when the
// broker's window is full, nothing waits, or the last two messages came
// further apart than lingerMax (at a low steady rate waiting shares nothing
// and only adds latency).
func (in *Intake) fill(ctx context.Context, t *time.Timer) {
	in.mu.Lock()
	n, gap := len(in.pending), in.gap
	in.mu.Unlock()
	if n == 0 || n >= brokerWindow || gap > lingerMax {
		return
	}
	t.Reset(lingerMax)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-in.wake:
		}
		in.mu.Lock()
		n = len(in.pending)
		in.mu.Unlock()
		if n >= brokerWindow {
			return
		}
	}
}

// queued is how many messages wait for the committer.
func (in *Intake) queued() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.pending)
}

// take moves up to MaxBatch waiting messages into the committer's batch.
func (in *Intake) take() []Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.pending) == 0 {
		return nil
	}
	n := min(len(in.pending), max(in.MaxBatch, 1))
	batch := append(in.spare[:0], in.pending[:n]...)
	rest := copy(in.pending, in.pending[n:])
	clear(in.pending[rest:])
	in.pending = in.pending[:rest]
	in.spare = batch
	in.cond.Broadcast()
	return batch
}

// commit stores one batch, retrying until it is committed or ctx ends, and
// hands its messages to acknowledge, which acknowledges them once durable.
func (in *Intake) commit(ctx context.Context, batch []Message) bool {
	in.received.Add(uint64(len(batch)))
	rows := make([]cache.Row, 0, len(batch))
	woken := map[*Application]uint64{}
	var devs []cache.Device
	now := in.now()
	router := in.router
	for _, m := range batch {
		app := router.Route(m)
		if app == nil && in.resolver != nil && m.Kind != lnsbridge.KindMoved {
			app = in.resolver.Resolve(ctx, m.AppEUI)
		}
		if app == nil {
			in.unrouted.Add(1)
			if !in.unrouteLo[m.DevEUI] && len(in.unrouteLo) < 10000 {
				in.unrouteLo[m.DevEUI] = true
				in.log.Warn("no application takes this device's events; not forwarded", "deveui", m.DevEUI, "appeui", m.AppEUI, "kind", m.Kind)
			}
			continue
		}
		if s, ok := in.seen[m.DevEUI]; !ok || s.app != m.AppEUI || now.Sub(s.lastSave) > 5*time.Minute {
			in.seen[m.DevEUI] = deviceSeen{app: m.AppEUI, lastSave: now}
			devs = append(devs, cache.Device{DevEUI: m.DevEUI, AppEUI: m.AppEUI, JoinEUI: m.JoinEUI, LastSeen: now})
		}
		if m.Kind == lnsbridge.KindMoved {
			app.Poll().Remove(m.DevEUI) // back with its next joined or up
		} else {
			app.Poll().Add(m.DevEUI)
		}
		row, ok := rowFor(app, m)
		if !ok {
			in.ignored.Add(1)
			continue
		}
		row.EnqueuedAt = now
		rows = append(rows, row)
		woken[app]++
	}
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	acks := 0
	for _, m := range batch {
		if m.Ack != nil {
			acks++
		}
	}
	var synced cache.Synced
	// A batch the file system has no room for is committed in parts, in
	// order, halved at once at each refusal (a part that fitted lets the
	// next be twice its size): room for a few rows (delivered rows deleted) must
	// let them in, not wait for room for the whole batch, which a full file
	// system may never give. The messages are acknowledged once the last
	// part is synced (a sync covers every commit before it).
	todo, part := rows, len(rows)
	for {
		dropped, s, err := in.out.Commit(ctx, todo[:part], acks)
		synced = s
		if err == nil {
			in.commits.Add(1)
			in.logDropped(dropped)
			if todo = todo[part:]; len(todo) > 0 {
				part = min(2*part, len(todo))
				b.Reset()
				continue
			}
			if in.failing > 0 {
				if in.streakLogged {
					in.log.Warn("outbox commits succeed again; local messages acknowledged", "failed_attempts", in.failing)
				}
				in.failing, in.streakLogged = 0, false
			}
			break
		}
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, cache.ErrStorageFull) && part > 1 {
			part = (part + 1) / 2
			continue
		}
		// Not per retry: a full file system lasts (the cache logs and
		// reports its own state). Once per failure streak, and streaks at most every 10 minutes.
		if in.failing++; in.failing == 1 && time.Since(in.failLogged) > 10*time.Minute {
			in.failLogged, in.streakLogged = time.Now(), true
			in.log.Error("outbox commit failed; local messages stay unacknowledged, retrying", "err", err, "messages", len(batch))
		}
		if !b.Sleep(ctx) {
			return false
		}
	}
	in.stored.Add(uint64(len(rows)))
	if acks > 0 {
		in.unsynced.Add(1)
		select {
		case in.synced <- syncedBatch{synced, append([]Message(nil), batch...)}:
		case <-ctx.Done():
			in.unsynced.Add(-1)
			return false // not acknowledged: the broker sends them again
		}
	}
	for app, n := range woken {
		app.Counters.Queued.Add(n) // the outbox handed the rows to the application's feed at commit
	}
	if len(devs) > 0 && in.devices != nil {
		if err := in.devices.PutDevices(ctx, devs); err != nil && ctx.Err() == nil {
			in.log.Warn("device table update failed", "err", err)
		}
	}
	return true
}

// acknowledge acknowledges each committed batch once its sync ended, in
// commit order, until in.synced is closed or ctx ends (then the broker keeps
// what was not acknowledged and sends it again). A batch whose sync failed is
// queued again ahead of what waits: it is not known whether its rows reached
// the flash, so they are committed once more (their first copies were handed
// to their applications already: a duplicate, never a loss).
func (in *Intake) acknowledge(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var failed int
	var failLogged time.Time
	for b := range in.synced {
		select {
		case <-b.synced.Done():
		case <-ctx.Done():
			for range in.synced {
			}
			return
		}
		if err := b.synced.Err(); err != nil {
			if failed += len(b.msgs); time.Since(failLogged) > time.Minute {
				in.log.Error("outbox commit not confirmed durable; local messages stay unacknowledged and are committed again", "err", err, "messages", failed)
				failLogged, failed = time.Now(), 0
			}
			in.requeue(b.msgs)
		} else {
			for _, m := range b.msgs {
				if m.Ack != nil {
					m.Ack()
					in.acked.Add(1)
				}
			}
		}
		if in.unsynced.Add(-1) == 0 {
			select { // a committer waiting to end checks again
			case in.wake <- struct{}{}:
			default:
			}
		}
	}
}

// requeue puts messages back at the head of the queue for the next commit.
func (in *Intake) requeue(msgs []Message) {
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return
	}
	in.pending = append(msgs, in.pending...)
	in.mu.Unlock()
	in.received.Add(^uint64(len(msgs) - 1)) // counted again by their next commit
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// logDropped logs rows dropped by the outbox caps at most once a minute per
// burst (an outbox at its cap drops on every commit), with the count since
// the last line; the counters in /status are exact.
func (in *Intake) logDropped(dropped map[string]int) {
	if len(dropped) == 0 && len(in.dropped) == 0 {
		return
	}
	if in.dropped == nil {
		in.dropped = map[string]int{}
	}
	for app, n := range dropped {
		in.dropped[app] += n
	}
	if len(in.dropped) == 0 || time.Since(in.dropLogged) < time.Minute {
		return
	}
	in.dropLogged = time.Now()
	for app, n := range in.dropped {
		in.log.Warn("outbox full: oldest rows dropped", "app", app, "dropped", n, "next_line_in", time.Minute)
	}
	clear(in.dropped)
}

// rowFor builds a message's outbox row (kind, AppEUI, DevEUI, body: each
// transport derives its path or topic from them); ok is false for events the
// application's protocol does not forward (HTTP sends nothing for moved) and
// for EUIs that do not parse (lnsbridge passes none such).
func rowFor(app *Application, m Message) (row cache.Row, ok bool) {
	switch m.Kind {
	case lnsbridge.KindUp, lnsbridge.KindJoined:
	case lnsbridge.KindMoved:
		if app.HTTP() {
			return row, false // MQTT publishes moved
		}
	default:
		return row, false
	}
	appEUI, err1 := cache.ParseEUI64(m.AppEUI)
	devEUI, err2 := cache.ParseEUI64(m.DevEUI)
	if err1 != nil || err2 != nil {
		return row, false
	}
	return cache.Row{Application: app.Settings.EUI, Kind: string(m.Kind), AppEUI: appEUI, DevEUI: devEUI, Body: m.Body}, true
}
