package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Apps keeps the remote applications matching their configuration sources:
// mPower's defaultApp (or the YAML default_app), the Lens appnets and
// lora-query's gateway list. It polls them, caches what it read (so a gateway
// rebooting without a working mPower or LNS still routes every event), sets
// up the appnet of an unknown AppEUI on demand and hands every change to its
// Manager. NewApps builds it complete.
type Apps struct {
	cfg    config.Config
	log    *slog.Logger
	mgr    *Manager
	mp     *lnsbridge.MPower
	lq     lnsbridge.LoraQuery
	db     *cache.DB
	lns    bool
	onDef  func(config.DefaultApp)
	resolv *appnetResolver // nil without the LNS

	mu      sync.Mutex
	def     config.DefaultApp
	appnets []config.Appnet
	id      Identity
}

// AppsOptions are what Apps is built from.
type AppsOptions struct {
	Config  config.Config
	Manager *Manager
	MPower  *lnsbridge.MPower
	Lora    lnsbridge.LoraQuery
	Store   *cache.DB
	// LNS is whether the gateway runs its own network server (loraNetwork):
	// only then are appnets, sessions and the gateway list read from lora-query.
	LNS bool
	// Default and Appnets are the configuration read at start-up (see
	// LoadDefaultApp, LoadAppnets); Identity the gateway's.
	Default  config.DefaultApp
	Appnets  []config.Appnet
	Identity Identity
	// OnDefaultApp is told about a changed defaultApp (the log level follows
	// it); may be nil.
	OnDefaultApp func(config.DefaultApp)
	Log          *slog.Logger
}

// NewApps builds the application set and applies its configuration once
// (the Manager's Run starts the applications).
func NewApps(ctx context.Context, o AppsOptions) *Apps {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &Apps{cfg: o.Config, log: o.Log, mgr: o.Manager, mp: o.MPower, lq: o.Lora, db: o.Store, lns: o.LNS,
		onDef: o.OnDefaultApp, def: o.Default, appnets: o.Appnets, id: o.Identity}
	if o.LNS {
		c.resolv = &appnetResolver{lq: o.Lora, apps: c, db: o.Store, log: o.Log, tried: map[string]time.Time{}}
	}
	c.apply(ctx)
	return c
}

// Resolver sets up the appnet of an AppEUI no application takes (nil
// without the LNS: there is no appnet to ask for).
func (c *Apps) Resolver() Resolver {
	if c.resolv == nil {
		return nil
	}
	return c.resolv
}

// apply hands the current configuration to the manager.
func (c *Apps) apply(ctx context.Context) {
	c.mu.Lock()
	d := BuildDesired(c.def, c.cfg.DefaultAppOverride, c.cfg.MPower.DefaultAppWhenDisabled, c.appnets, c.cfg.Delivery, c.id, c.log)
	c.mu.Unlock()
	c.mgr.Apply(ctx, d)
}

// SetDefaultOverride replaces the YAML file's default_app block (SIGHUP) and
// applies it live: an unchanged application keeps running, a changed one is
// rebuilt on the same queue. nil hands the default app back to mPower's
// settings, read again at the next poll.
func (c *Apps) SetDefaultOverride(ctx context.Context, o *config.DefaultApp) {
	c.mu.Lock()
	c.cfg.DefaultAppOverride = o
	c.mu.Unlock()
	c.apply(ctx)
}

// overridden tells whether the YAML file's default_app block replaces mPower's settings.
func (c *Apps) overridden() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.DefaultAppOverride != nil
}

// addAppnet adds (or replaces) one appnet and applies.
func (c *Apps) addAppnet(ctx context.Context, a config.Appnet) {
	c.mu.Lock()
	out := c.appnets[:0:0]
	for _, x := range c.appnets {
		if x.EUI != a.EUI {
			out = append(out, x)
		}
	}
	c.appnets = append(out, a)
	c.mu.Unlock()
	c.apply(ctx)
}

