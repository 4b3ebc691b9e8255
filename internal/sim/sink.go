package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultInitReply is what the Sink answers to init by default, like MultiTech's reference server app.js.
const DefaultInitReply = `{"timeout":20,"queue_size":10,"downlink_query_interval":30}`

const maxSinkBody = 16 << 20

// Sink is the remote cloud HTTP API of the default application (conduit.md §6), under a path
// prefix: it records every request, counts uplinks per (DevEUI, FCnt) and can inject faults.
// An uplink counts as received only when it was answered 2xx. All methods are safe for
// concurrent use.
type Sink struct {
	prefix string

	mu          sync.Mutex
	records     []Request
	batches     []Batch
	lastStatus  []byte // body of the last status report (status.go)
	recordLimit int
	devices     map[string]*sinkDevice
	stats       SinkStats
	initReply   []byte
	batchRoute  bool
	delay       time.Duration
	latencies   []time.Duration // arrival − LNS time of each uplink answered 2xx
	failNext    int
	failNextSt  int
	failUntil   time.Time
	failForSt   int
	failUplinks map[uplinkKey]int
	// downlinks waiting for the next up answer or poll, whichever comes first
	// (upDownlinks only for up answers, pollDownlinks only for polls).
	upDownlinks   []json.RawMessage
	pollDownlinks []json.RawMessage
}

// QueueDownlink makes the next answer to an up (single or batch) carry dl.
func (s *Sink) QueueDownlink(dl json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upDownlinks = append(s.upDownlinks, dl)
}

// QueuePollDownlink makes the next answer to a downlink poll carry dl.
func (s *Sink) QueuePollDownlink(dl json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollDownlinks = append(s.pollDownlinks, dl)
}

// takeDownlinks empties q into a JSON array answer; s.mu is held.
func takeDownlinks(q *[]json.RawMessage) []byte {
	if len(*q) == 0 {
		return []byte(`[]`)
	}
	b, _ := json.Marshal(*q)
	*q = nil
	return b
}

// Batch is one batch post (…/<APP>/up) the Sink received, whatever it answered.
type Batch struct {
	Time     time.Time
	Status   int               // status answered; 0 when the client went away first
	Elements []json.RawMessage // the array's elements as received; nil when the body is not a JSON array
	Err      string            // why the sink refused the batch's content, "" when it is an array of uplinks
}

// Request is one request the Sink received, as received.
type Request struct {
	Time   time.Time
	Method string
	Path   string // full path, prefix included
	Header http.Header
	Body   []byte
	Status int // status answered; 0 when the client went away first
}

// SinkStats are the Sink's counters.
type SinkStats struct {
	Requests      int // every request, faults included
	Failed        int // requests answered with a non-2xx status, injected faults included
	Refused       int // requests the sink itself refused (unknown route, wrong method, malformed body), never injected
	Uplinks       int // uplinks answered 2xx, duplicates included
	Unique        int // distinct (DevEUI, FCnt) answered 2xx
	Duplicates    int // uplinks answered 2xx whose (DevEUI, FCnt) was already received
	OutOfOrder    int // first arrivals of an FCnt lower than the highest already received for that device
	Joined        int
	Inits         int
	Closes        int
	BatchRequests int // batch posts answered 2xx
	Polls         int // downlink polls (GET …/down)
	Status        int // status reports (POST …/<APP>/<GW-UUID>/status, MQTT …/status) taken
	FirstUplink   time.Time
	LastUplink    time.Time
}

type uplinkKey struct {
	devEUI string
	fcnt   uint32
}

type sinkDevice struct {
	seen   map[uint32]struct{}
	contig uint32 // FCnts 0..contig-1 all received: Missing skips them
	max    uint32
	order  []uint32
	bodies [][]byte
}

// NewSink returns a sink serving {prefix}/api/v1/lorawan/…; prefix is "" or a path like "/tenant-a".
func NewSink(prefix string) *Sink {
	return &Sink{
		prefix:      strings.TrimSuffix(prefix, "/"),
		devices:     map[string]*sinkDevice{},
		initReply:   []byte(DefaultInitReply),
		batchRoute:  true,
		failUplinks: map[uplinkKey]int{},
	}
}

