package forward

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Router picks the application an LNS event belongs to (conduit.md §5.2). The
// Manager swaps its routing table atomically on every change; readers always
// see one consistent table.
type Router struct {
	table atomic.Pointer[routeTable]
}

type routeTable struct {
	def       *Application
	filterOff bool
	byEUI     map[string]*Application
}

// Route returns the application of a message, nil when none takes it. An
// enabled default app in filter-off mode (API ≥ 1.1 or the catch-all EUI)
// takes everything; else the default app takes its own AppEUI and the Lens
// appnets theirs.
func (r *Router) Route(m Message) *Application {
	if r == nil {
		return nil
	}
	t := r.table.Load()
	if t == nil {
		return nil
	}
	if t.def != nil && t.filterOff {
		return t.def
	}
	return t.byEUI[m.AppEUI]
}

// Applications lists the applications, the default app first, then by EUI.
func (r *Router) Applications() []*Application {
	if r == nil {
		return nil
	}
	t := r.table.Load()
	if t == nil {
		return nil
	}
	var out []*Application
	if t.def != nil {
		out = append(out, t.def)
	}
	euis := make([]string, 0, len(t.byEUI))
	for e, a := range t.byEUI {
		if a != t.def {
			euis = append(euis, e)
		}
	}
	sort.Strings(euis)
	for _, e := range euis {
		out = append(out, t.byEUI[e])
	}
	return out
}

// Desired is the set of applications the configuration asks for.
type Desired struct {
	Default *AppSettings // nil: no default application
	Appnets []AppSettings
	Identity
}

// BuildDesired turns the configuration sources into applications (conduit.md
// §5): mPower's defaultApp (or the YAML override), enabled or, with
// whenDisabled, used anyway; Lens appnets; the default app set up after the
// appnets, replacing one with the same EUI. apiVersion and encodeHex are
// global and apply to appnets too. Problems are logged and skipped.
func BuildDesired(d config.DefaultApp, override *config.DefaultApp, whenDisabled bool, appnets []config.Appnet, delivery config.Delivery, id Identity, log *slog.Logger) Desired {
	if override != nil {
		d = *override
	}
	out := Desired{Identity: id}
	// The API version is global: an appnet cannot speak an unknown one either.
	var appnetInvalid string
	if err := config.CheckAPIVersion(d.APIVersion); err != nil && (d.APIVersion != "" || d.Invalid != "") { // "" is 1.0 in a document that parsed
		appnetInvalid = "defaultApp " + err.Error() + " (the API version is global)"
	}
	for _, an := range appnets {
		out.Appnets = append(out.Appnets, AppSettings{
			EUI: an.EUI, Name: "appnet " + an.AppNetID, Source: "appnet", APIVersion: d.APIVersion,
			URL: an.URL, Options: an.Options, EncodeHex: d.EncodeHex, Delivery: delivery,
			Backhaul: d.BackhaulDetect, RetainEvents: delivery.MQTTRetainEvents, DefaultOptions: d.Options,
			Invalid: appnetInvalid,
		})
	}
	if d.Enabled || whenDisabled || override != nil {
		// An enabled default app without usable settings is still the
		// default app: misconfigured, its events queued until they are
		// fixed. A defaultApp document its parser refused (d.Invalid: an
		// unknown apiVersion, a bad eui, unreadable fields) comes with the
		// catch-all EUI (config.MisconfiguredDefaultApp): with the version
		// or the filter unknown, every event is queued under the catch-all,
		// the default app's key in filter-off mode, which a fix to 1.1/1.1.1
		// or to 1.0 with the catch-all filter takes over as it is.
		out.Default = &AppSettings{
			EUI: d.EUI, Name: "default", Source: "default", APIVersion: d.APIVersion, URL: d.URL,
			Options: d.Options, EncodeHex: d.EncodeHex, Delivery: delivery,
			Backhaul: d.BackhaulDetect, RetainEvents: delivery.MQTTRetainEvents, DefaultOptions: d.Options,
			RequestOptions: d.RequestOptions, Invalid: d.Invalid,
		}
		if out.Default.Invalid == "" {
			out.Default.Invalid = appnetInvalid
		}
	}
	return out
}

