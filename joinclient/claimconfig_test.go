package joinclient_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// claimFS serves files from memory; names not in it are read from disk when
// disk is true (YAML from testdata, PEM from memory).
func claimFS(files map[string][]byte, disk bool) func(string) ([]byte, error) {
	m := fstest.MapFS{}
	for name, data := range files {
		m[name] = &fstest.MapFile{Data: data}
	}
	return func(name string) ([]byte, error) {
		b, err := fs.ReadFile(m, filepath.ToSlash(filepath.Clean(name)))
		if err != nil && disk && errors.Is(err, fs.ErrNotExist) {
			return os.ReadFile(name)
		}
		return b, err
	}
}

func claimDefaultCert(t *testing.T, pki *jstest.PKI, cn string) *tls.Certificate {
	t.Helper()
	c, k := pki.Issue(t, cn)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// testdataPEM returns the in-memory PEM files of testdata/claiming/repo.
func testdataPEM(t *testing.T, pki *jstest.PKI) map[string][]byte {
	c, k := pki.Issue(t, "gateway tti")
	return map[string][]byte{
		"testdata/claiming/repo/tti/ca.pem":         pki.CAPEM,
		"testdata/claiming/repo/tti/clientcert.pem": c,
		"testdata/claiming/repo/tti/clientkey.pem":  k,
	}
}

func TestLoadClaimRepositoryTestdata(t *testing.T) {
	pki := jstest.NewPKI(t)
	repo, err := jc.LoadClaimRepository("testdata/claiming/repo", jc.ClaimRepositoryOptions{
		ReadFile:                 claimFS(testdataPEM(t, pki), true),
		DefaultClientCertificate: claimDefaultCert(t, pki, "gateway default"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(repo.Servers) != 2 || len(repo.Entries) != 4 {
		t.Fatalf("servers %d entries %d", len(repo.Servers), len(repo.Entries))
	}
	tti, mchp := repo.Servers[0], repo.Servers[1]
	if tti.Name != "tti/js" || tti.URL != "https://js.cloud.thethings.industries" || tti.TLSSource != jc.TLSSourceFile {
		t.Errorf("tti: %+v", tti)
	}
	if mchp.Name != "microchip/js" || mchp.URL != "https://claim.example.com:8443/ttjs" || mchp.TLSSource != jc.TLSSourceKeyVault {
		t.Errorf("microchip: %+v", mchp)
	}
	for _, s := range repo.Servers {
		if s.TLSConfig == nil || len(s.TLSConfig.Certificates) != 1 {
			t.Errorf("%s has no client certificate", s.Name)
		}
	}
	for _, tc := range []struct {
		joinEUI string
		want    *jc.ClaimServer
		prefix  string
	}{
		{"70B3D57ED0000000", tti, "70B3D57ED0000000/64"},
		{"EC656E0000000001", tti, "EC656E0000000000/56"}, // /56 beats /8
		{"EC656F0000000001", mchp, "EC00000000000000/8"},
		{"0016C001F0000001", mchp, "0016C00000000000/24"},
		{"70B3D57ED0000001", nil, ""},
	} {
		p, s := repo.Route(mustEUI(t, tc.joinEUI))
		if s != tc.want || (s != nil && p.String() != tc.prefix) {
			t.Errorf("route %s: got %v %v", tc.joinEUI, p, s)
		}
	}
	var buf bytes.Buffer
	if err := jc.WriteClaimTable(&buf, repo); err != nil {
		t.Fatal(err)
	}
	want := `PREFIX               CLAIM SERVER  TYPE    CLIENT CERT  URL
70B3D57ED0000000/64  tti/js        ttjsv2  file         https://js.cloud.thethings.industries
EC656E0000000000/56  tti/js        ttjsv2  file         https://js.cloud.thethings.industries
0016C00000000000/24  microchip/js  ttjsv2  key-vault    https://claim.example.com:8443/ttjs
EC00000000000000/8   microchip/js  ttjsv2  key-vault    https://claim.example.com:8443/ttjs
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestLoadClaimRepositoryErrors(t *testing.T) {
	pki := jstest.NewPKI(t)
	cert, key := pki.Issue(t, "gw")
	_, otherKey := pki.Issue(t, "other")
	const cfg = "join-servers:\n  - file: js.yml\n    join-euis: ['70B3D57ED0000000/36']\n    type: ttjsv2\n"
	const good = "url: https://js.example\ntls:\n  source: file\n  certificate: c.pem\n  key: k.pem\n"
	for _, tc := range []struct {
		name     string
		cfg, js  string
		noVault  bool
		keyPEM   []byte
		want     string
		js2      string
		extraCfg string
	}{
		{name: "unknown key in config.yml", cfg: cfg + "    components: [ns]\n", js: good,
			want: "c/config.yml:5: join-servers[0].components: unknown key: a claiming repository has no components"},
		{name: "unknown type", cfg: strings.Replace(cfg, "ttjsv2", "ttjsv1", 1), js: good,
			want: "c/config.yml:4: join-servers[0].type: unknown type \"ttjsv1\" (want ttjsv2)"},
		{name: "missing type", cfg: strings.Replace(cfg, "    type: ttjsv2\n", "", 1), js: good,
			want: "c/config.yml:2: join-servers[0].type: missing: must be ttjsv2"},
		{name: "bad prefix", cfg: strings.Replace(cfg, "/36", "/65", 1), js: good,
			want: "c/config.yml:3: join-servers[0].join-euis[0]: bad prefix"},
		{name: "duplicate key", cfg: cfg + "    type: ttjsv2\n", js: good,
			want: "c/config.yml:5: join-servers[0].type: given twice (first on line 4)"},
		{name: "identical prefixes of two files", cfg: cfg, extraCfg: "  - file: js2.yml\n    join-euis: ['70B3D57ED0000000/36']\n    type: ttjsv2\n",
			js: good, js2: good, want: "c/config.yml:6: join-servers: prefix 70B3D57ED0000000/36 is served by both js and js2"},
		{name: "unknown key in server file", cfg: cfg, js: good + "fqdn: x\n", want: "c/js.yml:6: fqdn: unknown key"},
		{name: "basic-auth refused", cfg: cfg, js: good + "basic-auth:\n  username: u\n",
			want: "c/js.yml:6: basic-auth: not supported: TTJS v2 authenticates by TLS client certificate only"},
		{name: "http refused", cfg: cfg, js: strings.Replace(good, "https", "http", 1),
			want: "c/js.yml:1: url: scheme must be https"},
		{name: "missing url", cfg: cfg, js: strings.Replace(good, "url: https://js.example\n", "", 1),
			want: "c/js.yml:1: url: missing"},
		{name: "no tls", cfg: cfg, js: "url: https://js.example\n",
			want: "c/js.yml:1: tls: missing: mutual TLS is required"},
		{name: "tls without source", cfg: cfg, js: strings.Replace(good, "  source: file\n", "", 1),
			want: "c/js.yml:3: tls.source: missing: must be file or key-vault"},
		{name: "root-ca only", cfg: cfg, js: "url: https://js.example\ntls:\n  source: file\n  root-ca: c.pem\n",
			want: "c/js.yml:3: tls.certificate: missing: mutual TLS needs certificate and key"},
		{name: "key-vault without default certificate", cfg: cfg, noVault: true, js: "url: https://js.example\ntls:\n  source: key-vault\n",
			want: "c/js.yml:3: tls.source: key-vault needs the gateway's default client certificate"},
		{name: "certificate does not match key", cfg: cfg, js: good, keyPEM: otherKey,
			want: "c/js.yml:4: tls.certificate: certificate c/c.pem and key c/k.pem: tls: private key does not match public key"},
		{name: "empty file", cfg: cfg, js: "", want: "c/js.yml: empty file"},
		{name: "second document", cfg: cfg, js: good + "---\nurl: x\n", want: "c/js.yml:6: a second YAML document is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := key
			if tc.keyPEM != nil {
				k = tc.keyPEM
			}
			files := map[string][]byte{"c/config.yml": []byte(tc.cfg + tc.extraCfg), "c/js.yml": []byte(tc.js),
				"c/js2.yml": []byte(tc.js2), "c/c.pem": cert, "c/k.pem": k}
			opts := jc.ClaimRepositoryOptions{ReadFile: claimFS(files, false)}
			if !tc.noVault {
				opts.DefaultClientCertificate = claimDefaultCert(t, pki, "default")
			}
			_, err := jc.LoadClaimRepository("c", opts)
			if err == nil {
				t.Fatal("loaded")
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("not a config.Error: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
		})
	}
}

func FuzzLoadClaimRepository(f *testing.F) {
	cfg, err := os.ReadFile("testdata/claiming/repo/config.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, js := range []string{"testdata/claiming/repo/tti/js.yml", "testdata/claiming/repo/microchip/js.yml"} {
		b, err := os.ReadFile(js)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(cfg), string(b))
	}
	f.Add("join-servers:\n  - file: js.yml\n    type: ttjsv2\n    join-euis: ['0000000000000000/0']\n", "url: https://a/\ntls: {source: key-vault}\n")
	f.Fuzz(func(t *testing.T, cfg, js string) {
		files := map[string][]byte{"r/config.yml": []byte(cfg)}
		for _, n := range []string{"r/js.yml", "r/tti/js.yml", "r/microchip/js.yml"} {
			files[n] = []byte(js)
		}
		repo, err := jc.LoadClaimRepository("r", jc.ClaimRepositoryOptions{ReadFile: claimFS(files, false),
			DefaultClientCertificate: &tls.Certificate{}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "r/") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, e := range repo.Entries {
			if e.Server == nil || e.Server.TLSConfig == nil || len(e.Server.TLSConfig.Certificates) == 0 || !strings.HasPrefix(e.Server.URL, "https://") {
				t.Fatalf("bad entry %+v", e)
			}
		}
		var buf bytes.Buffer
		if err := jc.WriteClaimTable(&buf, repo); err != nil {
			t.Fatal(err)
		}
	})
}
