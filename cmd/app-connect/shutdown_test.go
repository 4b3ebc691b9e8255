package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// TestGracefulStopDuringAStream sends SIGTERM to the real binary while uplinks
// flow: it exits 0 within the shutdown deadline (plus the close notice's 5 s),
// the remote side gets close, and after a restart every uplink arrives: what
// was still queued stayed in the database, what the broker held stayed there.
func TestGracefulStopDuringAStream(t *testing.T) {
	bin := buildBinary(t)
	h := newHarnessWith(t, 20, testpeer.MosquittoOptions{MaxQueued: ptr(0)})
	const shutdown = 2 * time.Second
	cfgFile := h.writeConfigFile(fmt.Sprintf("  shutdown_timeout: %s\nlog:\n  destination: stderr\n  level: debug\n", shutdown))
	h.sink.SetDelay(2 * time.Millisecond) // a backlog in the outbox when the signal comes
	startProc := func() *exec.Cmd { return h.startBinary(bin, cfgFile) }
	proc := startProc()
	h.waitSubscribed(1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pubDone := make(chan sim.RunStats, 1)
	go func() { pubDone <- h.publish(ctx, 100) }()
	for h.sink.Stats().Unique < 300 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	sent := time.Now()
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	limit := shutdown + 5*time.Second + 3*time.Second // flush deadline, close timeout, process start-up slack
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, h.logs.Tail(30))
		}
	case <-time.After(limit):
		proc.Process.Kill()
		t.Fatalf("not stopped within %s:\n%s", limit, h.logs.Tail(30))
	}
	took := time.Since(sent)
	atStop := h.sink.Stats()
	if atStop.Closes != 1 {
		t.Fatalf("close notices %d, want 1", atStop.Closes)
	}
	if !strings.Contains(h.logs.String(), "stopping: no new local messages") {
		t.Fatalf("no stop log line:\n%s", h.logs.Tail(30))
	}
	proc = startProc()
	defer func() { proc.Process.Kill(); proc.Wait() }()
	if st := <-pubDone; st.Uplinks != 2000 {
		t.Fatalf("published %d", st.Uplinks)
	}
	h.waitAll(2 * time.Minute)
	h.checkOrder(true)
	s := h.sink.Stats()
	t.Logf("stopped in %s after %d unique; final %+v", took.Round(time.Millisecond), atStop.Unique, s)
	if atStop.Unique >= 2000 {
		t.Fatal("the stop came after the stream ended; the test proves nothing")
	}
}
