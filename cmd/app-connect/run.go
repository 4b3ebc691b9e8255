package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// retry calls f until it succeeds or ctx ends, with backoff, logging the
// first failure and every tenth: no start-up step ends the process.
func retry[T any](ctx context.Context, log *slog.Logger, what string, f func(context.Context) (T, error)) (T, error) {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := f(ctx)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Error(what+" failed, retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// run is the daemon: it returns nil on a clean stop (ctx cancelled).
func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log.Info("app-connect starting", "version", version, "database", cfg.Storage.Database, "broker", cfg.LNS.Broker)

	db, err := retry(ctx, log, "opening the database", func(ctx context.Context) (*cache.DB, error) {
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

	ident, err := retry(ctx, log, "reading the gateway identity", func(context.Context) (lnsbridge.Identity, error) {
		return lnsbridge.ReadIdentity(cfg.Gateway.SysfsRoot)
	})
	if err != nil {
		return nilIfCancelled(ctx, err)
	}

	mp := lnsbridge.NewMPower(cfg.MPower.API, cfg.MPower.Timeout, log)
	lq := lnsbridge.LoraQuery{Path: cfg.Gateway.LoraQuery}
	ln := forward.LoadLoraNetwork(ctx, mp, db, cfg.MPower.BootWait, log)
	gwEUIs := forward.GatewayEUIs(ctx, mp, lq, ln, log)
	var defApp config.DefaultApp
	if cfg.DefaultAppOverride != nil {
		defApp = *cfg.DefaultAppOverride // the YAML default_app block replaces mPower's settings
	} else if defApp, err = forward.LoadDefaultApp(ctx, mp, db, cfg.MPower.BootWait, log); err != nil {
		return nilIfCancelled(ctx, err)
	}
	applyMPowerLogLevel(cfg, defApp, log)
	var appnets []config.Appnet
	if ln.LNSAvailable() {
		appnets = forward.LoadAppnets(ctx, lq, db, log)
	}

	if cfg.Join.Enabled {
		if cfg.Join.NetID, err = joinNetIDFromMPower(ctx, mp, cfg.Join); err != nil {
			log.Error("join forwarding not started", "err", err)
			cfg.Join.Enabled = false
		}
	}
	joins := newJoinCounts()
	stopJoin, err := startJoin(ctx, cfg, db, log, joins)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopJoin(sctx)
	}()

	clientID := cfg.LNS.ClientID
	if clientID == "" {
		clientID = lnsbridge.ClientIDFor(ident)
	}
	local := lnsbridge.NewLocal(lnsbridge.LocalOptions{
		Broker: cfg.LNS.Broker, ClientID: clientID, Username: cfg.LNS.Username, Password: cfg.LNS.Password, Logger: log,
	})

	// Delivery loops run until the shutdown deadline; intake stops first.
	deliverCtx, stopDelivery := context.WithCancel(context.Background())
	defer stopDelivery()
	downlinks, requests, deliveryLatency, joinLatency := newOutcomeCounts(), newOutcomeCounts(), newHistogram(), newHistogram()
	mgr := forward.NewManager(deliverCtx, outbox, local, log, forward.ManagerOptions{
		Latency: deliveryLatency, Downlinks: downlinks, AppVersion: version,
		Requests: &forward.Requests{Policy: cfg.RemoteRequests, LNS: ln.LNSAvailable(), Lora: lq, API: mp, Log: log,
			MaxDownlink: cfg.Delivery.MaxDownlinkPayload, Outcomes: requests},
		DeviceAppEUI: func(dev string) (string, bool) {
			qctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			app, ok, err := db.DeviceAppEUI(qctx, dev)
			return app, ok && err == nil
		},
	})
	joins.latency = joinLatency
	apps := forward.NewApps(forward.AppsOptions{Config: cfg, Manager: mgr, MPower: mp, Lora: lq, Store: db, LNS: ln.LNSAvailable(),
		Default: defApp, Appnets: appnets, Log: log,
		Identity:     forward.Identity{UUIDRaw: ident.UUIDRaw, UUID: ident.UUID, Serial: ident.Serial, GatewayEUIs: gwEUIs},
		OnDefaultApp: func(d config.DefaultApp) { applyMPowerLogLevel(cfg, d, log) }})
	apps.LoadSessions(ctx)
	router := mgr.Router()
	intake := forward.NewIntake(outbox, db, router, apps.Resolver(), log)

	st := &state{started: time.Now(), local: local, intake: intake, outbox: outbox, router: router, joins: joins,
		downlinks: downlinks, requests: requests, deliveryLatency: deliveryLatency, joinLatency: joinLatency}
	statusFileOf(ctx).Attach(st)
	adminStop, err := startAdmin(cfg.Admin.Listen, st, log)
	if err != nil {
		return err
	}
	defer adminStop()

	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var pollDone sync.WaitGroup
	pollDone.Add(1)
	go func() {
		defer pollDone.Done()
		apps.Run(pollCtx, outbox)
	}()

	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	var intakeDone sync.WaitGroup
	intakeDone.Add(1)
	go func() { defer intakeDone.Done(); intake.Run(intakeCtx, nil) }()
	local.SetHandler(intake.HandleEvent) // the broker's callback hands each event straight to the committer
	if err := local.Start(ctx); err != nil {
		return err
	}
	log.Info("app-connect running", "gateway", ident.UUID, "apps", len(router.Applications()))

	<-ctx.Done()
	log.Info("stopping: no new local messages; flushing deliveries", "deadline", cfg.Delivery.ShutdownTimeout)
	local.Stop()
	stopIntake()
	intakeDone.Wait()
	stopPolling()
	pollDone.Wait()
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), cfg.Delivery.ShutdownTimeout)
	defer cancelFlush()
	mgr.Stop(flushCtx) // waits for the queues to drain until the deadline, then close per application
	stopDelivery()
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
func applyMPowerLogLevel(cfg config.Config, d config.DefaultApp, log *slog.Logger) {
	if cfg.Log.Level != "" || d.Log == (config.AppLog{}) {
		return
	}
	if lv := levelVarOf(log); lv != nil {
		lv.Set(mpowerLogLevel(d.Log.Level))
	}
}
