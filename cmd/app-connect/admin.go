package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// state is what the admin endpoint reports.
type state struct {
	started time.Time
	local   *lnsbridge.Local
	intake  *forward.Intake
	outbox  *cache.Outbox
	router  *forward.Router
	joins   *joinCounts
}

type appStatus struct {
	EUI          string `json:"eui"`
	Name         string `json:"name"`
	State        string `json:"state"`
	LastError    string `json:"last_error,omitempty"`
	QueueRows    int    `json:"queue_rows"`
	QueueBytes   int64  `json:"queue_bytes"`
	Queued       uint64 `json:"queued"`
	Forwarded    uint64 `json:"forwarded"`
	DeadLettered int64  `json:"dead_lettered"`
	Dropped      int64  `json:"dropped"`
}

type statusDoc struct {
	Version      string               `json:"version"`
	Uptime       string               `json:"uptime"`
	Local        lnsbridge.LocalStats `json:"local"`
	Intake       forward.IntakeStats  `json:"intake"`
	Applications []appStatus          `json:"applications"`
	Joins        []joinCount          `json:"joins"`
}

func (s *state) status() statusDoc {
	doc := statusDoc{Version: version, Uptime: time.Since(s.started).Round(time.Second).String(), Local: s.local.Stats(), Intake: s.intake.Stats(), Applications: []appStatus{}, Joins: s.joins.snapshot()}
	for _, a := range s.router.Applications() {
		st, le := a.State()
		q := s.outbox.Stats(a.Settings.EUI)
		doc.Applications = append(doc.Applications, appStatus{
			EUI: a.Settings.EUI, Name: a.Settings.Name, State: st, LastError: le,
			QueueRows: q.Rows, QueueBytes: q.Bytes, Queued: a.Counters.Queued.Load(), Forwarded: a.Counters.Forwarded.Load(),
			DeadLettered: q.DeadLettered, Dropped: q.Dropped,
		})
	}
	return doc
}

func startAdmin(addr string, st *state, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
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
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

func writeMetrics(w http.ResponseWriter, d statusDoc) {
	fmt.Fprintf(w, "# TYPE appconnect_local_received_total counter\nappconnect_local_received_total %d\n", d.Local.Received)
	fmt.Fprintf(w, "# TYPE appconnect_local_malformed_total counter\nappconnect_local_malformed_total %d\n", d.Local.Malformed)
	fmt.Fprintf(w, "# TYPE appconnect_unrouted_total counter\nappconnect_unrouted_total %d\n", d.Intake.Unrouted)
	fmt.Fprintf(w, "# TYPE appconnect_outbox_commits_total counter\nappconnect_outbox_commits_total %d\n", d.Intake.Commits)
	fmt.Fprintf(w, "# TYPE appconnect_join_requests_total counter\n")
	for _, j := range d.Joins {
		fmt.Fprintf(w, "appconnect_join_requests_total{js=%q,result=%q} %d\n", j.JoinServer, j.Result, j.Count)
	}
	series := []struct {
		name, typ string
		val       func(appStatus) float64
	}{
		{"appconnect_uplinks_queued_total", "counter", func(a appStatus) float64 { return float64(a.Queued) }},
		{"appconnect_forwarded_total", "counter", func(a appStatus) float64 { return float64(a.Forwarded) }},
		{"appconnect_dead_lettered_total", "counter", func(a appStatus) float64 { return float64(a.DeadLettered) }},
		{"appconnect_dropped_total", "counter", func(a appStatus) float64 { return float64(a.Dropped) }},
		{"appconnect_queue_rows", "gauge", func(a appStatus) float64 { return float64(a.QueueRows) }},
		{"appconnect_queue_bytes", "gauge", func(a appStatus) float64 { return float64(a.QueueBytes) }},
	}
	for _, s := range series {
		fmt.Fprintf(w, "# TYPE %s %s\n", s.name, s.typ)
		for _, a := range d.Applications {
			fmt.Fprintf(w, "%s{app=%q} %g\n", s.name, a.EUI, s.val(a))
		}
	}
}
