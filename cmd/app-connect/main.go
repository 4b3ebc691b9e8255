// Command app-connect is the default LoRaWAN application of MultiTech Conduit
// gateways: it forwards the embedded network server's events to the
// customer's cloud durably, in order, and relays downlinks back.
//
// This package is wiring: flags, subcommands, construction in order and the
// shutdown sequence. The operator surface lives in internal/admin, logging in
// internal/logging, the claim command in internal/claimcli.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/cli"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/internal/settings"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// version is stamped at build time with -ldflags "-X main.version=$(git describe)".
var version = "dev"

const usage = `usage: app-connect [run] [--config FILE]
       app-connect check-config [--config FILE] [--status-file FILE] [--skip-mpower]
       app-connect status [--config FILE] [--json] [--watch]
       app-connect claim [status|unclaim] [flags] [QR codes…]
       app-connect selftest
       app-connect version
       app-connect help [COMMAND]

Commands:
  run           forward the gateway's LoRaWAN events (the default)
  check-config  validate the configuration file (and mPower's Default App
                settings when mPower answers) and exit
  status        print the running instance's status (from admin.listen);
                --watch redraws it every 2 s, --json prints /status as it is
  claim         claim devices on their Join Server (TR005 QR codes, CSV, flags);
                app-connect claim --help lists its flags
  selftest      exercise the SQLite database in a temporary directory
  version       print the version (also --version)
  help          print this text (also --help); help COMMAND lists its flags
`

// customAppDir is where app-manager installs the custom app on a gateway.
const customAppDir = "/var/config/app/app-connect"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			if args[0] == "help" && len(args) > 1 { // help COMMAND: that command's --help
				return realMain([]string{args[1], "--help"}, stdout, stderr)
			}
			fmt.Fprint(stdout, usage)
			return 0
		case "-version", "--version":
			args[0] = "version"
		}
		if len(args[0]) > 0 && args[0][0] != '-' {
			cmd, args = args[0], args[1:]
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "claim": // parses its own flags
		return runClaim(ctx, args, stdout, stderr)
	case "run", "check-config", "status", "version", "selftest":
	default:
		fmt.Fprintf(stderr, "app-connect: unknown command %q (see app-connect --help)\n", cmd)
		return 2
	}
	fs := cli.NewFlagSet("app-connect "+cmd, usage, stdout, stderr)
	var cfgPath, statusFile *string
	var jsonOut, watch, skipMPower *bool
	switch cmd {
	case "run", "status":
		cfgPath = fs.String("config", "", "configuration `file` (YAML); absent: gateway defaults")
	case "check-config":
		cfgPath = fs.String("config", "", "configuration `file` (YAML); absent: the custom app's app-connect.yml")
		statusFile = fs.String("status-file", "", "on a refusal, write the reason into this status.json `file` (Start does)")
		skipMPower = fs.Bool("skip-mpower", false, "do not check mPower's Default App settings (Start does not: a wrong one must not stop queueing)")
	}
	if cmd == "status" {
		jsonOut = fs.Bool("json", false, "print /status as JSON")
		watch = fs.Bool("watch", false, "redraw every 2 s until interrupted")
	}
	if code := cli.Parse(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "app-connect %s: unexpected argument %q (see app-connect --help)\n", cmd, fs.Arg(0))
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "app-connect %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "selftest":
		return selftest(stdout, stderr)
	case "check-config":
		return checkConfig(ctx, *cfgPath, *statusFile, !*skipMPower, stdout, stderr)
	case "status":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		return printStatus(ctx, cfg.Admin.Listen, statusOptions{json: *jsonOut, watch: *watch, every: 2 * time.Second}, stdout, stderr)
	}
	return runDaemon(ctx, *cfgPath, stderr)
}

// runDaemon is the run command: logger, status state and file, signals, run.
// ctx is the root of the one context tree: SIGTERM or SIGINT ends it.
func runDaemon(ctx context.Context, cfgPath string, stderr io.Writer) int {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	// status.json and the admin endpoint first: everything after them can
	// wait or fail, and shows there. Their lines go to stderr until the
	// logger exists (it needs mPower's log settings).
	early := logging.NewForwarder(slog.NewTextHandler(stderr, nil))
	st := admin.NewState(version, nil)
	sf := admin.StartStatusFile(ctx, admin.StatusFilePath(cfg), admin.StatusFileInterval, st, slog.New(early))
	defer sf.Stop()
	d := &daemon{log: slog.New(early), state: st, statusFile: sf, procRoot: "/proc"}
	if err := d.serveAdmin(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "app-connect: %v\n", err)
		return 1
	}
	defer d.stopAdmin()

	logCfg := cfg.Log
	if logCfg.Level == "" || logCfg.Destination == "" || logCfg.File == "" {
		d.step("reading mPower's log settings")
		if ds, ok := mpowerLogSettings(ctx, cfg.MPower); ok {
			logCfg = logging.ApplyMPower(logCfg, ds)
		}
	}
	log, err := logging.New(logCfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "app-connect: %v\n", err)
		return 1
	}
	defer log.Close()
	early.Set(log.Handler())
	st.SetErrors(log.Errors)
	d.log, d.level = log.Logger, log.Level

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cur := cfg // what runs: the start-up configuration with the settings applied live since
	go func() {
		for {
			select {
			case <-hup:
				next, err := reload(cfgPath, cur, log.Logger, log.Level, func(o *config.DefaultApp) bool { return d.setDefaultApp(ctx, o) })
				if err != nil {
					log.Error("reload: configuration not applied", "err", err)
					continue
				}
				cur = next
			case <-ctx.Done():
				return
			}
		}
	}()

	err = d.run(ctx, cfg)
	sf.Stop() // "stopped" while the logger is open
	if err != nil {
		log.Error("app-connect stopped", "err", err)
		return 1
	}
	return 0
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

