package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// state is what the admin endpoint and the status file report. run sets the
// first group of fields; startAdmin creates the counters left nil, so the
// lead's code can increment them through state at any time after that.
type state struct {
	started time.Time
	local   *lnsbridge.Local
	intake  *forward.Intake
	outbox  *cache.Outbox
	storage func() cache.StorageStatus // the database's file system (nil: not reported)
	router  *forward.Router
	joins   *joinCounts

	downlinks       *outcomeCounts // downlinks by outcome (queued, sent, refused, …)
	requests        *outcomeCounts // remote requests (api_req, lora_req, log_req) by outcome
	deliveryLatency *histogram     // outbox commit → remote acknowledgement
	joinLatency     *histogram     // join-request in → answer out
	lastErrors      *errorRing     // the last error log lines (see lastErrorsOf)
}

// ensure creates the counters run left unset.
func (s *state) ensure(log *slog.Logger) {
	if s.started.IsZero() {
		s.started = time.Now()
	}
	if s.downlinks == nil {
		s.downlinks = newOutcomeCounts()
	}
	if s.requests == nil {
		s.requests = newOutcomeCounts()
	}
	if s.deliveryLatency == nil {
		s.deliveryLatency = newHistogram()
	}
	if s.joinLatency == nil {
		s.joinLatency = newHistogram()
	}
	if s.lastErrors == nil {
		s.lastErrors = lastErrorsOf(log)
	}
}

type appStatus struct {
	EUI          string `json:"eui"`
	Name         string `json:"name"`
	State        string `json:"state"`
	LastError    string `json:"last_error,omitempty"`
	QueueRows    int    `json:"queue_rows"`
	QueueBytes   int64  `json:"queue_bytes"`
	Queued       uint64 `json:"queued"` // uplinks (and joined events) received for this application
	Forwarded    uint64 `json:"forwarded"`
	Failures     uint64 `json:"failures"`
	DeadLettered int64  `json:"dead_lettered"`
	Dropped      int64  `json:"dropped"`
}

type statusDoc struct {
	Version         string               `json:"version"`
	PID             int                  `json:"pid"`
	Started         time.Time            `json:"started"`
	Uptime          string               `json:"uptime"`
	UptimeSeconds   int64                `json:"uptime_seconds"`
	Local           lnsbridge.LocalStats `json:"local"`
	Intake          forward.IntakeStats  `json:"intake"`
	Storage         cache.StorageStatus  `json:"storage"`
	Goroutines      int                  `json:"goroutines"` // for leak checks (make faults soak)
	Applications    []appStatus          `json:"applications"`
	Joins           []joinCount          `json:"joins"`
	Downlinks       []outcomeCount       `json:"downlinks"`
	Requests        []outcomeCount       `json:"requests"`
	DeliveryLatency histogramSnapshot    `json:"delivery_latency"`
	JoinLatency     histogramSnapshot    `json:"join_latency"`
	LastErrors      []loggedError        `json:"last_errors"`
	ErrorsLogged    uint64               `json:"errors_logged"`
}

func (s *state) status() statusDoc {
	up := time.Since(s.started)
	doc := statusDoc{
		Version: version, PID: os.Getpid(), Started: s.started.UTC().Truncate(time.Second),
		Uptime: up.Round(time.Second).String(), UptimeSeconds: int64(up / time.Second),
		Applications: []appStatus{}, Joins: s.joins.snapshot(),
		Downlinks: s.downlinks.snapshot(), Requests: s.requests.snapshot(),
		DeliveryLatency: s.deliveryLatency.snapshot(), JoinLatency: s.joinLatency.snapshot(),
	}
	doc.LastErrors, doc.ErrorsLogged = s.lastErrors.snapshot()
	if doc.Joins == nil {
		doc.Joins = []joinCount{}
	}
	if s.local != nil {
		doc.Local = s.local.Stats()
	}
	if s.intake != nil {
		doc.Intake = s.intake.Stats()
	}
	if s.storage != nil {
		doc.Storage = s.storage()
	}
	doc.Goroutines = runtime.NumGoroutine()
	if s.router == nil {
		return doc
	}
	for _, a := range s.router.Applications() {
		st, le := a.State()
		var q cache.AppStats
		if s.outbox != nil {
			q = s.outbox.Stats(a.Settings.EUI)
		}
		doc.Applications = append(doc.Applications, appStatus{
			EUI: a.Settings.EUI, Name: a.Settings.Name, State: st, LastError: le,
			QueueRows: q.Rows, QueueBytes: q.Bytes, Queued: a.Counters.Queued.Load(), Forwarded: a.Counters.Forwarded.Load(),
			Failures: a.Counters.Failures.Load(), DeadLettered: q.DeadLettered, Dropped: q.Dropped,
		})
	}
	return doc
}