// running is one live application instance. Apply sets it up; Run starts
// its delivery loop (started), under Run's context.
type running struct {
	app         *Application
	fingerprint string
	started     bool               // its delivery loop was started (m.mu)
	cancel      context.CancelFunc // ends the delivery loop; set when started
	stopFlight  context.CancelFunc // ends the request in flight; set when started
	done        chan struct{}      // closed when the delivery loop returned
}

// stopGrace is how long a stopping application's request in flight may take.
const stopGrace = 5 * time.Second

// Manager owns the live applications: Apply sets them up, rebuilds and stops
// them as the configuration changes, without losing or reordering queued
// rows, and publishes the Router the intake uses; Run runs their delivery
// loops under the caller's context.
type Manager struct {
	queue Queue
	sink  DownlinkSink
	log   *slog.Logger

	router Router
	opts   ManagerOptions
	wake   chan struct{} // Apply set up an application for Run to start

	mu       sync.Mutex
	apps     map[string]*running
	counters map[string]*Counters // survive rebuilds
	polls    map[string]*PollList // survive rebuilds
	removed  map[string]time.Time // EUI → when it left the configuration
	// reroute holds the keys of removed instances built from settings in
	// error (AppSettings.Invalid): their rows are moved, row by row, to the
	// application the fixed configuration routes each to (see rerouteLocked).
	reroute map[string]bool
	applied bool // Apply ran once
}

// ManagerOptions complete a Manager; every field may be left zero.
type ManagerOptions struct {
	// Latency and Downlinks observe every application's delivery latencies
	// and downlink outcomes.
	Latency   Observer
	Downlinks OutcomeCounter
	// AppVersion is the program version every application reports (MQTT init).
	AppVersion string
	// Requests serves remote requests on the default application's connection.
	Requests *Requests
	// DeviceAppEUI gives a known device's AppEUI (from the device table), so
	// the catch-all can subscribe per device at start-up and a downlink for a
	// device of another application is refused.
	DeviceAppEUI func(devEUI string) (string, bool)
}

// NewManager builds a manager complete with its options (at most one
// ManagerOptions). Its applications deliver once Run runs.
func NewManager(q Queue, sink DownlinkSink, log *slog.Logger, opts ...ManagerOptions) *Manager {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{queue: q, sink: sink, log: log, wake: make(chan struct{}, 1),
		apps: map[string]*running{}, counters: map[string]*Counters{}, polls: map[string]*PollList{}, removed: map[string]time.Time{},
		reroute: map[string]bool{}}
	if len(opts) > 0 {
		m.opts = opts[0]
	}
	m.router.table.Store(&routeTable{byEUI: map[string]*Application{}})
	return m
}

// Router is the current routing snapshot.
func (m *Manager) Router() *Router { return &m.router }

// Run runs the delivery loops of the applications until ctx ends: those
// Apply set up before Run started and every one it sets up, rebuilds or
// restores while Run runs. When ctx ends every loop ends (a request in
// flight with it: Stop first for a drained stop with close notices); Run
// returns once all have returned. Call it once.
func (m *Manager) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m.mu.Lock()
		m.startLocked(ctx, &wg)
		m.mu.Unlock()
		select {
		case <-m.wake:
		case <-ctx.Done():
			return
		}
	}
}

// startLocked starts the delivery loops Apply set up since the last call,
// each under ctx (m.mu held).
func (m *Manager) startLocked(ctx context.Context, wg *sync.WaitGroup) {
	var pending []*running
	for _, r := range m.apps {
		if !r.started {
			pending = append(pending, r)
		}
	}
	if len(pending) == 0 || ctx.Err() != nil {
		return
	}
	// Deletions of the previous instances must be committed before the new
	// ones read the queue, or they would resend them.
	if err := m.queue.Sync(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("outbox sync failed", "err", err)
	}
	for _, r := range pending {
		app := r.app
		// A stop (rebuild, removal) ends the loop at once but lets a request
		// in flight finish for up to stopGrace: a rebuild is not a crash, an
		// answered row must not be resent by the next instance.
		flight, stopFlight := context.WithCancel(ctx)
		actx, cancel := context.WithCancel(flight)
		app.flight = flight
		r.started, r.cancel, r.stopFlight = true, cancel, stopFlight
		wg.Add(1)
		go func() { defer wg.Done(); defer close(r.done); app.Run(actx) }()
	}
}

