package admin

import (
	"fmt"
	"io"
	"sort"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/metrics"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// The storage and join-proxy sections of the status: each is read from its
// owner's own state type, written by the functions below for /metrics and
// the status text.

// writeStorageMetrics writes the database's file-system state (cache.StorageStatus).
func writeStorageMetrics(m *metrics.Writer, s cache.StorageStatus) {
	m.Single("appconnect_storage_full", metrics.Gauge, "1 while the outbox refuses new rows because the database's file system is full (the local broker keeps them).", b2f(s.State == "full"))
	m.Single("appconnect_storage_low", metrics.Gauge, "1 while the database runs without its space reserve.", b2f(s.State == "low"))
	m.Single("appconnect_storage_fs_free_bytes", metrics.Gauge, "Free bytes on the database's file system.", float64(s.FSFreeBytes))
	m.Single("appconnect_storage_database_bytes", metrics.Gauge, "Bytes of the database and its WAL on disk.", float64(s.DBBytes))
	m.Single("appconnect_storage_refused_commits_total", metrics.Counter, "Outbox commits refused for lack of space.", float64(s.RefusedCommits))
}

// writeStorageText is the status command's storage line (only when not ok).
func writeStorageText(w io.Writer, s cache.StorageStatus) {
	if s.State == "" || s.State == "ok" {
		return
	}
	fmt.Fprintf(w, "storage: %s since %s, %d bytes free, database %d bytes, %d commits refused", s.State, s.Since.Format("2006-01-02T15:04:05Z07:00"), s.FSFreeBytes, s.DBBytes, s.RefusedCommits)
	if s.LastError != "" {
		fmt.Fprintf(w, "; last error: %s", s.LastError)
	}
	fmt.Fprintln(w)
}

// writeJoinProxyMetrics writes the join proxy's state: global and
// per-Join-Server in-flight bounds, circuit breakers, header warnings (spec
// §7.6) and the attempt-recording queue. Nothing when join forwarding is off.
func writeJoinProxyMetrics(m *metrics.Writer, st *joinclient.ProxyStats) {
	if st == nil {
		return
	}
	m.Single("appconnect_join_in_flight", metrics.Gauge, "Join requests in flight through the proxy.", float64(st.InFlight))
	m.Single("appconnect_join_busy_total", metrics.Counter, "Join requests refused: the proxy's global in-flight bound was reached.", float64(st.Busy))
	m.Single("appconnect_join_records_dropped_total", metrics.Counter, "Join attempts not recorded: the recording queue was full.", float64(st.RecordDropped))
	m.Single("appconnect_join_records_failed_total", metrics.Counter, "Join attempts the database failed to store.", float64(st.RecordFailed))
	for _, s := range []struct {
		name, typ, help string
		val             func(joinclient.JoinServerState) float64
	}{
		{"appconnect_join_server_in_flight", metrics.Gauge, "Requests in flight to the Join Server.", func(j joinclient.JoinServerState) float64 { return float64(j.InFlight) }},
		{"appconnect_join_server_busy_total", metrics.Counter, "Requests refused: the Join Server's own in-flight bound was reached.", func(j joinclient.JoinServerState) float64 { return float64(j.Busy) }},
		{"appconnect_join_server_breaker_open", metrics.Gauge, "1 while the Join Server's circuit breaker is open or half open.", func(j joinclient.JoinServerState) float64 { return b2f(j.Breaker != joinclient.BreakerClosed) }},
		{"appconnect_join_server_breaker_opened_total", metrics.Counter, "Times the Join Server's circuit breaker opened.", func(j joinclient.JoinServerState) float64 { return float64(j.BreakerOpened) }},
		{"appconnect_join_server_short_circuited_total", metrics.Counter, "Requests answered at once with a timeout while the breaker was open.", func(j joinclient.JoinServerState) float64 { return float64(j.ShortCircuited) }},
	} {
		m.Family(s.name, s.typ, s.help)
		for _, j := range st.JoinServers {
			m.Sample(s.name, s.val(j), "js", j.JoinServer)
		}
	}
	const hw = "appconnect_join_header_warnings_total"
	m.Family(hw, metrics.Counter, "Answer-header mismatches by Join Server and kind (spec §7.6).")
	for _, j := range st.JoinServers {
		kinds := make([]string, 0, len(j.HeaderWarnings))
		for k := range j.HeaderWarnings {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			m.Sample(hw, float64(j.HeaderWarnings[k]), "js", j.JoinServer, "kind", k)
		}
	}
}

// writeJoinProxyText is the status command's part for the join proxy: one
// line per Join Server whose breaker is not closed or that refused joins or
// sent mismatched answer headers, and the attempts not recorded.
func writeJoinProxyText(w io.Writer, st *joinclient.ProxyStats) {
	if st == nil {
		return
	}
	if st.Busy > 0 || st.RecordDropped > 0 || st.RecordFailed > 0 {
		fmt.Fprintf(w, "join proxy: %d refused busy, %d attempts not recorded (queue full), %d failed to record\n", st.Busy, st.RecordDropped, st.RecordFailed)
	}
	for _, j := range st.JoinServers {
		var warnings uint64
		for _, n := range j.HeaderWarnings {
			warnings += n
		}
		if j.Breaker == joinclient.BreakerClosed && j.Busy == 0 && warnings == 0 {
			continue
		}
		fmt.Fprintf(w, "join server %s: breaker %s (%d consecutive timeouts, opened %d times, %d answered at once), %d refused busy, %d answer-header warnings\n",
			j.JoinServer, j.Breaker, j.ConsecutiveTimeouts, j.BreakerOpened, j.ShortCircuited, j.Busy, warnings)
	}
}
