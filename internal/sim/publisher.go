package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DefaultWindow is how many QoS 1 publications a Publisher keeps in flight at most.
const DefaultWindow = 1000

// ErrPublisherClosed is returned by publications after Close.
var ErrPublisherClosed = errors.New("sim: publisher closed")

// Publisher publishes LNS events to a broker with QoS 1, as the Conduit's network server does.
// Publications are asynchronous with up to DefaultWindow waiting for their PUBACK.
type Publisher struct {
	client paho.Client
	slots  chan struct{}     // one token per publication in flight
	queue  chan pendingToken // tokens in publication order, read by collect
	closed chan struct{}
	once   sync.Once
	done   chan struct{} // collect has returned

	published atomic.Int64
	acked     atomic.Int64
	failed    atomic.Int64

	mu           sync.Mutex
	firstPublish time.Time
	lastAck      time.Time
	firstErr     error // first failure since the last Flush
}

type pendingToken struct {
	tok   paho.Token
	topic string
	flush chan struct{} // non-nil: a Flush marker, closed when reached
}

// PublisherStats are a Publisher's counters since it was created.
type PublisherStats struct {
	Published    int64     // handed to the MQTT client
	Acked        int64     // PUBACK received
	Failed       int64     // publication failed (not connected, timeout, closed)
	FirstPublish time.Time // zero before the first publication
	LastAck      time.Time
}

// RunStats count what one Run published.
type RunStats struct {
	Joined  int       // joined events published
	Uplinks int       // uplink events published
	Failed  int64     // publications of this run that got no PUBACK
	Start   time.Time // first publication
	End     time.Time // last PUBACK (or when Run returned without flushing)
}

// NewPublisher connects to brokerURL (tcp://host:port) with a unique client id and a clean
// session, retrying until ctx is done.
func NewPublisher(ctx context.Context, brokerURL string) (*Publisher, error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("sim: publisher: client id: %w", err)
	}
	opts := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID("conduit-sim-" + hex.EncodeToString(rnd[:])).
		SetCleanSession(true).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(30 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(2 * time.Second)
	client := paho.NewClient(opts)
	for {
		tok := client.Connect()
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-ctx.Done():
			client.Disconnect(0)
			return nil, fmt.Errorf("sim: publisher: connect %s: %w", brokerURL, ctx.Err())
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sim: publisher: connect %s: %w (last error: %v)", brokerURL, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	p := &Publisher{
		client: client,
		slots:  make(chan struct{}, DefaultWindow),
		queue:  make(chan pendingToken, DefaultWindow+16),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go p.collect()
	return p, nil
}

// collect waits for the PUBACKs in publication order and releases the window slots.
func (p *Publisher) collect() {
	defer close(p.done)
	for {
		var pt pendingToken
		select {
		case pt = <-p.queue:
		case <-p.closed:
			return
		}
		if pt.flush != nil {
			close(pt.flush)
			continue
		}
		var err error
		select {
		case <-pt.tok.Done():
			err = pt.tok.Error()
		case <-p.closed:
			err = ErrPublisherClosed
		}
		p.mu.Lock()
		if err != nil {
			p.failed.Add(1)
			if p.firstErr == nil {
				p.firstErr = fmt.Errorf("sim: publish %s: %w", pt.topic, err)
			}
		} else {
			p.acked.Add(1)
			p.lastAck = time.Now()
		}
		p.mu.Unlock()
		<-p.slots
	}
}

// acquire takes a window slot, waiting while DefaultWindow publications are in flight.
func (p *Publisher) acquire(ctx context.Context) error {
	select {
	case <-p.closed:
		return ErrPublisherClosed
	default:
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sim: publish: %w", ctx.Err())
	case <-p.closed:
		return ErrPublisherClosed
	}
}

// send publishes with a slot already held.
func (p *Publisher) send(topic string, payload []byte) paho.Token {
	p.mu.Lock()
	if p.firstPublish.IsZero() {
		p.firstPublish = time.Now()
	}
	p.mu.Unlock()
	tok := p.client.Publish(topic, 1, false, payload)
	p.published.Add(1)
	p.queue <- pendingToken{tok: tok, topic: topic} // never blocks: capacity exceeds the window
	return tok
}

// PublishAsync publishes with QoS 1 without waiting for the PUBACK; it blocks only while the
// window is full. Flush waits for the outstanding ones.
func (p *Publisher) PublishAsync(ctx context.Context, topic string, payload []byte) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	p.send(topic, payload)
	return nil
}

