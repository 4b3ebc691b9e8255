package forward

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// MQTT delivery limits.
const (
	mqttWindow         = 100              // rows in flight (published, PUBACK pending) unless delivery.mqtt_inflight says otherwise
	mqttKeepAlive      = 60 * time.Second // conduit.md §7.1
	mqttConnectTimeout = 30 * time.Second
	mqttAckTimeout     = 90 * time.Second // a PUBACK later than this: the connection is dead
	mqttCloseTimeout   = 2 * time.Second
	mqttSubBatch       = 100 // filters per SUBSCRIBE
	mqttClearIgnore    = 5 * time.Second
	mqttInbox          = 256
)

// mqttTransport is an application's connection to its remote MQTT broker
// (conduit.md §7): one paho client per connection, so a lost connection's
// unacknowledged rows are simply resent from the outbox on the next one.
// It is built from the application's settings and identity (mqttDeps: what it
// shares with the application) and owns its state.
type mqttTransport struct {
	log          *slog.Logger
	poll         *PollList                          // devices subscribed per device at connect
	queue        Queue                              // read by the backhaul scan
	feed         *cache.Feed                        // the application's: new rows wake the backhaul scan
	down         *downlinkPath                      // downlinks and clears to the local broker, counted
	requests     *Requests                          // remote requests (default app only); nil: refused
	lookupAppEUI func(devEUI string) (string, bool) // a known device's AppEUI (device table); may be nil

	// From the settings and the identity.
	gateways       []string // gateway EUIs, in init and the {gweui} topics
	apiVersion     string   // in init ("" is 1.0)
	appVersion     string   // in init
	encodeHex      bool     // uplinks sent in their hex form
	cleanSession   bool
	username       string
	password       string
	requestOptions config.RequestOptions // request topics subscribed

	brokerURL string
	clientID  string
	tls       *tls.Config
	table     topicTable
	vars      topicVars // app and gw set
	// customUp and customDown are the application's templates when they
	// differ from the version defaults (conduit.md §7.4), else "".
	customUp, customDown string
	retainEvents         bool   // up/joined/moved retained like the original
	serial               string // gateway serial, template key gwserial
	azure                bool   // Azure IoT Hub mode (conduit.md §7.6)
	window               int
	ackTimeout           time.Duration

	inbox chan inbound
	reqs  chan requestJob // remote requests for the request worker
	start sync.Once       // the inbound side and the request worker, started by the first open
	// dial opens a connection (connect; tests script it).
	dial func(ctx context.Context) (*mqttConn, error)

	// Owned by the delivery loop's goroutine (open, then its one lane's
	// deliver calls, then the outage waits, in turn).
	conn           *mqttConn   // the connection open gave the loop
	q              []pending   // rows published on conn, PUBACK pending, in outbox order (a window of qbuf)
	qbuf           []pending   // q's buffer, reused
	ackTimer       *time.Timer // deliver's PUBACK timeout
	seen           int64       // last row published
	everConnected  bool
	backhaul       config.BackhaulDetect
	backhaulCursor int64
	backhaulLast   map[string]time.Time // DevEUI → last backhaul downlink
	backhaulBad    bool

	mu       sync.Mutex
	client   paho.Client // the live connection, nil while down
	initDone bool
	subs     map[string]*subEntry // filter → what arrives through it
	devSubs  map[string][]string  // DevEUI → its per-device filters
	devApp   map[string]string    // DevEUI → the device's AppEUI
	cleared  map[string]time.Time // topics whose retained message we cleared
}

// subEntry says what a subscription is for.
type subEntry struct {
	event  string // "down" or "clear"
	devEUI string // the device the topic names; "" for application-level topics
	custom bool   // from a custom downlink template
	refs   int    // devices sharing the filter; 0 for application-level filters
}

type inbound struct {
	topic    string
	payload  []byte
	retained bool
	ack      func() // nil in tests
}

