// Command app-connect is the default LoRaWAN application of MultiTech Conduit
// gateways: it forwards the embedded network server's events to the
// customer's cloud durably, in order, and relays downlinks back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// version is stamped at build time with -ldflags "-X main.version=$(git describe)".
var version = "dev"

const usage = `usage: app-connect [run] [--config FILE]
       app-connect check-config [--config FILE]
       app-connect status [--config FILE]
       app-connect claim [status|unclaim] [flags] [QR codes…]
       app-connect selftest
       app-connect version

Commands:
  run           forward the gateway's LoRaWAN events (the default)
  check-config  validate the configuration file and exit
  status        print the running instance's status (from admin.listen)
  claim         claim devices on their Join Server (TR005 QR codes, CSV, flags);
                app-connect claim -h lists its flags
  selftest      exercise the SQLite database in a temporary directory
  version       print the version
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == "claim" { // parses its own flags
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return runClaim(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("app-connect "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "configuration file (YAML); absent: gateway defaults")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "app-connect: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "app-connect %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "selftest":
		return selftest(stdout, stderr)
	case "check-config":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		if err := checkJoinConfig(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		if err := checkClaimConfig(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "configuration OK\n")
		return 0
	case "status":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return printStatus(ctx, cfg.Admin.Listen, stdout, stderr)
	case "run":
		return runDaemon(*cfgPath, stderr)
	default:
		fmt.Fprintf(stderr, "app-connect: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

// runDaemon is the run command: logger, status file, signals, run.
func runDaemon(cfgPath string, stderr io.Writer) int {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logCfg := cfg.Log
	if logCfg.Level == "" || logCfg.Destination == "" || logCfg.File == "" {
		if d, ok := mpowerLogSettings(ctx, cfg.MPower); ok {
			logCfg = applyMPowerLog(logCfg, d)
		}
	}
	log, closeLog, err := newLogger(logCfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "app-connect: %v\n", err)
		return 1
	}
	defer closeLog()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				if _, err := reload(cfgPath, log); err != nil {
					log.Error("reload: configuration not applied", "err", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	sf := startStatusFile(ctx, statusFilePath(cfg), log)
	err = run(withStatusFile(ctx, sf), cfg, log)
	sf.Stop()
	if err != nil {
		log.Error("app-connect stopped", "err", err)
		return 1
	}
	return 0
}

// reload re-reads the YAML file (SIGHUP) and applies what can change live:
// the log level. A level left unset keeps the current one (mPower's). It
// returns the new configuration; an invalid file changes nothing.
func reload(cfgPath string, log *slog.Logger) (config.Config, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return cfg, fmt.Errorf("reload: %w", err)
	}
	if lv := levelVarOf(log); lv != nil && cfg.Log.Level != "" {
		l, err := parseLevel(cfg.Log.Level)
		if err != nil {
			return cfg, fmt.Errorf("reload: %w", err)
		}
		lv.Set(l)
	}
	log.Info("configuration reloaded", "config", cfgPath, "log_level", cfg.Log.EffectiveLevel())
	return cfg, nil
}

// mpowerLogSettings reads mPower's defaultApp.log, giving up after a few
// seconds: at boot mPower may not answer yet, and logging cannot wait.
func mpowerLogSettings(ctx context.Context, m config.MPower) (config.AppLog, bool) {
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

// statusFileKey carries the status file from runDaemon to run.
type statusFileKey struct{}

func withStatusFile(ctx context.Context, sf *statusFile) context.Context {
	return context.WithValue(ctx, statusFileKey{}, sf)
}

// statusFileOf is the status file runDaemon started (nil when run is called
// directly, as tests do; every statusFile method accepts nil).
func statusFileOf(ctx context.Context) *statusFile {
	sf, _ := ctx.Value(statusFileKey{}).(*statusFile)
	return sf
}

func selftest(stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "app-connect-selftest-")
	if err != nil {
		fmt.Fprintf(stderr, "selftest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := cache.SelfTest(context.Background(), filepath.Join(dir, "selftest.db")); err != nil {
		fmt.Fprintf(stderr, "selftest: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "selftest: sqlite %s ok\n", cache.SQLiteVersion())
	return 0
}