// configCandidates are the files check-config looks at without --config, in
// the order the custom app's Start script uses them.
func configCandidates() []string {
	var out []string
	if d := os.Getenv("APP_DIR"); d != "" {
		out = append(out, filepath.Join(d, "app-connect.yml"))
	}
	if d := os.Getenv("CONFIG_DIR"); d != "" {
		out = append(out, filepath.Join(d, "app-connect.yml"))
	}
	return append(out, filepath.Join(customAppDir, "app-connect.yml"), filepath.Join(customAppDir, "config", "app-connect.yml"))
}

// checkConfig is check-config: it names the file it checked (or says that
// none was), checks the join and claiming repositories it points to and, when
// mPower answers, mPower's current Default App settings. With statusFile, a
// refusal is written there for mPower's app list.
func checkConfig(ctx context.Context, path, statusFile string, askMPower bool, stdout, stderr io.Writer) int {
	if path == "" {
		cands := configCandidates()
		for _, c := range cands {
			if _, err := os.Stat(c); err == nil {
				path = c
				break
			}
		}
		if path == "" {
			fmt.Fprintf(stdout, "no configuration file checked: none given with --config and none at %s\n", strings.Join(cands, ", "))
		}
	}
	refuse := func(err error) int {
		fmt.Fprintf(stderr, "%v\n", err)
		if statusFile != "" {
			if werr := admin.WriteRefusal(statusFile, err.Error()); werr != nil {
				fmt.Fprintf(stderr, "app-connect check-config: %v\n", werr)
			}
		}
		return 1
	}
	cfg, err := config.Load(path)
	if err != nil {
		return refuse(err)
	}
	if err := checkJoinConfig(cfg, stdout); err != nil {
		return refuse(err)
	}
	if err := checkClaimConfig(cfg, stdout); err != nil {
		return refuse(err)
	}
	if cfg.DefaultAppOverride == nil && askMPower {
		if err := checkMPowerDefaultApp(ctx, cfg.MPower, stdout); err != nil {
			return refuse(err)
		}
	}
	if path == "" {
		fmt.Fprintln(stdout, "built-in defaults: configuration OK")
	} else {
		fmt.Fprintf(stdout, "%s: configuration OK\n", path)
	}
	return 0
}

// checkMPowerDefaultApp validates mPower's current Default App settings (the
// ones app-connect will use, as app-connect.yml has no default_app block). It
// says so when mPower could not be asked; that is not an error.
func checkMPowerDefaultApp(ctx context.Context, m config.MPower, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, min(3*time.Second, m.Timeout))
	defer cancel()
	raw, err := lnsbridge.NewMPower(m.API, m.Timeout, slog.New(slog.DiscardHandler)).Get(ctx, lnsbridge.PathDefaultApp)
	if err != nil {
		fmt.Fprintf(stdout, "mPower Default App settings not checked: mPower did not answer at %s (%v)\n", m.API, err)
		return nil
	}
	d, err := config.ParseDefaultApp(raw)
	if err != nil {
		return fmt.Errorf("mPower %w", err) // "mPower defaultApp: …"
	}
	if !d.Enabled {
		fmt.Fprintln(stdout, "mPower Default App: disabled")
		return nil
	}
	e, err := config.ParseEndpoint(d.URL)
	if err != nil {
		return fmt.Errorf("mPower defaultApp: %w", err)
	}
	fmt.Fprintf(stdout, "mPower Default App: enabled, API %s, %s://%s\n", d.APIVersion, e.Scheme, e.Address())
	return nil
}

// reload re-reads the YAML file (SIGHUP) and applies what can change live:
// the log level (a level left unset keeps the current one, mPower's) and the
// default_app block (through setDefault, false while the applications are
// not built yet). Every other setting that differs from the running one (old)
// is logged by name as needing a restart. It returns the running
// configuration: old with what was applied. An invalid file changes nothing.
func reload(cfgPath string, old config.Config, log *slog.Logger, level *slog.LevelVar, setDefault func(*config.DefaultApp) bool) (config.Config, error) {
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
	restart := settings.Changed(running, cfg)
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

func selftest(stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "app-connect-selftest-")
	if err != nil {
		fmt.Fprintf(stderr, "app-connect selftest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := cache.SelfTest(context.Background(), filepath.Join(dir, "selftest.db")); err != nil {
		fmt.Fprintf(stderr, "app-connect selftest: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "selftest: sqlite %s ok\n", cache.SQLiteVersion())
	return 0
}