// SetInitReply sets the body answered to init.
func (s *Sink) SetInitReply(v json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initReply = append([]byte(nil), v...)
}

// SetBatchRoute enables or disables the batch route …/<APP>/up; disabled it answers 404, as
// MultiTech's app.js does.
func (s *Sink) SetBatchRoute(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchRoute = on
}

// SetRecordLimit keeps only the last n requests and, per device, the last n single-uplink
// bodies (0: keep everything, the default; negative: keep none). Counters are not affected.
func (s *Sink) SetRecordLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLimit = n
	s.records = trimTail(s.records, n)
	s.batches = trimTail(s.batches, n)
	for _, d := range s.devices {
		d.bodies = trimTail(d.bodies, n)
	}
}

func trimTail[T any](v []T, n int) []T {
	switch {
	case n == 0 || len(v) <= n:
		return v
	case n < 0:
		return nil
	default:
		return append(v[:0:0], v[len(v)-n:]...)
	}
}

// maxLatencies bounds the latencies kept for Latency.
const maxLatencies = 1 << 20

// Latency returns the q-quantile (0..1) of the uplinks' latencies, from
// the LNS time in the uplink to its arrival here; 0 when none was measured.
func (s *Sink) Latency(q float64) time.Duration {
	s.mu.Lock()
	l := slices.Clone(s.latencies)
	s.mu.Unlock()
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return l[min(int(q*float64(len(l))), len(l)-1)]
}

// ResetLatencies forgets the latencies measured so far (a run's warm-up).
func (s *Sink) ResetLatencies() {
	s.mu.Lock()
	s.latencies = nil
	s.mu.Unlock()
}

// SetDelay delays every answer by d (slow cloud, slow backhaul); each
// request waits on its own, so concurrent requests overlap.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// FailNext answers the next n requests, whatever they are, with status.
func (s *Sink) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failNextSt = n, status
}

// FailFor answers every request with status for d from now.
func (s *Sink) FailFor(d time.Duration, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failUntil, s.failForSt = time.Now().Add(d), status
}

// FailUplink answers status to every post carrying that uplink, singly or in a batch (the
// whole batch gets the status). A 2xx status removes the rule.
func (s *Sink) FailUplink(devEUI string, fcnt uint32, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := uplinkKey{NormalizeEUI(devEUI), fcnt}
	if status >= 200 && status < 300 {
		delete(s.failUplinks, k)
		return
	}
	s.failUplinks[k] = status
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Recorded returns the recorded requests in arrival order (see SetRecordLimit).
func (s *Sink) Recorded() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), trimTail(s.records, s.recordLimit)...)
}

// Batches returns the batch posts received, in arrival order, refused ones
// included (see SetRecordLimit).
func (s *Sink) Batches() []Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Batch(nil), trimTail(s.batches, s.recordLimit)...)
}

// Received returns the FCnts of devEUI's uplinks answered 2xx, in arrival order, duplicates included.
func (s *Sink) Received(devEUI string) []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[NormalizeEUI(devEUI)]; d != nil {
		return append([]uint32(nil), d.order...)
	}
	return nil
}

// Bodies returns the raw bodies of devEUI's single-uplink posts answered 2xx, in arrival order.
func (s *Sink) Bodies(devEUI string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[NormalizeEUI(devEUI)]; d != nil {
		return append([][]byte(nil), trimTail(d.bodies, s.recordLimit)...)
	}
	return nil
}

// Missing counts the uplinks not received: expected maps a DevEUI to a count, FCnt 0..count-1.
func (s *Sink) Missing(expected map[string]uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	missing := 0
	for eui, n := range expected {
		d := s.devices[NormalizeEUI(eui)]
		if d == nil {
			missing += int(n)
			continue
		}
		for f := d.contig; f < n; f++ {
			if _, ok := d.seen[f]; !ok {
				missing++
			}
		}
	}
	return missing
}

