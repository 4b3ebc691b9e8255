package admin

import (
	"io"

	"github.com/lorawan-gateway/app-connect/internal/metrics"
)

// StateUp is an application's state while its delivery is up (forward.StateUp).
const StateUp = "up"

// WriteMetrics writes the Prometheus text exposition of d, the build_info
// gauge and, when proc is not nil, the process_* metrics.
func WriteMetrics(w io.Writer, d Status, proc *metrics.Process) error {
	m := metrics.NewWriter(w)
	m.BuildInfo("appconnect", d.Version)
	m.Single("appconnect_uptime_seconds", metrics.Gauge, "Seconds since the process started.", float64(d.UptimeSeconds))
	m.Single("appconnect_starting", metrics.Gauge, "1 while start-up is in progress (see /status startup).", b2f(d.Startup.State == StateStarting))
	m.Single("appconnect_local_connected", metrics.Gauge, "1 while connected to the local broker.", b2f(d.Local.Connected))
	m.Single("appconnect_local_events_received_total", metrics.Counter, "Valid events taken from the local broker.", float64(d.Local.EventsReceived))
	m.Single("appconnect_local_malformed_total", metrics.Counter, "Local payloads refused as malformed.", float64(d.Local.Malformed))
	m.Single("appconnect_unrouted_total", metrics.Counter, "Local events no application takes.", float64(d.Intake.Unrouted))
	m.Single("appconnect_local_acknowledged_total", metrics.Counter, "Local events acknowledged to the broker once their commit was durable.", float64(d.Intake.Acknowledged))
	m.Single("appconnect_outbox_commits_total", metrics.Counter, "Outbox transactions.", float64(d.Intake.Commits))
	writeStorageMetrics(m, d.Storage)

	perApp := []struct {
		name, typ, help string
		val             func(AppStatus) float64
	}{
		{"appconnect_events_queued_total", metrics.Counter, "Events (uplinks, joined, …) written to the outbox for the application.", func(a AppStatus) float64 { return float64(a.EventsQueued) }},
		{"appconnect_events_forwarded_total", metrics.Counter, "Events the application acknowledged.", func(a AppStatus) float64 { return float64(a.EventsForwarded) }},
		{"appconnect_events_dropped_total", metrics.Counter, "Events dropped by the outbox caps.", func(a AppStatus) float64 { return float64(a.EventsDropped) }},
		{"appconnect_events_dead_lettered_total", metrics.Counter, "Events refused for good by the application.", func(a AppStatus) float64 { return float64(a.EventsDeadLettered) }},
		{"appconnect_delivery_failures_total", metrics.Counter, "Failed delivery attempts (retried).", func(a AppStatus) float64 { return float64(a.DeliveryFailures) }},
		{"appconnect_queue_rows", metrics.Gauge, "Rows waiting in the outbox.", func(a AppStatus) float64 { return float64(a.QueueRows) }},
		{"appconnect_queue_bytes", metrics.Gauge, "Payload bytes waiting in the outbox.", func(a AppStatus) float64 { return float64(a.QueueBytes) }},
		{"appconnect_application_up", metrics.Gauge, "1 while the application's delivery is up.", func(a AppStatus) float64 { return b2f(a.State == StateUp) }},
	}
	for _, s := range perApp {
		m.Family(s.name, s.typ, s.help)
		for _, a := range d.Applications {
			m.Sample(s.name, s.val(a), "app", a.EUI, "name", a.Name)
		}
	}
	m.Family("appconnect_downlinks_total", metrics.Counter, "Downlinks by outcome.")
	for _, o := range d.Downlinks {
		m.Sample("appconnect_downlinks_total", float64(o.Count), "outcome", o.Outcome)
	}
	m.Family("appconnect_remote_requests_total", metrics.Counter, "Remote requests by outcome.")
	for _, o := range d.Requests {
		m.Sample("appconnect_remote_requests_total", float64(o.Count), "outcome", o.Outcome)
	}
	m.Family("appconnect_join_requests_total", metrics.Counter, "Join requests by Join Server and result.")
	for _, j := range d.Joins {
		m.Sample("appconnect_join_requests_total", float64(j.Count), "js", j.JoinServer, "result", j.Result)
	}
	m.Histogram("appconnect_delivery_latency_seconds", "From outbox commit to the remote acknowledgement.", d.DeliveryLatency)
	m.Histogram("appconnect_join_latency_seconds", "From join-request in to answer out.", d.JoinLatency)
	writeJoinProxyMetrics(m, d.JoinProxy)
	m.Single("appconnect_errors_logged_total", metrics.Counter, "Error log lines since start.", float64(d.ErrorsLogged))
	if proc != nil {
		m.Process(*proc)
	}
	return m.Flush()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