// mqttDeps are what an MQTT transport shares with its application.
type mqttDeps struct {
	log          *slog.Logger
	poll         *PollList
	queue        Queue
	feed         *cache.Feed
	down         *downlinkPath
	requests     *Requests                          // nil: no remote requests served
	deviceAppEUI func(devEUI string) (string, bool) // may be nil
}

func newMQTTTransport(s AppSettings, ep config.Endpoint, id Identity, d mqttDeps) (*mqttTransport, error) {
	if d.poll == nil {
		d.poll = NewPollList()
	}
	t := &mqttTransport{
		log: d.log, poll: d.poll, queue: d.queue, feed: d.feed, down: d.down, requests: d.requests, lookupAppEUI: d.deviceAppEUI,
		gateways: id.GatewayEUIs, apiVersion: s.APIVersion, appVersion: s.AppVersion, encodeHex: s.EncodeHex,
		cleanSession: s.Options.CleanSession, username: s.Options.Username, password: s.Options.Password, requestOptions: s.RequestOptions,
		table: tableFor(s.APIVersion), window: mqttWindow, ackTimeout: mqttAckTimeout,
		inbox: make(chan inbound, mqttInbox), reqs: make(chan requestJob, mqttRequestQueue), backhaulLast: map[string]time.Time{},
		subs: map[string]*subEntry{}, devSubs: map[string][]string{}, devApp: map[string]string{}, cleared: map[string]time.Time{},
	}
	t.dial = t.connect
	t.retainEvents, t.backhaul = s.RetainEvents, s.Backhaul
	if s.Delivery.MQTTInflight > 0 {
		t.window = s.Delivery.MQTTInflight
	}
	t.serial = id.Serial
	gw := id.UUID
	if t.table.rawUUID {
		gw = id.UUIDRaw
	}
	t.vars = topicVars{app: s.EUI, gw: gw}
	t.clientID = s.Options.ClientID
	if t.clientID == "" {
		t.clientID = "lorawan/" + s.EUI + "/" + gw
	}
	switch ep.Scheme {
	case "mqtt":
		t.brokerURL = "tcp://" + ep.Address()
	case "mqtts":
		t.brokerURL = "ssl://" + ep.Address()
	case "wss":
		t.brokerURL = "wss://" + ep.Address() + ep.Path
	default:
		return nil, fmt.Errorf("forward: mqtt: scheme %q not supported", ep.Scheme)
	}
	if ep.Scheme != "mqtt" {
		tc, err := TLSConfig(ep.Host, s.Options)
		if err != nil {
			return nil, fmt.Errorf("forward: %s://%s: %w", ep.Scheme, ep.Address(), err)
		}
		t.tls = tc
	}
	if strings.EqualFold(s.Options.CloudService, "AZURE") {
		return t, t.setupAzure(s)
	}
	t.customUp = customTemplate(s, t.table.uplinkDefault, func(o config.AppOptions) string { return o.UplinkTopic })
	t.customDown = customTemplate(s, t.table.downlinkDefault, func(o config.AppOptions) string { return o.DownlinkTopic })
	for _, f := range t.table.appSubs {
		t.subs[t.vars.fill(f)] = &subEntry{event: lastLevel(f)}
	}
	return t, nil
}

// customTemplate applies the template precedence of conduit.md §7.4: an
// appnet under the default app's overrideTopicsForAllApps uses the default's
// template when it differs from the version default; else the application's
// own when it differs; else "" (the standard topics).
func customTemplate(s AppSettings, versionDefault string, pick func(config.AppOptions) string) string {
	if s.Source == "appnet" && s.DefaultOptions.OverrideTopicsForAllApps {
		if d := pick(s.DefaultOptions); d != "" && d != versionDefault {
			return d
		}
	}
	if own := pick(s.Options); own != "" && own != versionDefault {
		return own
	}
	return ""
}