// Poll returns the poll list of an application EUI (created on first use).
func (m *Manager) Poll(eui string) *PollList {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pollLocked(eui)
}

func (m *Manager) pollLocked(eui string) *PollList {
	p, ok := m.polls[eui]
	if !ok {
		p = NewPollList()
		m.polls[eui] = p
	}
	return p
}

func fingerprint(s AppSettings, id Identity) string {
	b, _ := json.Marshal(struct {
		S  AppSettings
		ID Identity
	}{s, id})
	return string(b)
}

// Apply makes the applications match d. An unchanged application keeps
// running; a changed one is stopped (close sent on its own connection) and
// set up again on the same queue; a vanished one is stopped and its rows kept
// for the grace period (see DropExpired). Run starts the delivery loops of the
// applications set up. ctx bounds the outbox reads of re-routing.
func (m *Manager) Apply(ctx context.Context, d Desired) {
	want := map[string]AppSettings{}
	for _, a := range d.Appnets {
		a.AppVersion = m.opts.AppVersion // part of the fingerprint: set before comparing
		want[a.EUI] = a
	}
	if d.Default != nil {
		def := *d.Default
		def.AppVersion = m.opts.AppVersion
		want[d.Default.EUI] = def // the default app takes over an appnet with its EUI
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.applied {
		m.applied = true
		// Rows left under the catch-all by an earlier run (a default app that
		// took every event, misconfigured or not) with no catch-all default
		// app now: routed per row like those of a fixed misconfigured one,
		// instead of waiting for an application that may never return.
		if _, ok := want[config.CatchAll]; !ok && m.queue.Stats(config.CatchAll).Rows > 0 {
			m.reroute[config.CatchAll] = true
			m.removed[config.CatchAll] = time.Now()
		}
	}
	wasMisconfigured := map[string]bool{}
	for eui, r := range m.apps {
		s, keep := want[eui]
		if keep && fingerprint(s, d.Identity) == r.fingerprint {
			continue
		}
		if st, _ := r.app.State(); st == StateMisconfigured {
			wasMisconfigured[eui] = true
		}
		m.stopLocked(ctx, r)
		delete(m.apps, eui)
		if !keep {
			if r.app.Settings.Invalid != "" && r.app.Settings.Source == "default" {
				m.reroute[eui] = true // the catch-all of an unusable defaultApp
			}
			m.removed[eui] = time.Now()
			m.log.Info("application removed; its queued rows are kept for the grace period", "app", eui)
		} else {
			m.log.Info("application changed; rebuilding", "app", eui)
		}
	}
	for eui, s := range want {
		if _, ok := m.apps[eui]; ok {
			continue
		}
		delete(m.removed, eui)
		delete(m.reroute, eui)
		if m.counters[eui] == nil {
			m.counters[eui] = &Counters{}
		}
		svc := AppServices{Latency: m.opts.Latency, Downlinks: m.opts.Downlinks, Owner: m.owner, DeviceAppEUI: m.opts.DeviceAppEUI}
		if s.Source == "default" && m.opts.Requests != nil {
			r := m.opts.Requests
			svc.Requests = &Requests{Policy: r.Policy, Enabled: s.RequestOptions, LNS: r.LNS, Lora: r.Lora, API: r.API, Log: r.Log, MaxDownlink: r.MaxDownlink, Outcomes: r.Outcomes}
		}
		var app *Application
		var err error
		if s.Invalid != "" {
			err = errors.New(s.Invalid)
		} else {
			app, err = NewApplication(s, d.Identity, m.queue, m.sink, m.pollLocked(eui), m.counters[eui], m.log, svc)
		}
		if err != nil {
			m.log.Error("application misconfigured: its events are queued until the setting is fixed", "app", eui, "name", s.Name, "err", err)
			app = newMisconfigured(s, d.Identity, m.queue, m.pollLocked(eui), m.counters[eui], err, m.log)
		}
		if wasMisconfigured[eui] && app.HTTP() {
			m.dropMovedLocked(ctx, eui)
		}
		m.apps[eui] = &running{app: app, fingerprint: fingerprint(s, d.Identity), done: make(chan struct{})}
		select { // Run starts it
		case m.wake <- struct{}{}:
		default:
		}
	}
	rt := &routeTable{byEUI: map[string]*Application{}}
	for eui, r := range m.apps {
		rt.byEUI[eui] = r.app
	}
	if d.Default != nil {
		if r, ok := m.apps[d.Default.EUI]; ok {
			rt.def = r.app
			rt.filterOff = d.Default.APIVersion != config.API10 || d.Default.EUI == config.CatchAll
		}
	}
	// Rows queued while the settings were in error move to where the fixed
	// configuration routes them, before the intake routes new events there:
	// they precede every later row of their application.
	for key := range m.reroute {
		m.rerouteLocked(ctx, key, rt)
	}
	m.router.table.Store(rt)
}

// dropMovedLocked deletes the moved events queued under key while its
// application was misconfigured (its transport unknown, the intake queued
// them): it turned out to speak HTTP, which sends nothing for moved.
func (m *Manager) dropMovedLocked(ctx context.Context, key string) {
	var after int64
	var moved []cache.Row
	for ctx.Err() == nil {
		rows, err := m.queue.Peek(ctx, key, after, rerouteChunk)
		if err != nil || len(rows) == 0 {
			break
		}
		after = rows[len(rows)-1].ID
		for _, r := range rows {
			if rowKind(r) == lnsbridge.KindMoved {
				moved = append(moved, r)
			}
		}
	}
	if len(moved) > 0 {
		m.queue.Delete(moved)
		m.log.Info("moved events queued while misconfigured dropped: HTTP sends nothing for moved", "app", key, "rows", len(moved))
	}
}

// rerouteChunk is how many rows rerouteLocked moves per transaction.
const rerouteChunk = 500

// rerouteLocked moves the queued rows of key, whose application was built
// from settings in error and has left the configuration, each to the
// application its AppEUI routes to in rt (m.mu held).
//
// While mPower's defaultApp cannot be used (an unknown API version, a bad
// eui, an undecodable field) the default app takes every event under the
// catch-all key: its API version, hence its AppEUI filter, is unknown, and
// only the catch-all keeps every event (config.MisconfiguredDefaultApp).
// Fixed to 1.1/1.1.1 or to the catch-all filter, the default app owns that
// key again and delivers the rows as they are. Fixed to 1.0 with an AppEUI
// filter, the rows are routed here one by one, as the intake would have
// routed them: to the default app or an appnet by the row's AppEUI. Each chunk is appended under its new key (one commit, in
// queue order, at the new key's tail) before its old rows are deleted, so a
// crash in between resends, never loses. Rows no application takes stay
// under the old key, kept for the removal grace period and then dropped and
// counted like any removed application's rows. Rows committed under the old
// key by an intake batch routed just before the change are moved by the next
// pass (DropExpired, every poll).
func (m *Manager) rerouteLocked(ctx context.Context, key string, rt *routeTable) {
	ap, ok := m.queue.(Appender)
	if !ok {
		return
	}
	var after int64
	moved, gone, stayed := 0, 0, 0
	for ctx.Err() == nil {
		rows, err := m.queue.Peek(ctx, key, after, rerouteChunk)
		if err != nil {
			m.log.Warn("re-routing queued rows failed; retried with the next poll", "app", key, "err", err)
			return
		}
		if len(rows) == 0 {
			break
		}
		after = rows[len(rows)-1].ID
		var from, to []cache.Row
		for _, r := range rows {
			dst := rt.routeEUI(r.AppEUI)
			if dst == nil || dst.Settings.EUI == key {
				stayed++
				continue
			}
			from = append(from, r)
			if rowKind(r) == lnsbridge.KindMoved && dst.HTTP() {
				continue // HTTP sends nothing for moved (the intake ignores them): deleted
			}
			n := r
			n.ID, n.Application = 0, dst.Settings.EUI
			to = append(to, n)
		}
		if len(from) == 0 {
			continue
		}
		if _, err := ap.Append(ctx, to); err != nil {
			m.log.Warn("re-routing queued rows failed; retried with the next poll", "app", key, "err", err)
			return
		}
		m.queue.Delete(from)
		for _, r := range to {
			if dst := rt.byEUI[r.Application]; dst != nil {
				dst.Counters.Queued.Add(1)
			}
		}
		moved, gone = moved+len(to), gone+len(from)
	}
	if gone == 0 {
		return
	}
	// The deletions are committed before anything reads the old key again.
	if err := m.queue.Sync(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("outbox sync failed", "err", err)
	}
	m.queue.Feed(key).Rewind(0)
	m.log.Info("rows queued while the settings were in error re-routed", "from", key, "moved", moved, "moved_events_for_http", gone-moved, "left_unrouted", stayed)
}

// routeEUI is the application of a row's device AppEUI, as Route.
func (t *routeTable) routeEUI(appEUI cache.EUI64) *Application {
	if t.def != nil && t.filterOff {
		return t.def
	}
	return t.byEUI[appEUI.String()]
}

// stopLocked ends an instance's delivery loop and sends its close notice
// (within 5 s, even when ctx has ended); an instance Run never started has
// nothing to end nor close.
func (m *Manager) stopLocked(ctx context.Context, r *running) {
	if !r.started {
		r.started = true // never to be started
		return
	}
	r.cancel()
	t := time.NewTimer(stopGrace)
	select {
	case <-r.done:
	case <-t.C:
	}
	t.Stop()
	r.stopFlight()
	<-r.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r.app.Close(ctx)
}

// owner is the EUI of the application a device routes to, "" when unknown.
func (m *Manager) owner(devEUI string) string {
	if m.opts.DeviceAppEUI == nil {
		return ""
	}
	appEUI, ok := m.opts.DeviceAppEUI(devEUI)
	if !ok {
		return ""
	}
	if a := m.Router().Route(Message{AppEUI: appEUI, DevEUI: devEUI}); a != nil {
		return a.Settings.EUI
	}
	return ""
}

// Dropper removes all queued rows of an application, counting them as dropped.
type Dropper interface {
	DropApplication(ctx context.Context, app string) (int, error)
}

// DropExpired drops the queued rows of applications removed longer than grace ago.
func (m *Manager) DropExpired(ctx context.Context, d Dropper, grace time.Duration) {
	m.mu.Lock()
	var expired []string
	for eui, at := range m.removed {
		if time.Since(at) >= grace {
			expired = append(expired, eui)
		}
	}
	m.mu.Unlock()
	m.mu.Lock()
	for key := range m.reroute {
		m.rerouteLocked(ctx, key, m.router.table.Load())
	}
	m.mu.Unlock()
	for _, eui := range expired {
		n, err := d.DropApplication(ctx, eui)
		if err != nil {
			m.log.Warn("dropping a removed application's rows failed", "app", eui, "err", err)
			continue
		}
		m.mu.Lock()
		delete(m.removed, eui)
		delete(m.reroute, eui)
		m.mu.Unlock()
		if n > 0 {
			m.log.Warn("removed application's queued rows dropped after the grace period", "app", eui, "dropped", n)
		}
	}
}

// Stop waits until the queues are drained or ctx ends, then stops every
// application and sends each its own close notice.
func (m *Manager) Stop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for drained := false; !drained; {
		drained = true
		for _, a := range m.Router().Applications() {
			if st, _ := a.State(); st == StateUp && m.queue.Stats(a.Settings.EUI).Rows > 0 {
				drained = false
			}
		}
		if drained {
			break
		}
		select {
		case <-ctx.Done():
			drained = true
		case <-t.C:
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var wg sync.WaitGroup
	for eui, r := range m.apps {
		wg.Add(1)
		go func() { defer wg.Done(); m.stopLocked(ctx, r) }()
		delete(m.apps, eui)
	}
	wg.Wait()
}
