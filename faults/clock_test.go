//go:build faults

package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// TestClockJumpRestore checks the clock cases' safety before they jump by
// hours: a zero jump, +5 s and back, and the guardian putting the clock
// back when the test binary ends without restoring it.
func TestClockJumpRestore(t *testing.T) {
	c := newWallClock(t) // a zero jump
	defer c.restoreOnPanic()
	c.selfCheck()
	// The guardian: jump, then end its input as a dying test binary would.
	c.mu.Lock()
	if err := setWall(c.truth().Add(5 * time.Second)); err != nil {
		c.mu.Unlock()
		t.Fatal(err)
	}
	c.jumped, c.since = 5*time.Second, time.Now()
	c.mu.Unlock()
	c.guardIn.Close()
	select {
	case <-c.guardEnd:
	case <-time.After(10 * time.Second):
		t.Fatal("the guardian did not end")
	}
	off := c.offset()
	c.mu.Lock()
	c.jumped = 0
	c.mu.Unlock()
	if off.Abs() > 50*time.Millisecond {
		c.restore()
		t.Fatalf("the guardian left the wall clock %v off:\n%s", off, c.guardErr.String())
	}
	t.Logf("clock restored to within %v by the test, by the guardian; guardian: %s", off, c.guardErr.String())
}

// TestClockJump is the clock-jump case: NTP correcting the wall clock by
// hours, forward then backward, while rows wait for a remote that is down and
// the delivery backoff (1 s to 60 s, jitter) runs on each of the 16 HTTP
// lanes. In each direction: the remote down, 3,050 events queued (the lanes
// take 1,024, the rest is read back from the database, where rows carry
// stored times), the clock set 3 h away 12 s later, the remote kept down
// 15 s more, then back while the clock is still off; the clock is put back
// once everything is delivered (at most 75 s jumped, wallclock_test.go).
// Checked: the delivery requests the remote saw while the clock was off and
// the remote down stay within what the backoff schedule allows (no burst);
// delivery resumes within the backoff cap and completes before the clock is
// put back (no stuck backoff); the delivery-latency histogram (/metrics and
// /status), the uptime (/metrics, /status, status report) and the queue age
// (status report, oldest_queued_seconds) are neither negative nor hours;
// nothing lost.
func TestClockJump(t *testing.T) {
	if dl, ok := t.Deadline(); ok && time.Until(dl) < 5*time.Minute {
		t.Fatalf("less than 5 minutes before the test binary's timeout: the clock is not jumped that close to it; run with -timeout 10m or more")
	}
	c := newWallClock(t)
	defer c.restoreOnPanic()
	c.selfCheck()
	const (
		jumpBy   = 3 * time.Hour
		retryMin = time.Second
		retryMax = 60 * time.Second
		ramp     = 12 * time.Second // from the first uplink queued to the jump
		hold     = 15 * time.Second // the remote still down after the jump
		spread   = 3 * time.Second  // the lanes' first failures, after the first uplink
		lanes    = forward.DefaultHTTPLanes
	)
	g := newGateway(t, gatewayOptions{devices: 50, retryMin: retryMin, retryMax: retryMax,
		extraYAML: "status_report:\n  enabled: true\n  interval: 2s\n"})
	g.remote.statusUp.Store(true) // status reports show the queue's age while it waits
	g.start()
	appStart := time.Now()
	for g.sink.Stats().Inits == 0 { // the application's init done: its lanes deliver
		if time.Since(appStart) > time.Minute {
			t.Fatalf("no init within a minute:\n%s", g.logs.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var total sim.RunStats
	var notes []string
	var recovery time.Duration
	reports := 0
	var lastSeq uint64
	// checkReport checks the last status report if it is new and was built
	// while the clock was off by jump.
	checkReport := func(jump time.Duration, queuedSince time.Time) {
		t.Helper()
		body := g.sink.LastStatus()
		if body == nil {
			return
		}
		r, err := statusreport.Decode(body)
		if err != nil {
			t.Errorf("status report: %v", err)
			return
		}
		if r.Seq == lastSeq || r.Time.Sub(c.truth().Add(jump)).Abs() > 10*time.Second {
			return // seen, or not built while the clock was off by jump
		}
		lastSeq = r.Seq
		reports++
		up := time.Since(appStart)
		if r.UptimeSeconds < int64(up/time.Second)-2 || r.UptimeSeconds > int64((up+time.Minute)/time.Second) {
			t.Errorf("clock %+v: status report uptime_seconds %d, app-connect has run about %v", jump, r.UptimeSeconds, up.Round(time.Second))
		}
		for _, a := range r.Applications {
			if a.OldestQueuedSeconds < 0 || a.OldestQueuedSeconds > time.Since(queuedSince).Seconds()+2 {
				t.Errorf("clock %+v: status report oldest_queued_seconds %.1f, the oldest row waits for %v at most", jump, a.OldestQueuedSeconds, time.Since(queuedSince).Round(time.Second))
			}
		}
	}

	for _, jump := range []time.Duration{jumpBy, -jumpBy} {
		g.remote.down.Store(true)
		before := g.figures(t)
		queuedSince := time.Now()
		st := g.publish(ctx, 60, 300).wait(t) // 3,000 uplinks over 10 s
		total.Uplinks += st.Uplinks
		total.Failed += st.Failed
		for rows, _ := g.statusDoc().queueRows(); rows < st.Uplinks-int(st.Failed) && time.Since(queuedSince) < ramp; rows, _ = g.statusDoc().queueRows() {
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Until(queuedSince.Add(ramp)))
		queued, _ := g.statusDoc().queueRows()

		// The jump, the remote still down.
		req0 := g.remote.deliveries.Load()
		c.jump(jump)
		jumpedAt := time.Now()
		for time.Since(jumpedAt) < hold {
			checkReport(jump, queuedSince)
			time.Sleep(250 * time.Millisecond)
		}
		held := g.remote.deliveries.Load() - req0
		from, to := jumpedAt.Sub(queuedSince)-spread, time.Since(queuedSince)
		bound := (lanes + 1) * maxAttempts(retryMin, retryMax, from, to) // the lanes and the application's init

		// The remote back, the clock still off.
		unique0 := g.sink.Stats().Unique
		g.remote.down.Store(false)
		backAt := time.Now()
		var resumed time.Duration
		for g.sink.Missing(g.fleet.Expected()) > 0 && time.Since(jumpedAt) < maxJumped-15*time.Second {
			if resumed == 0 && g.sink.Stats().Unique > unique0 {
				resumed = time.Since(backAt)
			}
			checkReport(jump, queuedSince)
			time.Sleep(100 * time.Millisecond)
		}
		if resumed == 0 && g.sink.Stats().Unique > unique0 {
			resumed = time.Since(backAt)
		}
		missingJumped := g.sink.Missing(g.fleet.Expected())
		during := g.figures(t) // read while the clock is still off
		jumped := c.restore()

		lastUp := g.settle(retryMax+30*time.Second, retryMax)
		rec := lastUp.Sub(backAt)
		recovery = max(recovery, rec)
		dCount, dSum := during.count-before.count, during.sum-before.sum
		mean := 0.0
		if dCount > 0 {
			mean = dSum / float64(dCount)
		}
		note := fmt.Sprintf("clock %+v for %v: %d queued (the lanes take %d, the rest is read back from the database), %d delivery requests while off and down for %v (the backoff schedule allows at most %d on %d lanes and the init), resumed %v after the remote's return, all delivered after %v (%d still missing when the clock was put back); latency of the %d delivered %.1f s in all, mean %.1f s",
			jump, jumped.Round(time.Second), queued, min(queued, lanes*64), held, hold, bound, lanes, resumed.Round(10*time.Millisecond), rec.Round(10*time.Millisecond), missingJumped, dCount, dSum, mean)
		notes = append(notes, note)
		t.Log(note)

		if held > int64(bound) {
			t.Errorf("clock %+v: a burst of retries: %d delivery requests in %v, the backoff schedule allows at most %d", jump, held, hold, bound)
		}
		if resumed == 0 || resumed > retryMax {
			t.Errorf("clock %+v: delivery resumed %v after the remote's return (0: not while the clock was off); the backoff cap is %v", jump, resumed, retryMax)
		}
		if missingJumped > 0 {
			t.Errorf("clock %+v: %d uplinks still missing %v after the remote's return, when the clock was put back: a stuck backoff", jump, missingJumped, time.Since(backAt).Round(time.Second))
		}
		// Latency: every row delivered in the phase was queued in it (the
		// previous phase's were all delivered before).
		maxWait := time.Since(queuedSince).Seconds()
		if during.sum < 0 || dSum < 0 || dCount < 0 || during.negative != "" {
			t.Errorf("clock %+v: negative latency figures: sum %.3f (%+.3f), count %d (%+d) %s", jump, during.sum, dSum, during.count, dCount, during.negative)
		}
		if dSum > float64(dCount)*maxWait {
			t.Errorf("clock %+v: delivery latency poisoned: %d rows took %.0f s in all, more than %.0f s each (since the phase's first row was queued)", jump, dCount, dSum, maxWait)
		}
		if during.statusSum != during.sum || during.statusCount != during.count {
			t.Logf("/status and /metrics read a moment apart: sum %.3f/%.3f, count %d/%d", during.statusSum, during.sum, during.statusCount, during.count)
		}
		if up := time.Since(appStart); during.uptime < up-2*time.Second-time.Since(during.at) || during.uptime > up+time.Minute ||
			during.statusUptime < up-2*time.Second-time.Since(during.at) || during.statusUptime > up+time.Minute {
			t.Errorf("clock %+v: uptime %v (/metrics), %v (/status), app-connect has run about %v", jump, during.uptime, during.statusUptime, up.Round(time.Second))
		}
	}
	if reports == 0 {
		t.Errorf("no status report built while the clock was off")
	}

	d := g.statusDoc()
	o := g.measure(total, d.Intake.Stored)
	o.recovery = recovery
	o.note = strings.Join(notes, "; ") + fmt.Sprintf("; %d status reports checked; clock put back to within %v of the true time (longest jump %v)", reports, c.offset().Round(time.Microsecond), c.longest.Round(time.Second))
	result(t, o)
	if o.lost != 0 || o.appLost != 0 {
		t.Fatalf("lost %d (app-connect %d)", o.lost, o.appLost)
	}
}

// maxAttempts is the most delivery attempts one lane can make in the window
// [from, to] (durations since its first failure) under the backoff schedule:
// the delay after the i-th failure is in [c_i/2, c_i], c_i = min(lo·2^i, hi)
// (internal/backoff). Most attempts fall in the window when the delays before
// it are as long as they can be and those inside it as short.
func maxAttempts(lo, hi, from, to time.Duration) int {
	c := func(i int) time.Duration {
		if i >= 40 {
			return hi
		}
		return min(lo<<i, hi)
	}
	k, latest, earliest := 0, time.Duration(0), time.Duration(0) // attempt k: its latest and earliest time
	for latest < from {
		latest += c(k)
		earliest += c(k) / 2
		k++
	}
	n := 0
	for at := max(from, earliest); at <= to; k++ {
		n++
		at += c(k) / 2
	}
	return n
}

// latencyFigures are app-connect's time-valued figures at one moment.
type latencyFigures struct {
	at                   time.Time
	sum                  float64 // appconnect_delivery_latency_seconds_sum
	count                int64
	statusSum            float64 // /status delivery_latency
	statusCount          int64
	uptime, statusUptime time.Duration
	negative             string // any negative value among the latency series
}

// figures reads the delivery-latency histogram and the uptime from /metrics
// and /status.
func (g *gateway) figures(t *testing.T) latencyFigures {
	t.Helper()
	f := latencyFigures{at: time.Now()}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if j := strings.LastIndexByte(line, '}'); j >= 0 { // label values may hold spaces
			rest = line[j+1:]
		} else {
			_, rest, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		switch {
		case name == "appconnect_delivery_latency_seconds_sum":
			f.sum = v
		case name == "appconnect_delivery_latency_seconds_count":
			f.count = int64(v)
		case name == "appconnect_uptime_seconds":
			f.uptime = time.Duration(v * float64(time.Second))
		}
		if strings.HasPrefix(name, "appconnect_delivery_latency_seconds") && v < 0 {
			f.negative += " " + line
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	sresp, err := c.Get("http://" + g.admin + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer sresp.Body.Close()
	var s struct {
		UptimeSeconds   int64 `json:"uptime_seconds"`
		DeliveryLatency struct {
			Counts []int64 `json:"counts"`
			Count  int64   `json:"count"`
			Sum    float64 `json:"sum"`
		} `json:"delivery_latency"`
	}
	if err := json.NewDecoder(sresp.Body).Decode(&s); err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	f.statusSum, f.statusCount, f.statusUptime = s.DeliveryLatency.Sum, s.DeliveryLatency.Count, time.Duration(s.UptimeSeconds)*time.Second
	for _, n := range s.DeliveryLatency.Counts {
		if n < 0 {
			f.negative += fmt.Sprintf(" /status delivery_latency.counts %v", s.DeliveryLatency.Counts)
			break
		}
	}
	if s.DeliveryLatency.Sum < 0 {
		f.negative += fmt.Sprintf(" /status delivery_latency.sum %v", s.DeliveryLatency.Sum)
	}
	return f
}

func TestMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		from, to time.Duration
		want     int
	}{
		{0, 0, 1},                                 // the first attempt
		{0, 1500 * time.Millisecond, 3},           // 0, 0.5, 1.5
		{9 * time.Second, 27 * time.Second, 2},    // attempt 4 at 9 s at the earliest, then 8 s later
		{600 * time.Second, 660 * time.Second, 3}, // at the cap: 30 s apart at the least
	} {
		if got := maxAttempts(time.Second, 60*time.Second, tc.from, tc.to); got != tc.want {
			t.Errorf("maxAttempts(1s, 60s, %v, %v) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
}
