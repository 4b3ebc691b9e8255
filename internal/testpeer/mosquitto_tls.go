package testpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TLSListener describes an extra TLS listener of a test Mosquitto. The PEM
// material is written to the test's temporary directory only because
// Mosquitto reads it from files.
type TLSListener struct {
	CAPEM, CertPEM, KeyPEM string
	RequireCertificate     bool // clients must present a certificate from CAPEM
}

// TLSLines returns the configuration lines of l on a free loopback port (to
// append to MosquittoOptions.Extra) and that port.
func TLSLines(t testing.TB, l TLSListener) (port int, lines []string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	port = FreePort(t)
	lines = []string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"cafile " + write("ca.pem", l.CAPEM),
		"certfile " + write("server.pem", l.CertPEM),
		"keyfile " + write("server.key", l.KeyPEM),
		"require_certificate " + strconv.FormatBool(l.RequireCertificate),
	}
	return port, lines
}

// PasswordLines returns configuration lines that refuse anonymous clients and
// accept the given users (hashed with mosquitto_passwd).
func PasswordLines(t testing.TB, users map[string]string) []string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		Missing(t, "mosquitto_passwd")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for u, p := range users {
		if out, err := exec.Command(bin, "-b", file, u, p).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	return []string{"allow_anonymous false", "password_file " + file}
}

// Restart starts a stopped broker again with the same configuration and port.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	bin, ok := MosquittoPath()
	if !ok {
		Missing(m.t, "mosquitto")
	}
	m.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = m.start(bin); err == nil {
			return
		}
	}
	m.t.Fatalf("mosquitto did not restart: %v", err)
}
