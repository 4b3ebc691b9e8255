package settings

import (
	"log/slog"
	"reflect"
	"strings"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/logging"
)

// Reload re-reads the YAML file (SIGHUP) and applies what can change live:
// the log level (a level left unset keeps the current one, mPower's) and the
// default_app block (through setDefault, false while the applications are
// not built yet). Every other setting that differs from the running one (old)
// is logged by name as needing a restart. It returns the running
// configuration: old with what was applied. An invalid file changes nothing.
func Reload(cfgPath string, old config.Config, log *slog.Logger, level *slog.LevelVar, setDefault func(*config.DefaultApp) bool) (config.Config, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return old, err
	}
	applied := []string{}
	running := old
	if cfg.Log.Level != "" && level != nil {
		l, err := logging.ParseLevel(cfg.Log.Level)
		if err != nil {
			return old, err
		}
		if l != level.Level() {
			level.Set(l)
			applied = append(applied, "log.level")
		}
	}
	running.Log.Level = cfg.Log.Level
	if !reflect.DeepEqual(old.DefaultAppOverride, cfg.DefaultAppOverride) && setDefault != nil && setDefault(cfg.DefaultAppOverride) {
		applied = append(applied, "default_app")
		running.DefaultAppOverride = cfg.DefaultAppOverride
	}
	restart := Changed(running, cfg)
	if len(applied) == 0 && len(restart) == 0 {
		log.Info("reload: configuration unchanged", "config", cfgPath)
		return running, nil
	}
	if len(applied) > 0 {
		log.Info("reload: applied live", "config", cfgPath, "settings", strings.Join(applied, ", "), "log_level", logging.LevelName(level.Level()))
	}
	if len(restart) > 0 {
		log.Warn("reload: changed settings need a restart to take effect (Start restart)", "config", cfgPath, "settings", strings.Join(restart, ", "))
	}
	return running, nil
}
