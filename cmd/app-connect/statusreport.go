package main

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// startStatusReports runs the opt-in status report sender (status_report.*)
// until ctx ends: every interval one report, built from the same state as
// /status, goes out of band to each application that carries it.
func startStatusReports(ctx context.Context, cfg config.Config, st *admin.State, router *forward.Router, outbox *cache.Outbox, id forward.Identity, lnsAvailable bool, log *slog.Logger) {
	sr := cfg.StatusReport
	if !sr.Enabled {
		return
	}
	b := &statusreport.Builder{
		Gateway:      statusreport.Gateway{UUID: id.UUID, Serial: id.Serial, EUIs: id.GatewayEUIs},
		Version:      version,
		Started:      st.Started,
		DatabasePath: cfg.Storage.Database,
		Redact:       func(s string) string { return redactSecrets(s, configuredSecrets(cfg, router)) },
	}
	s := &statusreport.Sender{
		Interval: sr.Interval,
		Report: func() ([]byte, error) {
			return b.Build(statusSnapshot(ctx, st.Status(), outbox, lnsAvailable)).Encode()
		},
		Targets: func() []statusreport.Target {
			var out []statusreport.Target
			for _, a := range router.Applications() {
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

// statusSnapshot maps /status's document to the report's counters.
func statusSnapshot(ctx context.Context, d admin.Status, outbox *cache.Outbox, lnsAvailable bool) statusreport.Snapshot {
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
func configuredSecrets(cfg config.Config, router *forward.Router) []string {
	out := []string{cfg.LNS.Password}
	for _, a := range router.Applications() {
		o := a.Settings.Options
		out = append(out, o.Password, o.APIKey)
	}
	return out
}

// urlPassword is the password of a URL's user information.
var urlPassword = regexp.MustCompile(`(://[^/\s:@]*):[^/\s@]*@`)

// sasSignature is an Azure shared access signature's sig (and the whole
// SharedAccessSignature token).
var sasSignature = regexp.MustCompile(`(?i)(SharedAccessSignature\s+\S+|sig=[^&\s"]+)`)

// redactSecrets removes from text every configured secret value, URL
// passwords and SAS signatures: an error string can quote a URL or a
// server's answer.
func redactSecrets(text string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	text = urlPassword.ReplaceAllString(text, "$1:[redacted]@")
	return sasSignature.ReplaceAllString(text, "[redacted]")
}
