package forward

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/backoff"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Queue is the part of the outbox a delivery loop uses: its application's
// Feed hands it the rows committed by the intake (in memory, reading the
// database only when cold); Delete and DeadLetter settle them.
type Queue interface {
	Feed(app string) *cache.Feed
	Peek(ctx context.Context, app string, afterID int64, n int) ([]cache.Row, error)
	Delete(rows []cache.Row)
	DeadLetter(rows []cache.Row)
	RecordFailure(id int64, next time.Time)
	Stats(app string) cache.AppStats
	Sync(ctx context.Context) error
}

// Identity is what an application needs to know about its gateway.
type Identity struct {
	UUIDRaw     string
	UUID        string
	Serial      string // mts-io device-id, template key gwserial
	GatewayEUIs []string
}

// AppSettings describes one remote application.
type AppSettings struct {
	EUI        string // the application's EUI (the catch-all for the filter-off default app)
	Name       string // "default" or the appnet id, for logs
	Source     string // "default" or "appnet"
	APIVersion string // global: from mPower's defaultApp
	URL        string
	Options    config.AppOptions
	EncodeHex  bool // global: from mPower's defaultApp
	Delivery   config.Delivery
	// AppVersion is the program's version (the MQTT init's app_version).
	AppVersion string
	// RetainEvents retains MQTT up/joined/moved like the original (YAML delivery.mqtt_retain_events).
	RetainEvents bool
	// Backhaul is mPower's defaultApp.backhaulDetect (global, MQTT applications).
	Backhaul config.BackhaulDetect
	// RequestOptions enables remote requests; only the default app serves them.
	RequestOptions config.RequestOptions
	// DefaultOptions are the default app's options, for appnets under
	// overrideTopicsForAllApps and Azure (its templates win, conduit.md §7.4).
	DefaultOptions config.AppOptions
	// Invalid is why the configuration source cannot be used (mPower's
	// defaultApp refused by its parser, an unknown global API version): the
	// application is built misconfigured with it. "" when valid.
	Invalid string
}

// Counters of one application.
type Counters struct {
	Queued           atomic.Uint64 // rows written to the outbox
	Forwarded        atomic.Uint64 // rows the remote side acknowledged
	Failures         atomic.Uint64 // failed delivery attempts
	DownlinksRefused atomic.Uint64 // downlinks refused by validation or the local broker
	// Rows refused for good are counted by the outbox (cache.AppStats.DeadLettered),
	// delivery latencies by the Observer, downlink outcomes by the OutcomeCounter.
}

// PollList is the set of devices whose downlinks an HTTP application polls for.
// It outlives application rebuilds.
type PollList struct {
	mu   sync.Mutex
	devs map[string]bool
}

// NewPollList returns an empty list.
func NewPollList() *PollList { return &PollList{devs: map[string]bool{}} }

// Add puts a device on the list.
func (p *PollList) Add(dev string) {
	p.mu.Lock()
	p.devs[dev] = true
	p.mu.Unlock()
}

// Remove takes a device off the list.
func (p *PollList) Remove(dev string) {
	p.mu.Lock()
	delete(p.devs, dev)
	p.mu.Unlock()
}

// List returns the devices, sorted.
func (p *PollList) List() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.devs))
	for d := range p.devs {
		out = append(out, d)
	}
	sortStrings(out)
	return out
}

// Observer takes latencies (delivery: enqueue → remote acknowledgement).
type Observer interface{ Observe(time.Duration) }

// OutcomeCounter counts events by outcome (downlinks: "sent", "refused").
type OutcomeCounter interface{ Add(outcome string) }

// Application is one remote application: its transport and the delivery
// loop that drives it (deliver.go).
type Application struct {
	Settings AppSettings
	Counters *Counters

	log       *slog.Logger
	queue     Queue
	feed      *cache.Feed
	tr        transport // HTTP(S) (http_transport.go) or MQTT(S)/WSS/Azure (mqtt*.go); nil when misconfigured
	transport string
	poll      *PollList

	latency Observer      // may be nil
	down    *downlinkPath // downlinks of remote answers to the local broker

	// flight outlives Run's ctx by a grace period when the Manager stops the
	// application: the request in flight finishes and its rows are settled.
	// nil: requests end with Run's ctx.
	flight context.Context

	mu        sync.Mutex
	state     string
	lastError string
}

