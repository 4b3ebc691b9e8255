package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)} }

func TestFleetAcceptRefuseStaleExpire(t *testing.T) {
	clk := newClock()
	f := &Fleet{MaxGateways: 2, MaxApps: 16, Stale: 5 * time.Minute, Expire: time.Hour, Now: clk.Now}
	uuid0, body0 := sim.GatewayStatus(0, clk.Now(), 2)
	if err := f.Accept("mqtt", strings.ReplaceAll(uuid0, "-", ""), body0); err != nil {
		t.Fatalf("raw UUID topic: %v", err)
	}
	_, older := sim.GatewayStatus(0, clk.Now().Add(-time.Minute), 1)
	_, body1 := sim.GatewayStatus(1, clk.Now(), 1)
	_, body2 := sim.GatewayStatus(2, clk.Now(), 1)
	tests := []struct {
		name, gw, reason string
		body             []byte
	}{
		{"older report", uuid0, refusedOld, older},
		{"topic names another gateway", "00000000-0000-4000-8000-000000000009", refusedMismatch, body1},
		{"garbage", "", refusedInvalid, []byte("{]")},
		{"second gateway", "", "", body1},
		{"third gateway beyond the cap", "", refusedCapacity, body2},
	}
	for _, tc := range tests {
		if got := reasonOf(f.Accept("mqtt", tc.gw, tc.body)); got != tc.reason {
			t.Errorf("%s: refusal %q, want %q", tc.name, got, tc.reason)
		}
	}
	clk.Add(6 * time.Minute)
	_, fresh1 := sim.GatewayStatus(1, clk.Now(), 2)
	if err := f.Accept("http", "", fresh1); err != nil {
		t.Fatal(err)
	}
	s := f.snapshot()
	if len(s.gateways) != 2 || !s.gateways[0].stale || s.gateways[1].stale {
		t.Fatalf("gateway 0 should be stale and gateway 1 not: %+v", s.gateways)
	}
	// A stale gateway whose clock went back is taken again.
	if err := f.Accept("mqtt", "", older); err != nil {
		t.Errorf("stale gateway with an older clock: %v", err)
	}
	clk.Add(61 * time.Minute)
	f.Sweep()
	if f.Len() != 0 {
		t.Fatalf("%d gateways left after expiry", f.Len())
	}
	s = f.snapshot()
	if s.expired != 2 || s.refused[refusedCapacity] != 1 || s.accepted["http"] != 1 {
		t.Fatalf("counters: %+v", s)
	}
	// Expiry frees the slots.
	if err := f.Accept("mqtt", "", body2); err != nil {
		t.Errorf("after expiry: %v", err)
	}
}

// TestFleetRetained: a retained report counts as seen when it was built; one
// older than -expire is refused.
func TestFleetRetained(t *testing.T) {
	clk := newClock()
	f := &Fleet{MaxGateways: 10, MaxApps: 16, Stale: 5 * time.Minute, Expire: time.Hour, Now: clk.Now}
	_, recent := sim.GatewayStatus(1, clk.Now().Add(-10*time.Minute), 1)
	_, ancient := sim.GatewayStatus(2, clk.Now().Add(-2*time.Hour), 1)
	_, future := sim.GatewayStatus(3, clk.Now().Add(time.Hour), 1)
	if err := f.AcceptRetained("", recent); err != nil {
		t.Fatal(err)
	}
	if err := f.AcceptRetained("", future); err != nil {
		t.Fatal(err)
	}
	if reasonOf(f.AcceptRetained("", ancient)) != refusedOld {
		t.Error("a retained report older than -expire was taken")
	}
	s := f.snapshot()
	if len(s.gateways) != 2 || !s.gateways[0].stale || !s.gateways[0].lastSeen.Equal(clk.Now().Add(-10*time.Minute)) || s.gateways[1].stale {
		t.Fatalf("retained reports: %+v", s.gateways)
	}
}

// TestMetricsEscaping: label values with quotes, backslashes, line feeds and
// UTF-8 are written the way Prometheus reads them, and promtool (when
// installed) accepts the whole exposition.
func TestMetricsEscaping(t *testing.T) {
	clk := newClock()
	f := &Fleet{MaxGateways: 10, MaxApps: 16, Stale: time.Minute, Expire: time.Hour, Now: clk.Now}
	_, body := sim.GatewayStatus(3, clk.Now(), 1)
	r, err := statusreport.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	r.Gateway.Serial = `a"b\c`
	r.Version = "1.0 ünï"
	r.Applications[0].Name = `x\"y`
	body, _ = r.Encode()
	if err := f.Accept("mqtt", "", body); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeMetrics(&buf, f.snapshot()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`appconnect_fleet_gateway_info{gateway="00000000-0000-4000-8000-000000000003",serial="a\"b\\c",version="1.0 ünï"} 1`,
		`appconnect_fleet_queue_rows{gateway="00000000-0000-4000-8000-000000000003",app="ff-ff-ff-ff-ff-ff-ff-ff",name="x\\\"y"} 3`,
		`appconnect_fleet_gateway_last_seen_timestamp_seconds{gateway="00000000-0000-4000-8000-000000000003"} 1795953600`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing line %s in\n%s", want, out)
		}
	}
	if got := labelEscaper.Replace("a\nb"); got != `a\nb` {
		t.Errorf("line feed escaped as %q", got)
	}
	promtoolCheck(t, buf.Bytes())
}

// promtoolCheck runs `promtool check metrics` on an exposition when promtool
// is installed (scripts/install-test-deps.sh installs it; under CI it must be there).
func promtoolCheck(t *testing.T, expo []byte) {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testpeer.Missing(t, "promtool")
		return
	}
	cmd := exec.Command(p, "check", "metrics")
	cmd.Stdin = bytes.NewReader(expo)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		// 3: lint problems only (naming advice); the syntax is fine.
		t.Logf("promtool lint: %s", out)
		return
	}
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
