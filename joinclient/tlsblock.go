package joinclient

import (
	"crypto/tls"
	"crypto/x509"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/config"
)

// tlsBlock is the `tls:` block of a Join Server or claim server file (The
// Things Stack format): source, root-ca, certificate, key, with the nodes
// errors point at.
type tlsBlock struct {
	node                          *yaml.Node // the tls mapping; nil when absent
	sourceNode, certNode, keyNode *yaml.Node
	source, rootCA                string
	certFile, keyFile             string
}

// parseTLSBlock reads a tls mapping; file paths are resolved against dir. An
// empty source is accepted only when allowEmptySource.
func parseTLSBlock(errs *config.YAML, f config.KV, dir string, allowEmptySource bool) tlsBlock {
	b := tlsBlock{node: f.Value}
	for _, p := range errs.Mapping(f.Value, f.Key) {
		pk := f.Key + "." + p.Key
		s, ok := errs.Str(p.Value, pk)
		if !ok {
			continue
		}
		switch p.Key {
		case "source":
			if (s != "" || !allowEmptySource) && s != TLSSourceFile && s != TLSSourceKeyVault {
				errs.Add(p.Value, pk, "must be file or key-vault, got %q", truncate(s, 20))
			}
			b.source, b.sourceNode = s, p.Value
		case "root-ca":
			if s != "" {
				b.rootCA = resolve(dir, s)
			}
		case "certificate":
			if s != "" {
				b.certFile, b.certNode = resolve(dir, s), p.Value
			}
		case "key":
			if s != "" {
				b.keyFile, b.keyNode = resolve(dir, s), p.Value
			}
		default:
			errs.Add(p.KeyNode, pk, "unknown key")
		}
	}
	return b
}

// clientTLS builds the client TLS configuration of a tls block: TLS ≥ 1.2, the
// root CA added to the system pool, the client certificate from files or the
// gateway's default (key-vault). missingPair is the message when source file
// lacks the certificate or the key. Every problem is added to errs.
func (b *tlsBlock) clientTLS(errs *config.YAML, readFile func(string) ([]byte, error), defaultCert *tls.Certificate, missingPair string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	sourceNode := b.sourceNode
	if sourceNode == nil {
		sourceNode = b.node
	}
	if b.rootCA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		data, err := readFile(b.rootCA)
		if err != nil {
			errs.Add(b.node, "tls.root-ca", "cannot read: %v", err)
		} else if !appendPEMCerts(pool, data) {
			errs.Add(b.node, "tls.root-ca", "%s holds no PEM certificate", b.rootCA)
		}
		cfg.RootCAs = pool
	}
	switch b.source {
	case TLSSourceKeyVault:
		if b.certFile != "" || b.keyFile != "" {
			errs.Add(sourceNode, "tls.source", "key-vault cannot be combined with certificate or key")
			break
		}
		if defaultCert == nil {
			errs.Add(sourceNode, "tls.source", "key-vault needs the gateway's default client certificate (join.client_tls.certificate and join.client_tls.key)")
			break
		}
		cfg.Certificates = []tls.Certificate{*defaultCert}
	case TLSSourceFile:
		if b.certFile == "" {
			errs.Add(b.node, "tls.certificate", "%s", missingPair)
			break
		}
		if b.keyFile == "" {
			errs.Add(b.node, "tls.key", "%s", missingPair)
			break
		}
		certPEM, err := readFile(b.certFile)
		if err != nil {
			errs.Add(b.certNode, "tls.certificate", "cannot read: %v", err)
			break
		}
		keyPEM, err := readFile(b.keyFile)
		if err != nil {
			errs.Add(b.keyNode, "tls.key", "cannot read: %v", err)
			break
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			errs.Add(b.certNode, "tls.certificate", "certificate %s and key %s: %v", b.certFile, b.keyFile, sanitizePEMError(err))
			break
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}
