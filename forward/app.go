package forward

import (
	"context"
	"encoding/json"
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

// Application is one remote application: its transport and its delivery loop.
type Application struct {
	Settings AppSettings
	Counters *Counters

	log       *slog.Logger
	queue     Queue
	feed      *cache.Feed
	http      *HTTPTransport // HTTP(S) applications
	mqtt      *mqttTransport // MQTT(S)/WSS applications (forward/mqtt*.go)
	tr        transport      // the one of the two in use; nil when misconfigured
	transport string
	paths     httpPaths
	gateways  []string
	sink      DownlinkSink
	poll      *PollList

	latency      Observer                           // may be nil
	downlinks    OutcomeCounter                     // may be nil
	requests     *Requests                          // remote requests (default app only); may be nil
	owner        func(devEUI string) string         // EUI of the application a device routes to, "" when unknown; may be nil
	deviceAppEUI func(devEUI string) (string, bool) // a known device's AppEUI; may be nil

	// flight outlives Run's ctx by a grace period when the Manager stops the
	// application: the request in flight finishes and its rows are settled.
	// nil: requests end with Run's ctx.
	flight context.Context

	batching     atomic.Bool
	batchMax     int
	pollInterval time.Duration

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

// NewApplication builds an application; Run delivers its rows. Settings it
// cannot use (URL, scheme, certificate, ...) are an error: the Manager then
// keeps the application misconfigured, its rows queued until they are fixed.
func NewApplication(s AppSettings, id Identity, q Queue, sink DownlinkSink, poll *PollList, counters *Counters, log *slog.Logger) (*Application, error) {
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
	a := &Application{
		Settings: s,
		Counters: counters,
		log:      log.With("app", s.EUI),
		queue:    q,

		gateways:     id.GatewayEUIs,
		state:        StateStarting,
		sink:         sink,
		poll:         poll,
		batchMax:     maxBatch,
		pollInterval: 30 * time.Second,
		transport:    ep.Transport,
	}
	a.batching.Store(true)
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
	a.paths = httpPaths{app: s.EUI, gw: gw}
	switch ep.Transport {
	case config.TransportHTTP:
		a.http, err = NewHTTPTransport(ep, s.Options, s.Delivery.HTTPTimeout)
		if err != nil {
			return nil, err
		}
		if s.Delivery.HTTPLanes > 0 {
			a.http.keepAlive(s.Delivery.HTTPLanes)
		}
		a.tr = httpTransport{a}
	case config.TransportMQTT:
		a.mqtt, err = newMQTTTransport(a, ep, id)
		if err != nil {
			return nil, err
		}
		a.tr = a.mqtt
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
	a := &Application{Settings: s, Counters: counters, log: log.With("app", s.EUI), queue: q, gateways: id.GatewayEUIs,
		poll: poll, batchMax: maxBatch, state: StateMisconfigured, lastError: reason.Error()}
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

// State returns the delivery state and the last error seen.
func (a *Application) State() (state, lastError string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.lastError
}

// transport is what an Application drives; each implementation (HTTP(S);
// MQTT(S)/WSS with its inbound side; Azure IoT Hub) owns its connection state.
type transport interface {
	// run opens the connection (init included), then delivers the
	// application's rows from its feed in order until ctx ends; rows stay in
	// the outbox until the remote side acknowledged them.
	run(ctx context.Context)
	// close sends the close notice on the transport's own connection.
	close(ctx context.Context)
}

// Run sends init, then delivers queued rows in order until ctx ends. Rows
// stay in the outbox until the remote side acknowledged them.
func (a *Application) Run(ctx context.Context) {
	if a.tr == nil {
		<-ctx.Done() // misconfigured: rows stay queued
		return
	}
	a.tr.run(ctx)
}

// Close sends the close notice (5 s timeout); errors are logged only.
func (a *Application) Close(ctx context.Context) {
	if a.tr != nil {
		a.tr.close(ctx)
	}
}

// httpTransport is the HTTP(S) side of an application: init, the lanes,
// downlink polling, close (conduit.md §6).
type httpTransport struct{ a *Application }

func (h httpTransport) run(ctx context.Context) {
	a := h.a
	defer a.setState(StateStopped, nil)
	b := a.retryBackoff()
	ready := false
	for {
		reply, err := a.http.Init(ctx, a.paths.init(), a.gateways)
		if err == nil {
			ready = a.applyInitReply(reply)
			a.log.Info("application ready", "path", a.paths.init(), "polling", ready)
			break
		}
		if ctx.Err() != nil {
			return
		}
		if IsPermanent(err) {
			a.log.Error("init refused; delivering without it, no downlink polling", "path", a.paths.init(), "err", err)
			break
		}
		a.setState(StateRetrying, err)
		d := b.Next()
		a.log.Warn("init failed, retrying", "err", err, "retry_in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return
		}
	}
	if ready {
		go a.pollLoop(ctx)
	}
	a.setState(StateUp, nil)
	a.deliverHTTP(ctx)
}

// batchable counts the uplinks at the head that may go in one batch: only
// when two or more are waiting, each at most 700 bytes; a joined ends it.
func batchable(rows []cache.Row) int {
	n := 0
	for _, r := range rows {
		if rowKind(r) != lnsbridge.KindUp || len(r.Body) > maxBatchElement {
			break
		}
		n++
	}
	if n < 2 {
		return 1
	}
	return n
}

// body is what is posted for a row: the LNS bytes, or their encodeHex form.
func (a *Application) body(r cache.Row) []byte {
	if a.Settings.EncodeHex && rowKind(r) == lnsbridge.KindUp {
		if b, err := HexUplink(r.Body); err == nil {
			return b
		}
	}
	return r.Body
}

func (a *Application) batchBody(rows []cache.Row) []byte {
	out := []byte{'['}
	for i, r := range rows {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, a.body(r)...)
	}
	return append(out, ']')
}

// applyInitReply applies the optional timeout, queue_size and
// downlink_query_interval; any JSON reply makes the application ready (polling on).
func (a *Application) applyInitReply(reply []byte) bool {
	var ir struct {
		Timeout               *float64 `json:"timeout"`
		QueueSize             *float64 `json:"queue_size"`
		DownlinkQueryInterval *float64 `json:"downlink_query_interval"`
	}
	if !json.Valid(reply) || len(reply) == 0 {
		return false
	}
	if json.Unmarshal(reply, &ir) != nil {
		return true // JSON, but not an object: ready with defaults
	}
	if ir.Timeout != nil && *ir.Timeout > 0 && *ir.Timeout < 3600 {
		a.http.timeout = time.Duration(*ir.Timeout * float64(time.Second))
	}
	if ir.QueueSize != nil && *ir.QueueSize >= 1 {
		a.batchMax = min(maxBatch, int(*ir.QueueSize))
	}
	if ir.DownlinkQueryInterval != nil && *ir.DownlinkQueryInterval > 0 && *ir.DownlinkQueryInterval < 86400 {
		a.pollInterval = time.Duration(*ir.DownlinkQueryInterval * float64(time.Second))
	}
	return true
}

// pollLoop asks for downlinks every poll interval while the poll list is not empty.
func (a *Application) pollLoop(ctx context.Context) {
	t := time.NewTicker(a.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		devs := a.poll.List()
		if len(devs) == 0 {
			continue
		}
		body, _ := json.Marshal(devs)
		reply, err := a.http.do(ctx, "GET", downPath(a.Settings.EUI), body, 0)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Debug("downlink poll failed", "path", downPath(a.Settings.EUI), "err", err)
			}
			continue
		}
		a.handleDownlinks(ctx, reply, "poll")
	}
}

// handleDownlinks validates and publishes the downlinks of a remote answer.
func (a *Application) handleDownlinks(ctx context.Context, reply []byte, from string) {
	for _, raw := range SplitDownlinks(reply) {
		dl, err := ValidateDownlink(raw, "", a.Settings.EncodeHex, a.Settings.Delivery.MaxDownlinkPayload)
		if err != nil {
			a.countDownlink("refused")
			a.log.Warn("downlink refused", "from", from, "reason", err.Error())
			continue
		}
		if a.sink == nil {
			a.countDownlink("failed")
			continue
		}
		if err := a.sink.Publish(ctx, dl.DevEUI, dl.Payload); err != nil {
			a.countDownlink("failed")
			a.log.Warn("downlink not published", "deveui", dl.DevEUI, "err", err)
			continue
		}
		a.countDownlink("sent")
		a.log.Debug("downlink published", "deveui", dl.DevEUI, "from", from)
	}
}

// countDownlink counts a downlink outcome: sent, refused (validation) or failed (local broker).
func (a *Application) countDownlink(outcome string) {
	if outcome != "sent" {
		a.Counters.DownlinksRefused.Add(1)
	}
	if a.downlinks != nil {
		a.downlinks.Add(outcome)
	}
}

func (h httpTransport) close(ctx context.Context) {
	a := h.a
	if err := a.http.Close(ctx, a.paths.close()); err != nil {
		a.log.Warn("close notice not delivered", "path", a.paths.close(), "err", err)
	}
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
