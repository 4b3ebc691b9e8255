package statusreport

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Publisher sends one report to one application out of band: never queued
// behind its uplinks, never stored. An error means this report is lost; the
// next one replaces it.
type Publisher interface {
	PublishStatus(ctx context.Context, body []byte) error
}

// Target is one application that carries the report.
type Target struct {
	App       string // the application's EUI, for logs
	Publisher Publisher
}

// Sender publishes a fresh report to every target each interval. A report
// that cannot be sent within the interval is abandoned, so an outage leaves
// no backlog: the first report after it is current.
type Sender struct {
	Interval time.Duration
	// Report builds the body of one report (once per interval, shared by the targets).
	Report func() ([]byte, error)
	// Targets lists the applications carrying the report now (applications
	// are rebuilt when the configuration changes).
	Targets func() []Target
	Log     *slog.Logger

	sent, failed atomic.Uint64
}

// SenderStats counts reports by result, summed over the targets.
type SenderStats struct{ Sent, Failed uint64 }

// Stats returns the counters.
func (s *Sender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load()}
}

// firstDelay is the wait before the first report: short, so a restarted
// gateway shows up soon, but long enough for the connections to come up.
const firstDelay = 10 * time.Second

// Run sends reports until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	failing := map[string]bool{} // app → its last report failed (log once per outage)
	timer := time.NewTimer(min(s.Interval, firstDelay))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		s.once(ctx, log, failing)
		// The next report is due one interval after this one started; a
		// round that took longer (it cannot: sends time out) starts at once.
		timer.Reset(max(s.Interval-time.Since(start), 0))
	}
}

// once builds one report and sends it to every target concurrently, each
// send bounded by the interval.
func (s *Sender) once(ctx context.Context, log *slog.Logger, failing map[string]bool) {
	targets := s.Targets()
	if len(targets) == 0 {
		return
	}
	body, err := s.Report()
	if err != nil {
		log.Error("status report not built", "err", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, s.Interval)
	defer cancel()
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.Publisher.PublishStatus(sctx, body)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	for i, t := range targets {
		if err := errs[i]; err != nil {
			s.failed.Add(1)
			if !failing[t.App] {
				log.Warn("status report not sent; the next one replaces it", "app", t.App, "err", err)
			} else {
				log.Debug("status report not sent", "app", t.App, "err", err)
			}
			failing[t.App] = true
			continue
		}
		s.sent.Add(1)
		if failing[t.App] {
			log.Info("status reports sent again", "app", t.App)
			delete(failing, t.App)
		}
	}
}
