package joinclient_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/brocaar/lorawan"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// Known-answer set of §11.1.
var (
	katKey     = lorawan.AES128Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	katJoinEUI = lorawan.EUI64{0x00, 0x11, 0x22, 0x33, 0x00, 0x00, 0x00, 0x01}
	katDevEUI  = lorawan.EUI64{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, 0x11}
	katNetID   = jc.NetID{0x00, 0x00, 0x13}
	katDevice  = jstest.Device{DevEUI: katDevEUI, JoinEUI: katJoinEUI, NwkKey: katKey, AppKey: katKey}
	katNSKEK   = make([]byte, 16)
	nsid       = jc.SomeEUI64(jc.EUI64{0x70, 0xB3, 0xD5, 0xFF, 0xFE, 0x00, 0x00, 0x01})
	asID       = "conduit-1.example.com"
)

const (
	katJoinRequest = "0001000000332211001100FFEEDDCCBBAA0700AF926245"
	katJoinAccept  = "20A33CF11372C2B08D68A6B41FF9127299"
	katNwkSKey     = "386284F9907D629776E2F0D6A54D0790"
	katAppSKey     = "BB53B962A31661C08FB2E98CA8DE27EB"
)

// device11 is a LoRaWAN 1.1 device under the KAT JoinEUI.
var device11 = jstest.Device{
	DevEUI: lorawan.EUI64{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, 0x22}, JoinEUI: katJoinEUI,
	NwkKey: lorawan.AES128Key{0x11, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	AppKey: lorawan.AES128Key{0x22, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, MAC11: true,
}

// jsSpec describes one Join Server file of a test repository.
type jsSpec struct {
	name       string   // file name without .yml
	url        string   // server URL from httptest
	protocol   string   // BI1.0 / BI1.1
	prefixes   []string // JoinEUI prefixes
	components []string
	extra      string // further YAML lines of the JS file
	// mTLS: root CA and a client certificate issued by pki, all in memory.
	pki        *jstest.PKI
	clientCert bool
	keyVault   bool
}

// testRepo builds an interop repository in memory (keys never touch the disk).
func testRepo(t *testing.T, opts jc.RepositoryOptions, specs ...jsSpec) *jc.Repository {
	t.Helper()
	m := fstest.MapFS{}
	var cfg strings.Builder
	cfg.WriteString("join-servers:\n")
	for _, s := range specs {
		u, err := url.Parse(s.url)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  - file: './%s.yml'\n    join-euis: ['%s']\n", s.name, strings.Join(s.prefixes, "', '"))
		if len(s.components) > 0 {
			fmt.Fprintf(&cfg, "    components: ['%s']\n", strings.Join(s.components, "', '"))
		}
		var js strings.Builder
		fmt.Fprintf(&js, "scheme: %s\nfqdn: '%s'\nport: %s\nprotocol: %s\n", u.Scheme, u.Hostname(), u.Port(), s.protocol)
		if s.pki != nil {
			js.WriteString("tls:\n  root-ca: ca.pem\n")
			m["r/ca.pem"] = &fstest.MapFile{Data: s.pki.CAPEM}
			switch {
			case s.keyVault:
				js.WriteString("  source: key-vault\n")
			case s.clientCert:
				c, k := s.pki.Issue(t, "gateway "+s.name)
				m["r/"+s.name+".crt"] = &fstest.MapFile{Data: c}
				m["r/"+s.name+".key"] = &fstest.MapFile{Data: k}
				fmt.Fprintf(&js, "  certificate: %s.crt\n  key: %s.key\n", s.name, s.name)
			}
		}
		js.WriteString(s.extra)
		m["r/"+s.name+".yml"] = &fstest.MapFile{Data: []byte(js.String())}
	}
	m["r/config.yml"] = &fstest.MapFile{Data: []byte(cfg.String())}
	opts.ReadFile = func(name string) ([]byte, error) { return fs.ReadFile(m, filepath.ToSlash(filepath.Clean(name))) }
	repo, err := jc.LoadRepository("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func defaultCert(t *testing.T, pki *jstest.PKI) *tls.Certificate {
	t.Helper()
	c, k := pki.Issue(t, "gateway default")
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

func clientOpts() jc.ClientOptions {
	return jc.ClientOptions{NetID: katNetID, ASID: asID, UserAgent: "app-connect/test"}
}

func joinReq(t *testing.T, d jstest.Device, devNonce uint16) jc.JoinReq {
	t.Helper()
	mv := jc.MACVersion("1.0.3")
	dl := jc.DLSettings(0)
	if d.MAC11 {
		mv, dl = "1.1", 0x80
	}
	return jc.JoinReq{
		MACVersion: mv,
		PHYPayload: d.JoinRequest(devNonce),
		DevEUI:     jc.EUI64(d.DevEUI),
		DevAddr:    jc.DevAddr{0x26, 0x01, 0x12, 0x34},
		DLSettings: dl,
		RxDelay:    1,
	}
}

func kekStore(t *testing.T, keks map[string][]byte) *jc.KEKStore {
	t.Helper()
	s, err := jc.NewKEKStore(keks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recorder collects attempts; the proxy records after answering, so tests
// take attempts with next, which waits for the recording.
type recorder struct {
	ch chan jc.Attempt
}

func newRecorder() *recorder { return &recorder{ch: make(chan jc.Attempt, 100)} }

func (r *recorder) RecordJoinAttempt(_ context.Context, a jc.Attempt) error {
	r.ch <- a
	return nil
}

// next returns the next recorded attempt.
func (r *recorder) next(t *testing.T) jc.Attempt {
	t.Helper()
	select {
	case a := <-r.ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no join attempt recorded")
		return jc.Attempt{}
	}
}

func open(t *testing.T, s *jc.KEKStore, env *jc.KeyEnvelope) lorawan.AES128Key {
	t.Helper()
	k, err := s.Open(env)
	if err != nil {
		t.Fatalf("open %v: %v", env, err)
	}
	return lorawan.AES128Key(k)
}
