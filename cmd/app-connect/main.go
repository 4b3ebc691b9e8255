// Command app-connect is the default LoRaWAN application of MultiTech Conduit
// gateways: it forwards the embedded network server's events to the
// customer's cloud durably, in order, and relays downlinks back.
//
// This package is wiring: flags, subcommands, construction in order, signals
// and the shutdown sequence. The operator surface (status, metrics, start-up
// progress and its retried steps, status reports, the status command) lives
// in internal/admin, logging in internal/logging, join forwarding in
// internal/joins, check-config in internal/configcheck, the SIGHUP reload in
// internal/settings, the claim command in internal/claimcli.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/cli"
	"github.com/lorawan-gateway/app-connect/internal/configcheck"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/internal/settings"
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
		return configcheck.Run(ctx, configcheck.Options{Path: *cfgPath, StatusFile: *statusFile, AskMPower: !*skipMPower}, stdout, stderr)
	case "status":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		return admin.PrintStatus(ctx, cfg.Admin.Listen, admin.PrintOptions{JSON: *jsonOut, Watch: *watch, Every: 2 * time.Second}, stdout, stderr)
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
	setGCPercent(cfg.Memory, os.Getenv)
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
		d.Step("reading mPower's log settings")
		if ds, ok := logging.ReadMPower(ctx, cfg.MPower); ok {
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
				next, err := settings.Reload(cfgPath, cur, log.Logger, log.Level, func(o *config.DefaultApp) bool { return d.setDefaultApp(ctx, o) })
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

// setGCPercent applies memory.gc_percent, unless the GOGC environment
// variable is set (the Go runtime has applied it then). It returns the
// setting in force (-1: off, only through GOGC).
func setGCPercent(m config.Memory, getenv func(string) string) int {
	if getenv("GOGC") != "" {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(m.GCPercent)
	return m.GCPercent
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
