package logging

import (
	"context"
	"log/slog"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// ReadMPower reads mPower's defaultApp.log (for ApplyMPower), giving up
// after a few seconds: at boot mPower may not answer yet, and logging cannot
// wait. false: mPower did not answer or its document is unreadable.
func ReadMPower(ctx context.Context, m config.MPower) (config.AppLog, bool) {
	ctx, cancel := context.WithTimeout(ctx, min(3*time.Second, m.Timeout))
	defer cancel()
	mp := lnsbridge.NewMPower(m.API, m.Timeout, slog.New(slog.DiscardHandler))
	raw, err := mp.Get(ctx, lnsbridge.PathDefaultApp)
	if err != nil {
		return config.AppLog{}, false
	}
	d, err := config.ParseDefaultApp(raw)
	if err != nil {
		return config.AppLog{}, false
	}
	return d.Log, true
}

// ApplyMPowerLevel sets level live to mPower's defaultApp.log.level (read at
// start-up and at every change of mPower's settings) unless app-connect.yml
// sets log.level: the YAML file wins. An absent mPower log object (all zero)
// or a nil level (fixed, as in tests) changes nothing.
func ApplyMPowerLevel(level *slog.LevelVar, yaml config.Log, d config.AppLog) {
	if yaml.Level != "" || d == (config.AppLog{}) || level == nil {
		return
	}
	level.Set(MPowerLevel(d.Level))
}
