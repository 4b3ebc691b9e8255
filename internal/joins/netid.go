package joins

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/joinclient"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// MPower reads one document of mPower's REST API (lnsbridge.MPower).
type MPower interface {
	Get(ctx context.Context, path string) (json.RawMessage, error)
}

// NetID returns the NetID join forwarding uses: join.net_id from
// app-connect.yml, else mPower loraNetwork's lora.netID (6 hex digits).
func NetID(j config.Join, mpowerNetID string) (string, error) {
	if j.NetID != "" {
		return j.NetID, nil
	}
	if _, err := joinclient.ParseNetID(mpowerNetID); err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork lora.netID %q is not a NetID: %w", mpowerNetID, err)
	}
	return mpowerNetID, nil
}

// NetIDFromMPower is NetID reading mPower's loraNetwork (one request) only
// when app-connect.yml leaves join.net_id empty.
func NetIDFromMPower(ctx context.Context, mp MPower, j config.Join) (string, error) {
	if j.NetID != "" {
		return j.NetID, nil
	}
	raw, err := mp.Get(ctx, lnsbridge.PathLoraNetwork)
	if err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork is unreadable: %w", err)
	}
	ln, err := config.ParseLoraNetwork(raw)
	if err != nil {
		return "", fmt.Errorf("join: join.net_id is empty and mPower loraNetwork is unreadable: %w", err)
	}
	return NetID(j, ln.Lora.NetID)
}
