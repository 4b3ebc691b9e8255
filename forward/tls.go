package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/lorawan-gateway/app-connect/config"
)

// TLSConfig builds the client TLS settings of an application from its mPower
// options, entirely in memory (the original wrote the private key to /tmp).
// Without server_cert the system roots are trusted and the hostname is always
// verified; with it, it is the only root and check_hostname (default true)
// decides whether the hostname is verified on top of the chain.
func TLSConfig(host string, o config.AppOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	cert, key := strings.TrimSpace(o.ClientCert), strings.TrimSpace(o.APIKey)
	switch {
	case cert != "" && key != "":
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return nil, fmt.Errorf("client_cert/apikey: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	case cert != "":
		return nil, errors.New("client_cert is set but apikey (the client key) is empty")
	case key != "":
		return nil, errors.New("apikey (the client key) is set but client_cert is empty")
	}
	if sc := strings.TrimSpace(o.ServerCert); sc != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(sc)) {
			return nil, errors.New("server_cert holds no PEM certificate")
		}
		tc.RootCAs = pool
		if o.CheckHostname != nil && !*o.CheckHostname {
			// Chain-only verification: still a valid chain to server_cert, any name.
			tc.InsecureSkipVerify = true // replaced by VerifyConnection below
			tc.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("server sent no certificate")
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
				return err
			}
		}
	}
	return tc, nil
}
