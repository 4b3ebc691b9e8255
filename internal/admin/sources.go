package admin

import (
	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/joinclient"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// The running daemon's parts, each read through the one method the status
// calls.
type (
	// LocalConn is the local broker client (lnsbridge.Local).
	LocalConn interface{ Stats() lnsbridge.LocalStats }
	// IntakeCounter is the committer from the local broker into the outbox (forward.Intake).
	IntakeCounter interface{ Stats() forward.IntakeStats }
	// Storage is the database's file system (cache.DB).
	Storage interface{ Storage() cache.StorageStatus }
	// Queues are the outbox's per-application figures (cache.Outbox).
	Queues interface {
		Stats(app string) cache.AppStats
	}
	// Applications lists the applications running now (forward.Router).
	Applications interface{ Applications() []*forward.Application }
	// JoinProxy is join forwarding's state; nil when it is off (joins.Proxy).
	JoinProxy interface{ Stats() *joinclient.ProxyStats }
)

// Parts are what /status reads; a nil part reads as zero.
type Parts struct {
	Local        LocalConn
	Intake       IntakeCounter
	Storage      Storage
	Queues       Queues
	Applications Applications
	JoinProxy    JoinProxy
}

// NewSources reads the status from the running daemon's parts: the glue
// between the forwarding packages' figures and the status's names.
func NewSources(p Parts) Sources {
	var src Sources
	if p.Local != nil {
		src.Local = func() LocalStatus {
			s := p.Local.Stats()
			return LocalStatus{Connected: s.Connected, EventsReceived: s.Received, Malformed: s.Malformed}
		}
	}
	if p.Intake != nil {
		src.Intake = func() IntakeStatus {
			s := p.Intake.Stats()
			return IntakeStatus{Stored: s.Stored, Acknowledged: s.Acked, Unrouted: s.Unrouted, Ignored: s.Ignored, Commits: s.Commits}
		}
	}
	if p.Storage != nil {
		src.Storage = p.Storage.Storage
	}
	if p.JoinProxy != nil {
		src.JoinProxy = p.JoinProxy.Stats
	}
	if p.Applications != nil && p.Queues != nil {
		src.Applications = func() []AppStatus {
			var out []AppStatus
			for _, a := range p.Applications.Applications() {
				st, le := a.State()
				q := p.Queues.Stats(a.Settings.EUI)
				out = append(out, AppStatus{
					EUI: a.Settings.EUI, Name: a.Settings.Name, State: st, LastError: le,
					EventsQueued: a.Counters.Queued.Load(), EventsForwarded: a.Counters.Forwarded.Load(),
					EventsDropped: q.Dropped, EventsDeadLettered: q.DeadLettered, DeliveryFailures: a.Counters.Failures.Load(),
					QueueRows: q.Rows, QueueBytes: q.Bytes,
				})
			}
			return out
		}
	}
	return src
}