// Wait returns nil once nothing of expected is missing, or ctx's error.
func (s *Sink) Wait(ctx context.Context, expected map[string]uint32) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		missing := s.Missing(expected)
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: sink: %d uplinks missing: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// sinkRoute is what a request path means.
type sinkRoute int

const (
	routeUnknown sinkRoute = iota
	routeInit
	routeClose
	routeUp
	routeBatch
	routeJoined
	routeDown
	routeStatus
)

func (s *Sink) route(method, path string) (sinkRoute, int) {
	rest, ok := strings.CutPrefix(path, s.prefix+"/api/v1/lorawan/")
	if !ok {
		return routeUnknown, http.StatusNotFound
	}
	parts := strings.Split(rest, "/")
	want := http.MethodPost
	r := routeUnknown
	switch {
	case len(parts) == 3 && parts[2] == "init":
		r = routeInit
	case len(parts) == 3 && parts[2] == "close":
		r = routeClose
	case len(parts) == 3 && parts[2] == "up":
		r = routeUp
	case len(parts) == 3 && parts[2] == "joined":
		r = routeJoined
	case len(parts) == 3 && parts[2] == "status":
		r = routeStatus
	case len(parts) == 2 && parts[1] == "up":
		r = routeBatch
	case len(parts) == 2 && parts[1] == "down":
		r, want = routeDown, http.MethodGet
	}
	switch {
	case r == routeUnknown:
		return r, http.StatusNotFound
	case method != want:
		return r, http.StatusMethodNotAllowed
	}
	return r, http.StatusOK
}

// uplinkRef is the part of an uplink the Sink checks.
type uplinkRef struct {
	DevEUI *string `json:"deveui"`
	FCnt   *uint32 `json:"fcnt"`
	Time   string  `json:"time"` // the LNS time; the latency runs from it
}

// parseUplinks reads the uplinks of a post and when each was sent (the
// LNS time field; zero when absent or unreadable).
func parseUplinks(body []byte, batch bool) ([]uplinkKey, []time.Time, error) {
	var refs []uplinkRef
	if batch {
		if err := json.Unmarshal(body, &refs); err != nil {
			return nil, nil, fmt.Errorf("batch is not a JSON array of uplinks: %w", err)
		}
	} else {
		var one uplinkRef
		if err := json.Unmarshal(body, &one); err != nil {
			return nil, nil, fmt.Errorf("uplink is not a JSON object: %w", err)
		}
		refs = []uplinkRef{one}
	}
	keys := make([]uplinkKey, 0, len(refs))
	sent := make([]time.Time, 0, len(refs))
	for i, r := range refs {
		if r.DevEUI == nil || r.FCnt == nil {
			return nil, nil, fmt.Errorf("uplink %d lacks deveui or fcnt", i)
		}
		keys = append(keys, uplinkKey{NormalizeEUI(*r.DevEUI), *r.FCnt})
		t, _ := time.Parse(time.RFC3339Nano, r.Time)
		sent = append(sent, t)
	}
	return keys, sent, nil
}

