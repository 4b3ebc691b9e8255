package lnsbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Incoming is a parsed LNS event waiting to be stored. The consumer calls Ack
// once the event (and everything it produced) is durably committed; only then
// does the broker forget the message. Never calling Ack means the broker
// redelivers it after a reconnect or restart.
type Incoming struct {
	Event Event
	Ack   func()
}

// Handler takes each valid event, in arrival order, on the MQTT client's
// delivery goroutine (the way ChirpStack Gateway Bridge's backends call their
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

// Local is app-connect's client of the gateway's local broker.
type Local struct {
	opts      LocalOptions
	log       *slog.Logger
	client    mqtt.Client
	handler   Handler
	received  atomic.Uint64
	malformed atomic.Uint64
	connected atomic.Bool
	stopping  atomic.Bool
}

// LocalStats counts what the local client saw.
type LocalStats struct {
	Received  uint64 // valid events handed to the consumer
	Malformed uint64 // refused payloads (acknowledged, logged, dropped)
	Connected bool
}

// NewLocal builds the client; SetHandler then Start connect it.
func NewLocal(opts LocalOptions) *Local {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Local{opts: opts, log: opts.Logger}
	co := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetDefaultPublishHandler(l.handle).
		SetCustomOpenConnectionFn(dialLocal). // conn.go
		SetOnConnectHandler(l.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			l.connected.Store(false)
			if !l.stopping.Load() {
				l.log.Warn("local broker connection lost, reconnecting", "broker", opts.Broker, "err", err)
			}
		})
	if opts.Username != "" || opts.Password != "" {
		co.SetUsername(opts.Username).SetPassword(opts.Password)
	}
	l.client = mqtt.NewClient(co)
	return l
}

// SetHandler sets the function every valid event goes to, directly from the
// client's callback: no channel, no goroutine in between. Call it before
// Start; without one, nothing is acknowledged and the broker keeps everything.
// While the handler blocks the client reads nothing more; the broker's
// in-flight window holds the rest.
func (l *Local) SetHandler(h Handler) { l.handler = h }

// Start connects (retrying forever in the background until ctx ends) and
// subscribes on every connection.
func (l *Local) Start(ctx context.Context) error {
	tok := l.client.Connect()
	go func() {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				l.log.Error("local broker connect failed", "broker", l.opts.Broker, "err", err)
			}
		case <-ctx.Done():
		}
	}()
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

func (l *Local) onConnect(c mqtt.Client) {
	filters := make(map[string]byte, len(Subscriptions))
	for _, s := range Subscriptions {
		filters[s] = 1
	}
	tok := c.SubscribeMultiple(filters, nil) // nil: the default handler gets them
	go func() {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			l.log.Error("local broker subscribe failed, reconnecting", "broker", l.opts.Broker, "err", tok.Error())
			return
		}
		l.connected.Store(true)
		l.log.Info("local broker connected", "broker", l.opts.Broker, "client_id", l.opts.ClientID)
	}()
}

func (l *Local) handle(_ mqtt.Client, m mqtt.Message) {
	if l.stopping.Load() {
		return // not acknowledged: the broker keeps it for the next start
	}
	ev, err := ParseEvent(m.Topic(), m.Payload(), l.opts.Now())
	if err != nil {
		l.malformed.Add(1)
		var pe *ParseError
		reason := err.Error()
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		l.log.Warn("local message refused", "topic", m.Topic(), "reason", reason, "bytes", len(m.Payload()))
		m.Ack()
		return
	}
	l.received.Add(1)
	if l.handler != nil {
		l.handler(Incoming{Event: ev, Ack: m.Ack})
	}
}

// Stats returns the counters.
func (l *Local) Stats() LocalStats {
	return LocalStats{Received: l.received.Load(), Malformed: l.malformed.Load(), Connected: l.connected.Load()}
}

// Stop stops taking new messages and disconnects. Messages not yet
// acknowledged stay with the broker for the next start.
func (l *Local) Stop() {
	l.stopping.Store(true)
	l.client.Disconnect(250)
	l.connected.Store(false)
}

// Publish sends a downlink object to lora/<deveui>/down (QoS 1, not retained).
func (l *Local) Publish(ctx context.Context, devEUI string, payload []byte) error {
	return l.publish(ctx, "lora/"+devEUI+"/down", payload)
}

// Clear empties a device's downlink queue: lora/<deveui>/clear, empty, QoS 1, not retained.
func (l *Local) Clear(ctx context.Context, devEUI string) error {
	return l.publish(ctx, "lora/"+devEUI+"/clear", nil)
}

func (l *Local) publish(ctx context.Context, topic string, payload []byte) error {
	tok := l.client.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("lnsbridge: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lnsbridge: publish %s: %w", topic, ctx.Err())
	}
}
