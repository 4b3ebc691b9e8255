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

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// version is stamped at build time with -ldflags "-X main.version=$(git describe)".
var version = "dev"

const usage = `usage: app-connect [run] [--config FILE]
       app-connect check-config [--config FILE]
       app-connect claim [status|unclaim] [flags] [QR codes…]
       app-connect selftest
       app-connect version

Commands:
  run           forward the gateway's LoRaWAN events (the default)
  check-config  validate the configuration file and exit
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
	case "run":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		log := newLogger(cfg.Log.Level, stderr)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := run(ctx, cfg, log); err != nil {
			log.Error("app-connect stopped", "err", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "app-connect: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
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
