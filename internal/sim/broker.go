package sim

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is an embedded MQTT broker standing in for the gateway's Mosquitto: plain TCP,
// anonymous, MQTT 3.1.1 and 5, QoS 0-2, persistent sessions in memory.
type Broker struct {
	server *mqtt.Server
	addr   string
}

// BrokerOptions tune StartBrokerWith. The zero value is what StartBroker uses.
type BrokerOptions struct {
	Logger *slog.Logger // nil: broker logs discarded
}

// StartBroker starts an embedded broker listening on addr ("127.0.0.1:0" picks a free port;
// Addr reports the real one).
func StartBroker(addr string) (*Broker, error) {
	return StartBrokerWith(addr, BrokerOptions{})
}

// StartBrokerWith is StartBroker with options.
func StartBrokerWith(addr string, opts BrokerOptions) (*Broker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sim: broker: listen %s: %w", addr, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// A gateway broker holds bursts for a slow subscriber; make room for the benchmark's bursts.
	caps.MaximumClientWritesPending = 64 * 1024
	caps.MaximumInflight = 65535
	caps.ReceiveMaximum = 65535
	server := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 logger,
		SysTopicResendInterval: 60,
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("sim: broker: allow anonymous: %w", err)
	}
	if err := server.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("sim: broker: add listener: %w", err)
	}
	if err := server.Serve(); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("sim: broker: serve: %w", err)
	}
	return &Broker{server: server, addr: ln.Addr().String()}, nil
}

// Addr is the host:port the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker address in paho's form, tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// brokerCloseWait bounds Close.
const brokerCloseWait = 5 * time.Second

// Close disconnects every client and stops listening. mochi's Close can
// deadlock (seen once in make test, internal/sim hung until the 20-minute
// test timeout): when a client reconnects under a client id the broker still
// knows while the listener closes, attachClient waits for the clients' write
// lock while closeListenerClients, holding a read lock, takes it again
// (Clients.GetByListener calls Len). So Close waits brokerCloseWait at most
// and then leaves mochi's close running and says so.
func (b *Broker) Close() error {
	done := make(chan error, 1)
	go func() { done <- b.server.Close() }()
	t := time.NewTimer(brokerCloseWait)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("sim: broker: close: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("sim: broker: close did not end within %s (mochi's listener close deadlocked with a reconnecting client); left running", brokerCloseWait)
	}
}
