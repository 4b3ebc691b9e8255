package statusreport

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// outagePublisher refuses (or hangs on) every report until up is set, and
// records the sequence number of every report it is offered and accepts.
type outagePublisher struct {
	mu       sync.Mutex
	up       bool
	hang     bool
	offered  []uint64
	accepted []uint64
	inFlight int
	maxIn    int
}

func (p *outagePublisher) PublishStatus(ctx context.Context, body []byte) error {
	r, err := Decode(body)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.offered = append(p.offered, r.Seq)
	up, hang := p.up, p.hang
	p.inFlight++
	p.maxIn = max(p.maxIn, p.inFlight)
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.inFlight--; p.mu.Unlock() }()
	if !up {
		if hang {
			<-ctx.Done()
			return ctx.Err()
		}
		return errors.New("remote down")
	}
	p.mu.Lock()
	p.accepted = append(p.accepted, r.Seq)
	p.mu.Unlock()
	return nil
}

func (p *outagePublisher) snapshot() (offered, accepted []uint64, maxIn int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.offered...), append([]uint64(nil), p.accepted...), p.maxIn
}

// TestSenderNoBacklog: a remote that is down (refusing, or hanging) for many
// intervals gets no backlog when it recovers: the reports of the outage are
// never offered again, the first one after recovery is fresh, and at most one
// send per target is in flight.
func TestSenderNoBacklog(t *testing.T) {
	for _, hang := range []bool{false, true} {
		name := map[bool]string{false: "refusing", true: "hanging"}[hang]
		t.Run(name, func(t *testing.T) {
			p := &outagePublisher{hang: hang}
			b := &Builder{Gateway: Gateway{UUID: "8ffa106f-c751-cfcd-6300-80918d516837"}, Version: "test", Started: time.Now()}
			s := &Sender{
				Interval: 10 * time.Millisecond,
				Report:   func() ([]byte, error) { return b.Build(Snapshot{}).Encode() },
				Targets:  func() []Target { return []Target{{App: "ff-ff-ff-ff-ff-ff-ff-ff", Publisher: p}} },
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			waitFor(t, func() bool { o, _, _ := p.snapshot(); return len(o) >= 6 }) // six intervals of outage
			p.mu.Lock()
			p.up = true
			lastRefused := p.offered[len(p.offered)-1]
			p.mu.Unlock()
			waitFor(t, func() bool { _, a, _ := p.snapshot(); return len(a) >= 3 })
			cancel()
			<-done
			offered, accepted, maxIn := p.snapshot()
			if accepted[0] <= lastRefused {
				t.Errorf("first report after recovery is seq %d, not newer than the last refused one (%d): a backlog", accepted[0], lastRefused)
			}
			seen := map[uint64]bool{}
			for _, q := range offered {
				if seen[q] {
					t.Errorf("report %d offered twice: it was queued", q)
				}
				seen[q] = true
			}
			if maxIn != 1 {
				t.Errorf("%d sends in flight at once for one target", maxIn)
			}
			if st := s.Stats(); st.Failed < 6 || st.Sent < 3 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
