package forward

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// Queue is the part of the outbox a delivery loop uses.
type Queue interface {
	Peek(ctx context.Context, app string, afterID int64, n int) ([]cache.Row, error)
	Delete(rows []cache.Row)
	DeadLetter(rows []cache.Row)
	RecordFailure(id int64, next time.Time)
	Stats(app string) cache.AppStats
}

// Identity is what an application needs to know about its gateway.
type Identity struct {
	UUIDRaw     string
	UUID        string
	GatewayEUIs []string
}

// AppSettings describes one remote application.
type AppSettings struct {
	EUI        string // the application's EUI (the catch-all for the filter-off default app)
	Name       string // "default" or the appnet id, for logs
	APIVersion string
	URL        string
	Options    config.AppOptions
	Delivery   config.Delivery
}

// Counters of one application.
type Counters struct {
	Queued       atomic.Uint64 // rows written to the outbox
	Forwarded    atomic.Uint64 // rows the remote side acknowledged
	DeadLettered atomic.Uint64 // rows refused permanently
	Failures     atomic.Uint64 // failed delivery attempts
}

// Application is one remote application: its transport and its delivery loop.
type Application struct {
	Settings AppSettings
	Counters Counters

	log      *slog.Logger
	queue    Queue
	http     *HTTPTransport
	paths    httpPaths
	gateways []string
	wake     chan struct{}

	mu        sync.Mutex
	state     string
	lastError string
}

// Application states, for status.
const (
	StateStarting  = "starting"
	StateUp        = "up"
	StateRetrying  = "retrying"
	StateStopped   = "stopped"
	StateNoTransit = "unsupported"
)

// NewApplication builds an application; Run delivers its rows.
func NewApplication(s AppSettings, id Identity, q Queue, log *slog.Logger) (*Application, error) {
	ep, err := config.ParseEndpoint(s.URL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Application{
		Settings: s,
		log:      log.With("app", s.EUI),
		queue:    q,
		wake:     make(chan struct{}, 1),
		gateways: id.GatewayEUIs,
		state:    StateStarting,
	}
	for _, w := range ep.Warnings {
		a.log.Warn("application url: "+w, "url_host", ep.Host)
	}
	gw := id.UUID
	if s.APIVersion == config.API10 {
		gw = id.UUIDRaw
	}
	a.paths = httpPaths{app: s.EUI, gw: gw}
	switch ep.Transport {
	case config.TransportHTTP:
		a.http, err = NewHTTPTransport(ep, s.Options, s.Delivery.HTTPTimeout)
		if err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("forward: " + ep.Scheme + " transport not available in this build")
	}
	return a, nil
}

// Notify wakes the delivery loop after new rows were committed.
func (a *Application) Notify() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Application) setState(state string, err error) {
	a.mu.Lock()
	a.state = state
	if err != nil {
		a.lastError = err.Error()
	}
	a.mu.Unlock()
}

// State returns the delivery state and the last error seen.
func (a *Application) State() (state, lastError string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.lastError
}

// Run sends init, then delivers queued rows in order until ctx ends. Rows
// stay in the outbox until the remote side acknowledged them.
func (a *Application) Run(ctx context.Context) {
	defer a.setState(StateStopped, nil)
	b := newBackoff(a.Settings.Delivery.RetryMin, a.Settings.Delivery.RetryMax)
	for {
		err := a.http.Init(ctx, a.paths.init(), a.gateways)
		if err == nil {
			a.log.Info("application ready", "path", a.paths.init())
			break
		}
		if ctx.Err() != nil {
			return
		}
		if IsPermanent(err) {
			a.log.Error("init refused; delivering without it", "path", a.paths.init(), "err", err)
			break
		}
		a.setState(StateRetrying, err)
		d := b.next()
		a.log.Warn("init failed, retrying", "err", err, "retry_in", d.Round(time.Millisecond))
		if !sleep(ctx, d) {
			return
		}
	}
	b.reset()
	a.setState(StateUp, nil)
	var cursor int64
	failing := false
	for {
		rows, err := a.queue.Peek(ctx, a.Settings.EUI, cursor, 1)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("reading the outbox failed", "err", err)
			if !sleep(ctx, b.next()) {
				return
			}
			continue
		}
		if len(rows) == 0 {
			select {
			case <-a.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		n, _, err := a.http.Deliver(ctx, rows)
		if n > 0 {
			a.queue.Delete(rows[:n])
			cursor = rows[n-1].ID
			a.Counters.Forwarded.Add(uint64(n))
			if failing {
				a.log.Info("delivery resumed", "path", rows[0].Target)
				failing = false
				a.setState(StateUp, nil)
			}
			b.reset()
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return // stopping: the row stays queued for the next start
		}
		head := rows[n]
		if IsPermanent(err) {
			a.queue.DeadLetter([]cache.Row{head})
			cursor = head.ID
			a.Counters.DeadLettered.Add(1)
			a.log.Error("remote refused a message for good; dead-lettered", "kind", head.Kind, "path", head.Target, "err", err)
			continue
		}
		a.Counters.Failures.Add(1)
		d := b.next()
		a.queue.RecordFailure(head.ID, time.Now().Add(d))
		if !failing {
			a.log.Warn("delivery failed, retrying with backoff", "path", head.Target, "err", err, "retry_in", d.Round(time.Millisecond))
			failing = true
		} else {
			a.log.Debug("delivery failed again", "path", head.Target, "err", err, "retry_in", d.Round(time.Millisecond))
		}
		a.setState(StateRetrying, err)
		if !sleep(ctx, d) {
			return
		}
	}
}

// Close sends the close notice (5 s timeout); errors are logged only.
func (a *Application) Close(ctx context.Context) {
	if err := a.http.Close(ctx, a.paths.close()); err != nil {
		a.log.Warn("close notice not delivered", "path", a.paths.close(), "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is exponential with full jitter in [d/2, d].
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	return &backoff{min: min, max: max, cur: min}
}

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.cur = b.min }