// Run re-reads defaultApp, the appnets and the gateway list every poll
// interval and applies what changed, live, until ctx ends; it also drops the
// rows of applications removed longer than the grace period.
func (c *Apps) Run(ctx context.Context, drop Dropper) {
	mp, lq, db, lns := c.mp, c.lq, c.db, c.lns
	t := time.NewTicker(c.cfg.MPower.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := false
		if !c.overridden() {
			if raw, err := mp.Get(ctx, lnsbridge.PathDefaultApp); err == nil {
				d, err := config.ParseDefaultApp(raw)
				if err != nil {
					// Settings in error still make an application (misconfigured,
					// its events queued); only a document whose enabled flag
					// cannot be read leaves the current one in place.
					if md, ok := config.MisconfiguredDefaultApp(raw, err); ok {
						d, err = md, nil
					}
				}
				if err == nil {
					c.mu.Lock()
					if !reflect.DeepEqual(d, c.def) {
						c.def, changed = d, true
					}
					c.mu.Unlock()
					if changed {
						if d.Invalid != "" {
							c.log.Error("mPower defaultApp invalid; the default app is misconfigured, its events are queued until it is fixed", "err", d.Invalid)
						}
						if c.onDef != nil {
							c.onDef(d)
						}
						c.log.Info("mPower defaultApp changed; applying")
						db.PutApplication(ctx, cache.Application{EUI: "default", Source: "default", Info: raw})
					}
				} else {
					c.log.Warn("mPower defaultApp unreadable; keeping the current one", "err", err)
				}
			} else if ctx.Err() == nil {
				c.log.Debug("mPower defaultApp not read", "err", err)
			}
		}
		if lns {
			if nets, bad, err := lq.Appnets(ctx); err == nil {
				for _, e := range bad {
					c.log.Warn("appnet skipped", "err", e)
				}
				c.mu.Lock()
				if !sameAppnets(nets, c.appnets) {
					c.appnets, changed = nets, true
				}
				c.mu.Unlock()
				cacheAppnets(ctx, db, nets, c.log)
			} else if ctx.Err() == nil {
				c.log.Debug("appnet list not read", "err", err)
			}
			if euis, err := lq.GatewayEUIs(ctx); err == nil && len(euis) > 0 {
				c.mu.Lock()
				if !reflect.DeepEqual(euis, c.id.GatewayEUIs) {
					c.id.GatewayEUIs, changed = euis, true // init is sent again on change
				}
				c.mu.Unlock()
			}
		}
		if changed {
			c.apply(ctx)
		}
		c.mgr.DropExpired(ctx, drop, c.cfg.Delivery.RemovedAppGrace)
	}
}

func sameAppnets(a, b []config.Appnet) bool {
	if len(a) != len(b) {
		return false
	}
	fp := map[string]string{}
	for _, x := range a {
		fp[x.EUI] = x.Fingerprint
	}
	for _, x := range b {
		if fp[x.EUI] != x.Fingerprint {
			return false
		}
	}
	return true
}

// cachedAppnetsKey is the applications-table row holding the last appnet list.
const cachedAppnetsKey = "appnets"

type cachedAppnet struct {
	EUI         string            `json:"eui"`
	AppNetID    string            `json:"app_net_id"`
	AppNetUUID  string            `json:"app_net_uuid"`
	URL         string            `json:"url"`
	Options     config.AppOptions `json:"options"`
	Fingerprint string            `json:"fingerprint"`
}

func cacheAppnets(ctx context.Context, db *cache.DB, nets []config.Appnet, log *slog.Logger) {
	c := make([]cachedAppnet, len(nets))
	for i, n := range nets {
		c[i] = cachedAppnet{n.EUI, n.AppNetID, n.AppNetUUID, n.URL, n.Options, n.Fingerprint}
	}
	b, _ := json.Marshal(c)
	if err := db.PutApplication(ctx, cache.Application{EUI: cachedAppnetsKey, Source: "appnet", Info: b}); err != nil {
		log.Warn("caching the appnets failed", "err", err)
	}
}

