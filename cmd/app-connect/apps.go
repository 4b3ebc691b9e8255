package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// appConfig is the current configuration of the remote applications, from
// mPower (defaultApp), Lens (appnets) and lora-query (gateways).
type appConfig struct {
	cfg config.Config
	log *slog.Logger
	mgr *forward.Manager

	mu      sync.Mutex
	def     config.DefaultApp
	appnets []config.Appnet
	id      forward.Identity
}

// apply hands the current configuration to the manager.
func (c *appConfig) apply() {
	c.mu.Lock()
	d := forward.BuildDesired(c.def, c.cfg.DefaultAppOverride, c.cfg.MPower.DefaultAppWhenDisabled, c.appnets, c.cfg.Delivery, c.id, c.log)
	c.mu.Unlock()
	c.mgr.Apply(d)
}

// addAppnet adds (or replaces) one appnet and applies.
func (c *appConfig) addAppnet(a config.Appnet) {
	c.mu.Lock()
	out := c.appnets[:0:0]
	for _, x := range c.appnets {
		if x.EUI != a.EUI {
			out = append(out, x)
		}
	}
	c.appnets = append(out, a)
	c.mu.Unlock()
	c.apply()
}

// pollConfig re-reads defaultApp, the appnets and the gateway list every
// poll interval and applies what changed, live; it also drops the rows of
// applications removed longer than the grace period.
func (c *appConfig) pollConfig(ctx context.Context, mp *lnsbridge.MPower, lq lnsbridge.LoraQuery, db *cache.DB, lns bool, drop forward.Dropper) {
	t := time.NewTicker(c.cfg.MPower.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := false
		if c.cfg.DefaultAppOverride == nil {
			if raw, err := mp.Get(ctx, lnsbridge.PathDefaultApp); err == nil {
				if d, err := config.ParseDefaultApp(raw); err == nil {
					c.mu.Lock()
					if !reflect.DeepEqual(d, c.def) {
						c.def, changed = d, true
					}
					c.mu.Unlock()
					if changed {
						applyMPowerLogLevel(c.cfg, d, c.log)
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
			c.apply()
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

// loadAppnets lists the Lens appnets, falling back to the cached list when
// lora-query does not answer (a rebooted gateway whose LNS is still starting).
func loadAppnets(ctx context.Context, lq lnsbridge.LoraQuery, db *cache.DB, log *slog.Logger) []config.Appnet {
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

// loadSessions reads the start-up session list: devices go to the device
// table and to their application's poll list (kept for an application
// set up later). Only DevEUI and AppEUI are kept.
func loadSessions(ctx context.Context, lq lnsbridge.LoraQuery, db *cache.DB, mgr *forward.Manager, log *slog.Logger) {
	sessions, err := lq.Sessions(ctx)
	if err != nil {
		log.Warn("session list unavailable; devices are learnt from joins and uplinks", "err", err)
		return
	}
	now := time.Now()
	devs := make([]cache.Device, 0, len(sessions))
	for _, s := range sessions {
		devs = append(devs, cache.Device{DevEUI: s.DevEUI, AppEUI: s.AppEUI, LastSeen: now})
		if app := mgr.Router().Route(forward.Message{AppEUI: s.AppEUI, DevEUI: s.DevEUI}); app != nil {
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
	apps *appConfig
	db   *cache.DB
	log  *slog.Logger

	mu    sync.Mutex
	tried map[string]time.Time
}

const resolveEvery = time.Minute

func (r *appnetResolver) Resolve(ctx context.Context, appEUI string) *forward.Application {
	r.mu.Lock()
	if last, ok := r.tried[appEUI]; ok && time.Since(last) < resolveEvery {
		r.mu.Unlock()
		return nil
	}
	r.tried[appEUI] = time.Now()
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a, found, err := r.lq.Appnet(ctx, appEUI)
	if err != nil {
		r.log.Warn("appnet get failed", "appeui", appEUI, "err", err)
		return nil
	}
	if !found {
		return nil
	}
	r.log.Info("new appnet", "app", a.EUI, "app_net_id", a.AppNetID)
	r.apps.addAppnet(a)
	return r.apps.mgr.Router().Route(forward.Message{AppEUI: appEUI})
}
