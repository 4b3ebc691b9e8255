package admin

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lorawan-gateway/app-connect/internal/metrics"
)

// WriteText writes the status for a person: the one-screen view of
// `app-connect status`.
func WriteText(w io.Writer, d Status) {
	fmt.Fprintf(w, "app-connect %s, pid %d, up %s (since %s)\n", d.Version, d.PID, d.Uptime, d.Started.Format(time.RFC3339))
	if s := d.Startup; s.State == StateStarting {
		fmt.Fprintf(w, "start-up: %s", orDash(s.Step))
		if !s.StepSince.IsZero() {
			fmt.Fprintf(w, " (since %s)", s.StepSince.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		if s.LastError != "" {
			fmt.Fprintf(w, "  failed %d time(s), last error: %s\n", s.Attempts, s.LastError)
		}
	}
	conn := "disconnected"
	if d.Local.Connected {
		conn = "connected"
	}
	fmt.Fprintf(w, "local broker: %s, events received %d, malformed %d, unrouted %d\n", conn, d.Local.EventsReceived, d.Local.Malformed, d.Intake.Unrouted)
	writeStorageText(w, d.Storage)
	if len(d.Applications) == 0 && d.Startup.State != StateStarting {
		fmt.Fprintln(w, "applications: none (is the default app enabled in mPower?)")
	}
	for _, a := range d.Applications {
		fmt.Fprintf(w, "application %s (%s): %s\n", a.Name, a.EUI, a.State)
		fmt.Fprintf(w, "  events queued %d, forwarded %d, dropped %d, dead-lettered %d; delivery failures %d; queue %d rows / %d bytes\n",
			a.EventsQueued, a.EventsForwarded, a.EventsDropped, a.EventsDeadLettered, a.DeliveryFailures, a.QueueRows, a.QueueBytes)
		if a.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", a.LastError)
		}
	}
	if h := d.DeliveryLatency; h.Count > 0 {
		fmt.Fprintf(w, "delivery latency: %d deliveries, mean %s\n", h.Count, h.Mean().Round(time.Millisecond))
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
		fmt.Fprintf(w, "join latency: %d joins, mean %s\n", h.Count, h.Mean().Round(time.Millisecond))
	}
	writeJoinProxyText(w, d.JoinProxy)
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func outcomesText(counts []metrics.OutcomeCount) string {
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

// MaxAppInfo is the longest AppInfo mPower shows, in characters.
const MaxAppInfo = 160

// AppInfo is the one-line summary mPower shows, at most 160 characters:
// "up 3h12m, forwarded 41.2k, queue 0, dropped 0, dead-lettered 0, unrouted 0, remote up, lns up, joins 12/12 ok";
// while starting, the step and its last error.
func AppInfo(d Status) string {
	if s := d.Startup; s.State == StateStarting {
		line := "starting"
		if s.Step != "" {
			line += ": " + s.Step
		}
		if s.LastError != "" {
			line += fmt.Sprintf(" (failed %d×): %s", s.Attempts, s.LastError)
		}
		return truncateRunes(line, MaxAppInfo)
	}
	var fwd, queue uint64
	var dropped, dead int64
	remote := "none"
	for _, a := range d.Applications {
		fwd += a.EventsForwarded
		queue += uint64(a.QueueRows)
		dropped += a.EventsDropped
		dead += a.EventsDeadLettered
		if remote == "none" || remote == StateUp {
			remote = a.State // the first application not up, else up
		}
	}
	parts := []string{
		"up " + shortDuration(time.Duration(d.UptimeSeconds)*time.Second),
		"forwarded " + shortCount(fwd),
		"queue " + shortCount(queue),
		"dropped " + shortCount(uint64(dropped)),
		"dead-lettered " + shortCount(uint64(dead)),
		"unrouted " + shortCount(d.Intake.Unrouted),
		"remote " + remote,
	}
	if d.Storage.State == "full" || d.Storage.State == "low" {
		parts = append(parts, "storage "+d.Storage.State) // full: new messages wait in the local broker
	}
	if d.Local.Connected {
		parts = append(parts, "lns up")
	} else {
		parts = append(parts, "lns down")
	}
	if len(d.Joins) > 0 {
		var ok, all uint64
		for _, j := range d.Joins {
			all += j.Count
			if j.Result == "Success" {
				ok += j.Count
			}
		}
		parts = append(parts, "joins "+shortCount(ok)+"/"+shortCount(all)+" ok")
	}
	if len(d.LastErrors) > 0 {
		parts = append(parts, "last error "+d.LastErrors[len(d.LastErrors)-1].Message)
	}
	return truncateRunes(strings.Join(parts, ", "), MaxAppInfo)
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// shortDuration is 45s, 12m, 3h12m or 4d03h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// shortCount is 999, 41.2k or 3.1M.
func shortCount(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d", n)
	case n < 1_000_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
