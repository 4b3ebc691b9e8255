package admin

import (
	"cmp"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/internal/metrics"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// Status is the document of /status, `app-connect status --json` and the
// source of AppInfo and /metrics.
type Status struct {
	Version         string                    `json:"version"`
	PID             int                       `json:"pid"`
	Started         time.Time                 `json:"started"`
	Uptime          string                    `json:"uptime"`
	UptimeSeconds   int64                     `json:"uptime_seconds"`
	Startup         StartupStatus             `json:"startup"`
	Local           LocalStatus               `json:"local"`
	Intake          IntakeStatus              `json:"intake"`
	Storage         cache.StorageStatus       `json:"storage"`    // the database's file system (cache.DB.Storage)
	Goroutines      int                       `json:"goroutines"` // for leak checks (make faults soak)
	Applications    []AppStatus               `json:"applications"`
	Joins           []JoinCount               `json:"joins"`
	Downlinks       []metrics.OutcomeCount    `json:"downlinks"`
	Requests        []metrics.OutcomeCount    `json:"requests"`
	DeliveryLatency metrics.HistogramSnapshot `json:"delivery_latency"`
	JoinLatency     metrics.HistogramSnapshot `json:"join_latency"`
	JoinProxy       *joinclient.ProxyStats    `json:"join_proxy,omitempty"` // bounds, breakers, header warnings; nil when join forwarding is off
	LastErrors      []logging.LoggedError     `json:"last_errors"`
	ErrorsLogged    uint64                    `json:"errors_logged"`
}

// LocalStatus is the local broker connection.
type LocalStatus struct {
	Connected      bool   `json:"connected"`
	EventsReceived uint64 `json:"events_received"` // valid events taken from the local broker
	Malformed      uint64 `json:"malformed"`       // payloads refused as malformed
}

// IntakeStatus is the path from the local broker into the outbox.
type IntakeStatus struct {
	Stored uint64 `json:"stored"` // rows committed to the outbox
	// Acknowledged: local messages acknowledged to the broker, once the
	// commit that holds their rows was durable (a power cut keeps them).
	Acknowledged uint64 `json:"acknowledged"`
	Unrouted     uint64 `json:"unrouted"` // events no application takes
	Ignored      uint64 `json:"ignored"`  // events the application's protocol does not forward
	Commits      uint64 `json:"commits"`  // outbox transactions
}

// AppStatus is one application. Events are uplinks and the other forwarded
// kinds (joined, ack, …) alike.
type AppStatus struct {
	EUI                string `json:"eui"`
	Name               string `json:"name"`
	State              string `json:"state"`
	LastError          string `json:"last_error,omitempty"`
	EventsQueued       uint64 `json:"events_queued"`    // written to the outbox for this application
	EventsForwarded    uint64 `json:"events_forwarded"` // acknowledged by the remote side
	EventsDropped      int64  `json:"events_dropped"`   // removed by the outbox caps
	EventsDeadLettered int64  `json:"events_dead_lettered"`
	DeliveryFailures   uint64 `json:"delivery_failures"` // failed attempts (retried)
	QueueRows          int    `json:"queue_rows"`
	QueueBytes         int64  `json:"queue_bytes"`
}

// JoinCount is one series of join attempts.
type JoinCount struct {
	JoinServer string `json:"join_server"`
	Result     string `json:"result"`
	Count      uint64 `json:"count"`
}

// JoinCounts counts join attempts by Join Server and result. Safe for
// concurrent use; a nil *JoinCounts counts nothing.
type JoinCounts struct {
	mu sync.Mutex
	by map[[2]string]uint64
}

// NewJoinCounts returns an empty counter set.
func NewJoinCounts() *JoinCounts { return &JoinCounts{by: map[[2]string]uint64{}} }

// Add counts one attempt.
func (c *JoinCounts) Add(joinServer, result string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.by[[2]string{joinServer, result}]++
	c.mu.Unlock()
}

// Snapshot lists the counts sorted by Join Server and result (never nil).
func (c *JoinCounts) Snapshot() []JoinCount {
	out := []JoinCount{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	for k, v := range c.by {
		out = append(out, JoinCount{JoinServer: k[0], Result: k[1], Count: v})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b JoinCount) int {
		return cmp.Or(cmp.Compare(a.JoinServer, b.JoinServer), cmp.Compare(a.Result, b.Result))
	})
	return out
}

// Sources are the running daemon's parts, read on every status request
// (NewSources builds them from the parts). They are attached once start-up
// has built them; a nil function reads as zero.
type Sources struct {
	Local        func() LocalStatus
	Intake       func() IntakeStatus
	Applications func() []AppStatus
	Storage      func() cache.StorageStatus
	JoinProxy    func() *joinclient.ProxyStats
}

// State is what the admin endpoint and the status file report. It exists
// before anything else is started, so both show start-up from the first
// second.
type State struct {
	Version string
	Started time.Time
	Startup *Startup

	Joins           *JoinCounts               // join attempts by Join Server and result
	Downlinks       *metrics.Outcomes         // downlinks by outcome (queued, sent, refused, …)
	Requests        *metrics.Outcomes         // remote requests (api_req, lora_req, log_req) by outcome
	DeliveryLatency *metrics.LatencyHistogram // outbox commit → remote acknowledgement
	JoinLatency     *metrics.LatencyHistogram // join-request in → answer out

	mu     sync.Mutex
	src    Sources
	errors *logging.ErrorRing // the last error log lines (nil: none kept)
}

// NewState creates the state with every counter, start-up in progress.
func NewState(version string, errs *logging.ErrorRing) *State {
	return &State{Version: version, Started: time.Now(), Startup: NewStartup(),
		Joins: NewJoinCounts(), Downlinks: metrics.NewOutcomes(), Requests: metrics.NewOutcomes(),
		DeliveryLatency: metrics.NewLatencyHistogram(), JoinLatency: metrics.NewLatencyHistogram(), errors: errs}
}

// SetErrors makes the status report the error lines kept by r (the logger
// is made after the state: mPower's log settings are read first).
func (s *State) SetErrors(r *logging.ErrorRing) {
	s.mu.Lock()
	s.errors = r
	s.mu.Unlock()
}

// Attach makes the status read the daemon's parts from now on.
func (s *State) Attach(src Sources) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
}

// Status is the status document now.
func (s *State) Status() Status {
	up := time.Since(s.Started)
	d := Status{
		Version: s.Version, PID: os.Getpid(), Started: s.Started.UTC().Truncate(time.Second),
		Uptime: up.Round(time.Second).String(), UptimeSeconds: int64(up / time.Second),
		Startup: s.Startup.Snapshot(), Applications: []AppStatus{}, Joins: s.Joins.Snapshot(),
		Downlinks: s.Downlinks.Snapshot(), Requests: s.Requests.Snapshot(),
		DeliveryLatency: s.DeliveryLatency.Snapshot(), JoinLatency: s.JoinLatency.Snapshot(),
	}
	s.mu.Lock()
	src, errs := s.src, s.errors
	s.mu.Unlock()
	d.LastErrors, d.ErrorsLogged = errs.Snapshot()
	d.Goroutines = runtime.NumGoroutine()
	if src.Local != nil {
		d.Local = src.Local()
	}
	if src.Intake != nil {
		d.Intake = src.Intake()
	}
	if src.Applications != nil {
		if a := src.Applications(); a != nil {
			d.Applications = a
		}
	}
	if src.Storage != nil {
		d.Storage = src.Storage()
	}
	if src.JoinProxy != nil {
		d.JoinProxy = src.JoinProxy()
	}
	return d
}
