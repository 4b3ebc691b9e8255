package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// The whole program over MQTT: LNS events reach a remote Mosquitto on the
// API 1.1.1 topics, and a downlink published there reaches the local network
// server.
func TestMQTTApplicationEndToEnd(t *testing.T) {
	h := newHarness(t, 5)
	// The remote broker queues without limit for the test's subscriber: what
	// it would drop is not app-connect's loss.
	remoteBroker := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueued: ptr(0)})
	h.mpower.SetDefaultApp(sim.DefaultAppWith("mqtt://"+remoteBroker.Addr(), "1.1.1", "ff-ff-ff-ff-ff-ff-ff-ff",
		map[string]any{"requestOptions": map[string]any{"api": false, "lora": true, "log": false}}))
	h.withLoraQuery(sim.LoraQueryState{Devices: 5})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	remote, err := sim.NewMQTTRemote(ctx, remoteBroker.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	downs := h.watchLocalDownlinks()

	h.start()
	h.publish(ctx, 20)
	if err := remote.Sink.Wait(ctx, h.fleet.Expected()); err != nil {
		t.Fatalf("%v\n%s", err, h.logs.Tail(30))
	}
	s := remote.Sink.Stats()
	if s.Inits != 1 || s.Joined != 5 || s.Duplicates != 0 || s.OutOfOrder != 0 {
		t.Fatalf("remote saw %+v", s)
	}
	dashed := "029998e0-6156-cdd4-4523-264b523115c1"
	dev := h.fleet.Devices()[0]
	var sawUp bool
	for _, r := range remote.Sink.Recorded() {
		// mPower's sample pairs 1.1.1 with the v1.0 uplink template, which then
		// wins over the 1.1 topic (conduit.md §15 item 8).
		if r.Path == "lorawan/"+dev.AppEUI+"/"+dev.DevEUI+"/up" {
			sawUp = true
		}
	}
	if !sawUp {
		t.Fatal("no uplink on the template topic")
	}
	dl, _ := json.Marshal(map[string]any{"deveui": dev.DevEUI, "data": "AQID", "port": 2})
	if err := remote.Publish(ctx, "lorawan/"+dashed+"/down", dl, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the downlink on the local broker", 20*time.Second, func() bool {
		got := downs()
		return len(got) == 1 && got[0] == "lora/"+dev.DevEUI+"/down "+string(dl)
	})
	// A remote lora_req through the whole program: the stand-in answers, the reply carries the rid.
	if err := remote.Publish(ctx, "lorawan/"+dashed+"/lora_req", []byte(`{"command":"device count","rid":41}`), false); err != nil {
		t.Fatal(err)
	}
	if err := remote.Publish(ctx, "lorawan/"+dashed+"/lora_req", []byte(`{"command":"device count; reboot","rid":42}`), false); err != nil {
		t.Fatal(err)
	}
	var replies []string
	waitUntil(t, "two lora_res replies", 20*time.Second, func() bool {
		replies = replies[:0]
		for _, r := range remote.Sink.Recorded() {
			if r.Path == "lorawan/"+dashed+"/lora_res" {
				replies = append(replies, string(r.Body))
			}
		}
		return len(replies) == 2
	})
	if replies[0] != `{"result":{"count":5},"rid":41}` || !strings.Contains(replies[1], `"rid":42`) || !strings.Contains(replies[1], "command rejected") {
		t.Fatalf("replies %q", replies)
	}
	if strings.Contains(h.logs.String(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", h.logs.Tail(30))
	}
}
