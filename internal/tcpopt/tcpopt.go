// Package tcpopt holds the TCP behaviour app-connect's MQTT connections need:
// acknowledging at once what was read.
//
// app-connect's MQTT peers (the gateway's Mosquitto, and a cloud broker that
// is often Mosquitto too) do not set TCP_NODELAY by default: a broker's next
// small packet (a PUBLISH to the local client, a PUBACK to the cloud
// transport) waits, under Nagle's algorithm, until its previous one is
// acknowledged. After an exchange of small requests and replies the Linux
// kernel delays its TCP acknowledgements by up to 40 ms, expecting a reply to
// carry them; when app-connect has nothing to send back yet (a PUBACK waiting
// for its commit's sync, a transport waiting for the PUBACK of its head row),
// both sides wait for that timer. Asking for an immediate acknowledgement
// after every read (TCP_QUICKACK, which the kernel clears again by itself)
// removes the wait.
package tcpopt

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// QuickAckReader reads from a connection and has the kernel acknowledge each
// read at once.
type QuickAckReader struct {
	c   net.Conn
	raw syscall.RawConn // nil: not TCP; reads pass through
}

// NewQuickAckReader wraps c: a TCP connection, or TLS over TCP (the option is
// set on the socket under it). Any other connection is read as it is.
func NewQuickAckReader(c net.Conn) *QuickAckReader {
	return &QuickAckReader{c: c, raw: rawTCP(c)}
}

var _ io.Reader = (*QuickAckReader)(nil)

// Read reads from the connection, then asks for the immediate acknowledgement
// of what arrived.
func (q *QuickAckReader) Read(b []byte) (int, error) {
	n, err := q.c.Read(b)
	if n > 0 && q.raw != nil {
		quickAck(q.raw)
	}
	return n, err
}

// rawTCP is the socket under c, or nil when c is neither TCP nor TLS over TCP.
func rawTCP(c net.Conn) syscall.RawConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
