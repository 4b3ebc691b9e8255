package forward

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// backhaulScanBatch is how many rows one outbox read of the outage scan takes.
const backhaulScanBatch = 500

// outageWait waits d while the remote broker is unreachable. With
// backhaulDetect on, every uplink queued meanwhile may trigger a local
// downlink telling its device that the cloud is unreachable: at most one per
// device per timeout, the configured hex payload sent as those bytes
// (conduit.md §8.3, §15 #3).
func (t *mqttTransport) outageWait(ctx context.Context, d time.Duration) bool {
	if !t.backhaul.Enabled || t.down.sink == nil {
		return sleep(ctx, d)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		t.backhaulScan(ctx)
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		case <-t.feed.Wake(): // new rows: the delivery loop reads the outbox again anyway after reconnecting
		}
	}
}

// backhaulScan reads the rows queued since the last scan (or since delivery
// last read the outbox) and schedules the backhaul downlinks.
func (t *mqttTransport) backhaulScan(ctx context.Context) {
	payload, err := hex.DecodeString(strings.TrimSpace(t.backhaul.Payload))
	if err != nil {
		if !t.backhaulBad {
			t.log.Error("backhaulDetect payload is not hex; no backhaul downlinks", "err", err)
			t.backhaulBad = true
		}
		return
	}
	body, _ := json.Marshal(struct {
		Port int    `json:"port"`
		Data string `json:"data"`
	}{t.backhaul.Port, base64.StdEncoding.EncodeToString(payload)})
	timeout := time.Duration(t.backhaul.Timeout) * time.Second
	t.backhaulCursor = max(t.backhaulCursor, t.seen)
	now := time.Now()
	for dev, at := range t.backhaulLast {
		if now.Sub(at) >= timeout {
			delete(t.backhaulLast, dev)
		}
	}
	for {
		rows, err := t.queue.Peek(ctx, t.vars.app, t.backhaulCursor, backhaulScanBatch)
		if err != nil || len(rows) == 0 {
			return
		}
		for _, r := range rows {
			t.backhaulCursor = r.ID
			if rowKind(r) != lnsbridge.KindUp {
				continue
			}
			dev := r.DevEUI.String()
			if _, recent := t.backhaulLast[dev]; recent {
				continue
			}
			t.backhaulLast[dev] = now
			if err := t.down.sink.Publish(ctx, dev, body); err != nil {
				t.down.count("failed")
				t.log.Warn("backhaul downlink not published", "deveui", dev, "err", err)
				continue
			}
			t.down.count("sent")
			t.log.Info("remote broker unreachable: backhaul downlink sent", "deveui", dev, "port", t.backhaul.Port)
		}
		if len(rows) < backhaulScanBatch {
			return
		}
	}
}