// startAdmin serves /healthz, /status and /metrics on addr (loopback only;
// empty disables it). It also creates the state's counters left nil.
func startAdmin(addr string, st *state, log *slog.Logger) (func(), error) {
	st.ensure(log)
	if addr == "" {
		return func() {}, nil
	}
	if err := config.CheckLoopback(addr); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: adminHandler(st), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

func adminHandler(st *state) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st.status())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, st.status())
	})
	return mux
}

// writeMetrics writes the Prometheus text exposition of d.
func writeMetrics(w io.Writer, d statusDoc) {
	m := metricWriter{w: w}
	m.one("appconnect_uptime_seconds", "gauge", "Seconds since the process started.", float64(d.UptimeSeconds))
	m.one("appconnect_local_connected", "gauge", "1 while connected to the local broker.", b2f(d.Local.Connected))
	m.one("appconnect_local_received_total", "counter", "Valid events taken from the local broker.", float64(d.Local.Received))
	m.one("appconnect_local_malformed_total", "counter", "Local payloads refused as malformed.", float64(d.Local.Malformed))
	m.one("appconnect_unrouted_total", "counter", "Local events no application takes.", float64(d.Intake.Unrouted))
	m.one("appconnect_outbox_commits_total", "counter", "Outbox transactions.", float64(d.Intake.Commits))

	perApp := []struct {
		name, typ, help string
		val             func(appStatus) float64
	}{
		{"appconnect_uplinks_received_total", "counter", "Events queued for the application.", func(a appStatus) float64 { return float64(a.Queued) }},
		{"appconnect_uplinks_forwarded_total", "counter", "Events the application acknowledged.", func(a appStatus) float64 { return float64(a.Forwarded) }},
		{"appconnect_uplinks_dropped_total", "counter", "Events dropped by the outbox caps.", func(a appStatus) float64 { return float64(a.Dropped) }},
		{"appconnect_uplinks_dead_lettered_total", "counter", "Events refused for good by the application.", func(a appStatus) float64 { return float64(a.DeadLettered) }},
		{"appconnect_delivery_failures_total", "counter", "Failed delivery attempts (retried).", func(a appStatus) float64 { return float64(a.Failures) }},
		{"appconnect_queue_rows", "gauge", "Rows waiting in the outbox.", func(a appStatus) float64 { return float64(a.QueueRows) }},
		{"appconnect_queue_bytes", "gauge", "Payload bytes waiting in the outbox.", func(a appStatus) float64 { return float64(a.QueueBytes) }},
		{"appconnect_application_up", "gauge", "1 while the application's delivery is up.", func(a appStatus) float64 { return b2f(a.State == forward.StateUp) }},
	}
	for _, s := range perApp {
		m.header(s.name, s.typ, s.help)
		for _, a := range d.Applications {
			m.sample(s.name, labels("app", a.EUI, "name", a.Name), s.val(a))
		}
	}
	m.header("appconnect_downlinks_total", "counter", "Downlinks by outcome.")
	for _, o := range d.Downlinks {
		m.sample("appconnect_downlinks_total", labels("outcome", o.Outcome), float64(o.Count))
	}
	m.header("appconnect_remote_requests_total", "counter", "Remote requests by outcome.")
	for _, o := range d.Requests {
		m.sample("appconnect_remote_requests_total", labels("outcome", o.Outcome), float64(o.Count))
	}
	m.header("appconnect_join_requests_total", "counter", "Join requests by Join Server and result.")
	for _, j := range d.Joins {
		m.sample("appconnect_join_requests_total", labels("js", j.JoinServer, "result", j.Result), float64(j.Count))
	}
	m.histogram("appconnect_delivery_latency_seconds", "From outbox commit to the remote acknowledgement.", d.DeliveryLatency)
	m.histogram("appconnect_join_latency_seconds", "From join-request in to answer out.", d.JoinLatency)
	m.one("appconnect_errors_logged_total", "counter", "Error log lines since start.", float64(d.ErrorsLogged))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type metricWriter struct{ w io.Writer }

func (m metricWriter) header(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m metricWriter) sample(name, labels string, v float64) {
	fmt.Fprintf(m.w, "%s%s %s\n", name, labels, strconv.FormatFloat(v, 'g', -1, 64))
}

func (m metricWriter) one(name, typ, help string, v float64) {
	m.header(name, typ, help)
	m.sample(name, "", v)
}

func (m metricWriter) histogram(name, help string, h histogramSnapshot) {
	m.header(name, "histogram", help)
	var cum uint64
	for i, ub := range h.Buckets {
		cum += h.Counts[i]
		m.sample(name+"_bucket", labels("le", strconv.FormatFloat(ub, 'g', -1, 64)), float64(cum))
	}
	m.sample(name+"_bucket", labels("le", "+Inf"), float64(h.Count))
	m.sample(name+"_sum", "", h.Sum)
	m.sample(name+"_count", "", float64(h.Count))
}

// labels formats name/value pairs as a Prometheus label set.
func labels(kv ...string) string {
	b := []byte{'{'}
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, kv[i]...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, kv[i+1])
	}
	return string(append(b, '}'))
}

