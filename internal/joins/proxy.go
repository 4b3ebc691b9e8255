package joins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// Options are what join forwarding records into and reports with.
type Options struct {
	Store     Store        // where every attempt is recorded; required when enabled
	Counts    Counter      // nil: attempts not counted
	Latency   Observer     // nil: latencies not observed
	Log       *slog.Logger // nil: slog.Default()
	UserAgent string       // sent to the Join Servers ("app-connect/<version>")
}

// Proxy is join forwarding as it runs: the loopback Backend Interfaces proxy
// and what it needs until Stop. Disabled, it is a Proxy that serves nothing.
type Proxy struct {
	svc  *joinclient.Service // nil: join forwarding is off
	srv  *joinclient.Server
	done chan struct{} // closed when Serve returned
	log  *slog.Logger
	once sync.Once
}

// Start starts join forwarding when j.Enabled: the loopback Backend
// Interfaces proxy on j.ProxyListen, routing the network server's
// join-requests to the Join Servers of the interop repository and recording
// every attempt in o.Store. It serves until Stop, not until ctx ends (the
// caller orders the shutdown). Disabled, it starts nothing.
//
// j.NetID must be set: when app-connect.yml leaves join.net_id empty the
// caller fills it in from mPower loraNetwork's lora.netID first
// (NetIDFromMPower).
func Start(ctx context.Context, j config.Join, o Options) (*Proxy, error) {
	if !j.Enabled {
		return &Proxy{}, nil
	}
	if j.NetID == "" {
		return nil, errors.New("join: no NetID: set join.net_id or mPower loraNetwork lora.netID")
	}
	if o.Store == nil {
		return nil, errors.New("join: no database to record join attempts in")
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("part", "join")
	svc, err := joinclient.FromConfig(j, joinclient.Options{
		Recorder:  recorder{store: o.Store, counts: o.Counts, latency: o.Latency},
		Logger:    log,
		UserAgent: o.UserAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	ln, err := joinclient.Listen(ctx, j.ProxyListen)
	if err != nil {
		svc.Router.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	p := &Proxy{svc: svc, srv: joinclient.NewServer(svc.Proxy), done: make(chan struct{}), log: log}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(context.WithoutCancel(ctx), ln); err != nil {
			log.Error("join proxy stopped", "err", err)
		}
	}()
	log.Info("join proxy listening", "addr", ln.Addr().String(), "net_id", j.NetID,
		"budget", j.Budget, "join_servers", len(svc.Repository.JoinServers), "routes", len(svc.Repository.Entries))
	return p, nil
}

// Stats is the running proxy's state (bounds, circuit breakers, header
// warnings); nil when join forwarding is off.
func (p *Proxy) Stats() *joinclient.ProxyStats {
	if p == nil || p.svc == nil {
		return nil
	}
	st := p.svc.Proxy.Stats()
	return &st
}

// Stop stops the proxy and waits, until ctx ends, for the requests in flight
// and the recording of the attempts still queued: call it before closing the
// Store. Later calls do nothing.
func (p *Proxy) Stop(ctx context.Context) {
	if p == nil || p.svc == nil {
		return
	}
	p.once.Do(func() {
		if err := p.srv.Shutdown(ctx); err != nil {
			p.log.Warn("join proxy shutdown incomplete", "err", err)
		}
		select {
		case <-p.done:
		case <-ctx.Done():
		}
		// The attempts still queued are recorded before the database closes.
		if err := p.svc.Proxy.Close(ctx); err != nil {
			p.log.Warn("join attempts not recorded at stop", "err", err)
		}
		p.svc.Router.Close()
		p.log.Info("join proxy stopped")
	})
}
