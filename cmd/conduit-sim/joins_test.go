package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// attempts collects the proxy's join attempts.
type attempts struct {
	mu  sync.Mutex
	all []joinclient.Attempt
}

func (a *attempts) RecordJoinAttempt(_ context.Context, at joinclient.Attempt) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
	return nil
}

func (a *attempts) results() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[string]int{}
	for _, at := range a.all {
		m[at.Result]++
	}
	return m
}

// startJoinProxy serves app-connect's join proxy (joinclient, built from config.Join as
// app-connect builds it) routing every JoinEUI to the Join Server at jsAddr.
func startJoinProxy(t *testing.T, jsAddr string) (string, *attempts) {
	t.Helper()
	host, port, err := net.SplitHostPort(jsAddr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, s := range map[string]string{
		"config.yml": "join-servers:\n  - file: './sim.yml'\n    components: ['ns']\n    join-euis: ['0000000000000000/0']\n",
		"sim.yml":    fmt.Sprintf("scheme: 'http'\nfqdn: '%s'\nport: %s\nprotocol: 'BI1.0'\n", host, port),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rec := &attempts{}
	jc := config.DefaultJoin()
	jc.Enabled, jc.NetID, jc.InteropDir = true, sim.DefaultNetID, dir
	svc, err := joinclient.FromConfig(jc, joinclient.Options{Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := joinclient.Listen(ctx, "127.0.0.1:0")
	jstest.RequirePeer(t, "loopback listener", err)
	srv := joinclient.NewServer(svc.Proxy)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
		svc.Router.Close()
	})
	return "http://" + ln.Addr().String() + "/", rec
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	jstest.RequirePeer(t, "loopback listener", err)
	defer ln.Close()
	return ln.Addr().String()
}

// One simulator plays both roles: its Join Server on -js-listen, and its network server
// joining every device through app-connect's proxy (-join-proxy), which routes to it.
func TestJoinRolesThroughTheProxy(t *testing.T) {
	jsAddr := freeAddr(t)
	proxyURL, rec := startJoinProxy(t, jsAddr)
	args := []string{
		"-mqtt-listen", "127.0.0.1:0", "-mpower-listen", "127.0.0.1:0", "-sink-listen", "",
		"-sysfs", filepath.Join(t.TempDir(), "mts-io"), "-devices", "5", "-uplinks", "2", "-seed", "9",
		"-js-listen", jsAddr, "-join-proxy", proxyURL,
	}
	var stdout, stderr syncBuffer
	if code := run(args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "joined 5 devices through "+proxyURL) {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	// Attempts are recorded just after the network server is answered: give the last one a moment.
	for deadline := time.Now().Add(5 * time.Second); rec.results()["Success"] < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if r := rec.results(); r["Success"] != 5 || len(r) != 1 {
		t.Errorf("proxy attempts by result: %v", r)
	}
	if !strings.Contains(stderr.String(), "Join Server listening") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// A Join Server with other keys: the joins fail with its code and nothing is published.
func TestJoinRefusedStopsTheRun(t *testing.T) {
	other, err := sim.NewJoinServer(sim.JoinDevices(sim.NewFleet(3, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 1), 2, false), sim.JoinServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	peer := jstest.Serve(t, other)
	proxyURL, rec := startJoinProxy(t, peer.Listener.Addr().String())
	args := []string{
		"-mqtt-listen", "127.0.0.1:0", "-mpower-listen", "127.0.0.1:0", "-sink-listen", "",
		"-sysfs", filepath.Join(t.TempDir(), "mts-io"), "-devices", "3", "-uplinks", "1", "-seed", "1",
		"-join-proxy", proxyURL,
	}
	var stdout, stderr syncBuffer
	if code := run(args, &stdout, &stderr); code != exitFailed {
		t.Fatalf("exit %d, want %d\nstderr:\n%s", code, exitFailed, stderr.String())
	}
	if !strings.Contains(stderr.String(), "MICFailed") || strings.Contains(stdout.String(), "publishing:") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	// JoinAll stops at the first failure and attempts are recorded after the
	// network server is answered, so how many of the 3 show up varies; all are MICFailed.
	if r := rec.results(); r["MICFailed"] < 1 || len(r) != 1 {
		t.Errorf("proxy attempts by result: %v", r)
	}
}

func TestJoinFlags(t *testing.T) {
	for _, bad := range []string{"127.0.0.1:8651", "ftp://127.0.0.1/", "http://"} {
		var out, errOut syncBuffer
		if code := run([]string{"-join-proxy", bad}, &out, &errOut); code != exitUsage {
			t.Errorf("-join-proxy %q: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