// outcomeCounts counts events by outcome (downlinks: "queued", "sent",
// "refused", "expired"…; remote requests: "ok", "denied", "error"…). Safe for
// concurrent use; a nil *outcomeCounts counts nothing.
type outcomeCounts struct {
	mu sync.Mutex
	by map[string]uint64
}

func newOutcomeCounts() *outcomeCounts { return &outcomeCounts{by: map[string]uint64{}} }

// Add counts one event with this outcome.
func (c *outcomeCounts) Add(outcome string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.by[outcome]++
	c.mu.Unlock()
}

type outcomeCount struct {
	Outcome string `json:"outcome"`
	Count   uint64 `json:"count"`
}

func (c *outcomeCounts) snapshot() []outcomeCount {
	out := []outcomeCount{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	for k, v := range c.by {
		out = append(out, outcomeCount{Outcome: k, Count: v})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Outcome < out[j].Outcome })
	return out
}

// latencyBuckets are the histogram upper bounds in seconds: from a local
// round trip to the 20 s HTTP timeout.
func latencyBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// histogram is a fixed-bucket latency histogram, lock-free. A nil *histogram
// observes nothing.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last one beyond every bound
	count  atomic.Uint64
	sumNs  atomic.Int64
}

func newHistogram() *histogram {
	b := latencyBuckets()
	return &histogram{bounds: b, counts: make([]atomic.Uint64, len(b)+1)}
}

// Observe records one duration.
func (h *histogram) Observe(d time.Duration) {
	if h == nil {
		return
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(h.bounds, s) // first bound >= s
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

type histogramSnapshot struct {
	Buckets []float64 `json:"buckets"` // upper bounds, seconds
	Counts  []uint64  `json:"counts"`  // per bucket, not cumulative
	Count   uint64    `json:"count"`
	Sum     float64   `json:"sum"` // seconds
}

func (h *histogram) snapshot() histogramSnapshot {
	if h == nil {
		return histogramSnapshot{Buckets: []float64{}, Counts: []uint64{}}
	}
	s := histogramSnapshot{Buckets: h.bounds, Counts: make([]uint64, len(h.bounds))}
	for i := range h.bounds {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Count = h.count.Load()
	s.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return s
}

// loggedError is one error log line, for /status.
type loggedError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	Err     string    `json:"err,omitempty"`
}

// errorRing keeps the last error log records. A nil *errorRing keeps nothing.
type errorRing struct {
	mu    sync.Mutex
	buf   []loggedError
	next  int
	total uint64
}

const errorRingSize = 10

func (r *errorRing) add(e loggedError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.buf) < errorRingSize {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % errorRingSize
}

// snapshot lists the kept errors, oldest first, and how many were logged in all.
func (r *errorRing) snapshot() ([]loggedError, uint64) {
	out := []loggedError{}
	if r == nil {
		return out, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out = append(out, r.buf[r.next:]...)
	out = append(out, r.buf[:r.next]...)
	return out, r.total
}

// rootHandler is the handler of the process's logger: it passes every record
// on, keeps error records for /status and holds the live level (SIGHUP,
// mPower's log.level), so code given only the *slog.Logger can reach both.
type rootHandler struct {
	slog.Handler
	ring  *errorRing
	level *slog.LevelVar
}

func (t rootHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || t.Handler.Enabled(ctx, l)
}

func (t rootHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e := loggedError{Time: r.Time.UTC(), Message: r.Message}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				e.Err = redactAttr(nil, a).Value.String()
				return false
			}
			return true
		})
		t.ring.add(e)
	}
	if !t.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return t.Handler.Handle(ctx, r)
}

