//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// soakFor is the soak's length: FAULTS_SOAK (default 3m; the full form is 1h).
func soakFor(t *testing.T) time.Duration {
	if v := os.Getenv("FAULTS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FAULTS_SOAK: %v", err)
		}
		return d
	}
	return 3 * time.Minute
}

type sample struct {
	at         time.Duration
	rssKiB     int64
	fds        int
	goroutines int
	delivered  int
	queued     int
}

// TestSoak: 50 uplinks/s for FAULTS_SOAK with a remote that fails 1 % of
// requests and drops every connection every 5 minutes (every twelfth of a
// shorter soak): RSS, open files and goroutines sampled every 10 s and
// printed as a table, flat; nothing lost.
func TestSoak(t *testing.T) {
	dur := soakFor(t)
	cutEvery := min(5*time.Minute, dur/12)
	g := newGateway(t, gatewayOptions{devices: 50})
	g.remote.failPPM.Store(10_000)
	g.start()
	ctx, cancel := context.WithTimeout(context.Background(), dur+10*time.Minute)
	defer cancel()
	pctx, stopPub := context.WithTimeout(ctx, dur)
	defer stopPub()
	l := g.publish(pctx, 0, 50)
	start := time.Now()
	var samples []sample
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	cut := time.NewTicker(cutEvery)
	defer cut.Stop()
	cuts := 0
	for done := false; !done; {
		select {
		case <-tick.C:
			samples = append(samples, g.sample(time.Since(start)))
		case <-cut.C:
			g.sinkSrv.CloseClientConnections()
			cuts++
		case <-l.done:
			done = true
		}
	}
	st := l.wait(t)
	lastUp := g.settle(3*time.Minute, 30*time.Second)
	samples = append(samples, g.sample(time.Since(start)))
	d := g.statusDoc()
	o := g.measure(st, d.Intake.Stored)
	o.recovery = max(lastUp.Sub(start.Add(dur)), 0) // 0: it kept up
	o.note = fmt.Sprintf("%v at 50 uplinks/s, remote failed %d of %d requests, %d connection cuts", dur, g.remote.failed.Load(), g.remote.requests.Load(), cuts)
	var tb strings.Builder
	tb.WriteString("   t      RSS KiB  fds  goroutines  delivered  queued\n")
	for _, s := range samples {
		fmt.Fprintf(&tb, "%5.0fs  %8d  %4d  %10d  %9d  %6d\n", s.at.Seconds(), s.rssKiB, s.fds, s.goroutines, s.delivered, s.queued)
	}
	t.Logf("soak samples:\n%s", tb.String())
	fmt.Printf("SOAK %s samples:\n%s", t.Name(), tb.String())
	result(t, o)
	if o.lost != 0 {
		t.Fatalf("lost %d", o.lost)
	}
	// Flat: the second half's peak within a margin of the first half's.
	if len(samples) >= 6 {
		half := len(samples) / 2
		peak := func(ss []sample, f func(sample) int64) int64 {
			var m int64
			for _, s := range ss {
				m = max(m, f(s))
			}
			return m
		}
		for _, c := range []struct {
			name  string
			f     func(sample) int64
			slack int64
		}{
			{"RSS KiB", func(s sample) int64 { return s.rssKiB }, 8 << 10},
			{"open files", func(s sample) int64 { return int64(s.fds) }, 8},
			{"goroutines", func(s sample) int64 { return int64(s.goroutines) }, 20},
		} {
			first, second := peak(samples[1:half], c.f), peak(samples[half:], c.f)
			if second > first+c.slack {
				t.Errorf("%s grew: peak %d in the first half, %d in the second", c.name, first, second)
			}
		}
	}
}

func (g *gateway) sample(at time.Duration) sample {
	s := sample{at: at, delivered: g.sink.Stats().Unique}
	pid := g.proc.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				s.rssKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			}
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	if d, err := g.statusNow(); err == nil {
		s.goroutines = d.Goroutines
		s.queued, _ = d.queueRows()
	}
	return s
}
