package main

import (
	"context"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// The whole program with status_report on, over MQTT API 1.1.1: the
// simulator's remote role counts the reports, which arrive on the exact topic
// and carry the gateway's identity and the application's counters.
func TestStatusReportEndToEnd(t *testing.T) {
	h := newHarness(t, 3)
	remoteBroker := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	h.mpower.SetDefaultApp(sim.DefaultAppWith("mqtt://"+remoteBroker.Addr(), "1.1.1", "ff-ff-ff-ff-ff-ff-ff-ff", nil))
	h.cfg.StatusReport = config.StatusReport{Enabled: true, Interval: time.Second, Applications: []string{config.StatusReportDefault}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	remote, err := sim.NewMQTTRemote(ctx, remoteBroker.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	h.start()
	h.publish(ctx, 6)
	if err := remote.Sink.Wait(ctx, h.fleet.Expected()); err != nil {
		t.Fatalf("%v\n%s", err, h.logs.Tail(30))
	}
	from := remote.Sink.Stats().Status
	waitUntil(t, "a status report after the uplinks", 20*time.Second, func() bool { return remote.Sink.Stats().Status > from })
	const dashed = "029998e0-6156-cdd4-4523-264b523115c1"
	var last []byte
	for _, r := range remote.Sink.Recorded() {
		if r.Path == "lorawan/"+dashed+"/status" {
			last = r.Body
		}
	}
	if last == nil {
		t.Fatal("no report on lorawan/<GW-UUID>/status")
	}
	rep, err := statusreport.Decode(last)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Gateway.UUID != dashed || len(rep.Applications) != 1 || rep.Applications[0].Forwarded < uint64(len(h.fleet.Devices())*6) ||
		!rep.LocalBroker.Connected || rep.Database.SizeBytes == 0 {
		t.Fatalf("report %s", last)
	}
}
