package main

import (
	"bufio"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/lorawan-gateway/app-connect/statusreport"
)

// Prometheus text exposition format 0.0.4. Label values escape exactly
// backslash, double quote and line feed (everything else, UTF-8 included, is
// written as it is: strconv.Quote's \u escapes are not part of the format);
// HELP text escapes backslash and line feed.

type expo struct{ w *bufio.Writer }

func (e expo) header(name, typ, help string) {
	e.w.WriteString("# HELP ")
	e.w.WriteString(name)
	e.w.WriteByte(' ')
	e.w.WriteString(helpEscaper.Replace(help))
	e.w.WriteString("\n# TYPE ")
	e.w.WriteString(name)
	e.w.WriteByte(' ')
	e.w.WriteString(typ)
	e.w.WriteByte('\n')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// sample writes name{k="v",…} value; kv alternates label names and values.
func (e expo) sample(name string, v float64, kv ...string) {
	e.w.WriteString(name)
	if len(kv) > 0 {
		e.w.WriteByte('{')
		for i := 0; i+1 < len(kv); i += 2 {
			if i > 0 {
				e.w.WriteByte(',')
			}
			e.w.WriteString(kv[i])
			e.w.WriteString(`="`)
			e.w.WriteString(labelEscaper.Replace(kv[i+1]))
			e.w.WriteByte('"')
		}
		e.w.WriteByte('}')
	}
	e.w.WriteByte(' ')
	e.w.WriteString(formatValue(v))
	e.w.WriteByte('\n')
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics writes the exposition of one fleet snapshot.
func writeMetrics(out io.Writer, s fleetSnapshot) error {
	e := expo{w: bufio.NewWriterSize(out, 64<<10)}
	type gwMetric struct {
		name, typ, help string
		val             func(gatewayView) float64
	}
	gw := func(g gatewayView) string { return g.report.Gateway.UUID }
	perGateway := []gwMetric{
		{"appconnect_fleet_gateway_last_seen_timestamp_seconds", "gauge", "When the gateway's last status report arrived (the exporter's clock, Unix seconds).",
			func(g gatewayView) float64 { return float64(g.lastSeen.UnixMilli()) / 1000 }},
		{"appconnect_fleet_gateway_up", "gauge", "1 while the gateway reports; 0 once it has been silent longer than -stale (until -expire forgets it).",
			func(g gatewayView) float64 { return b2f(!g.stale) }},
		{"appconnect_fleet_gateway_uptime_seconds", "gauge", "app-connect's uptime at the last report.",
			func(g gatewayView) float64 { return float64(g.report.UptimeSeconds) }},
		{"appconnect_fleet_local_connected", "gauge", "1 while app-connect is connected to the gateway's local broker.",
			func(g gatewayView) float64 { return b2f(g.report.LocalBroker.Connected) }},
		{"appconnect_fleet_lns_available", "gauge", "1 when the gateway's embedded network server runs (0: packet-forwarder or Basic Station mode).",
			func(g gatewayView) float64 { return b2f(g.report.LNS.Available) }},
		{"appconnect_fleet_local_received_total", "counter", "Valid events taken from the local broker.",
			func(g gatewayView) float64 { return float64(g.report.LocalBroker.Received) }},
		{"appconnect_fleet_local_malformed_total", "counter", "Local payloads refused as malformed.",
			func(g gatewayView) float64 { return float64(g.report.LocalBroker.Malformed) }},
		{"appconnect_fleet_unrouted_total", "counter", "Local events no application takes.",
			func(g gatewayView) float64 { return float64(g.report.Unrouted) }},
		{"appconnect_fleet_process_resident_memory_bytes", "gauge", "app-connect's resident set size.",
			func(g gatewayView) float64 { return float64(g.report.Process.RSSBytes) }},
		{"appconnect_fleet_process_cpu_seconds_total", "counter", "app-connect's user and system CPU time.",
			func(g gatewayView) float64 { return g.report.Process.CPUSeconds }},
		{"appconnect_fleet_database_size_bytes", "gauge", "Size of the gateway's SQLite database (with -wal and -shm).",
			func(g gatewayView) float64 { return float64(g.report.Database.SizeBytes) }},
		{"appconnect_fleet_database_free_bytes", "gauge", "Free space on the database's file system.",
			func(g gatewayView) float64 { return float64(g.report.Database.FreeBytes) }},
	}
	for _, m := range perGateway {
		e.header(m.name, m.typ, m.help)
		for _, g := range s.gateways {
			e.sample(m.name, m.val(g), "gateway", gw(g))
		}
	}
	e.header("appconnect_fleet_gateway_info", "gauge", "Identity of the gateway: serial and app-connect version (value 1).")
	for _, g := range s.gateways {
		e.sample("appconnect_fleet_gateway_info", 1, "gateway", gw(g), "serial", g.report.Gateway.Serial, "version", g.report.Version)
	}

	type appMetric struct {
		name, typ, help string
		val             func(statusreport.Application) float64
	}
	perApp := []appMetric{
		{"appconnect_fleet_queue_rows", "gauge", "Rows waiting in the gateway's outbox for the application.", func(a statusreport.Application) float64 { return float64(a.QueueRows) }},
		{"appconnect_fleet_queue_bytes", "gauge", "Payload bytes waiting in the outbox.", func(a statusreport.Application) float64 { return float64(a.QueueBytes) }},
		{"appconnect_fleet_queue_oldest_seconds", "gauge", "Age of the oldest queued row (0 when empty).", func(a statusreport.Application) float64 { return a.OldestQueuedSeconds }},
		{"appconnect_fleet_uplinks_received_total", "counter", "Events queued for the application since app-connect started.", func(a statusreport.Application) float64 { return float64(a.Received) }},
		{"appconnect_fleet_uplinks_forwarded_total", "counter", "Events the application acknowledged since app-connect started.", func(a statusreport.Application) float64 { return float64(a.Forwarded) }},
		{"appconnect_fleet_delivery_failures_total", "counter", "Failed delivery attempts (retried).", func(a statusreport.Application) float64 { return float64(a.Failures) }},
		{"appconnect_fleet_uplinks_dropped_total", "counter", "Events dropped by the outbox caps.", func(a statusreport.Application) float64 { return float64(a.Dropped) }},
		{"appconnect_fleet_uplinks_dead_lettered_total", "counter", "Events the application refused for good.", func(a statusreport.Application) float64 { return float64(a.DeadLettered) }},
		{"appconnect_fleet_application_up", "gauge", "1 while the application's delivery is up.", func(a statusreport.Application) float64 { return b2f(a.State == "up") }},
	}
	for _, m := range perApp {
		e.header(m.name, m.typ, m.help)
		for _, g := range s.gateways {
			for _, a := range g.report.Applications {
				e.sample(m.name, m.val(a), "gateway", gw(g), "app", a.EUI, "name", a.Name)
			}
		}
	}
	outcomes := []struct {
		name, label, help string
		of                func(gatewayView) statusreport.Outcomes
	}{
		{"appconnect_fleet_join_requests_total", "result", "Join requests forwarded to Join Servers, by result.", func(g gatewayView) statusreport.Outcomes { return g.report.Joins }},
		{"appconnect_fleet_downlinks_total", "outcome", "Downlinks by outcome.", func(g gatewayView) statusreport.Outcomes { return g.report.Downlinks }},
	}
	for _, o := range outcomes {
		e.header(o.name, "counter", o.help)
		for _, g := range s.gateways {
			m := o.of(g)
			for _, k := range sortedKeys(m) {
				e.sample(o.name, float64(m[k]), "gateway", gw(g), o.label, k)
			}
		}
	}

	// The exporter itself.
	stale := 0
	for _, g := range s.gateways {
		if g.stale {
			stale++
		}
	}
	e.header("appconnect_fleet_gateways", "gauge", "Gateways held (reporting or stale).")
	e.sample("appconnect_fleet_gateways", float64(len(s.gateways)))
	e.header("appconnect_fleet_gateways_stale", "gauge", "Gateways held but silent longer than -stale.")
	e.sample("appconnect_fleet_gateways_stale", float64(stale))
	e.header("appconnect_fleet_gateways_expired_total", "counter", "Gateways forgotten after -expire without a report.")
	e.sample("appconnect_fleet_gateways_expired_total", float64(s.expired))
	e.header("appconnect_fleet_reports_total", "counter", "Status reports taken, by source.")
	for _, k := range sortedKeys(s.accepted) {
		e.sample("appconnect_fleet_reports_total", float64(s.accepted[k]), "source", k)
	}
	e.header("appconnect_fleet_reports_refused_total", "counter", "Status reports refused, by reason (invalid, mismatch, old, capacity).")
	for _, k := range []string{refusedInvalid, refusedMismatch, refusedOld, refusedCapacity} {
		e.sample("appconnect_fleet_reports_refused_total", float64(s.refused[k]), "reason", k)
	}
	e.header("appconnect_fleet_applications_cut_total", "counter", "Applications left out of reports beyond -max-apps.")
	e.sample("appconnect_fleet_applications_cut_total", float64(s.appsCut))
	return e.w.Flush()
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
