package metrics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes counts events by outcome (downlinks: "queued", "sent",
// "refused"…; remote requests: "ok", "denied"…). Safe for concurrent use; a
// nil *Outcomes counts nothing.
type Outcomes struct {
	mu sync.Mutex
	by map[string]uint64
}

// NewOutcomes returns an empty counter set.
func NewOutcomes() *Outcomes { return &Outcomes{by: map[string]uint64{}} }

// Add counts one event with this outcome.
func (c *Outcomes) Add(outcome string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.by[outcome]++
	c.mu.Unlock()
}

// OutcomeCount is one outcome's count.
type OutcomeCount struct {
	Outcome string `json:"outcome"`
	Count   uint64 `json:"count"`
}

// Snapshot lists the counts sorted by outcome (never nil).
func (c *Outcomes) Snapshot() []OutcomeCount {
	out := []OutcomeCount{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	for k, v := range c.by {
		out = append(out, OutcomeCount{Outcome: k, Count: v})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Outcome < out[j].Outcome })
	return out
}

// LatencyBuckets are the histogram upper bounds in seconds: from a local
// round trip to the 20 s HTTP timeout.
func LatencyBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// LatencyHistogram is a fixed-bucket latency histogram, lock-free. A nil
// *LatencyHistogram observes nothing.
type LatencyHistogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last one beyond every bound
	count  atomic.Uint64
	sumNs  atomic.Int64
}

// NewLatencyHistogram has the LatencyBuckets.
func NewLatencyHistogram() *LatencyHistogram {
	b := LatencyBuckets()
	return &LatencyHistogram{bounds: b, counts: make([]atomic.Uint64, len(b)+1)}
}

// Observe records one duration.
func (h *LatencyHistogram) Observe(d time.Duration) {
	if h == nil {
		return
	}
	i := sort.SearchFloat64s(h.bounds, d.Seconds()) // first bound >= d
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

// HistogramSnapshot is a histogram's state at one moment.
type HistogramSnapshot struct {
	Buckets []float64 `json:"buckets"` // upper bounds, seconds
	Counts  []uint64  `json:"counts"`  // per bucket, not cumulative
	Count   uint64    `json:"count"`
	Sum     float64   `json:"sum"` // seconds
}

// Mean is the mean observed duration (0 without observations).
func (s HistogramSnapshot) Mean() time.Duration {
	if s.Count == 0 {
		return 0
	}
	return time.Duration(s.Sum / float64(s.Count) * float64(time.Second))
}

// Snapshot reads the histogram.
func (h *LatencyHistogram) Snapshot() HistogramSnapshot {
	if h == nil {
		return HistogramSnapshot{Buckets: []float64{}, Counts: []uint64{}}
	}
	s := HistogramSnapshot{Buckets: h.bounds, Counts: make([]uint64, len(h.bounds))}
	for i := range h.bounds {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Count = h.count.Load()
	s.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return s
}
