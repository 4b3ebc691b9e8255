package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// statusSources reads the running daemon's parts for /status: the glue
// between the forwarding packages and the admin package's names.
func statusSources(local *lnsbridge.Local, intake *forward.Intake, db *cache.DB, outbox *cache.Outbox, router *forward.Router, joins *joinCounts) admin.Sources {
	return admin.Sources{
		Storage:   db.Storage,
		JoinProxy: joins.proxyStats,
		Local: func() admin.LocalStatus {
			s := local.Stats()
			return admin.LocalStatus{Connected: s.Connected, EventsReceived: s.Received, Malformed: s.Malformed}
		},
		Intake: func() admin.IntakeStatus {
			s := intake.Stats()
			return admin.IntakeStatus{Stored: s.Stored, Unrouted: s.Unrouted, Ignored: s.Ignored, Commits: s.Commits}
		},
		Applications: func() []admin.AppStatus {
			var out []admin.AppStatus
			for _, a := range router.Applications() {
				st, le := a.State()
				q := outbox.Stats(a.Settings.EUI)
				out = append(out, admin.AppStatus{
					EUI: a.Settings.EUI, Name: a.Settings.Name, State: st, LastError: le,
					EventsQueued: a.Counters.Queued.Load(), EventsForwarded: a.Counters.Forwarded.Load(),
					EventsDropped: q.Dropped, EventsDeadLettered: q.DeadLettered, DeliveryFailures: a.Counters.Failures.Load(),
					QueueRows: q.Rows, QueueBytes: q.Bytes,
				})
			}
			return out
		},
		Joins: func() []admin.JoinCount {
			var out []admin.JoinCount
			for _, j := range joins.snapshot() {
				out = append(out, admin.JoinCount{JoinServer: j.JoinServer, Result: j.Result, Count: j.Count})
			}
			return out
		},
	}
}

// statusOptions are the flags of `app-connect status`.
type statusOptions struct {
	json  bool
	watch bool
	every time.Duration // refresh interval of --watch
}

// printStatus is `app-connect status`: it reads /status from the running
// instance's admin endpoint and prints it for a person (or as JSON); with
// --watch it redraws the screen every interval until interrupted.
func printStatus(ctx context.Context, addr string, o statusOptions, stdout, stderr io.Writer) int {
	if addr == "" {
		fmt.Fprintln(stderr, "app-connect status: admin.listen is empty in the configuration; no status endpoint")
		return 1
	}
	for {
		d, err := admin.Fetch(ctx, addr)
		if ctx.Err() != nil {
			return 0 // interrupted while watching
		}
		switch {
		case err != nil && !o.watch:
			fmt.Fprintf(stderr, "app-connect status: %v (is app-connect running?)\n", err)
			return 1
		case o.watch:
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
			fmt.Fprintf(stdout, "app-connect status at %s, every %s (Ctrl-C ends)\n\n", addr, o.every)
			if err != nil {
				fmt.Fprintf(stdout, "%v (is app-connect running?)\n", err)
				break
			}
			fallthrough
		default:
			if o.json {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				enc.Encode(d)
			} else {
				admin.WriteText(stdout, d)
			}
		}
		if !o.watch {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(o.every):
		}
	}
}
