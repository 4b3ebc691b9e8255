package main

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/statusreport"
)

// Why a report was refused (the reason label of appconnect_fleet_reports_refused_total).
const (
	refusedInvalid  = "invalid"  // not a valid report
	refusedMismatch = "mismatch" // the topic or path names another gateway than the body
	refusedOld      = "old"      // older than the report already held
	refusedCapacity = "capacity" // a new gateway beyond -max-gateways
)

// Fleet holds the last report of every gateway heard from, bounded: at most
// MaxGateways gateways with at most MaxApps applications each; a new gateway
// beyond the cap is refused and counted. Safe for concurrent use.
type Fleet struct {
	MaxGateways int
	MaxApps     int
	Stale       time.Duration // no report for this long: up = 0
	Expire      time.Duration // no report for this long: forgotten
	Now         func() time.Time

	mu       sync.Mutex
	gws      map[string]*gatewayState
	accepted map[string]uint64 // by source (mqtt, http)
	refused  map[string]uint64 // by reason
	expired  uint64
	appsCut  uint64 // applications beyond MaxApps left out
}

// gatewayState is one gateway's last report; replaced, never mutated.
type gatewayState struct {
	report   statusreport.Report // last_error cleared, applications capped
	lastSeen time.Time           // the exporter's clock when it arrived
}

// refusal is a refused report.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }

func (f *Fleet) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Accept takes one report body from source. gw is the gateway the topic or
// path names (any UUID form), "" when the transport names none.
func (f *Fleet) Accept(source, gw string, body []byte) error {
	return f.accept(source, gw, body, false)
}

// AcceptRetained takes a retained MQTT report: the broker kept it, so it may
// be old (a gateway gone for days). It counts as seen when it was built (the
// gateway's clock, if that is not in the future), and one older than Expire
// is refused as old.
func (f *Fleet) AcceptRetained(gw string, body []byte) error {
	return f.accept("mqtt", gw, body, true)
}

func (f *Fleet) accept(source, gw string, body []byte, retained bool) error {
	r, err := statusreport.Decode(body)
	if err != nil {
		return f.refuse(refusedInvalid, err)
	}
	if gw != "" {
		u, err := statusreport.NormalizeUUID(gw)
		if err != nil || u != r.Gateway.UUID {
			return f.refuse(refusedMismatch, fmt.Errorf("report of gateway %s arrived for %q", r.Gateway.UUID, gw))
		}
	}
	// Keep only what is exported: the last error is free text for people,
	// not a metric, and would cost up to 1 KiB per application.
	r.Applications = slices.Clone(r.Applications)
	for i := range r.Applications {
		r.Applications[i].LastError = ""
	}
	cut := 0
	if len(r.Applications) > f.MaxApps {
		cut = len(r.Applications) - f.MaxApps
		r.Applications = r.Applications[:f.MaxApps]
	}
	now := f.now()
	seen := now
	if retained && r.Time.Before(now) {
		seen = r.Time
		if now.Sub(seen) > f.Expire {
			return f.refuse(refusedOld, fmt.Errorf("retained report of %s built at %s is older than -expire", r.Gateway.UUID, r.Time.Format(time.RFC3339)))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	cur, ok := f.gws[r.Gateway.UUID]
	switch {
	case ok && r.Time.Before(cur.report.Time) && now.Sub(cur.lastSeen) < f.Stale:
		// An older report (a redelivery, a shared-subscription reorder); a
		// gateway whose clock went back is taken again once it went stale.
		f.refused[refusedOld]++
		return &refusal{refusedOld, fmt.Errorf("report of %s built at %s is older than the one held (%s)", r.Gateway.UUID, r.Time.Format(time.RFC3339), cur.report.Time.Format(time.RFC3339))}
	case !ok && len(f.gws) >= f.MaxGateways:
		f.refused[refusedCapacity]++
		return &refusal{refusedCapacity, fmt.Errorf("gateway %s refused: %d gateways held (-max-gateways)", r.Gateway.UUID, len(f.gws))}
	}
	f.gws[r.Gateway.UUID] = &gatewayState{report: r, lastSeen: seen}
	f.accepted[source]++
	f.appsCut += uint64(cut)
	return nil
}

func (f *Fleet) refuse(reason string, err error) error {
	f.mu.Lock()
	f.init()
	f.refused[reason]++
	f.mu.Unlock()
	return &refusal{reason, err}
}

func (f *Fleet) init() {
	if f.gws == nil {
		f.gws = map[string]*gatewayState{}
		f.accepted = map[string]uint64{}
		f.refused = map[string]uint64{}
	}
}

// Sweep forgets the gateways silent for longer than Expire.
func (f *Fleet) Sweep() {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, g := range f.gws {
		if now.Sub(g.lastSeen) > f.Expire {
			delete(f.gws, id)
			f.expired++
		}
	}
}

// fleetSnapshot is what one scrape writes.
type fleetSnapshot struct {
	now      time.Time
	gateways []gatewayView // sorted by UUID
	accepted map[string]uint64
	refused  map[string]uint64
	expired  uint64
	appsCut  uint64
}

type gatewayView struct {
	*gatewayState
	stale bool
}

// snapshot sweeps, then copies the state under the lock (the reports
// themselves are immutable), so a slow scraper never holds up intake.
func (f *Fleet) snapshot() fleetSnapshot {
	f.Sweep()
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	s := fleetSnapshot{now: now, gateways: make([]gatewayView, 0, len(f.gws)), expired: f.expired, appsCut: f.appsCut,
		accepted: cloneMap(f.accepted), refused: cloneMap(f.refused)}
	for _, g := range f.gws {
		s.gateways = append(s.gateways, gatewayView{gatewayState: g, stale: now.Sub(g.lastSeen) > f.Stale})
	}
	sort.Slice(s.gateways, func(i, j int) bool { return s.gateways[i].report.Gateway.UUID < s.gateways[j].report.Gateway.UUID })
	return s
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Len is the number of gateways held.
func (f *Fleet) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.gws)
}

// reasonOf is the refusal reason of an Accept error ("" for nil).
func reasonOf(err error) string {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}
