package forward

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/simgw"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

const gwTestUUID = "029998E06156CDD44523264B523115C1"

// gateway is a simulated Conduit around forward: a real Mosquitto as the
// local broker (lnsbridge.Local feeding the Intake), the mPower API, the
// mts-io files, lora-query (the conduit-sim binary) when a test installs it,
// a real SQLite outbox, and the remote HTTP sink. start builds the pieces
// forward owns (Manager, Apps, Intake) as cmd/app-connect does and stops
// them in the same order.
type gateway struct {
	t      *testing.T
	broker *testpeer.Mosquitto
	mpower *sim.MPower
	sink   *sim.Sink
	fleet  *sim.Fleet
	dir    string
	cfg    config.Config
	logs   *testpeer.LogBuffer
}

func newGateway(t *testing.T, devices int) *gateway {
	t.Helper()
	g := simgw.Start(t, devices, gwTestUUID, testpeer.MosquittoOptions{})
	h := &gateway{t: t, dir: g.Dir, broker: g.Broker, mpower: g.MPower, sink: g.Sink, fleet: g.Fleet, cfg: g.Config, logs: &testpeer.LogBuffer{}}
	return h
}

// withLoraQuery installs the lora-query stand-in (conduit-sim linked as
// lora-query) and points the gateway at it.
func (h *gateway) withLoraQuery(state sim.LoraQueryState) *sim.LoraQueryDir {
	h.t.Helper()
	lq, err := sim.InstallLoraQuery(filepath.Join(h.dir, "lq"), testpeer.GoBuild(h.t, "../cmd/conduit-sim"), state)
	if err != nil {
		h.t.Fatal(err)
	}
	h.cfg.Gateway.LoraQuery = lq.Path()
	return lq
}

// start builds and runs forward on the simulated gateway until the returned
// stop is called (also at the test's end), then waits for the local
// subscription.
func (h *gateway) start() (stop func()) {
	t := h.t
	t.Helper()
	cfg := h.cfg
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	db, err := cache.Open(ctx, cfg.Storage.Database, cache.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	outbox, err := db.NewOutbox(ctx, cache.Limits{MaxRows: cfg.Storage.OutboxMaxRows, MaxBytes: cfg.Storage.OutboxMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	ident, err := lnsbridge.ReadIdentity(cfg.Gateway.SysfsRoot)
	if err != nil {
		t.Fatal(err)
	}
	mp := lnsbridge.NewMPower(cfg.MPower.API, cfg.MPower.Timeout, log)
	lq := lnsbridge.LoraQuery{Path: cfg.Gateway.LoraQuery}
	ln := LoadLoraNetwork(ctx, mp, db, cfg.MPower.BootWait, log)
	defApp, err := LoadDefaultApp(ctx, mp, db, cfg.MPower.BootWait, log)
	if err != nil {
		t.Fatal(err)
	}
	var appnets []config.Appnet
	if ln.LNSAvailable() {
		appnets = LoadAppnets(ctx, lq, db, log)
	}
	local := lnsbridge.NewLocal(lnsbridge.LocalOptions{Broker: cfg.LNS.Broker, ClientID: lnsbridge.ClientIDFor(ident), Logger: log})
	deliverCtx, stopDelivery := context.WithCancel(context.Background())
	mgr := NewManager(outbox, local, log, ManagerOptions{AppVersion: "test",
		DeviceAppEUI: func(dev string) (string, bool) {
			app, ok, err := db.DeviceAppEUI(context.Background(), dev)
			return app, ok && err == nil
		}})
	id := Identity{UUIDRaw: ident.UUIDRaw, UUID: ident.UUID, Serial: ident.Serial, GatewayEUIs: GatewayEUIs(ctx, mp, lq, ln, log)}
	apps := NewApps(ctx, AppsOptions{Config: cfg, Manager: mgr, MPower: mp, Lora: lq, Store: db, LNS: ln.LNSAvailable(),
		Default: defApp, Appnets: appnets, Log: log, Identity: id})
	apps.LoadSessions(ctx)
	intake := NewIntake(outbox, db, mgr.Router(), apps.Resolver(), log)
	var wg, delivering sync.WaitGroup
	delivering.Add(1)
	go func() { defer delivering.Done(); mgr.Run(deliverCtx) }()
	wg.Add(2)
	pollCtx, stopPolling := context.WithCancel(ctx)
	go func() { defer wg.Done(); apps.Run(pollCtx, outbox) }()
	intakeCtx, stopIntake := context.WithCancel(ctx)
	go func() { defer wg.Done(); intake.Run(intakeCtx, nil) }()
	local.SetHandler(intake.HandleEvent)
	if err := local.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			local.Stop()
			stopIntake()
			stopPolling()
			wg.Wait()
			flush, cancelFlush := context.WithTimeout(context.Background(), cfg.Delivery.ShutdownTimeout)
			mgr.Stop(flush)
			cancelFlush()
			stopDelivery()
			delivering.Wait()
			cancel()
			outbox.Close()
			db.Close()
		})
	}
	t.Cleanup(stop)
	h.waitSubscribed(1)
	return stop
}

// waitSubscribed waits until the local client has subscribed n times in
// total (messages published before the first subscription have no receiver).
func (h *gateway) waitSubscribed(n int) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(h.logs.String(), "local broker connected") < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("not subscribed within 30s:\n%s", h.logs.Tail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publish sends every device's joined event and perDevice uplinks to the
// local broker, 1,000 messages a second (far above a gateway's radio load).
func (h *gateway) publish(ctx context.Context, perDevice int) sim.RunStats {
	h.t.Helper()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	st, err := p.Run(ctx, h.fleet, perDevice, 1000)
	if err != nil {
		h.t.Fatalf("publish: %v", err)
	}
	return st
}

func (h *gateway) publishOne(ctx context.Context, topic string, payload []byte) {
	h.t.Helper()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, topic, payload); err != nil {
		h.t.Fatal(err)
	}
}

// waitAll waits until the sink received every uplink of the fleet.
func (h *gateway) waitAll(timeout time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := h.sink.Wait(ctx, h.fleet.Expected()); err != nil {
		h.t.Fatalf("%v; sink %+v\nlogs:\n%s", err, h.sink.Stats(), h.logs.Tail(40))
	}
}

// watchLocalDownlinks records the downlinks published on the local broker
// (sim.WatchDownlinks) and returns what arrived so far, in order.
func (h *gateway) watchLocalDownlinks() func() []string {
	h.t.Helper()
	w, err := sim.WatchDownlinks(h.broker.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(w.Close)
	return w.Got
}

// checkSink reports what a remote HTTP sink saw besides the uplinks (sim.Sink.CheckFaults).
func checkSink(t *testing.T, name string, s *sim.Sink, faultsInjected bool) {
	t.Helper()
	if err := s.CheckFaults(faultsInjected); err != nil {
		t.Errorf("sink %s: %v", name, err)
	}
}

// checkOrder reports a device whose uplinks did not arrive in FCnt order.
func (h *gateway) checkOrder(allowDuplicates bool) {
	h.t.Helper()
	if err := h.sink.CheckOrder(h.fleet, allowDuplicates); err != nil {
		h.t.Fatal(err)
	}
}