// Publish publishes with QoS 1 and waits for the PUBACK. Other publications may be in flight.
func (p *Publisher) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	tok := p.send(topic, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("sim: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sim: publish %s: %w", topic, ctx.Err())
	}
}

// Flush waits until every publication made before it got its PUBACK or failed, and returns the
// first failure since the previous Flush.
func (p *Publisher) Flush(ctx context.Context) error {
	marker := make(chan struct{})
	select {
	case p.queue <- pendingToken{flush: marker}:
	case <-ctx.Done():
		return fmt.Errorf("sim: flush: %w", ctx.Err())
	case <-p.closed:
		return ErrPublisherClosed
	}
	select {
	case <-marker:
	case <-ctx.Done():
		return fmt.Errorf("sim: flush: %w", ctx.Err())
	case <-p.closed:
		return ErrPublisherClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.firstErr
	p.firstErr = nil
	return err
}

// Stats returns the counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PublisherStats{
		Published:    p.published.Load(),
		Acked:        p.acked.Load(),
		Failed:       p.failed.Load(),
		FirstPublish: p.firstPublish,
		LastAck:      p.lastAck,
	}
}

// Run publishes, for every device of fleet, its joined event and then perDevice uplinks,
// round-robin over the devices, at rate messages per second in total (0: as fast as the window
// allows). perDevice 0 publishes until ctx is done. It waits for the PUBACKs at the end; when
// ctx ends first it returns what it counted with ctx's error and without flushing (call Flush
// with another context to wait for the rest).
func (p *Publisher) Run(ctx context.Context, fleet *Fleet, perDevice int, rate float64) (RunStats, error) {
	return p.RunSource(ctx, fleetSource{fleet}, perDevice, rate)
}

// Source produces the events RunSource publishes: a Fleet (plain generated
// events) or a NetworkServer (uplinks encrypted by the device with its session
// keys, checked and decrypted with the keys the join gave the network server).
type Source interface {
	Len() int
	Joined(i int) (topic string, payload []byte, err error)
	Uplink(i int) (topic string, payload []byte, fcnt uint32, err error)
}

type fleetSource struct{ f *Fleet }

// FleetSource is the Source of a Fleet's plain generated events.
func FleetSource(f *Fleet) Source { return fleetSource{f} }

func (s fleetSource) Len() int { return s.f.Len() }

func (s fleetSource) Joined(i int) (string, []byte, error) {
	t, p := s.f.Joined(i)
	return t, p, nil
}

func (s fleetSource) Uplink(i int) (string, []byte, uint32, error) {
	t, p, f := s.f.Uplink(i)
	return t, p, f, nil
}

// RunSource is Run for any Source.
func (p *Publisher) RunSource(ctx context.Context, fleet Source, perDevice int, rate float64) (RunStats, error) {
	var st RunStats
	failed0 := p.failed.Load()
	n := fleet.Len()
	if n == 0 {
		return st, nil
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	st.Start = time.Now()
	var k int64 // messages so far, for pacing
	pace := func() error {
		if interval > 0 {
			due := st.Start.Add(time.Duration(k) * interval)
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return fmt.Errorf("sim: run: %w", ctx.Err())
				}
			}
		}
		k++
		return p.acquire(ctx)
	}
	finish := func(err error) (RunStats, error) {
		st.Failed = p.failed.Load() - failed0
		st.End = time.Now()
		return st, err
	}
	for i := range n {
		if err := pace(); err != nil {
			return finish(err)
		}
		topic, payload, err := fleet.Joined(i)
		if err != nil {
			return finish(err)
		}
		p.send(topic, payload)
		st.Joined++
	}
	for round := 0; perDevice == 0 || round < perDevice; round++ {
		for i := range n {
			if err := pace(); err != nil {
				return finish(err)
			}
			// Generated only once a slot is held, so Fleet.Expected never counts an unsent uplink.
			topic, payload, _, err := fleet.Uplink(i)
			if err != nil {
				return finish(err)
			}
			p.send(topic, payload)
			st.Uplinks++
		}
	}
	err := p.Flush(ctx)
	st, _ = finish(nil)
	if s := p.Stats(); !s.LastAck.IsZero() {
		st.End = s.LastAck
	}
	return st, err
}

// Close disconnects; publications still waiting for their PUBACK are abandoned.
func (p *Publisher) Close() {
	p.once.Do(func() {
		close(p.closed)
		p.client.Disconnect(250)
		<-p.done
	})
}
