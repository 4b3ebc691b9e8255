package forward

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
)

// Appender is the outbox's write side as the intake uses it.
type Appender interface {
	Append(ctx context.Context, rows []cache.Row) (dropped map[string]int, err error)
}

// DeviceStore remembers devices (DevEUI → AppEUI, JoinEUI, last seen).
type DeviceStore interface {
	PutDevices(ctx context.Context, devs []cache.Device) error
}

// IntakeStats counts what the intake did.
type IntakeStats struct {
	Received uint64 // messages taken from the local broker
	Stored   uint64 // rows committed to the outbox
	Unrouted uint64 // messages no application takes
	Ignored  uint64 // messages the application's protocol does not forward (moved over HTTP)
	Commits  uint64 // outbox transactions
}

// Resolver finds the application of an AppEUI no application takes yet (Lens
// `appnet get`); nil when there is none. It is rate-limited by its owner.
type Resolver interface {
	Resolve(ctx context.Context, appEUI string) *Application
}

// Intake turns local messages into outbox rows with group commit: every
// message that arrived while the previous commit ran goes into the next one,
// and a commit starts as soon as no message is waiting. A message is
// acknowledged only after its commit.
type Intake struct {
	out      Appender
	devices  DeviceStore
	router   *Router
	resolver Resolver // may be nil
	log      *slog.Logger
	now      func() time.Time
	// MaxBatch bounds one commit.
	MaxBatch int

	received, stored, unrouted, ignored, commits atomic.Uint64

	seen         map[string]deviceSeen // owned by Run's goroutine
	failing      int                   // failed commit attempts in a row; owned by Run's goroutine
	failLogged   time.Time             // when a failure streak was last logged; owned by Run's goroutine
	streakLogged bool                  // the current streak was logged
	dropped      map[string]int        // rows dropped by the caps since dropLogged; owned by Run's goroutine
	dropLogged   time.Time
	unrouteLo    map[string]bool // devices already logged as unrouted
}

type deviceSeen struct {
	app      string
	lastSave time.Time
}

// NewIntake builds the intake.
func NewIntake(out Appender, devices DeviceStore, router *Router, resolver Resolver, log *slog.Logger) *Intake {
	if log == nil {
		log = slog.Default()
	}
	return &Intake{
		out: out, devices: devices, router: router, resolver: resolver, log: log, now: time.Now,
		MaxBatch: 1000, seen: map[string]deviceSeen{}, unrouteLo: map[string]bool{},
	}
}

// Stats returns the counters.
func (in *Intake) Stats() IntakeStats {
	return IntakeStats{
		Received: in.received.Load(), Stored: in.stored.Load(), Unrouted: in.unrouted.Load(),
		Ignored: in.ignored.Load(), Commits: in.commits.Load(),
	}
}

// Run consumes messages until ctx ends or msgs is closed. Messages not yet
// committed when it returns are not acknowledged: the broker keeps them.
func (in *Intake) Run(ctx context.Context, msgs <-chan Message) {
	batch := make([]Message, 0, in.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			batch = append(batch, m)
		}
	drain:
		for len(batch) < in.MaxBatch {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if !in.commit(ctx, batch) {
			return
		}
	}
}

// commit stores one batch, retrying until it is durable or ctx ends.
func (in *Intake) commit(ctx context.Context, batch []Message) bool {
	in.received.Add(uint64(len(batch)))
	rows := make([]cache.Row, 0, len(batch))
	woken := map[*Application]uint64{}
	var devs []cache.Device
	now := in.now()
	router := in.router
	for _, m := range batch {
		app := router.Route(m)
		if app == nil && in.resolver != nil && m.Kind != "moved" {
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
		if m.Kind == "moved" {
			app.Poll().Remove(m.DevEUI) // back with its next joined or up
		} else {
			app.Poll().Add(m.DevEUI)
		}
		target, ok := rowFor(app, m)
		if !ok {
			in.ignored.Add(1)
			continue
		}
		rows = append(rows, cache.Row{Application: app.Settings.EUI, Kind: m.Kind, Target: target, Body: m.Body, EnqueuedAt: now})
		woken[app]++
	}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		dropped, err := in.out.Append(ctx, rows)
		if err == nil {
			in.logDropped(dropped)
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
		// Not per retry: a full file system lasts (the cache logs and
		// reports its own state). Once per failure streak, and streaks at most every 10 minutes.
		if in.failing++; in.failing == 1 && time.Since(in.failLogged) > 10*time.Minute {
			in.failLogged, in.streakLogged = time.Now(), true
			in.log.Error("outbox commit failed; local messages stay unacknowledged, retrying", "err", err, "messages", len(batch))
		}
		if !sleep(ctx, b.next()) {
			return false
		}
	}
	in.commits.Add(1)
	in.stored.Add(uint64(len(rows)))
	for _, m := range batch {
		if m.Ack != nil {
			m.Ack()
		}
	}
	for app, n := range woken {
		app.Counters.Queued.Add(n)
		app.Notify()
	}
	if len(devs) > 0 && in.devices != nil {
		if err := in.devices.PutDevices(ctx, devs); err != nil && ctx.Err() == nil {
			in.log.Warn("device table update failed", "err", err)
		}
	}
	return true
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

// rowFor builds the target of a message's outbox row; ok is false for events
// the application's protocol does not forward (HTTP sends nothing for moved).
func rowFor(app *Application, m Message) (target string, ok bool) {
	switch m.Kind {
	case "up":
		return uplinkPath(m.AppEUI, m.DevEUI), true
	case "joined":
		return joinedPath(m.AppEUI, m.DevEUI), true
	case "moved":
		// Kept for transports of later builds (MQTT publishes moved).
		return movedPath(m.AppEUI, m.DevEUI), !app.HTTP()
	}
	return "", false
}