// Application states, for status.
const (
	StateStarting = "starting"
	StateUp       = "up"
	StateRetrying = "retrying"
	StateStopped  = "stopped"
	// StateMisconfigured is an enabled application whose settings are invalid
	// (URL, scheme, certificate, API version, ...): its events are routed and queued, and
	// delivered once the setting is fixed; the last error says why.
	StateMisconfigured = "misconfigured"
)

// Limits of the original's batching (conduit.md §6).
const (
	maxBatch        = 10
	maxBatchElement = 700
)

// AppServices are what an application shares with the rest of the program;
// every field may be left zero.
type AppServices struct {
	// Latency observes delivery latencies, Downlinks downlink outcomes.
	Latency   Observer
	Downlinks OutcomeCounter
	// Requests serves remote requests on the application's connection (MQTT;
	// the default app only).
	Requests *Requests
	// Owner is the EUI of the application a device routes to, "" when
	// unknown: a downlink or clear for another application's device is refused.
	Owner func(devEUI string) string
	// DeviceAppEUI is a known device's AppEUI (the catch-all subscribes per
	// device at start-up with it).
	DeviceAppEUI func(devEUI string) (string, bool)
}

// NewApplication builds an application complete with its transport (and
// svc: at most one AppServices); Run delivers its rows. Settings it cannot
// use (URL, scheme, certificate, ...) are an error: the Manager then keeps
// the application misconfigured, its rows queued until they are fixed.
func NewApplication(s AppSettings, id Identity, q Queue, sink DownlinkSink, poll *PollList, counters *Counters, log *slog.Logger, svc ...AppServices) (*Application, error) {
	ep, err := config.ParseEndpoint(s.URL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if poll == nil {
		poll = NewPollList()
	}
	if counters == nil {
		counters = &Counters{}
	}
	if s.Delivery.MaxDownlinkPayload <= 0 {
		s.Delivery.MaxDownlinkPayload = MaxDownlinkPayload
	}
	var sv AppServices
	if len(svc) > 0 {
		sv = svc[0]
	}
	a := &Application{
		Settings: s,
		Counters: counters,
		log:      log.With("app", s.EUI),
		queue:    q,

		state:     StateStarting,
		poll:      poll,
		transport: ep.Transport,
		latency:   sv.Latency,
	}
	a.down = &downlinkPath{app: s.EUI, encodeHex: s.EncodeHex, maxPayload: s.Delivery.MaxDownlinkPayload, sink: sink,
		owner: sv.Owner, counters: counters, outcomes: sv.Downlinks, log: a.log}
	if q != nil {
		a.feed = q.Feed(s.EUI)
	}
	for _, w := range ep.Warnings {
		a.log.Warn("application url: "+w, "url_host", ep.Host)
	}
	gw := id.UUID
	if s.APIVersion == config.API10 {
		gw = id.UUIDRaw
	}
	switch ep.Transport {
	case config.TransportHTTP:
		c, err := NewHTTPTransport(ep, s.Options, s.Delivery.HTTPTimeout)
		if err != nil {
			return nil, err
		}
		h := &httpTransport{c: c, app: s.EUI, paths: httpPaths{app: s.EUI, gw: gw}, gateways: id.GatewayEUIs,
			encodeHex: s.EncodeHex, lanes: DefaultHTTPLanes, poll: poll, log: a.log, downlinks: a.down.reply,
			batchMax: maxBatch, pollInterval: 30 * time.Second}
		if s.Delivery.HTTPLanes > 0 {
			h.lanes = s.Delivery.HTTPLanes
			c.keepAlive(s.Delivery.HTTPLanes)
		}
		h.batching.Store(true)
		a.tr = h
	case config.TransportMQTT:
		t, err := newMQTTTransport(s, ep, id, mqttDeps{log: a.log, poll: poll, queue: q, feed: a.feed, down: a.down,
			requests: sv.Requests, deviceAppEUI: sv.DeviceAppEUI})
		if err != nil {
			return nil, err
		}
		a.tr = t
	}
	return a, nil
}

// newMisconfigured builds the stand-in of an application whose settings are
// invalid: it takes its events (the outbox keeps them, within its caps) and
// delivers nothing until a corrected configuration rebuilds it.
func newMisconfigured(s AppSettings, id Identity, q Queue, poll *PollList, counters *Counters, reason error, log *slog.Logger) *Application {
	if log == nil {
		log = slog.Default()
	}
	if poll == nil {
		poll = NewPollList()
	}
	if counters == nil {
		counters = &Counters{}
	}
	a := &Application{Settings: s, Counters: counters, log: log.With("app", s.EUI), queue: q,
		poll: poll, state: StateMisconfigured, lastError: reason.Error()}
	if q != nil {
		a.feed = q.Feed(s.EUI)
	}
	return a
}

// Notify wakes the delivery loop to look at its feed again. Every commit of
// the outbox already does it for the rows it hands over.
func (a *Application) Notify() {
	if a.feed != nil {
		a.feed.Notify()
	}
}

// HTTP reports whether the application speaks the HTTP protocol.
func (a *Application) HTTP() bool { return a.transport == config.TransportHTTP }

// Poll is the application's downlink poll list.
func (a *Application) Poll() *PollList { return a.poll }

func (a *Application) setState(state string, err error) {
	a.mu.Lock()
	a.state = state
	if err != nil {
		a.lastError = err.Error()
	}
	a.mu.Unlock()
}

func (a *Application) lastErr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastError
}

