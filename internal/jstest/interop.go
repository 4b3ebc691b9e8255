package jstest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// WriteInterop writes an interop repository (The Things Stack layout) in a
// temporary directory routing prefix to the Join Server at jsURL over plain
// HTTP in protocol (BI1.0 or BI1.1), with extra as further lines of the Join
// Server file, and returns the directory. Its Join Server is "remote/js".
func WriteInterop(t testing.TB, jsURL, prefix, protocol, extra string) string {
	t.Helper()
	u, err := url.Parse(jsURL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"config.yml": "join-servers:\n  - file: './remote/js.yml'\n    components: ['ns']\n    join-euis: ['" + prefix + "']\n",
		"remote/js.yml": fmt.Sprintf("scheme: 'http'\nfqdn: '%s'\nport: %s\nprotocol: '%s'\nheaders:\n  X-Gateway: 'conduit-test'\n%s",
			u.Hostname(), u.Port(), protocol, extra),
	}
	for name, s := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
