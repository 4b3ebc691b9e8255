package lnsbridge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"

	"github.com/lorawan-gateway/app-connect/internal/tcpopt"
)

// The connection to the local broker.
//
// app-connect acknowledges a local message only once its commit is durable,
// and the commits of a few tens of milliseconds share one fdatasync
// (cache.Synced), so a PUBACK may leave well after its PUBLISH arrived.
// Mosquitto does not set TCP_NODELAY by default (set_tcp_nodelay false): its
// next PUBLISH waits (Nagle) until the previous one's TCP acknowledgement
// arrives, and the kernel delays that acknowledgement by up to 40 ms while no
// data goes back. So after each read the connection asks the kernel to
// acknowledge at once (internal/tcpopt: TCP_QUICKACK, set after every read). Reads are buffered as well: the packet reader (mqttconn.go) takes a
// packet's fixed header byte by byte, and a burst of uplinks arrives in one
// read.

// localConnBuffer is the read buffer: a burst of uplinks in one read.
const localConnBuffer = 16 << 10

// localConn buffers reads and acknowledges them at once (tcpopt).
type localConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *localConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// dialLocal opens the local broker's connection (tcp:// or mqtt://, the
// schemes config accepts for it); the client calls it on every (re)connect,
// with ctx bounding the dial.
func dialLocal(ctx context.Context, broker string) (*localConn, error) {
	host, err := localBrokerHost(broker)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("lnsbridge: local broker %s: %w", broker, err)
	}
	return newLocalConn(c), nil
}

// localBrokerHost is the host:port of a tcp:// or mqtt:// broker URL.
func localBrokerHost(broker string) (string, error) {
	uri, err := url.Parse(broker)
	if err != nil {
		return "", fmt.Errorf("lnsbridge: local broker %q: %w", broker, err)
	}
	switch uri.Scheme {
	case "tcp", "mqtt":
	default:
		return "", fmt.Errorf("lnsbridge: local broker scheme %q: want tcp or mqtt", uri.Scheme)
	}
	if uri.Host == "" {
		return "", fmt.Errorf("lnsbridge: local broker %q: no host", broker)
	}
	if uri.Port() == "" {
		return net.JoinHostPort(uri.Hostname(), "1883"), nil // MQTT's port
	}
	return uri.Host, nil
}

func newLocalConn(c net.Conn) *localConn {
	return &localConn{Conn: c, r: bufio.NewReaderSize(tcpopt.NewQuickAckReader(c), localConnBuffer)}
}
