package lnsbridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Incoming is a parsed LNS event waiting to be stored. The consumer calls Ack
// once the event (and everything it produced) is durably committed; only then
// does the broker forget the message. Never calling Ack means the broker
// redelivers it after a reconnect or restart.
type Incoming struct {
	Event Event
	Ack   func()
}

// Handler takes each valid event, in arrival order, on the connection's
// reader goroutine (the way ChirpStack Gateway Bridge's backends call their
// SetUplinkFrameFunc). It must return quickly: it hands the event on (blocking
// only to apply back-pressure) and acknowledges it later, after the commit.
type Handler func(Incoming)

// LocalOptions configure the local broker client.
type LocalOptions struct {
	Broker   string // tcp://127.0.0.1:1883
	ClientID string // fixed, derived from the gateway UUID (see ClientIDFor)
	Username string
	Password string
	Logger   *slog.Logger
	Now      func() time.Time
}

// ClientIDFor is the local client id of a gateway: fixed, so the broker keeps
// the session (and its unacknowledged messages) across restarts.
func ClientIDFor(id Identity) string { return "app-connect-" + id.UUIDRaw }

// localTiming are the client's periods; tests shorten them.
type localTiming struct {
	keepAlive      time.Duration // PINGREQ after this long without sending
	pingTimeout    time.Duration // no PINGRESP within this: the broker is gone
	connectTimeout time.Duration // dial and CONNACK
	subackTimeout  time.Duration // SUBACK
	writeTimeout   time.Duration // any write
	retryFirst     time.Duration // first wait before reconnecting, doubled...
	retryMax       time.Duration // ...up to this
}

var defaultLocalTiming = localTiming{
	keepAlive: 30 * time.Second, pingTimeout: 10 * time.Second, connectTimeout: 10 * time.Second,
	subackTimeout: 10 * time.Second, writeTimeout: 10 * time.Second, retryFirst: time.Second, retryMax: 30 * time.Second,
}

// Local is app-connect's client of the gateway's local broker: MQTT 3.1.1
// over one TCP connection at a time (mqttconn.go), with a persistent session
// (clean session false) so that the broker keeps every message not yet
// acknowledged across disconnections and restarts.
//
// Goroutines: one loop (Start) that connects, subscribes, sends the
// keepalive pings and reconnects; one reader per connection that calls the
// handler inline for each PUBLISH and completes downlinks on their PUBACK.
// Acknowledgements and downlinks are written by their callers, under the
// connection's write lock.
//
// An Ack writes its PUBACK on the connection its message arrived on, never on
// a later one: packet identifiers belong to a connection's exchange, and on
// the next connection the broker redelivers the unacknowledged message (DUP,
// possibly under another identifier) while it may give the old identifier to
// another message; a PUBACK carried over could acknowledge a message nobody
// committed. An Ack whose connection is gone is dropped; the redelivered copy
// is handed to the handler again and acknowledged once that copy's commit is
// durable (a duplicate at worst, never a loss).
type Local struct {
	opts      LocalOptions
	log       *slog.Logger
	timing    localTiming
	handler   Handler
	received  atomic.Uint64
	malformed atomic.Uint64
	sessions  atomic.Uint64 // connections brought up (CONNACK and SUBACK)
	connected atomic.Bool
	stopping  atomic.Bool

	mu       sync.Mutex
	cond     *sync.Cond // signalled when a reader leaves the handler or ends
	readers  int        // reader goroutines running outside the handler
	cur      *mqttConn  // the connection up; nil while there is none
	outgoing map[uint16]*outgoing
	seq      uint64 // order of the downlinks, for resending
	nextID   uint16
	subID    uint16 // the SUBSCRIBE in flight, 0 when none
	cancel   context.CancelFunc
	done     chan struct{} // closed when the loop has ended
	stopped  chan struct{} // closed by Stop
}

