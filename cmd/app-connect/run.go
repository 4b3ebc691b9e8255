package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/joins"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// daemon is what the run command builds before run: the logger with its
// live level, the status state and mPower's status file.
type daemon struct {
	log        *slog.Logger
	level      *slog.LevelVar    // nil: the level is fixed (tests)
	state      *admin.State      // nil: run makes one
	statusFile *admin.StatusFile // nil: none
	procRoot   string            // for the process_* metrics; "" leaves them out

	adminStop func() // set once the admin endpoint serves

	apps atomic.Pointer[forward.Apps] // set once the applications are built (SIGHUP applies default_app to them)
}

// setDefaultApp applies the YAML file's default_app block live (SIGHUP);
// false before the applications are built.
func (d *daemon) setDefaultApp(ctx context.Context, o *config.DefaultApp) bool {
	a := d.apps.Load()
	if a == nil {
		return false
	}
	a.SetDefaultOverride(ctx, o)
	return true
}

// serveAdmin starts the admin endpoint (once). It lives until stopAdmin,
// past the stop signal, so the shutdown flush stays visible.
func (d *daemon) serveAdmin(ctx context.Context, cfg config.Config) error {
	if d.adminStop != nil {
		return nil
	}
	if d.state == nil {
		d.state = admin.NewState(version, nil)
	}
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := admin.Serve(adminCtx, cfg.Admin.Listen, admin.Handler(d.state, d.procRoot, d.log), d.log)
	if err != nil {
		stopAdmin()
		return err
	}
	d.adminStop = func() { stopAdmin(); srv.Wait() }
	return nil
}

// stopAdmin stops the admin endpoint and waits for it.
func (d *daemon) stopAdmin() {
	if d.adminStop != nil {
		d.adminStop()
		d.adminStop = nil
	}
}

// Step records the start-up step in progress and shows it at once (admin.Progress).
func (d *daemon) Step(what string) {
	d.state.Startup.Step(what)
	d.statusFile.Refresh()
}

// Failed records a failed attempt of the step in progress and shows it at once.
func (d *daemon) Failed(err error) {
	d.state.Startup.Failed(err)
	d.statusFile.Refresh()
}

// run is the daemon with a fixed-level logger and no status file (as tests
// call it): it returns nil on a clean stop (ctx cancelled).
func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	d := &daemon{log: log, procRoot: "/proc"}
	return d.run(ctx, cfg)
}