// LoadAppnets lists the Lens appnets, falling back to the cached list when
// lora-query does not answer (a rebooted gateway whose LNS is still starting).
func LoadAppnets(ctx context.Context, lq lnsbridge.LoraQuery, db *cache.DB, log *slog.Logger) []config.Appnet {
	nets, bad, err := lq.Appnets(ctx)
	if err == nil {
		for _, e := range bad {
			log.Warn("appnet skipped", "err", e)
		}
		cacheAppnets(ctx, db, nets, log)
		return nets
	}
	cached, ok, cerr := db.GetApplication(ctx, cachedAppnetsKey)
	if cerr != nil || !ok {
		log.Warn("appnet list unavailable and none cached", "err", err)
		return nil
	}
	var c []cachedAppnet
	if json.Unmarshal(cached.Info, &c) != nil {
		return nil
	}
	out := make([]config.Appnet, len(c))
	for i, x := range c {
		out[i] = config.Appnet{EUI: x.EUI, AppNetID: x.AppNetID, AppNetUUID: x.AppNetUUID, URL: x.URL, Options: x.Options, Fingerprint: x.Fingerprint}
	}
	log.Warn("appnet list unavailable; using the cached one", "err", err, "appnets", len(out), "updated", cached.UpdatedAt)
	return out
}

// LoadSessions reads the start-up session list (with the LNS only): devices
// go to the device table and to their application's poll list (kept for an
// application set up later). Only DevEUI and AppEUI are kept.
func (c *Apps) LoadSessions(ctx context.Context) {
	if !c.lns {
		return
	}
	lq, db, mgr, log := c.lq, c.db, c.mgr, c.log
	sessions, err := lq.Sessions(ctx)
	if err != nil {
		log.Warn("session list unavailable; devices are learnt from joins and uplinks", "err", err)
		return
	}
	now := time.Now()
	devs := make([]cache.Device, 0, len(sessions))
	for _, s := range sessions {
		devs = append(devs, cache.Device{DevEUI: s.DevEUI, AppEUI: s.AppEUI, LastSeen: now})
		if app := mgr.Router().Route(Message{AppEUI: s.AppEUI, DevEUI: s.DevEUI}); app != nil {
			app.Poll().Add(s.DevEUI)
		} else {
			mgr.Poll(s.AppEUI).Add(s.DevEUI) // for an appnet set up later (appnet get on join)
		}
	}
	if err := db.PutDevices(ctx, devs); err != nil {
		log.Warn("device table update failed", "err", err)
	}
	log.Info("sessions loaded", "devices", len(sessions))
}

// appnetResolver sets up the appnet of an AppEUI no application takes, with
// one `appnet get` per AppEUI per minute at most.
type appnetResolver struct {
	lq   lnsbridge.LoraQuery
	apps *Apps
	db   *cache.DB
	log  *slog.Logger

	mu    sync.Mutex
	tried map[string]time.Time
}

const resolveEvery = time.Minute

func (r *appnetResolver) Resolve(ctx context.Context, appEUI string) *Application {
	r.mu.Lock()
	if last, ok := r.tried[appEUI]; ok && time.Since(last) < resolveEvery {
		r.mu.Unlock()
		return nil
	}
	r.tried[appEUI] = time.Now()
	r.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a, found, err := r.lq.Appnet(qctx, appEUI)
	if err != nil {
		r.log.Warn("appnet get failed", "appeui", appEUI, "err", err)
		return nil
	}
	if !found {
		return nil
	}
	r.log.Info("new appnet", "app", a.EUI, "app_net_id", a.AppNetID)
	r.apps.addAppnet(ctx, a)
	return r.apps.mgr.Router().Route(Message{AppEUI: appEUI})
}

// LoadLoraNetwork reads mPower's loraNetwork (see loadMPower).
func LoadLoraNetwork(ctx context.Context, mp *lnsbridge.MPower, db *cache.DB, bootWait time.Duration, log *slog.Logger) config.LoraNetwork {
	raw, err := loadMPower(ctx, mp, db, lnsbridge.PathLoraNetwork, "loraNetwork", bootWait, log)
	if err != nil {
		return config.LoraNetwork{}
	}
	ln, err := config.ParseLoraNetwork(raw)
	if err != nil {
		log.Error("mPower loraNetwork unreadable", "err", err)
	}
	return ln
}