func lastLevel(topic string) string { return topic[strings.LastIndexByte(topic, '/')+1:] }

// shape: one lane (rows keep the outbox order), offered up to the window
// (delivery.mqtt_inflight): deliver keeps that many publishes awaiting their
// PUBACK, each call publishing what is new and returning once the head is
// acknowledged.
func (t *mqttTransport) shape() (lanes, rows int) { return 1, t.window }

// open connects (the loop retries with backoff), subscribing everything and
// publishing init on the application's first connection; the first call also
// starts the inbound side (received messages, remote requests) until ctx
// ends. lost is closed when the connection fails: the next connection
// resends every row not acknowledged.
func (t *mqttTransport) open(ctx context.Context) (<-chan struct{}, error) {
	t.start.Do(func() {
		t.setupRequests()
		if t.requests != nil {
			go t.requestLoop(ctx)
		}
		go t.dispatchLoop(ctx)
	})
	if t.conn != nil {
		t.drop(t.conn)
		t.conn, t.q = nil, nil
	}
	conn, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	if t.everConnected {
		t.log.Info("remote broker connected again", "broker", t.brokerURL)
	} else {
		t.log.Info("remote broker connected", "broker", t.brokerURL, "client_id", t.clientID)
	}
	t.everConnected = true
	t.conn, t.q = conn, nil
	return conn.lost, nil
}

// mqttConn is one connection.
type mqttConn struct {
	client paho.Client
	lost   chan struct{}
	once   sync.Once
	err    error
}

func (c *mqttConn) setLost(err error) {
	c.once.Do(func() { c.err = err; close(c.lost) })
}

func (c *mqttConn) lostErr() error {
	if c.err != nil {
		return fmt.Errorf("connection lost: %w", c.err)
	}
	return errors.New("connection lost")
}

// connect opens a connection with the last will set, resubscribes
// everything, then publishes init (once per application instance, before
// anything else) and connected (1.1.1).
func (t *mqttTransport) connect(ctx context.Context) (*mqttConn, error) {
	conn := &mqttConn{lost: make(chan struct{})}
	o := paho.NewClientOptions().
		AddBroker(t.brokerURL).
		SetClientID(t.clientID).
		SetCleanSession(t.cleanSession).
		SetProtocolVersion(4).
		SetKeepAlive(mqttKeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(mqttConnectTimeout).
		SetWriteTimeout(mqttConnectTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(true). // acknowledged once dispatched: a downlink is not lost at shutdown
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			in := inbound{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...), retained: m.Retained(), ack: m.Ack}
			select {
			case t.inbox <- in:
			case <-ctx.Done():
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { conn.setLost(err) })
	if !t.azure {
		o.SetBinaryWill(t.vars.fill(t.table.disconnected), []byte{}, 1, false)
	}
	if t.username != "" || t.password != "" {
		o.SetUsername(t.username).SetPassword(t.password)
	}
	if t.tls != nil {
		o.SetTLSConfig(t.tls.Clone())
	}
	if fn, ok := dialBuffered(t.brokerURL); ok {
		o.SetCustomOpenConnectionFn(fn)
	}
	c := paho.NewClient(o)
	conn.client = c
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		go func() { <-tok.Done(); c.Disconnect(0) }()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", t.brokerURL, err)
	}
	t.mu.Lock()
	t.client = c
	t.mu.Unlock()
	fail := func(err error) (*mqttConn, error) {
		t.drop(conn)
		return nil, err
	}
	// Subscriptions: the application's, and every device known to route here.
	if t.perDevice() {
		for _, dev := range t.poll.List() {
			t.subscribeDevice(dev, t.knownAppEUI(dev), false)
		}
	}
	if err := t.resubscribe(ctx, conn); err != nil {
		return fail(err)
	}
	t.mu.Lock()
	needInit := !t.initDone && !t.azure
	t.mu.Unlock()
	if needInit {
		if err := t.waitToken(ctx, conn, c.Publish(t.vars.fill(t.table.init), 1, true, t.initPayload())); err != nil {
			return fail(fmt.Errorf("init: %w", err))
		}
		t.mu.Lock()
		t.initDone = true
		t.mu.Unlock()
	}
	if t.table.connected != "" && !t.azure {
		c.Publish(t.vars.fill(t.table.connected), 0, false, []byte{})
	}
	return conn, nil
}

