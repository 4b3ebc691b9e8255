package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/claimcli"
	"github.com/lorawan-gateway/app-connect/internal/joins"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// claimRow is one line of the claim command's results.
type claimRow = claimcli.Row

// claimCommand is `app-connect claim` wired to this program: stdin, the
// reader of the claiming repository (tests keep certificates in memory) and
// the home NetID from mPower, as the join proxy reads it.
type claimCommand struct {
	stdin    io.Reader
	readFile func(string) ([]byte, error) // nil: os.ReadFile
}

// runClaim is `app-connect claim`.
func runClaim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return claimCommand{stdin: os.Stdin}.run(ctx, args, stdout, stderr)
}

func (c claimCommand) run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return claimcli.Command{
		Stdin: c.stdin, ReadFile: c.readFile, Version: version,
		HomeNetID: func(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error) {
			return joins.NetIDFromMPower(ctx, lnsbridge.NewMPower(cfg.MPower.API, 3*time.Second, log), cfg.Join)
		},
	}.Run(ctx, args, stdout, stderr)
}
