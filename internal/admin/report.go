package admin

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// OldestQueued says when an application's oldest queued row was stored (cache.Outbox).
type OldestQueued interface {
	OldestQueued(ctx context.Context, app string) (time.Time, bool, error)
}

// StartStatusReports runs the opt-in status report sender (status_report.*)
// until ctx ends: every interval one report, built from the same state as
// /status, goes out of band to each application that carries it. Off, it
// starts nothing.
func StartStatusReports(ctx context.Context, cfg config.Config, st *State, apps Applications, outbox OldestQueued, id forward.Identity, lnsAvailable bool, log *slog.Logger) {
	sr := cfg.StatusReport
	if !sr.Enabled {
		return
	}
	b := &statusreport.Builder{
		Gateway:      statusreport.Gateway{UUID: id.UUID, Serial: id.Serial, EUIs: id.GatewayEUIs},
		Version:      st.Version,
		Started:      st.Started,
		DatabasePath: cfg.Storage.Database,
		Redact:       func(s string) string { return statusreport.RedactSecrets(s, configuredSecrets(cfg, apps)) },
	}
	s := &statusreport.Sender{
		Interval: sr.Interval,
		Report: func() ([]byte, error) {
			return b.Build(reportSnapshot(ctx, st.Status(), outbox, lnsAvailable)).Encode()
		},
		Targets: func() []statusreport.Target {
			var out []statusreport.Target
			for _, a := range apps.Applications() {
				if sr.Carries(a.Settings.EUI, a.Settings.Source) {
					out = append(out, statusreport.Target{App: a.Settings.EUI, Publisher: a})
				}
			}
			return out
		},
		Log: log,
	}
	log.Info("status reports on", "interval", sr.Interval, "applications", strings.Join(sr.Applications, ","))
	go s.Run(ctx)
}

// reportSnapshot maps /status's document to the report's counters; outbox
// (nil: none) gives the age of each application's oldest queued row.
func reportSnapshot(ctx context.Context, d Status, outbox OldestQueued, lnsAvailable bool) statusreport.Snapshot {
	snap := statusreport.Snapshot{
		LocalBroker: statusreport.LocalBroker{Connected: d.Local.Connected, Received: d.Local.EventsReceived, Malformed: d.Local.Malformed},
		LNS:         statusreport.LNS{Available: lnsAvailable},
		Unrouted:    d.Intake.Unrouted,
		Joins:       statusreport.Outcomes{},
		Downlinks:   statusreport.Outcomes{},
	}
	for _, j := range d.Joins {
		snap.Joins[j.Result] += j.Count
	}
	for _, o := range d.Downlinks {
		snap.Downlinks[o.Outcome] += o.Count
	}
	for _, a := range d.Applications {
		ra := statusreport.Application{
			EUI: a.EUI, Name: a.Name, State: a.State, LastError: a.LastError,
			QueueRows: uint64(max(a.QueueRows, 0)), QueueBytes: uint64(max(a.QueueBytes, 0)),
			Received: a.EventsQueued, Forwarded: a.EventsForwarded, Failures: a.DeliveryFailures,
			Dropped: uint64(max(a.EventsDropped, 0)), DeadLettered: uint64(max(a.EventsDeadLettered, 0)),
		}
		if outbox != nil && a.QueueRows > 0 {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if at, ok, err := outbox.OldestQueued(qctx, a.EUI); err == nil && ok {
				ra.OldestQueuedSeconds = max(time.Since(at).Seconds(), 0)
			}
			cancel()
		}
		snap.Applications = append(snap.Applications, ra)
	}
	return snap
}

// configuredSecrets are the configured secret values a last error could quote.
func configuredSecrets(cfg config.Config, apps Applications) []string {
	out := []string{cfg.LNS.Password}
	for _, a := range apps.Applications() {
		o := a.Settings.Options
		out = append(out, o.Password, o.APIKey)
	}
	return out
}
