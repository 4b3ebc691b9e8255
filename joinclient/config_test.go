package joinclient

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// memFS returns a ReadFile over an in-memory file system (paths relative, slash-separated).
func memFS(files map[string]string) func(string) ([]byte, error) {
	m := fstest.MapFS{}
	for name, data := range files {
		m[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return func(name string) ([]byte, error) {
		return fs.ReadFile(m, filepath.ToSlash(filepath.Clean(name)))
	}
}

func fixtureCert(t *testing.T) *tls.Certificate {
	t.Helper()
	c, err := LoadClientCertificate("testdata/interop/semtech/cert.pem", "testdata/interop/semtech/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadFixtures(t *testing.T) {
	repo, err := LoadRepository("testdata/interop", RepositoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteRoutingTable(&buf, repo); err != nil {
		t.Fatal(err)
	}
	want := `PREFIX               JOIN SERVER  COMPONENTS  PROTOCOL  URL
0016C00000000000/24  semtech/js   as,ns       BI1.0     https://js.loracloud.com:7009/api/v1/rens/rens-1::2/lbi_joinreq
EC656E0000000000/24  tti/ns-js    ns          BI1.1     https://join.cloud.thethings.industries:443
EC656E0000000000/24  tti/as-js    as          BI1.1     https://join.cloud.thethings.industries:443
0000000000000000/0   fallback/js  as,ns       BI1.0     http://127.0.0.1:8652
`
	if buf.String() != want {
		t.Fatalf("routing table:\n%s\nwant:\n%s", buf.String(), want)
	}
	semtech := repo.JoinServers[2]
	if semtech.Name != "semtech/js" || len(semtech.TLSConfig.Certificates) != 1 || semtech.TLSConfig.RootCAs == nil ||
		semtech.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("semtech TLS not loaded: %+v", semtech)
	}
	ns := repo.JoinServers[0]
	if ns.NSID().String() != "ABCDEF0000000001" || ns.BasicAuth == nil || ns.BasicAuth.Username != "ABCDEF0000000001" {
		t.Fatalf("tti/ns-js: %+v", ns)
	}
	if fb := repo.JoinServers[3]; len(fb.Headers) != 1 || fb.Headers[0].Name != "X-Gateway" || fb.TLSConfig != nil {
		t.Fatalf("fallback: %+v", fb)
	}

	// key-vault: the gateway default certificate, and the global NSID for BI1.1.
	_, err = LoadRepository("testdata/interop-keyvault", RepositoryOptions{DefaultClientCertificate: fixtureCert(t)})
	if err == nil || !strings.Contains(err.Error(), "testdata/interop-keyvault/tti/js.yml:2: protocol: BI1.1 Join Server serving component ns needs an NSID") {
		t.Fatalf("keyvault without NSID: %v", err)
	}
	nsid := SomeEUI64(mustEUI("70B3D5FFFE000001"))
	_, err = LoadRepository("testdata/interop-keyvault", RepositoryOptions{NSID: nsid})
	if err == nil || !strings.Contains(err.Error(), "testdata/interop-keyvault/tti/js.yml:4: tls.source: key-vault needs the gateway's default client certificate") {
		t.Fatalf("keyvault without default cert: %v", err)
	}
	kv, err := LoadRepository("testdata/interop-keyvault", RepositoryOptions{NSID: nsid, DefaultClientCertificate: fixtureCert(t)})
	if err != nil {
		t.Fatal(err)
	}
	if js := kv.JoinServers[0]; js.NSID() != nsid || len(js.TLSConfig.Certificates) != 1 || len(kv.Entries) != 2 {
		t.Fatalf("keyvault: %+v", js)
	}
}

func TestLoadErrors(t *testing.T) {
	const cfg = "join-servers:\n  - file: './js.yml'\n    join-euis: ['0011223300000000/32']\n"
	ca := osRead(t, "testdata/interop/semtech/ca.pem")
	cert := osRead(t, "testdata/interop/semtech/cert.pem")
	otherKey := otherKeyPEM(t)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown key", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  cert: x\n"},
			"r/js.yml:4: tls.cert: unknown key"},
		{"unknown top key in config.yml", map[string]string{"r/config.yml": "join-server: []\n"},
			"r/config.yml:1: join-server: unknown key"},
		{"bad prefix", map[string]string{"r/config.yml": "join-servers:\n  - file: js.yml\n    join-euis: ['0011/16']\n", "r/js.yml": "fqdn: a\nprotocol: BI1.0\n"},
			`r/config.yml:3: join-servers[0].join-euis[0]: bad prefix "0011/16"`},
		{"prefix too long", map[string]string{"r/config.yml": "join-servers:\n  - file: js.yml\n    join-euis: ['0011223300000000/65']\n", "r/js.yml": "fqdn: a\nprotocol: BI1.0\n"},
			"beyond 64 bits"},
		{"missing file", map[string]string{"r/config.yml": cfg},
			"r/config.yml:2: join-servers[0].file: cannot read Join Server file"},
		{"missing config.yml", map[string]string{},
			"r/config.yml: cannot read"},
		{"entry without file", map[string]string{"r/config.yml": "join-servers:\n  - join-euis: ['0011223300000000/32']\n"},
			"r/config.yml:2: join-servers[0].file: missing"},
		{"entry without prefix", map[string]string{"r/config.yml": "join-servers:\n  - file: js.yml\n", "r/js.yml": "fqdn: a\nprotocol: BI1.0\n"},
			"r/config.yml:2: join-servers[0].join-euis: missing"},
		{"unknown component", map[string]string{"r/config.yml": "join-servers:\n  - file: js.yml\n    components: [js]\n    join-euis: ['0011223300000000/32']\n", "r/js.yml": "fqdn: a\nprotocol: BI1.0\n"},
			`r/config.yml:3: join-servers[0].components[0]: unknown component "js"`},
		{"BI1.1 without NSID", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.1\n"},
			"r/js.yml:2: protocol: BI1.1 Join Server serving component ns needs an NSID"},
		{"sender-ns-id under BI1.0", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nsender-ns-id: '1122334455667788'\n"},
			"r/js.yml:3: sender-ns-id: not allowed with protocol BI1.0"},
		{"missing fqdn", map[string]string{"r/config.yml": cfg, "r/js.yml": "protocol: BI1.0\n"},
			"r/js.yml:1: fqdn: missing"},
		{"missing protocol", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\n"},
			"r/js.yml:1: protocol: missing"},
		{"unknown protocol", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.2\n"},
			`r/js.yml:2: protocol: unknown protocol "BI1.2"`},
		{"dns", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ndns: example.com\n"},
			"r/js.yml:3: dns: DNS-based Join Server discovery is not supported"},
		{"port", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nport: 70000\n"},
			"r/js.yml:3: port: must be 1..65535"},
		{"scheme", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nscheme: ftp\n"},
			`r/js.yml:3: scheme: must be https or http`},
		{"http with tls", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nscheme: http\ntls:\n  root-ca: ca.pem\n"},
			"r/js.yml:5: tls: not allowed with scheme http"},
		{"password without username", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nbasic-auth:\n  password: s3cret\n"},
			"r/js.yml:4: basic-auth.password: password set without username"},
		{"bad header name", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nheaders:\n  'Bad Header': x\n"},
			"r/js.yml:4: headers.Bad Header: not a valid HTTP header name"},
		{"Host header", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nheaders:\n  Host: x\n"},
			"r/js.yml:4: headers.Host: header Host cannot be set"},
		{"missing certificate file", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  certificate: c.pem\n  key: k.pem\n"},
			"r/js.yml:4: tls.certificate: cannot read"},
		{"mismatched certificate and key", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  certificate: c.pem\n  key: k.pem\n", "r/c.pem": cert, "r/k.pem": otherKey},
			"r/js.yml:4: tls.certificate: certificate r/c.pem and key r/k.pem"},
		{"key-vault with certificate", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  source: key-vault\n  certificate: c.pem\n  key: k.pem\n"},
			"r/js.yml:4: tls.source: key-vault cannot be combined"},
		{"unreadable root-ca", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  root-ca: nope.pem\n"},
			"r/js.yml:4: tls.root-ca: cannot read"},
		{"root-ca without PEM", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  root-ca: ca.pem\n", "r/ca.pem": "junk"},
			"holds no PEM certificate"},
		{"duplicate key", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nfqdn: b\n"},
			"r/js.yml:3: fqdn: given twice (first on line 1)"},
		{"tab indentation (the one engine's wording)", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\npaths:\n\tjoin: x\n"},
			"r/js.yml:4: tabs are not allowed for indentation; use spaces"},
		{"word for the port", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\nport: https\n"},
			`r/js.yml:3: port: must be a whole number, got "https"`},
		{"list for a text", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: [a, b]\nprotocol: BI1.0\n"},
			"r/js.yml:1: fqdn: must be a single value, not a list"},
		{"empty js file", map[string]string{"r/config.yml": cfg, "r/js.yml": ""},
			"r/js.yml: empty file"},
		{"second document", map[string]string{"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\n---\nfqdn: b\n"},
			"second YAML document"},
		{"identical short prefixes", map[string]string{"r/config.yml": "join-servers:\n  - file: a.yml\n    join-euis: ['0011000000000000/16']\n  - file: b.yml\n    join-euis: ['0011000000000000/16']\n",
			"r/a.yml": "fqdn: a\nprotocol: BI1.0\n", "r/b.yml": "fqdn: b\nprotocol: BI1.0\n"},
			"r/config.yml:5: join-servers: prefix 0011000000000000/16 (component ns) is served by both a and b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadRepository("r", RepositoryOptions{ReadFile: memFS(tc.files)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks a password: %v", err)
			}
		})
	}

	t.Run("root-ca only is valid", func(t *testing.T) {
		repo, err := LoadRepository("r", RepositoryOptions{ReadFile: memFS(map[string]string{
			"r/config.yml": cfg, "r/js.yml": "fqdn: a\nprotocol: BI1.0\ntls:\n  root-ca: ca.pem\npaths:\n  join: /x/y\n", "r/ca.pem": ca})})
		if err != nil {
			t.Fatal(err)
		}
		js := repo.JoinServers[0]
		if js.TLSConfig == nil || js.TLSConfig.Certificates != nil || js.URL(MsgJoinReq) != "https://a:443/x/y" {
			t.Fatalf("%+v %s", js.TLSConfig, js.URL(MsgJoinReq))
		}
	})
	t.Run("identical /64 prefixes race", func(t *testing.T) {
		repo, err := LoadRepository("r", RepositoryOptions{ReadFile: memFS(map[string]string{
			"r/config.yml": "join-servers:\n  - file: a.yml\n    join-euis: ['0011000000000001/64']\n  - file: b.yml\n    join-euis: ['0011000000000001/64']\n  - file: a.yml\n    join-euis: ['0011000000000001/64']\n",
			"r/a.yml":      "fqdn: a\nprotocol: BI1.0\n", "r/b.yml": "fqdn: b\nprotocol: BI1.0\n"})})
		if err != nil {
			t.Fatal(err)
		}
		if _, js := repo.Route(ComponentNS, mustEUI("0011000000000001")); len(js) != 2 {
			t.Fatalf("want 2 racers (same file counts once), got %d", len(js))
		}
	})
}

func osRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// otherKeyPEM is a freshly generated key that matches no certificate.
func otherKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
