package forward

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// pki is an in-memory CA issuing a server and a client certificate.
type pki struct {
	caPEM                  string
	server                 tls.Certificate
	clientCert, clientKey  string
	otherCert, otherKeyPEM string
	pool                   *x509.CertPool
}

func newPKI(t *testing.T, serverNames ...string) *pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, ext x509.ExtKeyUsage, names []string, ips []net.IP) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{ext}, DNSNames: names, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	}
	p := &pki{caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	var ips []net.IP
	var dns []string
	for _, n := range serverNames {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	sc, sk := issue(2, "server", x509.ExtKeyUsageServerAuth, dns, ips)
	p.server, err = tls.X509KeyPair([]byte(sc), []byte(sk))
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = issue(3, "gateway", x509.ExtKeyUsageClientAuth, nil, nil)
	p.otherCert, p.otherKeyPEM = issue(4, "other", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// mtlsServer is an HTTPS server that requires a client certificate from p's CA.
func mtlsServer(t *testing.T, p *pki, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func boolp(b bool) *bool { return &b }

// testRow is an outbox row of a device (EUIs in any form cache.ParseEUI64 reads).
func testRow(app, kind, appEUI, devEUI, body string) cache.Row {
	ae, err := cache.ParseEUI64(appEUI)
	if err != nil {
		panic(err)
	}
	de, err := cache.ParseEUI64(devEUI)
	if err != nil {
		panic(err)
	}
	return cache.Row{Application: app, Kind: kind, AppEUI: ae, DevEUI: de, Body: []byte(body), EnqueuedAt: time.Now()}
}

func TestHTTPSWithClientCertificate(t *testing.T) {
	good := newPKI(t, "127.0.0.1")
	wrongName := newPKI(t, "gateway.example.net")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "gateway" {
			http.Error(w, "who are you", http.StatusForbidden)
			return
		}
		w.Write([]byte(`{}`))
	})
	tests := []struct {
		name    string
		p       *pki
		opts    func(p *pki) config.AppOptions
		wantErr string
	}{
		{"server_cert, client cert, hostname checked", good, func(p *pki) config.AppOptions {
			return config.AppOptions{ServerCert: p.caPEM, ClientCert: p.clientCert, APIKey: p.clientKey}
		}, ""},
		{"hostname mismatch refused by default", wrongName, func(p *pki) config.AppOptions {
			return config.AppOptions{ServerCert: p.caPEM, ClientCert: p.clientCert, APIKey: p.clientKey}
		}, "doesn't contain any IP SANs"},
		{"check_hostname false: chain only", wrongName, func(p *pki) config.AppOptions {
			return config.AppOptions{ServerCert: p.caPEM, ClientCert: p.clientCert, APIKey: p.clientKey, CheckHostname: boolp(false)}
		}, ""},
		{"check_hostname false still needs the chain", wrongName, func(p *pki) config.AppOptions {
			return config.AppOptions{ServerCert: good.caPEM, ClientCert: p.clientCert, APIKey: p.clientKey, CheckHostname: boolp(false)}
		}, "certificate signed by unknown authority"},
		{"no server_cert: system roots, test CA unknown", good, func(p *pki) config.AppOptions {
			return config.AppOptions{ClientCert: p.clientCert, APIKey: p.clientKey}
		}, "certificate signed by unknown authority"},
		{"no client certificate refused by the server", good, func(p *pki) config.AppOptions {
			return config.AppOptions{ServerCert: p.caPEM}
		}, "certificate required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := mtlsServer(t, tc.p, ok)
			ep, err := config.ParseEndpoint(srv.URL + "/prefix")
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewHTTPTransport(ep, tc.opts(tc.p), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tr.Post(context.Background(), "/api/v1/lorawan/x/y/up", []byte(`{}`), 0)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("err %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestTLSConfigRejectsHalfPairs(t *testing.T) {
	p := newPKI(t, "h")
	for _, tc := range []struct {
		name string
		o    config.AppOptions
		want string
	}{
		{"cert without key", config.AppOptions{ClientCert: p.clientCert}, "apikey"},
		{"key without cert", config.AppOptions{APIKey: p.clientKey}, "client_cert is empty"},
		{"mismatched pair", config.AppOptions{ClientCert: p.clientCert, APIKey: p.otherKeyPEM}, "client_cert/apikey"},
		{"server_cert not PEM", config.AppOptions{ServerCert: "hello"}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := TLSConfig("h", tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	tc, err := TLSConfig("h", config.AppOptions{})
	if err != nil || tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify || tc.ServerName != "h" {
		t.Fatalf("default TLS config %+v %v", tc, err)
	}
}

func TestStatusClassification(t *testing.T) {
	for status, permanent := range map[int]bool{400: true, 401: true, 403: true, 404: true, 408: false, 413: true, 429: false, 500: false, 502: false, 503: false} {
		err := error(&StatusError{Method: "POST", Path: "/p", Status: status})
		if IsPermanent(err) != permanent {
			t.Errorf("status %d permanent = %v", status, !permanent)
		}
	}
	if IsPermanent(errors.New("connection refused")) {
		t.Error("network error classed permanent")
	}
}

// TestBackoffBounds checks the delivery retry schedule an application takes
// from its settings: with the defaults, 1 s doubling to 60 s, jitter in
// [d/2, d], back to 1 s after a success.
func TestBackoffBounds(t *testing.T) {
	a := &Application{Settings: AppSettings{Delivery: config.Default().Delivery}}
	b := a.retryBackoff()
	for i := 0; i < 20; i++ {
		ceiling := min(time.Second<<i, 60*time.Second)
		d := b.Next()
		if d < ceiling/2 || d > ceiling {
			t.Fatalf("attempt %d: %s outside [%s, %s]", i, d, ceiling/2, ceiling)
		}
	}
	b.Reset()
	if d := b.Next(); d > time.Second {
		t.Fatalf("after reset %s", d)
	}
}

func TestDeliveryDeadLettersPermanentAndKeepsOrder(t *testing.T) {
	// One device's three uplinks (one lane, in order); the second is refused.
	const path = "/api/v1/lorawan/00-00-00-00-00-00-00-0a/00-00-00-00-00-00-00-01/up"
	var got []string
	batchTries := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/init") {
			w.Write([]byte(`{"timeout":3}`))
			return
		}
		if r.URL.Path == "/api/v1/lorawan/"+config.CatchAll+"/up" {
			batchTries++ // like MultiTech's app.js: no batch route
			w.WriteHeader(http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.URL.Path+" "+string(body))
		if strings.Contains(string(body), "bad") {
			w.WriteHeader(422)
			return
		}
		w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := cache.Open(ctx, t.TempDir()+"/q.db", cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := db.NewOutbox(ctx, cache.Limits{MaxRows: 100, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	app, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: "1.0", URL: srv.URL,
		Delivery: config.Delivery{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, HTTPTimeout: time.Second}},
		Identity{UUIDRaw: "U", UUID: "u"}, ob, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rows []cache.Row
	for _, body := range []string{`{"n":1}`, `{"n":2,"bad":true}`, `{"n":3}`} {
		rows = append(rows, testRow(config.CatchAll, "up", "00-00-00-00-00-00-00-0a", "00-00-00-00-00-00-00-01", body))
	}
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { app.Run(ctx); close(done) }()
	for ob.Stats(config.CatchAll).Rows > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if strings.Join(got, ",") != path+` {"n":1},`+path+` {"n":2,"bad":true},`+path+` {"n":3}` || batchTries != 1 {
		t.Fatalf("order %v, batch tries %d (want one, then singles)", got, batchTries)
	}
	if s := ob.Stats(config.CatchAll); s.DeadLettered != 1 || app.Counters.Forwarded.Load() != 2 {
		t.Fatalf("stats %+v forwarded %d", s, app.Counters.Forwarded.Load())
	}
	if d := time.Duration(app.tr.(*httpTransport).c.timeout.Load()); d != 3*time.Second {
		t.Fatalf("init timeout not applied: %s", d)
	}
}
