package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/cli"
	"github.com/lorawan-gateway/app-connect/joinclient"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// joinRecordTimeout bounds the recording of one join attempt (the network server
// has been answered already; this only bounds how long a stop waits for it).
const joinRecordTimeout = 5 * time.Second

// joinRecorder stores the proxy's join attempts in the cache (never keys) and
// counts them for /metrics.
type joinRecorder struct {
	db     *cache.DB
	counts *joinCounts // nil: not counted
}

// joinCounts counts join attempts by Join Server and result, and reaches the
// running proxy's own state (bounds, circuit breakers, header warnings).
type joinCounts struct {
	mu    sync.Mutex
	byKey map[[2]string]uint64
	// latency, when set, observes every attempt's latency.
	latency interface{ Observe(time.Duration) }
	proxy   atomic.Pointer[joinclient.Proxy] // set by startJoin
}

// proxyStats is the running proxy's state; nil when join forwarding is off.
func (c *joinCounts) proxyStats() *joinclient.ProxyStats {
	if c == nil {
		return nil
	}
	p := c.proxy.Load()
	if p == nil {
		return nil
	}
	st := p.Stats()
	return &st
}

func newJoinCounts() *joinCounts {
	return &joinCounts{byKey: map[[2]string]uint64{}}
}

func (c *joinCounts) add(js, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey[[2]string{js, result}]++
}

// joinCount is one series of join attempts.
type joinCount struct {
	JoinServer string `json:"join_server"`
	Result     string `json:"result"`
	Count      uint64 `json:"count"`
}

// snapshot lists the counters sorted by Join Server and result.
func (c *joinCounts) snapshot() []joinCount {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]joinCount, 0, len(c.byKey))
	for k, v := range c.byKey {
		out = append(out, joinCount{JoinServer: k[0], Result: k[1], Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].JoinServer != out[j].JoinServer {
			return out[i].JoinServer < out[j].JoinServer
		}
		return out[i].Result < out[j].Result
	})
	return out
}

var _ joinclient.Recorder = joinRecorder{}

