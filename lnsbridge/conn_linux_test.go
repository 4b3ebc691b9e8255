package lnsbridge

import (
	"net"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/tcpopt"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// After an exchange of requests and replies the kernel delays its TCP
// acknowledgements, expecting a reply to carry them; a PUBACK that waits
// for a shared sync then holds Mosquitto's next PUBLISH back (Nagle) for up
// to 40 ms. Every read through the local connection leaves the socket
// acknowledging at once.
func TestLocalConnAcknowledgesEveryReadAtOnce(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		c, broker := testpeer.Pair(t)
		var r net.Conn = c
		if wrap {
			r = newLocalConn(c)
		}
		testpeer.Exchange(t, broker, r, r, 8)
		got, err := tcpopt.QuickAckMode(c.(*net.TCPConn))
		if err != nil {
			t.Fatal(err)
		}
		if wrap && got != 1 {
			t.Errorf("local connection after a read: TCP_QUICKACK %d, want 1 (acknowledge at once)", got)
		}
		if !wrap && got != 0 {
			t.Logf("a plain connection acknowledges at once here too (TCP_QUICKACK %d): this kernel never delayed", got)
		}
	}
}
