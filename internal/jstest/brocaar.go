package jstest

import (
	"fmt"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/brocaar/lorawan"
	"github.com/brocaar/lorawan/backend/joinserver"
)

// BrocaarConfig configures brocaar/lorawan's join server handler.
type BrocaarConfig struct {
	Devices []Device
	// FirstJoinNonce is the JoinNonce of each device's first join (default 1);
	// it is incremented for every later join, as the handler itself never does.
	FirstJoinNonce int
	// KEKs by label. The handler uses the request's SenderID verbatim as the
	// NS label; a missing label means plaintext keys.
	KEKs map[string][]byte
	// ASKEKLabel wraps the AppSKey with KEKs[ASKEKLabel]; empty = plaintext.
	ASKEKLabel string
	// HomeNetID answers HomeNSReq; nil leaves the callback unset (the handler
	// then answers UnknownDevEUI).
	HomeNetID *lorawan.NetID
}

// NewBrocaar returns brocaar/lorawan's backend/joinserver handler for devices.
func NewBrocaar(t testing.TB, cfg BrocaarConfig) http.Handler {
	t.Helper()
	var mu sync.Mutex
	nonces := map[lorawan.EUI64]int{}
	devs := map[lorawan.EUI64]Device{}
	for _, d := range cfg.Devices {
		devs[d.DevEUI] = d
	}
	first := cfg.FirstJoinNonce
	if first == 0 {
		first = 1
	}
	hc := joinserver.HandlerConfig{
		GetDeviceKeysByDevEUIFunc: func(devEUI lorawan.EUI64) (joinserver.DeviceKeys, error) {
			d, ok := devs[devEUI]
			if !ok {
				return joinserver.DeviceKeys{}, joinserver.ErrDevEUINotFound
			}
			mu.Lock()
			n, seen := nonces[devEUI]
			if !seen {
				n = first
			}
			nonces[devEUI] = n + 1
			mu.Unlock()
			appKey := d.AppKey
			if !d.MAC11 {
				appKey = d.NwkKey
			}
			return joinserver.DeviceKeys{DevEUI: devEUI, NwkKey: d.NwkKey, AppKey: appKey, JoinNonce: n}, nil
		},
		GetKEKByLabelFunc: func(label string) ([]byte, error) {
			return cfg.KEKs[label], nil // nil for "" and unknown labels: plaintext
		},
		GetASKEKLabelByDevEUIFunc: func(lorawan.EUI64) (string, error) { return cfg.ASKEKLabel, nil },
	}
	if cfg.HomeNetID != nil {
		hn := *cfg.HomeNetID
		hc.GetHomeNetIDByDevEUIFunc = func(devEUI lorawan.EUI64) (lorawan.NetID, error) {
			if _, ok := devs[devEUI]; !ok {
				return lorawan.NetID{}, joinserver.ErrDevEUINotFound
			}
			return hn, nil
		}
	}
	h, err := joinserver.NewHandler(hc)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Peer is a started test server that counts new connections.
type Peer struct {
	*httptest.Server
	conns atomic.Int64
}

// NewConns returns how many connections the peer accepted.
func (p *Peer) NewConns() int64 { return p.conns.Load() }

func (p *Peer) track(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		p.conns.Add(1)
	}
}

// Serve starts h over plain HTTP on a free loopback port.
func Serve(t testing.TB, h http.Handler) *Peer {
	t.Helper()
	p := &Peer{Server: httptest.NewUnstartedServer(h)}
	p.Config.ConnState = p.track
	p.Start()
	t.Cleanup(p.Close)
	return p
}

// ServeTLS starts h over HTTPS on a free loopback port, requiring a client
// certificate issued by pki.
func ServeTLS(t testing.TB, h http.Handler, pki *PKI) *Peer {
	t.Helper()
	p := &Peer{Server: httptest.NewUnstartedServer(h)}
	p.Config.ConnState = p.track
	p.TLS = pki.ServerTLS(t)
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

// RequirePeer handles a peer that could not be started: under CI=true the
// test fails, elsewhere it is skipped (testpeer.Missing).
func RequirePeer(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		testpeer.Missing(t, fmt.Sprintf("%s (%v)", what, err))
	}
}