// run is the daemon: it returns nil on a clean stop (ctx cancelled). The
// admin endpoint comes first, so every later step is visible while it waits.
func (d *daemon) run(ctx context.Context, cfg config.Config) error {
	log := d.log
	log.Info("app-connect starting", "version", version, "database", cfg.Storage.Database, "broker", cfg.LNS.Broker)
	// One context tree. ctx ends on SIGTERM/SIGINT: it bounds the start-up
	// steps and begins the shutdown. What runs afterwards hangs off life (ctx's
	// values, not its cancellation), in branches the shutdown sequence at the
	// end of run stops one by one, in this order:
	//
	//	life ─┬─ intakeCtx    the committer: no local message is acknowledged after it
	//	      ├─ pollCtx      mPower and appnet polling, status reports
	//	      └─ deliverCtx   the applications: drained until the flush deadline, then closed
	//
	// then the outbox (pending deletions committed), the join proxy, the
	// database and the admin endpoint (deferred, so an early return releases
	// them too); life ends with run.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	intakeCtx, stopIntake := context.WithCancel(life)
	defer stopIntake()
	pollCtx, stopPolling := context.WithCancel(life)
	defer stopPolling()
	deliverCtx, stopDelivery := context.WithCancel(life)
	defer stopDelivery()
	if err := d.serveAdmin(ctx, cfg); err != nil {
		return err
	}
	defer d.stopAdmin()

	db, err := admin.RetryStep(ctx, d, log, "opening the database", func(ctx context.Context) (*cache.DB, error) {
		return cache.Open(ctx, cfg.Storage.Database, cache.Options{Logger: log})
	})
	if err != nil {
		return nilIfCancelled(ctx, err)
	}
	defer db.Close()
	outbox, err := db.NewOutbox(ctx, cache.Limits{MaxRows: cfg.Storage.OutboxMaxRows, MaxBytes: cfg.Storage.OutboxMaxBytes})
	if err != nil {
		return err
	}
	defer outbox.Close()

	ident, err := admin.RetryStep(ctx, d, log, "reading the gateway identity", func(context.Context) (lnsbridge.Identity, error) {
		return lnsbridge.ReadIdentity(cfg.Gateway.SysfsRoot)
	})
	if err != nil {
		return nilIfCancelled(ctx, err)
	}

	// The mPower client waits for mPower at boot on its own; its failures show
	// as the start-up step's last error.
	mp := lnsbridge.NewMPower(cfg.MPower.API, cfg.MPower.Timeout, slog.New(admin.StartupErrors(log.Handler(), d.state.Startup)))
	lq := lnsbridge.LoraQuery{Path: cfg.Gateway.LoraQuery}
	d.Step("reading mPower's LoRa network settings")
	ln := forward.LoadLoraNetwork(ctx, mp, db, cfg.MPower.BootWait, log)
	gwEUIs := forward.GatewayEUIs(ctx, mp, lq, ln, log)
	var defApp config.DefaultApp
	if cfg.DefaultAppOverride != nil {
		defApp = *cfg.DefaultAppOverride // the YAML default_app block replaces mPower's settings
	} else {
		// Settings in error make a misconfigured default app (its events are
		// queued); a document whose enabled flag cannot be read says nothing
		// about routing, so it is read again until it can be: meanwhile the
		// local broker is not connected and keeps every event.
		if defApp, err = admin.RetryStep(ctx, d, log, "reading mPower's Default App settings", func(ctx context.Context) (config.DefaultApp, error) {
			return forward.LoadDefaultApp(ctx, mp, db, cfg.MPower.BootWait, log)
		}); err != nil {
			return nilIfCancelled(ctx, err)
		}
	}
	d.applyMPowerLogLevel(cfg, defApp)
	var appnets []config.Appnet
	if ln.LNSAvailable() {
		appnets = forward.LoadAppnets(ctx, lq, db, log)
	}

	d.Step("starting join forwarding")
	if cfg.Join.Enabled {
		if cfg.Join.NetID, err = joins.NetIDFromMPower(ctx, mp, cfg.Join); err != nil {
			log.Error("join forwarding not started", "err", err)
			cfg.Join.Enabled = false
		}
	}
	joinProxy, err := joins.Start(ctx, cfg.Join, joins.Options{Store: db, Counts: d.state.Joins, Latency: d.state.JoinLatency,
		Log: log, UserAgent: "app-connect/" + version})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(life, 5*time.Second)
		defer cancel()
		joinProxy.Stop(sctx)
	}()

	clientID := cfg.LNS.ClientID
	if clientID == "" {
		clientID = lnsbridge.ClientIDFor(ident)
	}
	local := lnsbridge.NewLocal(lnsbridge.LocalOptions{
		Broker: cfg.LNS.Broker, ClientID: clientID, Username: cfg.LNS.Username, Password: cfg.LNS.Password, Logger: log,
	})

	downlinks, requests, deliveryLatency := d.state.Downlinks, d.state.Requests, d.state.DeliveryLatency
	mgr := forward.NewManager(outbox, local, log, forward.ManagerOptions{
		Latency: deliveryLatency, Downlinks: downlinks, AppVersion: version,
		Requests: &forward.Requests{Policy: cfg.RemoteRequests, LNS: ln.LNSAvailable(), Lora: lq, API: mp, Log: log,
			MaxDownlink: cfg.Delivery.MaxDownlinkPayload, Outcomes: requests},
		DeviceAppEUI: func(dev string) (string, bool) {
			qctx, cancel := context.WithTimeout(life, 2*time.Second)
			defer cancel()
			app, ok, err := db.DeviceAppEUI(qctx, dev)
			return app, ok && err == nil
		},
	})
	var delivering sync.WaitGroup
	delivering.Add(1)
	go func() { defer delivering.Done(); mgr.Run(deliverCtx) }()
	defer func() { stopDelivery(); delivering.Wait() }()
	id := forward.Identity{UUIDRaw: ident.UUIDRaw, UUID: ident.UUID, Serial: ident.Serial, GatewayEUIs: gwEUIs}
	apps := forward.NewApps(ctx, forward.AppsOptions{Config: cfg, Manager: mgr, MPower: mp, Lora: lq, Store: db, LNS: ln.LNSAvailable(),
		Default: defApp, Appnets: appnets, Log: log, Identity: id,
		OnDefaultApp: func(def config.DefaultApp) { d.applyMPowerLogLevel(cfg, def) }})
	d.apps.Store(apps)
	apps.LoadSessions(ctx)
	router := mgr.Router()
	intake := forward.NewIntake(outbox, db, router, apps.Resolver(), log)

	d.state.Attach(admin.NewSources(admin.Parts{Local: local, Intake: intake, Storage: db, Queues: outbox, Applications: router, JoinProxy: joinProxy}))
	admin.StartStatusReports(pollCtx, cfg, d.state, router, outbox, id, ln.LNSAvailable(), log)

	var pollDone sync.WaitGroup
	pollDone.Add(1)
	go func() {
		defer pollDone.Done()
		apps.Run(pollCtx, outbox)
	}()

	var intakeDone sync.WaitGroup
	intakeDone.Add(1)
	go func() { defer intakeDone.Done(); intake.Run(intakeCtx, nil) }()
	local.SetHandler(intake.HandleEvent) // the broker's callback hands each event straight to the committer
	d.Step("connecting to the local broker")
	if err := local.Start(ctx); err != nil {
		return err
	}
	go func() { // start-up is complete once the local broker is connected
		if local.WaitConnected(ctx) == nil {
			d.state.Startup.Running()
			d.statusFile.Refresh()
		}
	}()
	log.Info("app-connect running", "gateway", ident.UUID, "apps", len(router.Applications()))

	<-ctx.Done()
	// The shutdown sequence, in order (see the context tree above).
	log.Info("stopping: no new local messages; flushing deliveries", "deadline", cfg.Delivery.ShutdownTimeout)
	// 1. Intake: the local client takes nothing more; the committer finishes
	// the commit in progress and acknowledges only what it committed (the
	// broker keeps the rest for the next start).
	local.Stop()
	stopIntake()
	intakeDone.Wait()
	// 2. Polling and status reports: no application is rebuilt from now on.
	stopPolling()
	pollDone.Wait()
	// 3. Delivery: the queues drain until the flush deadline, then each
	// application stops (a request in flight finishes) and sends its close
	// notice on its own connection.
	flushCtx, cancelFlush := context.WithTimeout(life, cfg.Delivery.ShutdownTimeout)
	mgr.Stop(flushCtx)
	cancelFlush()
	stopDelivery()
	delivering.Wait()
	// 4. The outbox: the deletions of what was delivered are committed; what
	// was not stays queued for the next start. The join proxy, the database
	// and the admin endpoint follow (deferred).
	outbox.Close()
	for _, a := range router.Applications() {
		s := outbox.Stats(a.Settings.EUI)
		log.Info("stopped", "app", a.Settings.EUI, "forwarded", a.Counters.Forwarded.Load(), "queued_for_next_start", s.Rows)
	}
	return nil
}

func nilIfCancelled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// applyMPowerLogLevel applies defaultApp.log.level live when app-connect.yml
// leaves log.level unset.
func (d *daemon) applyMPowerLogLevel(cfg config.Config, def config.DefaultApp) {
	logging.ApplyMPowerLevel(d.level, cfg.Log, def.Log)
}
