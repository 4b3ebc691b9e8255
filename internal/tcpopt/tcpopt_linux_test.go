package tcpopt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// mode reads the TCP_QUICKACK mode of c's socket.
func mode(t *testing.T, c net.Conn) int {
	t.Helper()
	v, err := QuickAckMode(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// After an exchange of small requests and replies the kernel delays its
// acknowledgements; a read through QuickAckReader leaves the socket
// acknowledging at once, over plain TCP and under TLS.
func TestQuickAckReaderAcknowledgesEveryReadAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tls, wrap bool
	}{
		{"tcp, plain reads", false, false},
		{"tcp", false, true},
		{"tls", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := testpeer.Pair(t)
			var c, s net.Conn = client, server
			if tc.tls {
				cert := selfSigned(t)
				tlsServer := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
				tlsClient := tls.Client(client, &tls.Config{InsecureSkipVerify: true}) // a test peer of this test only
				errc := make(chan error, 1)
				go func() { errc <- tlsServer.Handshake() }()
				if err := tlsClient.Handshake(); err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				c, s = tlsClient, tlsServer
			}
			var r interface{ Read([]byte) (int, error) } = c
			if tc.wrap {
				r = NewQuickAckReader(c)
			}
			testpeer.Exchange(t, s, r, c, 8)
			got := mode(t, client)
			switch {
			case tc.wrap && got != 1:
				t.Errorf("after a read through QuickAckReader: TCP_QUICKACK %d, want 1 (acknowledge at once)", got)
			case !tc.wrap && got != 0:
				t.Logf("plain reads acknowledge at once here too (TCP_QUICKACK %d): this kernel never delayed", got)
			}
		})
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