// outgoing is a downlink waiting for its PUBACK.
type outgoing struct {
	id        uint16
	seq       uint64
	topic     string
	payload   []byte
	sent      bool      // written once: a resend carries DUP
	conn      *mqttConn // where it was last written
	abandoned bool      // its caller gave up: forgotten on its PUBACK or with its connection
	done      chan struct{}
}

// LocalStats counts what the local client saw.
type LocalStats struct {
	Received  uint64 // valid events handed to the consumer
	Malformed uint64 // refused payloads (acknowledged, logged, dropped)
	Connected bool
}

// errLocalStopped is what a downlink gets once Stop was called or Start's
// context ended.
var errLocalStopped = errors.New("local broker client stopped")

// NewLocal builds the client; SetHandler then Start connect it.
func NewLocal(opts LocalOptions) *Local {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Local{opts: opts, log: opts.Logger, timing: defaultLocalTiming,
		outgoing: make(map[uint16]*outgoing), stopped: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// SetHandler sets the function every valid event goes to, directly from the
// connection's reader: no channel, no goroutine in between. Call it before
// Start; without one, nothing is acknowledged and the broker keeps everything.
// While the handler blocks the client reads nothing more; the broker's
// in-flight window holds the rest.
func (l *Local) SetHandler(h Handler) { l.handler = h }

// Start connects (retrying forever in the background until ctx ends or Stop)
// and subscribes on every connection. It fails only on a broker address it
// cannot use.
func (l *Local) Start(ctx context.Context) error {
	if _, err := localBrokerHost(l.opts.Broker); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil || l.stopping.Load() {
		return fmt.Errorf("lnsbridge: local broker client already started or stopped")
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.run(ctx)
	return nil
}

// WaitConnected blocks until the first connection is up or ctx ends.
func (l *Local) WaitConnected(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !l.connected.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("lnsbridge: local broker %s: %w", l.opts.Broker, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Stats returns the counters.
func (l *Local) Stats() LocalStats {
	return LocalStats{Received: l.received.Load(), Malformed: l.malformed.Load(), Connected: l.connected.Load()}
}

// Stop stops taking new messages and disconnects: nothing more is handed to
// the handler or acknowledged, and messages not yet acknowledged stay with
// the broker for the next start. It returns once the loop and the reader
// have ended; a reader still inside the handler (blocked on a consumer that
// has stopped taking events) ends as soon as the handler returns.
func (l *Local) Stop() {
	if l.stopping.Swap(true) {
		return
	}
	close(l.stopped)
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	l.mu.Lock()
	for l.readers > 0 {
		l.cond.Wait()
	}
	l.mu.Unlock()
	l.connected.Store(false)
}

// run is the client's loop: connect, serve the connection, reconnect after a
// growing wait, until ctx ends.
func (l *Local) run(ctx context.Context) {
	defer close(l.done)
	wait := l.timing.retryFirst
	for {
		m, err := l.connect(ctx)
		if err == nil {
			wait = l.timing.retryFirst
			err = l.serve(ctx, m)
			l.down(m)
			if ctx.Err() != nil {
				return
			}
			if !l.stopping.Load() {
				l.log.Warn("local broker connection lost, reconnecting", "broker", l.opts.Broker, "err", err, "retry_in", wait)
			}
		} else {
			if ctx.Err() != nil {
				return
			}
			l.log.Error("local broker connect failed", "broker", l.opts.Broker, "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, l.timing.retryMax)
	}
}

// connect dials, sends CONNECT, checks the CONNACK, starts the reader,
// subscribes and waits for the SUBACK; then it resends the downlinks still
// unacknowledged and makes the connection the current one.
func (l *Local) connect(ctx context.Context) (*mqttConn, error) {
	hello, err := appendConnect(nil, connectOptions{
		ClientID: l.opts.ClientID, Username: l.opts.Username, Password: l.opts.Password,
		Credentials:  l.opts.Username != "" || l.opts.Password != "",
		CleanSession: false, // the broker keeps what is not acknowledged
		KeepAlive:    l.timing.keepAlive,
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.timing.connectTimeout)
	defer cancel()
	c, err := dialLocal(cctx, l.opts.Broker)
	if err != nil {
		return nil, err
	}
	m := newMQTTConn(c, l.timing.writeTimeout)
	// The dial's deadline bounds the CONNACK too: the connection is closed
	// when it passes, which ends the read below.
	unwatch := context.AfterFunc(cctx, func() { m.close(cctx.Err()) })
	if err := m.write(func(b []byte) []byte { return append(b, hello...) }); err != nil {
		unwatch()
		m.close(err)
		return nil, err
	}
	pk, err := m.pr.read()
	if !unwatch() {
		err = fmt.Errorf("no CONNACK within %s: %w", l.timing.connectTimeout, cctx.Err())
	}
	switch {
	case err != nil:
	case pk.kind != pktConnack:
		err = brokenf("packet type %d before CONNACK", pk.kind)
	case pk.code != 0:
		err = fmt.Errorf("connection refused: %s", connackRefusal(pk.code))
	}
	if err != nil {
		m.close(err)
		return nil, fmt.Errorf("lnsbridge: local broker %s: %w", l.opts.Broker, err)
	}
	m.lastRead.Store(m.since())

	l.mu.Lock()
	l.readers++
	l.subID, _ = l.allocID()
	id := l.subID
	l.mu.Unlock()
	go l.read(m)
	if err := l.subscribe(ctx, m, id); err != nil {
		m.close(err)
		l.mu.Lock()
		l.subID = 0
		l.mu.Unlock()
		return nil, fmt.Errorf("lnsbridge: local broker %s: subscribe: %w", l.opts.Broker, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.subID = 0
	resend := make([]*outgoing, 0, len(l.outgoing))
	for id, o := range l.outgoing {
		if o.abandoned {
			delete(l.outgoing, id)
			continue
		}
		resend = append(resend, o)
	}
	// MQTT 3.1.1 §4.4: with a persistent session the client sends its
	// unacknowledged PUBLISH packets again, in their order, with DUP set
	// when they were sent before.
	slices.SortFunc(resend, func(a, b *outgoing) int { return cmp.Compare(a.seq, b.seq) })
	for _, o := range resend {
		dup := o.sent
		o.sent, o.conn = true, m
		if m.write(func(b []byte) []byte { return appendPublish(b, o.id, dup, o.topic, o.payload) }) != nil {
			break // closed: the next connection resends
		}
	}
	l.cur = m
	l.sessions.Add(1)
	l.connected.Store(true)
	l.log.Info("local broker connected", "broker", l.opts.Broker, "client_id", l.opts.ClientID, "session_present", pk.present)
	return m, nil
}

// subscribe sends SUBSCRIBE and waits for its SUBACK. The wait is for the
// broker: it does not run while the reader is inside the handler (the SUBACK
// may be queued behind messages of the session that the consumer is slow to
// take).
func (l *Local) subscribe(ctx context.Context, m *mqttConn, id uint16) error {
	if err := m.write(func(b []byte) []byte { return appendSubscribe(b, id, Subscriptions) }); err != nil {
		return err
	}
	asked := m.since()
	t := time.NewTimer(l.timing.subackTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.closed:
			return m.err
		case pk := <-m.suback:
			if pk.id != id {
				return brokenf("SUBACK for packet %d, want %d", pk.id, id)
			}
			if len(pk.granted) != len(Subscriptions) {
				return brokenf("SUBACK with %d return codes for %d filters", len(pk.granted), len(Subscriptions))
			}
			for i, g := range pk.granted {
				switch g {
				case 1:
				case 0:
					l.log.Warn("local broker granted QoS 0: its messages cannot be acknowledged after the commit",
						"broker", l.opts.Broker, "filter", Subscriptions[i])
				case 0x80:
					return fmt.Errorf("the broker refused the subscription to %s", Subscriptions[i])
				default:
					return brokenf("SUBACK return code %#x for %s", g, Subscriptions[i])
				}
			}
			return nil
		case <-t.C:
			if wait := m.answerWait(asked, l.timing.subackTimeout); wait > 0 {
				t.Reset(wait)
				continue
			}
			return fmt.Errorf("no SUBACK within %s", l.timing.subackTimeout)
		}
	}
}

// serve sends the keepalive pings of a connection up until it closes or ctx
// ends (then it disconnects).
func (l *Local) serve(ctx context.Context, m *mqttConn) error {
	keep, pingTimeout := l.timing.keepAlive, l.timing.pingTimeout
	t := time.NewTimer(keep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = m.write(func(b []byte) []byte { return append(b, pktDisconnect<<4, 0) })
			m.close(errLocalStopped)
			return ctx.Err()
		case <-m.closed:
			return m.err
		case <-t.C:
		}
		// Two clocks: the answer to an outstanding PINGREQ, and the
		// keepalive (a PINGREQ whenever nothing was written for keep).
		next := keep
		if asked := m.pingSent.Load(); asked != 0 {
			wait := m.answerWait(asked, pingTimeout)
			if wait <= 0 {
				m.close(fmt.Errorf("no PINGRESP within %s", pingTimeout))
				continue
			}
			next = wait
		}
		now := m.since()
		idle := time.Duration(now - m.lastWrite.Load())
		if idle >= keep {
			m.pingSent.CompareAndSwap(0, max(now, 1))                                 // an earlier PINGREQ still unanswered keeps its time
			_ = m.write(func(b []byte) []byte { return append(b, pktPingreq<<4, 0) }) // a failure closes m
			idle = 0
		}
		t.Reset(min(next, keep-idle))
	}
}

// down forgets a connection that ended.
func (l *Local) down(m *mqttConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == m {
		l.cur = nil
	}
	l.connected.Store(false)
	for id, o := range l.outgoing {
		if o.abandoned && o.conn == m {
			delete(l.outgoing, id) // its PUBACK can no longer come
		}
	}
}

// read is a connection's reader: it reads packets until the connection
// closes, hands each PUBLISH to the handler inline, in order, and completes
// downlinks, subscriptions and pings.
func (l *Local) read(m *mqttConn) {
	defer func() {
		l.mu.Lock()
		l.readers--
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	for {
		pk, err := m.pr.read()
		if err != nil {
			m.close(fmt.Errorf("reading from the local broker: %w", err))
			return
		}
		m.lastRead.Store(m.since())
		switch pk.kind {
		case pktPublish:
			if !l.deliver(m, pk) {
				return
			}
		case pktPuback:
			l.published(m, pk.id)
		case pktSuback:
			select {
			case m.suback <- pk:
			default:
				m.close(brokenf("SUBACK %d not asked for", pk.id))
				return
			}
		case pktPingresp:
			m.pingSent.Store(0)
		default:
			m.close(brokenf("unexpected packet type %d", pk.kind))
			return
		}
	}
}

// deliver parses a PUBLISH and hands it to the handler. Refused payloads are
// counted, logged and acknowledged at once (the broker would otherwise
// redeliver them forever). It returns false once the client is stopping:
// the message is neither handed on nor acknowledged.
func (l *Local) deliver(m *mqttConn, pk packet) bool {
	if l.stopping.Load() {
		return false // not acknowledged: the broker keeps it for the next start
	}
	ack := func() {}
	if pk.qos > 0 {
		id := pk.id
		var once atomic.Bool
		ack = func() {
			if !once.Swap(true) {
				l.ack(m, id)
			}
		}
	}
	if pk.oversized {
		l.malformed.Add(1)
		l.log.Warn("local message refused", "topic", pk.topic,
			"reason", fmt.Sprintf("packet of %d bytes exceeds %d, discarded unread", pk.size, maxLocalPacket), "bytes", pk.size)
		ack()
		return true
	}
	ev, err := ParseEvent(pk.topic, pk.payload, l.opts.Now())
	if err != nil {
		l.malformed.Add(1)
		var pe *ParseError
		reason := err.Error()
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		l.log.Warn("local message refused", "topic", pk.topic, "reason", reason, "bytes", len(pk.payload))
		ack()
		return true
	}
	l.received.Add(1)
	if l.handler == nil {
		return true
	}
	l.mu.Lock()
	l.readers-- // Stop does not wait for a reader inside the handler
	l.mu.Unlock()
	m.inHandler.Store(true)
	l.handler(Incoming{Event: ev, Ack: ack})
	m.inHandler.Store(false)
	m.lastRead.Store(m.since()) // answers waited for meanwhile are due from now
	l.mu.Lock()
	l.readers++
	l.mu.Unlock()
	return !l.stopping.Load()
}

// ack writes a message's PUBACK on the connection it came on; once that
// connection is gone, or the client stopped, it is dropped (see Local).
func (l *Local) ack(m *mqttConn, id uint16) {
	if l.stopping.Load() || m.isClosed() {
		return
	}
	if err := m.puback(id); err != nil {
		l.log.Debug("local acknowledgement not sent, the broker will redeliver", "broker", l.opts.Broker, "err", err)
	}
}

// published completes the downlink a PUBACK answers.
func (l *Local) published(m *mqttConn, id uint16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.outgoing[id]
	if o == nil || o.conn != m {
		return // a downlink whose caller gave up and whose id was reused elsewhere: nothing to do
	}
	delete(l.outgoing, id)
	if !o.abandoned {
		close(o.done)
	}
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// allocID returns a packet identifier no downlink or subscription in flight
// uses. Called with l.mu held.
func (l *Local) allocID() (uint16, bool) {
	for range 1 << 16 {
		l.nextID++
		if l.nextID == 0 {
			l.nextID = 1
		}
		if _, used := l.outgoing[l.nextID]; !used && l.nextID != l.subID {
			return l.nextID, true
		}
	}
	return 0, false
}

// Publish sends a downlink object to lora/<deveui>/down (QoS 1, not retained).
func (l *Local) Publish(ctx context.Context, devEUI string, payload []byte) error {
	return l.publish(ctx, "lora/"+devEUI+"/down", payload)
}

// Clear empties a device's downlink queue: lora/<deveui>/clear, empty, QoS 1, not retained.
func (l *Local) Clear(ctx context.Context, devEUI string) error {
	return l.publish(ctx, "lora/"+devEUI+"/clear", nil)
}

// publish sends a QoS 1 message and waits for its PUBACK. While there is no
// connection it waits for one; when the connection drops before the PUBACK,
// the next connection sends it again (DUP). It gives up when ctx ends or the
// client stops; the message may still have reached the broker then.
func (l *Local) publish(ctx context.Context, topic string, payload []byte) error {
	l.mu.Lock()
	ended := l.done // nil before Start: wait for it
	if l.stopping.Load() || isDone(ended) {
		l.mu.Unlock()
		return fmt.Errorf("lnsbridge: publish %s: %w", topic, errLocalStopped)
	}
	id, ok := l.allocID()
	if !ok {
		l.mu.Unlock()
		return fmt.Errorf("lnsbridge: publish %s: 65535 messages already in flight", topic)
	}
	l.seq++
	o := &outgoing{id: id, seq: l.seq, topic: topic, payload: payload, done: make(chan struct{})}
	l.outgoing[id] = o
	m := l.cur
	if m != nil {
		o.sent, o.conn = true, m
	}
	l.mu.Unlock()
	if m != nil {
		// A failure closes m; the next connection sends it again.
		_ = m.write(func(b []byte) []byte { return appendPublish(b, id, false, topic, payload) })
	}
	var err error
	select {
	case <-o.done:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-l.stopped:
		err = errLocalStopped
	case <-ended: // Start's context ended
		err = errLocalStopped
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-o.done:
		return nil // acknowledged meanwhile
	default:
	}
	if o.sent && o.conn != nil && o.conn == l.cur {
		o.abandoned = true // its id stays taken until its PUBACK or the end of its connection
	} else {
		delete(l.outgoing, id)
	}
	return fmt.Errorf("lnsbridge: publish %s: %w", topic, err)
}
