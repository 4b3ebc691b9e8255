package joins

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/cli"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// CheckConfig is check-config's part for join forwarding: when an interop
// repository is configured it loads it strictly with the KEK file and the
// default client certificate (no network I/O) and prints the routing table.
// Loader warnings go to stdout too. It returns the first problem found.
func CheckConfig(j config.Join, stdout io.Writer) error {
	if j.InteropDir == "" {
		if j.Enabled {
			return errors.New("join: join.enabled is true but join.interop_dir is not set")
		}
		return nil
	}
	netID := j.NetID
	if netID == "" {
		// Taken from mPower at run time; any valid NetID checks the rest.
		j.NetID = "000000"
	}
	svc, err := joinclient.FromConfig(j, joinclient.Options{
		Logger: cli.NewLogger(stdout, slog.LevelWarn), // "warning: …" lines, not log records
	})
	if err != nil {
		return err // joinclient's errors carry their own prefix: one per line
	}
	defer svc.Router.Close()
	state := "disabled"
	if j.Enabled {
		state = "enabled, proxy on " + j.ProxyListen
	}
	if netID == "" {
		netID = "from mPower loraNetwork lora.netID"
	}
	fmt.Fprintf(stdout, "join forwarding: %s, budget %s, net_id %s\n", state, j.Budget, netID)
	fmt.Fprintf(stdout, "interop repository %s: %d Join Servers, %d routes\n", j.InteropDir, len(svc.Repository.JoinServers), len(svc.Repository.Entries))
	if err := joinclient.WriteRoutingTable(stdout, svc.Repository); err != nil {
		return fmt.Errorf("join: routing table: %w", err)
	}
	return nil
}