// ServeHTTP implements http.Handler.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSinkBody))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	rt, status := s.route(r.Method, r.URL.Path)
	var ups []uplinkKey
	var sent []time.Time
	var parseErr error
	if status == http.StatusOK && (rt == routeUp || rt == routeBatch) {
		ups, sent, parseErr = parseUplinks(body, rt == routeBatch)
		if parseErr != nil {
			status = http.StatusBadRequest
		}
	}

	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}

	rec := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	if status != http.StatusOK {
		s.stats.Refused++
	}
	if r.Context().Err() != nil { // the client gave up: it will never see an answer
		s.record(rec)
		s.recordBatch(rt, rec, parseErr)
		s.stats.Failed++
		return
	}
	switch {
	case s.failNext > 0:
		s.failNext--
		status = s.failNextSt
	case rec.Time.Before(s.failUntil):
		status = s.failForSt
	case rt == routeBatch && !s.batchRoute:
		status = http.StatusNotFound
	default:
		for _, k := range ups {
			if st, ok := s.failUplinks[k]; ok {
				status = st
				break
			}
		}
	}
	rec.Status = status
	s.record(rec)
	s.recordBatch(rt, rec, parseErr)

	var reply []byte
	if status < 200 || status > 299 {
		s.stats.Failed++
		msg := http.StatusText(status)
		if parseErr != nil {
			msg = parseErr.Error()
		}
		reply, _ = json.Marshal(map[string]string{"error": msg})
	} else {
		switch rt {
		case routeInit:
			s.stats.Inits++
			reply = s.initReply
		case routeClose:
			s.stats.Closes++
			reply = []byte(`{}`)
		case routeJoined:
			s.stats.Joined++
			reply = []byte(`{}`)
		case routeStatus:
			s.countStatus(body)
			reply = []byte(`{}`)
		case routeDown:
			s.stats.Polls++
			reply = takeDownlinks(&s.pollDownlinks)
		case routeBatch:
			s.stats.BatchRequests++
			s.countUplinks(ups, sent, nil, rec.Time)
			reply = takeDownlinks(&s.upDownlinks)
		case routeUp:
			s.countUplinks(ups, sent, body, rec.Time)
			reply = takeDownlinks(&s.upDownlinks)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

// record keeps rec within the record limit. Called with s.mu held.
func (s *Sink) record(rec Request) {
	if s.recordLimit < 0 {
		return
	}
	s.records = append(s.records, rec)
	if s.recordLimit > 0 && len(s.records) > 2*s.recordLimit {
		s.records = trimTail(s.records, s.recordLimit)
	}
}

// recordBatch keeps a batch post's elements within the record limit. Called with s.mu held.
func (s *Sink) recordBatch(rt sinkRoute, rec Request, parseErr error) {
	if rt != routeBatch || s.recordLimit < 0 {
		return
	}
	b := Batch{Time: rec.Time, Status: rec.Status}
	if parseErr != nil {
		b.Err = parseErr.Error()
	}
	if err := json.Unmarshal(rec.Body, &b.Elements); err != nil {
		b.Elements = nil
	}
	s.batches = append(s.batches, b)
	if s.recordLimit > 0 && len(s.batches) > 2*s.recordLimit {
		s.batches = trimTail(s.batches, s.recordLimit)
	}
}

// countUplinks accounts uplinks answered 2xx; body is the single uplink's body (nil for a batch).
// Called with s.mu held.
func (s *Sink) countUplinks(ups []uplinkKey, sent []time.Time, body []byte, at time.Time) {
	if s.stats.FirstUplink.IsZero() {
		s.stats.FirstUplink = at
	}
	s.stats.LastUplink = at
	for i, k := range ups {
		if i < len(sent) && !sent[i].IsZero() && len(s.latencies) < maxLatencies {
			s.latencies = append(s.latencies, at.Sub(sent[i]))
		}
		d := s.devices[k.devEUI]
		if d == nil {
			d = &sinkDevice{seen: map[uint32]struct{}{}}
			s.devices[k.devEUI] = d
		}
		s.stats.Uplinks++
		d.order = append(d.order, k.fcnt)
		if _, dup := d.seen[k.fcnt]; dup {
			s.stats.Duplicates++
		} else {
			if len(d.seen) > 0 && k.fcnt < d.max {
				s.stats.OutOfOrder++
			}
			d.seen[k.fcnt] = struct{}{}
			for _, ok := d.seen[d.contig]; ok; _, ok = d.seen[d.contig] {
				d.contig++
			}
			s.stats.Unique++
			if k.fcnt > d.max {
				d.max = k.fcnt
			}
		}
		if body != nil && s.recordLimit >= 0 {
			d.bodies = append(d.bodies, bytes.Clone(body))
			if s.recordLimit > 0 && len(d.bodies) > 2*s.recordLimit {
				d.bodies = trimTail(d.bodies, s.recordLimit)
			}
		}
	}
}