// RecordJoinAttempt implements joinclient.Recorder.
func (r joinRecorder) RecordJoinAttempt(ctx context.Context, a joinclient.Attempt) error {
	if r.counts != nil {
		js := a.JoinServer
		if js == "" {
			js = "none"
		}
		r.counts.add(js, a.Result)
		if r.counts.latency != nil {
			r.counts.latency.Observe(a.Latency)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, joinRecordTimeout)
	defer cancel()
	return r.db.RecordJoinAttempt(ctx, cache.JoinAttempt{
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

// startJoin starts join forwarding when cfg.Join.Enabled: the loopback Backend
// Interfaces proxy on cfg.Join.ProxyListen, routing the network server's
// join-requests to the Join Servers of the interop repository and recording
// every attempt in db. It serves until stop is called; stop waits for the
// requests in flight (and their recording) until its context ends, so call it
// before closing db. Disabled, it starts nothing and stop does nothing.
//
// cfg.Join.NetID must be set: when app-connect.yml leaves join.net_id empty the
// caller fills it in from mPower loraNetwork's lora.netID first (joinNetID).
func startJoin(ctx context.Context, cfg config.Config, db *cache.DB, log *slog.Logger, counts *joinCounts) (stop func(context.Context), err error) {
	if !cfg.Join.Enabled {
		return func(context.Context) {}, nil
	}
	if cfg.Join.NetID == "" {
		return nil, errors.New("join: no NetID: set join.net_id or mPower loraNetwork lora.netID")
	}
	if db == nil {
		return nil, errors.New("join: no database to record join attempts in")
	}
	jlog := log.With("part", "join")
	svc, err := joinclient.FromConfig(cfg.Join, joinclient.Options{
		Recorder:  joinRecorder{db: db, counts: counts},
		Logger:    jlog,
		UserAgent: "app-connect/" + version,
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	ln, err := joinclient.Listen(ctx, cfg.Join.ProxyListen)
	if err != nil {
		svc.Router.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	srv := joinclient.NewServer(svc.Proxy)
	if counts != nil {
		counts.proxy.Store(svc.Proxy)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Not tied to ctx: the proxy serves until stop, whose caller orders the shutdown.
		if err := srv.Serve(context.WithoutCancel(ctx), ln); err != nil {
			jlog.Error("join proxy stopped", "err", err)
		}
	}()
	jlog.Info("join proxy listening", "addr", ln.Addr().String(), "net_id", cfg.Join.NetID,
		"budget", cfg.Join.Budget, "join_servers", len(svc.Repository.JoinServers), "routes", len(svc.Repository.Entries))
	var once sync.Once
	return func(sctx context.Context) {
		once.Do(func() {
			if err := srv.Shutdown(sctx); err != nil {
				jlog.Warn("join proxy shutdown incomplete", "err", err)
			}
			select {
			case <-done:
			case <-sctx.Done():
			}
			// The attempts still queued are recorded before the database closes.
			if err := svc.Proxy.Close(sctx); err != nil {
				jlog.Warn("join attempts not recorded at stop", "err", err)
			}
			svc.Router.Close()
			jlog.Info("join proxy stopped")
		})
	}, nil
}

// joinNetID returns the NetID join forwarding uses: join.net_id from
// app-connect.yml, else mPower loraNetwork's lora.netID (6 hex digits).
func joinNetID(j config.Join, mpowerNetID string) (string, error) {
	if j.NetID != "" {
		return j.NetID, nil
	}
	if _, err := joinclient.ParseNetID(mpowerNetID); err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork lora.netID %q is not a NetID: %w", mpowerNetID, err)
	}
	return mpowerNetID, nil
}

// joinNetIDFromMPower is joinNetID reading mPower's loraNetwork (one request)
// only when app-connect.yml leaves join.net_id empty.
func joinNetIDFromMPower(ctx context.Context, mp *lnsbridge.MPower, j config.Join) (string, error) {
	if j.NetID != "" {
		return j.NetID, nil
	}
	raw, err := mp.Get(ctx, lnsbridge.PathLoraNetwork)
	if err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork is unreadable: %w", err)
	}
	ln, err := config.ParseLoraNetwork(raw)
	if err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork is unreadable: %w", err)
	}
	return joinNetID(j, ln.Lora.NetID)
}

// checkJoinConfig is check-config's part for join forwarding: when an interop
// repository is configured it loads it strictly with the KEK file and the
// default client certificate (no network I/O) and prints the routing table.
// Loader warnings go to stdout too. It returns the first problem found.
func checkJoinConfig(cfg config.Config, stdout io.Writer) error {
	j := cfg.Join
	if j.InteropDir == "" {
		if j.Enabled {
			return errors.New("join: join.enabled is true but join.interop_dir is not set")
		}
		return nil
	}
	netID := j.NetID
	if netID == "" {
		// Taken from mPower at run time; any valid NetID checks the rest.
		j.NetID = "000000"
	}
	svc, err := joinclient.FromConfig(j, joinclient.Options{
		Logger: cli.NewLogger(stdout, slog.LevelWarn), // "warning: …" lines, not log records
	})
	if err != nil {
		return err // joinclient's errors carry their own prefix: one per line
	}
	defer svc.Router.Close()
	state := "disabled"
	if j.Enabled {
		state = "enabled, proxy on " + j.ProxyListen
	}
	if netID == "" {
		netID = "from mPower loraNetwork lora.netID"
	}
	fmt.Fprintf(stdout, "join forwarding: %s, budget %s, net_id %s\n", state, j.Budget, netID)
	fmt.Fprintf(stdout, "interop repository %s: %d Join Servers, %d routes\n", j.InteropDir, len(svc.Repository.JoinServers), len(svc.Repository.Entries))
	if err := joinclient.WriteRoutingTable(stdout, svc.Repository); err != nil {
		return fmt.Errorf("join: routing table: %w", err)
	}
	return nil
}
