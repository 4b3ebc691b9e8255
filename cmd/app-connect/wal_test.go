package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// TestWriteAheadWindowSurvivesKill queues a burst larger than what an
// application holds in memory (the feed's window plus its lanes' queues)
// while the remote is down, then kills the real binary with SIGKILL in the
// middle of the drain: after a restart every uplink arrives, each device's
// in FCnt order (duplicates of rows delivered just before the kill allowed).
func TestWriteAheadWindowSurvivesKill(t *testing.T) {
	const devices, perDevice, lanes = 20, 150, 2
	if devices*perDevice <= cache.DefaultWindow+lanes*64 {
		t.Fatal("the burst fits in memory; the test proves nothing")
	}
	bin := buildBinary(t)
	h := newHarnessWith(t, devices, testpeer.MosquittoOptions{MaxQueued: ptr(0)})
	cfgFile := h.writeConfigFile("  http_lanes: 2\n")
	h.sink.FailFor(time.Hour, http.StatusServiceUnavailable) // the remote is down: everything queues
	proc := h.startBinary(bin, cfgFile)
	h.waitSubscribed(1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if st := h.publish(ctx, perDevice); st.Uplinks != devices*perDevice {
		t.Fatalf("published %d", st.Uplinks)
	}
	h.sink.SetDelay(2 * time.Millisecond) // the remote is back, slowly: the drain takes a while
	h.sink.FailFor(0, http.StatusServiceUnavailable)
	for h.sink.Stats().Unique < 500 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	proc.Process.Kill()
	proc.Wait()
	atKill := h.sink.Stats().Unique
	proc = h.startBinary(bin, cfgFile)
	defer func() { proc.Process.Kill(); proc.Wait() }()
	h.waitAll(2 * time.Minute)
	h.checkOrder(true)
	t.Logf("killed after %d unique; final %+v", atKill, h.sink.Stats())
	if atKill >= devices*perDevice {
		t.Fatal("the kill came after the drain ended; the test proves nothing")
	}
}
