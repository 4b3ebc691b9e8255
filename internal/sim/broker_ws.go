package sim

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// AddWebsocket adds a WebSocket listener (TLS when tc is set: wss) on addr
// ("127.0.0.1:0" picks a free port) to a running broker and returns its
// host:port. The listener accepts any path.
//
// It also makes the broker accept a last will with an empty message, which
// MQTT 3.1.1 allows and app-connect registers (`…/disconnected`) but mochi
// refuses ("will flag no payload"): such a will is dropped instead.
func (b *Broker) AddWebsocket(addr string, tc *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("sim: broker: websocket listen %s: %w", addr, err)
	}
	addr = ln.Addr().String()
	_ = ln.Close() // the listener binds it again itself
	if err := b.server.AddHook(new(emptyWillHook), nil); err != nil {
		return "", fmt.Errorf("sim: broker: add hook: %w", err)
	}
	id := "ws-" + addr
	if err := b.server.AddListener(listeners.NewWebsocket(listeners.Config{ID: id, Address: addr, TLSConfig: tc})); err != nil {
		return "", fmt.Errorf("sim: broker: add websocket listener: %w", err)
	}
	b.server.Listeners.Serve(id, b.server.EstablishConnection)
	return addr, nil
}

// emptyWillHook drops a last will whose message is empty (see AddWebsocket).
type emptyWillHook struct{ mqtt.HookBase }

func (h *emptyWillHook) ID() string { return "empty-will" }

func (h *emptyWillHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead}, []byte{b})
}

func (h *emptyWillHook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Connect && pk.Connect.WillFlag && len(pk.Connect.WillPayload) == 0 {
		pk.Connect.WillFlag = false
		pk.Connect.WillTopic = ""
		pk.Connect.WillQos = 0
		pk.Connect.WillRetain = false
	}
	return pk, nil
}
