package testpeer

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Missing fails the test under CI=true and skips it otherwise: a peer the test
// needs is not installed.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (scripts/install-test-deps.sh installs it)", what)
	}
	t.Skipf("%s not installed (run scripts/install-test-deps.sh)", what)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// MosquittoOptions tune the broker. Zero values keep Mosquitto's defaults
// (max_inflight_messages 20, max_queued_messages 1000): what a gateway runs.
type MosquittoOptions struct {
	MaxInflight *int
	MaxQueued   *int
	Extra       []string // more configuration lines
}

// Mosquitto is a running Debian mosquitto process.
type Mosquitto struct {
	Port int
	t    testing.TB
	dir  string
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

// MosquittoPath finds the broker binary.
func MosquittoPath() (string, bool) {
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	p, err := exec.LookPath("mosquitto")
	return p, err == nil
}

// StartMosquitto starts a broker on a free loopback port (retrying on a port
// collision) and stops it when the test ends.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	bin, ok := MosquittoPath()
	if !ok {
		Missing(t, "mosquitto")
	}
	m := &Mosquitto{t: t, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		m.Port = FreePort(t)
		lines := []string{
			fmt.Sprintf("listener %d 127.0.0.1", m.Port),
			"allow_anonymous true",
			"persistence false",
			"log_dest stderr",
			"log_type error",
			"log_type warning",
		}
		if os.Geteuid() == 0 {
			lines = append(lines, "user root")
		}
		if opts.MaxInflight != nil {
			lines = append(lines, "max_inflight_messages "+strconv.Itoa(*opts.MaxInflight))
		}
		if opts.MaxQueued != nil {
			lines = append(lines, "max_queued_messages "+strconv.Itoa(*opts.MaxQueued))
		}
		lines = append(lines, opts.Extra...)
		m.conf = filepath.Join(m.dir, "mosquitto.conf")
		if err := os.WriteFile(m.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = m.start(bin); lastErr == nil {
			t.Cleanup(m.Stop)
			return m
		}
	}
	t.Fatalf("mosquitto did not start: %v", lastErr)
	return nil
}

func (m *Mosquitto) start(bin string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &bytes.Buffer{}
	cmd := exec.Command(bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("mosquitto exited: %s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", m.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			m.cmd, m.out, m.done = cmd, out, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("mosquitto not listening after 10s: %s", out.String())
}

// Addr is host:port.
func (m *Mosquitto) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port)) }

// URL is the broker URL for paho: tcp://127.0.0.1:port.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr() }

// Stop stops the broker.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Log is what the broker printed.
func (m *Mosquitto) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.out == nil {
		return ""
	}
	return m.out.String()
}
