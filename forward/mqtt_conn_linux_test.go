package forward

import (
	"net"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/tcpopt"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// The remote broker's PUBACKs are acknowledged at once: with Mosquitto's
// default (no TCP_NODELAY) a PUBACK otherwise waits for the previous one's
// TCP acknowledgement, which the kernel delays by up to 40 ms while the
// transport, waiting for its head row's PUBACK, has nothing to send.
func TestBufferedConnAcknowledgesEveryReadAtOnce(t *testing.T) {
	c, broker := testpeer.Pair(t)
	b := newBufferedConn(c)
	defer b.Close()
	testpeer.Exchange(t, broker, b, b, 8)
	got, err := tcpopt.QuickAckMode(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Errorf("remote broker connection after a read: TCP_QUICKACK %d, want 1 (acknowledge at once)", got)
	}
}
