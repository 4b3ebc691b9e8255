package sim

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// RecordMQTT counts a message app-connect published to the remote broker as
// the HTTP sink counts requests: uplinks (a topic ending in /up, or any
// object with deveui and fcnt, such as an Azure event or a custom template),
// joined, init and close; every message is recorded with Method "MQTT".
func (s *Sink) RecordMQTT(topic string, payload []byte, retained bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Request{Time: time.Now(), Method: "MQTT", Path: topic, Body: bytes.Clone(payload), Status: 200}
	if retained {
		rec.Header = map[string][]string{"Retain": {"1"}}
	}
	s.record(rec)
	s.stats.Requests++
	last := topic[strings.LastIndexByte(topic, '/')+1:]
	switch last {
	case "init":
		s.stats.Inits++
		return
	case "close":
		s.stats.Closes++
		return
	case "joined":
		s.stats.Joined++
		return
	case "status":
		s.countStatus(payload)
		return
	case "moved", "disconnected", "connected", "api_res", "lora_res", "log_res", "down", "clear", "api_req", "lora_req", "log_req":
		return
	}
	if strings.HasPrefix(last, "type=status") { // Azure telemetry with the type=status property
		s.countStatus(payload)
		return
	}
	if ups, sent, err := parseUplinks(payload, false); err == nil {
		s.countUplinks(ups, sent, payload, rec.Time)
	}
}

// MQTTRemote is the cloud side over MQTT: it subscribes to everything on the
// remote broker, counts what app-connect publishes in a Sink, and sends
// downlinks, clears and requests by topic.
type MQTTRemote struct {
	Sink     *Sink
	client   paho.Client
	received atomic.Uint64
}

// NewMQTTRemote connects to brokerURL (tcp://, ssl://, ws://, wss://) and subscribes to "#".
func NewMQTTRemote(ctx context.Context, brokerURL string, sink *Sink) (*MQTTRemote, error) {
	if sink == nil {
		sink = NewSink("")
	}
	r := &MQTTRemote{Sink: sink}
	opts := paho.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("conduit-sim-remote-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe("#", 1, func(_ paho.Client, m paho.Message) {
				r.received.Add(1)
				sink.RecordMQTT(m.Topic(), m.Payload(), m.Retained())
			})
		})
	r.client = paho.NewClient(opts)
	tok := r.client.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("sim: remote MQTT %s: %w", brokerURL, err)
		}
	case <-ctx.Done():
		r.client.Disconnect(0)
		return nil, fmt.Errorf("sim: remote MQTT %s: %w", brokerURL, ctx.Err())
	}
	return r, nil
}

// Publish sends a message to app-connect (a downlink, a clear, a request), QoS 1.
func (r *MQTTRemote) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	tok := r.client.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Received counts the messages seen.
func (r *MQTTRemote) Received() uint64 { return r.received.Load() }

// Close disconnects.
func (r *MQTTRemote) Close() { r.client.Disconnect(250) }
