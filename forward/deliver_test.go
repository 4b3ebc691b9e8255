package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// fakeTransport is a scripted transport for the generic delivery loop: the
// real peers (HTTP test servers, Mosquitto) cannot fail on cue per row, per
// call and per connection, which is what the loop's lane, backoff and
// dead-letter logic is about. Rows carry "<device>/<n>" as their body.
type fakeTransport struct {
	lanes, take int

	mu       sync.Mutex
	opens    int
	lost     chan struct{}
	inFlight map[cache.EUI64]bool // devices in a deliver call now
	overlap  []string             // a device in two concurrent calls
	maxCalls int                  // deliver calls at once, the most seen
	calls    int
	tried    map[string]int      // body → times the transport tried it
	acked    map[string][]string // device → bodies acknowledged, in order
	order    []string            // every body acknowledged, in order
	refuse   string              // the body refused for good
	fail     map[string]int      // body → retryable failures left
	cut      string              // the body whose first delivery loses the connection
	cutDone  bool
}

func (f *fakeTransport) shape() (int, int) { return f.lanes, f.take }

func (f *fakeTransport) open(context.Context) (<-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.opens == 1 {
		return nil, errors.New("remote down (scripted)")
	}
	f.lost = make(chan struct{})
	return f.lost, nil
}

func (f *fakeTransport) close(context.Context) {}

func (f *fakeTransport) deliver(ctx context.Context, rows []cache.Row) result {
	f.mu.Lock()
	devs := map[cache.EUI64]bool{}
	for _, r := range rows {
		devs[r.DevEUI] = true
	}
	for d := range devs {
		if f.inFlight[d] {
			f.overlap = append(f.overlap, d.String())
		}
		f.inFlight[d] = true
	}
	f.calls++
	f.maxCalls = max(f.maxCalls, f.calls)
	f.mu.Unlock()
	time.Sleep(time.Millisecond) // let the lanes overlap
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		f.calls--
		for d := range devs {
			delete(f.inFlight, d)
		}
	}()
	n := 0
	for _, r := range rows {
		b := string(r.Body)
		f.tried[b]++
		switch {
		case b == f.cut && !f.cutDone:
			f.cutDone = true
			close(f.lost)
			return result{acked: n, err: errors.New("connection lost (scripted)")}
		case b == f.refuse:
			return result{acked: n, err: errors.New("HTTP 400 (scripted)"), refused: true}
		case f.fail[b] > 0:
			f.fail[b]--
			return result{acked: n, err: errors.New("HTTP 503 (scripted)"), retryAfter: time.Millisecond}
		}
		f.acked[r.DevEUI.String()] = append(f.acked[r.DevEUI.String()], b)
		f.order = append(f.order, b)
		n++
		if n == 2 {
			break // takes at most two rows a call: the loop offers the rest again
		}
	}
	return result{acked: n}
}

// The generic loop through the seam: rows spread over the lanes by DevEUI
// (several calls in flight, never one device in two), each device's rows
// acknowledged in order, a row refused for good dead-lettered and counted
// while its device goes on, retryable failures backed off and offered again,
// a failed open retried, a lost connection opened again with nothing
// acknowledged twice and nothing lost. With one lane (MQTT's shape) the
// session's goroutine delivers itself and the outbox order is kept.
func TestDeliveryLoopThroughTheSeam(t *testing.T) {
	for _, lanes := range []int{4, 1} {
		t.Run(fmt.Sprintf("%d lanes", lanes), func(t *testing.T) { testDeliveryLoop(t, lanes) })
	}
}

func testDeliveryLoop(t *testing.T, lanes int) {
	const app, devices, perDevice = "ff-ff-ff-ff-ff-ff-ff-ff", 12, 15
	ob := newOutbox(t)
	f := &fakeTransport{lanes: lanes, take: 5, inFlight: map[cache.EUI64]bool{}, tried: map[string]int{}, acked: map[string][]string{},
		refuse: fakeBody(3, 7), fail: map[string]int{fakeBody(5, 2): 3, fakeBody(8, 0): 1}, cut: fakeBody(10, 9)}
	a := &Application{Settings: AppSettings{EUI: app, Delivery: config.Delivery{RetryMin: 2 * time.Millisecond, RetryMax: 10 * time.Millisecond}},
		Counters: &Counters{}, log: testLogger(t, nil), queue: ob, feed: ob.Feed(app), tr: f, poll: NewPollList(), state: StateStarting}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rows []cache.Row
	for n := range perDevice {
		for d := range devices {
			rows = append(rows, testRow(app, "up", "00-00-00-00-00-00-00-0a", fakeDev(d), fakeBody(d, n)))
		}
	}
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(runCtx) }()
	waitUntil(t, "every row settled", func() bool { return ob.Stats(app).Rows == 0 })
	stop()
	<-done

	f.mu.Lock()
	defer f.mu.Unlock()
	for d := range devices {
		var want []string
		for n := range perDevice {
			if b := fakeBody(d, n); b != f.refuse {
				want = append(want, b)
			}
		}
		if got := f.acked[fakeDev(d)]; !slices.Equal(got, want) {
			t.Errorf("device %d acknowledged %v, want %v", d, got, want)
		}
	}
	if f.opens != 3 {
		t.Errorf("%d opens, want 3 (a failed one, the first connection, the one after the loss)", f.opens)
	}
	if len(f.overlap) > 0 || (lanes > 1) != (f.maxCalls > 1) {
		t.Errorf("devices in two calls at once %v; most calls at once %d (want several lanes busy)", f.overlap, f.maxCalls)
	}
	if f.tried[fakeBody(5, 2)] != 4 || f.tried[f.refuse] != 1 {
		t.Errorf("the failing row was tried %d times (want 4: three failures, then the ack), the refused one %d (want 1)", f.tried[fakeBody(5, 2)], f.tried[f.refuse])
	}
	if s := ob.Stats(app); s.DeadLettered != 1 || a.Counters.Forwarded.Load() != devices*perDevice-1 || a.Counters.Failures.Load() < 5 {
		t.Errorf("dead-lettered %d, forwarded %d, failures %d; want 1, %d, at least 5", s.DeadLettered, a.Counters.Forwarded.Load(), a.Counters.Failures.Load(), devices*perDevice-1)
	}
	if lanes == 1 {
		// One lane: the rows acknowledged in the outbox's order (devices
		// interleaved as appended), but for the refused row.
		var want []string
		for _, r := range rows {
			if string(r.Body) != f.refuse {
				want = append(want, string(r.Body))
			}
		}
		if !slices.Equal(f.order, want) {
			t.Errorf("one lane: acknowledged out of the outbox's order:\n got %v\nwant %v", f.order, want)
		}
	}
	if st, _ := a.State(); st != StateStopped {
		t.Errorf("state %s after Run", st)
	}
}

func fakeDev(d int) string     { return fmt.Sprintf("00-00-00-00-00-00-01-%02x", d) }
func fakeBody(d, n int) string { return fmt.Sprintf("%s/%d", fakeDev(d), n) }
