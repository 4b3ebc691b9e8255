// Package configcheck is `app-connect check-config`: the configuration file
// validated as the program loads it (config), the join and claiming
// repositories it points to (internal/joins, internal/claimcli) and, when
// mPower answers, mPower's current Default App settings. A refusal can be
// written into status.json for mPower's app list.
package configcheck

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/claimcli"
	"github.com/lorawan-gateway/app-connect/internal/joins"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// customAppDir is where app-manager installs the custom app on a gateway.
const customAppDir = "/var/config/app/app-connect"

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

// Options are check-config's flags.
type Options struct {
	Path       string // --config; "": the first of the custom app's files that exists
	StatusFile string // --status-file: a refusal is written there for mPower's app list
	AskMPower  bool   // check mPower's Default App settings when mPower answers
}

// Run is check-config: it names the file it checked (or says that none
// was), checks the join and claiming repositories it points to and, when
// asked and mPower answers, mPower's current Default App settings. It
// returns the exit code: 0 valid, 1 refused (the reason on stderr).
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) int {
	path, statusFile := o.Path, o.StatusFile
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
	if err := joins.CheckConfig(cfg.Join, stdout); err != nil {
		return refuse(err)
	}
	if err := claimcli.CheckConfig(cfg, stdout); err != nil {
		return refuse(err)
	}
	if cfg.DefaultAppOverride == nil && o.AskMPower {
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