// GatewayEUIs are the EUIs sent in init: lora-query's gateway list, else
// loraNetwork's lora.eui_1; without the LNS, the LoRa accessory cards.
func GatewayEUIs(ctx context.Context, mp *lnsbridge.MPower, lq lnsbridge.LoraQuery, ln config.LoraNetwork, log *slog.Logger) []string {
	if !ln.LNSAvailable() {
		// Packet-forwarder or basic-station mode: the LoRa cards' EUIs identify the gateway.
		return accessoryCardEUIs(ctx, mp, log)
	}
	if euis, err := lq.GatewayEUIs(ctx); err == nil && len(euis) > 0 {
		return euis
	} else if err != nil {
		log.Warn("gateway list unavailable; using loraNetwork lora.eui_1", "err", err)
	}
	if eui, err := config.NormalizeEUI(ln.Lora.EUI1); err == nil {
		return []string{eui}
	}
	return []string{}
}

func accessoryCardEUIs(ctx context.Context, mp *lnsbridge.MPower, log *slog.Logger) []string {
	raw, err := mp.Get(ctx, lnsbridge.PathAccessoryCards)
	if err != nil {
		log.Warn("mPower accessory cards unreadable", "err", err)
		return []string{}
	}
	var cards []struct {
		EUI string `json:"eui"`
	}
	if err := json.Unmarshal(raw, &cards); err != nil {
		log.Warn("mPower accessory cards unreadable", "err", err)
		return []string{}
	}
	out := []string{}
	for _, c := range cards {
		if eui, err := config.NormalizeEUI(c.EUI); err == nil {
			out = append(out, eui)
		}
	}
	return out
}

// loadMPower reads an mPower document, waiting for the API at boot. When a
// copy is cached from an earlier run (under key), it is used if mPower has not
// answered within bootWait, so a rebooted gateway without a working mPower
// forwards anyway. A fresh answer replaces the cached copy.
func loadMPower(ctx context.Context, mp *lnsbridge.MPower, db *cache.DB, path, key string, bootWait time.Duration, log *slog.Logger) (json.RawMessage, error) {
	cached, haveCached, err := db.GetApplication(ctx, key)
	if err != nil {
		log.Warn("cached mPower document unreadable", "key", key, "err", err)
	}
	wctx := ctx
	if haveCached {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, bootWait)
		defer cancel()
	}
	raw, err := mp.GetRetry(wctx, path)
	if err != nil {
		if ctx.Err() != nil || !haveCached {
			return nil, err
		}
		log.Warn("mPower API not answering; using the cached copy", "path", path, "updated", cached.UpdatedAt)
		return cached.Info, nil
	}
	if err := db.PutApplication(ctx, cache.Application{EUI: key, Source: "mpower", Info: raw}); err != nil {
		log.Warn("caching an mPower document failed", "key", key, "err", err)
	}
	return raw, nil
}

// LoadDefaultApp reads mPower's defaultApp (see loadMPower). Settings in
// error give a misconfigured default app (config.MisconfiguredDefaultApp);
// the error is for a document whose enabled flag cannot be read.
func LoadDefaultApp(ctx context.Context, mp *lnsbridge.MPower, db *cache.DB, bootWait time.Duration, log *slog.Logger) (config.DefaultApp, error) {
	raw, err := loadMPower(ctx, mp, db, lnsbridge.PathDefaultApp, "default", bootWait, log)
	if err != nil {
		return config.DefaultApp{}, err
	}
	d, err := config.ParseDefaultApp(raw)
	if err != nil {
		// Invalid settings still make an application: misconfigured, its
		// events queued. Only an unreadable enabled flag is an error (the
		// caller retries; events stay unacknowledged with the broker).
		md, ok := config.MisconfiguredDefaultApp(raw, err)
		if !ok {
			return d, fmt.Errorf("mPower defaultApp: %w", err)
		}
		log.Error("mPower defaultApp invalid; the default app is misconfigured, its events are queued until it is fixed", "err", md.Invalid)
		return md, nil
	}
	return d, nil
}