func (t rootHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return rootHandler{Handler: t.Handler.WithAttrs(as), ring: t.ring, level: t.level}
}

func (t rootHandler) WithGroup(name string) slog.Handler {
	return rootHandler{Handler: t.Handler.WithGroup(name), ring: t.ring, level: t.level}
}

// lastErrorsOf is the error ring of a logger made by newLogger (nil otherwise).
func lastErrorsOf(log *slog.Logger) *errorRing {
	if log == nil {
		return nil
	}
	if t, ok := log.Handler().(rootHandler); ok {
		return t.ring
	}
	return nil
}

// levelVarOf is the live level of a logger made by newLogger (nil otherwise).
func levelVarOf(log *slog.Logger) *slog.LevelVar {
	if log == nil {
		return nil
	}
	if t, ok := log.Handler().(rootHandler); ok {
		return t.level
	}
	return nil
}

// printStatus is `app-connect status`: it reads /status from the running
// instance's admin endpoint and prints it for a person.
func printStatus(ctx context.Context, addr string, stdout, stderr io.Writer) int {
	if addr == "" {
		fmt.Fprintln(stderr, "app-connect status: admin.listen is empty in the configuration; no status endpoint")
		return 1
	}
	d, err := fetchStatus(ctx, addr)
	if err != nil {
		fmt.Fprintf(stderr, "app-connect status: %v (is app-connect running?)\n", err)
		return 1
	}
	writeStatusText(stdout, d)
	return 0
}

func fetchStatus(ctx context.Context, addr string) (statusDoc, error) {
	var d statusDoc
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return d, fmt.Errorf("status request: %w", err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return d, fmt.Errorf("GET /status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("GET /status: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&d); err != nil {
		return d, fmt.Errorf("GET /status: %w", err)
	}
	return d, nil
}

func writeStatusText(w io.Writer, d statusDoc) {
	fmt.Fprintf(w, "app-connect %s, pid %d, up %s (since %s)\n", d.Version, d.PID, d.Uptime, d.Started.Format(time.RFC3339))
	conn := "disconnected"
	if d.Local.Connected {
		conn = "connected"
	}
	fmt.Fprintf(w, "local broker: %s, %d events received, %d malformed, %d unrouted\n", conn, d.Local.Received, d.Local.Malformed, d.Intake.Unrouted)
	if len(d.Applications) == 0 {
		fmt.Fprintln(w, "applications: none (is the default app enabled in mPower?)")
	}
	for _, a := range d.Applications {
		fmt.Fprintf(w, "application %s (%s): %s\n", a.Name, a.EUI, a.State)
		fmt.Fprintf(w, "  received %d, forwarded %d, queued now %d rows / %d bytes, dropped %d, dead-lettered %d, failed attempts %d\n",
			a.Queued, a.Forwarded, a.QueueRows, a.QueueBytes, a.Dropped, a.DeadLettered, a.Failures)
		if a.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", a.LastError)
		}
	}
	if h := d.DeliveryLatency; h.Count > 0 {
		fmt.Fprintf(w, "delivery latency: %d deliveries, mean %s\n", h.Count, meanDuration(h))
	}
	if len(d.Downlinks) > 0 {
		fmt.Fprintf(w, "downlinks: %s\n", outcomesText(d.Downlinks))
	}
	if len(d.Requests) > 0 {
		fmt.Fprintf(w, "remote requests: %s\n", outcomesText(d.Requests))
	}
	for _, j := range d.Joins {
		fmt.Fprintf(w, "joins via %s: %s %d\n", j.JoinServer, j.Result, j.Count)
	}
	if h := d.JoinLatency; h.Count > 0 {
		fmt.Fprintf(w, "join latency: %d joins, mean %s\n", h.Count, meanDuration(h))
	}
	if len(d.LastErrors) > 0 {
		fmt.Fprintf(w, "last errors (%d since start):\n", d.ErrorsLogged)
		for _, e := range d.LastErrors {
			line := "  " + e.Time.Format(time.RFC3339) + " " + e.Message
			if e.Err != "" {
				line += ": " + e.Err
			}
			fmt.Fprintln(w, line)
		}
	}
}

func meanDuration(h histogramSnapshot) time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.Sum / float64(h.Count) * float64(time.Second)).Round(time.Millisecond)
}

func outcomesText(counts []outcomeCount) string {
	var b []byte
	for i, o := range counts {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, o.Outcome...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, o.Count, 10)
	}
	return string(b)
}