// State returns the delivery state and the last error seen.
func (a *Application) State() (state, lastError string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.lastError
}

// rowBody is what is sent for a row: the LNS bytes, or for an uplink under
// encodeHex their hex form.
func rowBody(r cache.Row, encodeHex bool) []byte {
	if encodeHex && rowKind(r) == lnsbridge.KindUp {
		if b, err := HexUplink(r.Body); err == nil {
			return b
		}
	}
	return r.Body
}

// downlinkPath takes the downlinks and clears an application's remote side
// sends to the local broker: validated with the application's settings,
// refused for a device another application owns, counted. Its transport
// shares it with the application (the counters).
type downlinkPath struct {
	app        string // the application's EUI
	encodeHex  bool
	maxPayload int
	sink       DownlinkSink               // nil: every downlink fails
	owner      func(devEUI string) string // may be nil
	counters   *Counters
	outcomes   OutcomeCounter // may be nil
	log        *slog.Logger
}

// reply validates and publishes the downlinks of a remote answer.
func (d *downlinkPath) reply(ctx context.Context, reply []byte, from string) {
	for _, raw := range SplitDownlinks(reply) {
		dl, err := d.validate(raw, "")
		if err != nil {
			d.count("refused")
			d.log.Warn("downlink refused", "from", from, "reason", err.Error())
			continue
		}
		if d.sink == nil {
			d.count("failed")
			continue
		}
		if err := d.sink.Publish(ctx, dl.DevEUI, dl.Payload); err != nil {
			d.count("failed")
			d.log.Warn("downlink not published", "deveui", dl.DevEUI, "err", err)
			continue
		}
		d.count("sent")
		d.log.Debug("downlink published", "deveui", dl.DevEUI, "from", from)
	}
}

// validate checks a downlink with the application's settings.
func (d *downlinkPath) validate(raw []byte, topicDev string) (Downlink, error) {
	return ValidateDownlink(raw, topicDev, d.encodeHex, d.maxPayload)
}

// count counts a downlink outcome: sent, refused (validation) or failed (local broker).
func (d *downlinkPath) count(outcome string) {
	if outcome != "sent" {
		d.counters.DownlinksRefused.Add(1)
	}
	if d.outcomes != nil {
		d.outcomes.Add(outcome)
	}
}

// foreignOwner reports the application a device routes to when that is
// another application (conduit.md §7.5 step 6).
func (d *downlinkPath) foreignOwner(dev string) (string, bool) {
	if d.owner == nil {
		return "", false
	}
	o := d.owner(dev)
	return o, o != "" && o != d.app
}

// refuseForeign refuses, logs and counts a downlink or clear for a device
// routed to another application; it returns the reason, "" when allowed.
func (d *downlinkPath) refuseForeign(dev, from string) string {
	o, foreign := d.foreignOwner(dev)
	if !foreign {
		return ""
	}
	reason := "device " + dev + " belongs to another application (" + o + ")"
	d.count("refused")
	d.log.Warn("downlink refused", "from", from, "deveui", dev, "reason", reason)
	return reason
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// retryBackoff is the schedule of the application's delivery retries:
// Settings.Delivery's RetryMin doubling up to RetryMax, with jitter.
func (a *Application) retryBackoff() *backoff.Backoff {
	return backoff.New(a.Settings.Delivery.RetryMin, a.Settings.Delivery.RetryMax)
}