// drop forgets a connection (closing it if it is still open).
func (t *mqttTransport) drop(conn *mqttConn) {
	t.mu.Lock()
	if t.client == conn.client {
		t.client = nil
	}
	t.mu.Unlock()
	select {
	case <-conn.lost:
	default:
		conn.client.Disconnect(0)
	}
}

func (t *mqttTransport) waitToken(ctx context.Context, conn *mqttConn, tok paho.Token) error {
	timer := time.NewTimer(t.ackTimeout)
	defer timer.Stop()
	return awaitToken(ctx, conn, tok, timer.C)
}

// awaitToken waits for tok's answer, the connection's loss, ctx or expired.
func awaitToken(ctx context.Context, conn *mqttConn, tok paho.Token, expired <-chan time.Time) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-conn.lost:
		return conn.lostErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return errors.New("no answer from the broker")
	}
}

// resubscribe subscribes every filter, in batches.
func (t *mqttTransport) resubscribe(ctx context.Context, conn *mqttConn) error {
	t.mu.Lock()
	filters := make([]string, 0, len(t.subs))
	for f := range t.subs {
		filters = append(filters, f)
	}
	t.mu.Unlock()
	sortStrings(filters)
	for len(filters) > 0 {
		n := min(len(filters), mqttSubBatch)
		m := make(map[string]byte, n)
		for _, f := range filters[:n] {
			m[f] = 1
		}
		filters = filters[n:]
		tok := conn.client.SubscribeMultiple(m, nil)
		if err := t.waitToken(ctx, conn, tok); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	return nil
}

type initMessage struct {
	GatewaysEUIs []string `json:"gateways_euis"`
	Time         string   `json:"time"`
	APIVersion   string   `json:"api_version"`
	AppVersion   string   `json:"app_version"`
}

func (t *mqttTransport) initPayload() []byte {
	gws := t.gateways
	if gws == nil {
		gws = []string{}
	}
	b, _ := json.Marshal(initMessage{GatewaysEUIs: gws, Time: utcMicro(time.Now()), APIVersion: cmp.Or(t.apiVersion, config.API10), AppVersion: cmp.Or(t.appVersion, ProtocolAppVersion)})
	return b
}

// utcMicro is UTC with six fractional digits and Z (conduit.md §8.4).
func utcMicro(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// pending is a row published on the current connection, PUBACK pending.
type pending struct {
	id   int64        // the row's
	toks []paho.Token // its publishes (one, or two for a v1.0 joined)
	dead error        // the row cannot be published: dead-letter it in turn
	one  [1]paho.Token
}

// deliver publishes the rows offered that are not yet published on this
// connection (rows always start with the oldest one not settled: the loop's
// one lane), waits for the head's PUBACK and returns how many leading rows
// are acknowledged; a row that cannot be published is refused for good when
// it reaches the head. A failed publish ends the connection (lost): it and
// every row behind it are resent by the next one, in order.
func (t *mqttTransport) deliver(ctx context.Context, rows []cache.Row) result {
	conn := t.conn
	if conn == nil {
		return result{err: errConnectionLost}
	}
	if len(t.q) > len(rows) || (len(t.q) > 0 && t.q[0].id != rows[0].ID) {
		t.q = t.q[:0] // not the rows published: start again from what is offered
	}
	if len(t.q) < len(rows) && cap(t.q)-len(t.q) < len(rows)-len(t.q) {
		// The acknowledged rows left room at the front of the buffer: move
		// the pending ones there instead of growing it.
		t.q = append(t.qbuf[:0], t.q...)
		if cap(t.q) < len(rows) {
			t.q = slices.Grow(t.q, len(rows)-len(t.q))
		}
		t.qbuf = t.q
	}
	for _, r := range rows[len(t.q):] {
		t.q = append(t.q, pending{})
		t.publishRow(conn.client, r, &t.q[len(t.q)-1])
		t.seen = r.ID
	}
	for _, tok := range t.q[0].tokens() {
		if err := t.waitAck(ctx, conn, tok); err != nil {
			if ctx.Err() == nil {
				t.drop(conn) // disconnects it (unless already lost)
				conn.setLost(err)
			}
			return result{err: err}
		}
	}
	if p := t.q[0]; p.dead != nil {
		clear(t.q[:1])
		t.q = t.q[1:]
		return result{err: fmt.Errorf("row cannot be published: %w", p.dead), refused: true}
	}
	// The head is acknowledged; so may be the rows behind it.
	n := 0
	for n < len(t.q) && t.q[n].dead == nil && done(t.q[n].tokens()) {
		n++
	}
	clear(t.q[:n]) // the tokens are not kept alive by the buffer
	t.q = t.q[n:]
	return result{acked: n}
}

// tokens are the row's publishes.
func (p *pending) tokens() []paho.Token {
	switch {
	case p.toks != nil:
		return p.toks
	case p.one[0] != nil:
		return p.one[:]
	}
	return nil // nothing published (Azure: joined and moved)
}

// waitAck is waitToken for the PUBACKs deliver waits for, on one timer kept
// for the life of the transport (deliver runs on the delivery loop's goroutine).
func (t *mqttTransport) waitAck(ctx context.Context, conn *mqttConn, tok paho.Token) error {
	select {
	case <-tok.Done(): // already answered: no timer
		return tok.Error()
	default:
	}
	if t.ackTimer == nil {
		t.ackTimer = time.NewTimer(t.ackTimeout)
	} else {
		t.ackTimer.Reset(t.ackTimeout)
	}
	defer t.ackTimer.Stop()
	return awaitToken(ctx, conn, tok, t.ackTimer.C)
}

func done(toks []paho.Token) bool {
	for _, tk := range toks {
		select {
		case <-tk.Done():
			if tk.Error() != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// publishRow publishes the messages of one row (QoS 1) and records them in p.
func (t *mqttTransport) publishRow(c paho.Client, r cache.Row, p *pending) {
	p.id = r.ID
	appEUI, dev := r.AppEUI.String(), r.DevEUI.String()
	msgs, err := t.rowMessages(r, appEUI, dev)
	if err != nil {
		p.dead = err
		return
	}
	if rowKind(r) != lnsbridge.KindMoved && t.perDevice() {
		t.subscribeDevice(dev, t.deviceAppEUI(appEUI), true)
	}
	if len(msgs) == 1 {
		p.one[0] = c.Publish(msgs[0].topic, 1, t.retainEvents, msgs[0].payload)
	} else {
		for _, m := range msgs {
			p.toks = append(p.toks, c.Publish(m.topic, 1, t.retainEvents, m.payload))
		}
	}
	if rowKind(r) == lnsbridge.KindMoved && t.perDevice() {
		t.unsubscribeDevice(dev)
	}
}

type pubMsg struct {
	topic   string
	payload []byte
}

// rowMessages maps an outbox row to its publishes (conduit.md §7.2, §7.3):
// the topics from its kind and its device's AppEUI and DevEUI (text form).
func (t *mqttTransport) rowMessages(r cache.Row, appEUI, dev string) ([]pubMsg, error) {
	v := t.vars
	v.appEUI, v.devEUI = appEUI, dev
	var tmpls []string
	body := r.Body
	if t.azure {
		return t.azureMessages(r)
	}
	switch rowKind(r) {
	case lnsbridge.KindUp:
		body = rowBody(r, t.encodeHex)
		if topic, ok := t.customUplink(body); ok {
			return []pubMsg{{topic, body}}, nil
		}
		tmpls = t.table.up
	case lnsbridge.KindJoined:
		tmpls = t.table.joined
	case lnsbridge.KindMoved:
		tmpls = t.table.moved
	default:
		return nil, fmt.Errorf("unknown row kind %q", r.Kind)
	}
	out := make([]pubMsg, 0, len(tmpls))
	for _, tm := range tmpls {
		out = append(out, pubMsg{v.fill(tm), body})
	}
	return out, nil
}

// customUplink fills the custom uplink template with the uplink's keys plus
// gwuuid; a missing key or a wildcard in the result falls back to the
// standard topic with a log line (conduit.md §7.4, §15 #2).
func (t *mqttTransport) customUplink(body []byte) (string, bool) {
	if t.customUp == "" {
		return "", false
	}
	keys := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &keys); err != nil {
		keys = map[string]json.RawMessage{}
	}
	t.addGatewayKeys(keys)
	topic, err := fillTemplate(t.customUp, keys)
	if err == nil && strings.ContainsAny(topic, "+#") {
		err = errors.New("the filled topic contains a wildcard")
	}
	if err == nil && topic == "" {
		err = errors.New("the filled topic is empty")
	}
	if err != nil {
		t.log.Warn("uplinkTopic template not applicable to this uplink", "template", t.customUp, "err", err, "standard_topic", !t.azure)
		return "", false
	}
	return topic, true
}

func (t *mqttTransport) addGatewayKeys(keys map[string]json.RawMessage) {
	gw, _ := json.Marshal(t.vars.gw)
	keys["gwuuid"] = gw
	serial, _ := json.Marshal(t.serial)
	keys["gwserial"] = serial
	if t.azure {
		id, _ := json.Marshal(t.clientID)
		keys["client_id"] = id
	}
}

// perDevice reports whether devices get their own subscriptions.
func (t *mqttTransport) perDevice() bool { return len(t.table.deviceSubs) > 0 || t.customDown != "" }

// deviceAppEUI is the AppEUI a device's topics use: the application's own,
// except under the catch-all.
func (t *mqttTransport) deviceAppEUI(fromRow string) string {
	if t.vars.app != config.CatchAll {
		return t.vars.app
	}
	return fromRow
}

// knownAppEUI is the AppEUI of a device before the transport saw a row of
// it: learnt from an earlier row, else from the device table.
func (t *mqttTransport) knownAppEUI(dev string) string {
	if t.vars.app != config.CatchAll {
		return t.vars.app
	}
	t.mu.Lock()
	ae := t.devApp[dev]
	t.mu.Unlock()
	if ae == "" && t.lookupAppEUI != nil {
		if v, ok := t.lookupAppEUI(dev); ok {
			ae = v
		}
	}
	return ae
}

// deviceFilters lists a device's subscriptions (conduit.md §7.2, §7.4).
func (t *mqttTransport) deviceFilters(dev, appEUI string) map[string]subEntry {
	out := map[string]subEntry{}
	v := t.vars
	v.appEUI, v.devEUI = appEUI, dev
	for _, tm := range t.table.deviceSubs {
		if strings.Contains(tm, "{appeui}") && appEUI == "" {
			continue // learnt with the device's first row
		}
		if strings.Contains(tm, "{gweui}") {
			for _, g := range t.gateways {
				v.gwEUI = g
				out[v.fill(tm)] = subEntry{event: lastLevel(tm), devEUI: dev}
			}
			continue
		}
		out[v.fill(tm)] = subEntry{event: lastLevel(tm), devEUI: dev}
	}
	if t.customDown != "" {
		keys := map[string]json.RawMessage{}
		d, _ := json.Marshal(dev)
		keys["deveui"] = d
		if appEUI != "" {
			ae, _ := json.Marshal(appEUI)
			keys["appeui"] = ae
		}
		t.addGatewayKeys(keys)
		f, err := fillTemplate(t.customDown, keys)
		switch {
		case err != nil:
			t.log.Debug("downlinkTopic template not applicable to this device", "deveui", dev, "template", t.customDown, "err", err)
		case f != "":
			if _, std := out[f]; !std {
				e := subEntry{event: "down", custom: true}
				if strings.Contains(t.customDown, "%(deveui)s") {
					e.devEUI = dev
				}
				out[f] = e
			}
		}
	}
	return out
}

// subscribeDevice records a device's filters and, when send and connected,
// subscribes the new ones.
func (t *mqttTransport) subscribeDevice(dev, appEUI string, send bool) {
	t.mu.Lock()
	if _, ok := t.devSubs[dev]; ok && (t.devApp[dev] == appEUI || appEUI == "") {
		t.mu.Unlock()
		return
	}
	if _, ok := t.devSubs[dev]; ok {
		t.unsubscribeLocked(dev) // AppEUI changed: drop the old topics (not sent: re-added below)
	}
	fs := t.deviceFilters(dev, appEUI)
	var added []string
	list := make([]string, 0, len(fs))
	for f, e := range fs {
		list = append(list, f)
		if cur, ok := t.subs[f]; ok {
			if cur.refs > 0 {
				cur.refs++
				if cur.devEUI != e.devEUI {
					cur.devEUI = "" // shared by several devices: DevEUI from the payload
				}
			}
			continue
		}
		e.refs = 1
		t.subs[f] = &e
		added = append(added, f)
	}
	t.devSubs[dev] = list
	if appEUI != "" {
		t.devApp[dev] = appEUI
	}
	c := t.client
	t.mu.Unlock()
	if send && c != nil && len(added) > 0 {
		m := make(map[string]byte, len(added))
		for _, f := range added {
			m[f] = 1
		}
		c.SubscribeMultiple(m, nil) // in order before the row's publish; a failure shows as a lost connection
	}
}

// unsubscribeDevice drops a device's own filters (moved).
func (t *mqttTransport) unsubscribeDevice(dev string) {
	t.mu.Lock()
	gone := t.unsubscribeLocked(dev)
	c := t.client
	t.mu.Unlock()
	if c != nil && len(gone) > 0 {
		c.Unsubscribe(gone...)
	}
}

func (t *mqttTransport) unsubscribeLocked(dev string) []string {
	var gone []string
	for _, f := range t.devSubs[dev] {
		e, ok := t.subs[f]
		if !ok || e.refs == 0 {
			continue
		}
		e.refs--
		if e.refs == 0 {
			delete(t.subs, f)
			gone = append(gone, f)
		}
	}
	delete(t.devSubs, dev)
	return gone
}

// close publishes close (empty, retained, QoS 1, at most 2 s) on the
// application's own connection, then disconnects.
func (t *mqttTransport) close(ctx context.Context) {
	t.conn, t.q = nil, nil
	t.mu.Lock()
	c := t.client
	t.client = nil
	t.mu.Unlock()
	if t.azure { // IoT Hub drops clients publishing to unauthorised topics: no close
		if c != nil {
			c.Disconnect(250)
		}
		return
	}
	if c == nil || !c.IsConnectionOpen() {
		t.log.Warn("close notice not sent: the remote broker is not connected", "broker", t.brokerURL)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, mqttCloseTimeout)
	defer cancel()
	tok := c.Publish(t.vars.fill(t.table.close), 1, true, []byte{})
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			t.log.Warn("close notice not delivered", "err", err)
		}
	case <-ctx.Done():
		t.log.Warn("close notice not acknowledged in time", "timeout", mqttCloseTimeout)
	}
	c.Disconnect(250)
}
