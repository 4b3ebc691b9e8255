package main

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// The sink serves HTTPS and, with -sink-client-ca, requires a client certificate.
func TestSinkTLSWithClientCertificate(t *testing.T) {
	pki := jstest.NewPKI(t)
	dir := t.TempDir() // test certificates only
	cert, key := pki.Issue(t, "sink")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	o := options{sinkCert: write("cert.pem", cert), sinkKey: write("key.pem", key), sinkClientCA: write("ca.pem", pki.CAPEM)}
	tc, err := sinkTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	s := &simulator{log: slog.New(slog.DiscardHandler)}
	addr, err := s.serveTLS("sink", "127.0.0.1:0", sim.NewSink(""), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, srv := range s.servers {
			srv.Close()
		}
	}()
	ccert, ckey := pki.Issue(t, "gateway")
	pair, err := tls.X509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	get := func(certs []tls.Certificate) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(), Certificates: certs}}}
		resp, err := c.Get("https://" + addr + "/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/down")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if code, err := get([]tls.Certificate{pair}); err != nil || code != 200 {
		t.Fatalf("with a client certificate: %d %v", code, err)
	}
	if _, err := get(nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without a client certificate: %v", err)
	}
	if _, err := sinkTLS(options{sinkClientCA: "x"}); err == nil {
		t.Fatal("-sink-client-ca without a certificate accepted")
	}
}
