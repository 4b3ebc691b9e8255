package joins

import (
	"context"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// recordTimeout bounds the recording of one join attempt (the network server
// has been answered already; this only bounds how long a stop waits for it).
const recordTimeout = 5 * time.Second

// Store keeps the join attempts (cache.DB).
type Store interface {
	RecordJoinAttempt(ctx context.Context, a cache.JoinAttempt) error
}

// Counter counts join attempts by Join Server and result (admin.JoinCounts).
type Counter interface {
	Add(joinServer, result string)
}

// Observer observes each attempt's latency (metrics.LatencyHistogram).
type Observer interface {
	Observe(time.Duration)
}

// recorder stores the proxy's join attempts (never keys) and counts them.
type recorder struct {
	store   Store
	counts  Counter  // nil: not counted
	latency Observer // nil: not observed
}

var _ joinclient.Recorder = recorder{}

// RecordJoinAttempt implements joinclient.Recorder. An attempt no Join
// Server took is counted under "none".
func (r recorder) RecordJoinAttempt(ctx context.Context, a joinclient.Attempt) error {
	if r.counts != nil {
		js := a.JoinServer
		if js == "" {
			js = "none"
		}
		r.counts.Add(js, a.Result)
	}
	if r.latency != nil {
		r.latency.Observe(a.Latency)
	}
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	return r.store.RecordJoinAttempt(ctx, cache.JoinAttempt{
		Time:              a.Time,
		MessageType:       string(a.MessageType),
		DevEUI:            euiOrEmpty(a.DevEUI),
		JoinEUI:           euiOrEmpty(a.JoinEUI),
		JoinServer:        a.JoinServer,
		Result:            a.Result,
		Latency:           a.Latency,
		SessionKeyID:      a.SessionKeyID,
		SessionKeyIDLocal: a.SessionKeyIDLocal,
	})
}

// euiOrEmpty writes an EUI the request did not carry (a refused request) as "".
func euiOrEmpty(e joinclient.EUI64) string {
	if e == (joinclient.EUI64{}) {
		return ""
	}
	return e.String()
}
