// Package simgw starts a simulated gateway's peers for end-to-end tests (a
// test helper package, like internal/testpeer, which it builds on).
package simgw

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// Gateway is a simulated Conduit around the code under test: a real local
// Mosquitto, the simulator's remote HTTP sink (under /tenant) and mPower API,
// a fleet of devices, the mts-io sysfs files, and an app-connect
// configuration pointing at all of them (no admin endpoint, short retries).
// Everything stops when the test ends.
type Gateway struct {
	Broker *testpeer.Mosquitto
	MPower *sim.MPower
	Sink   *sim.Sink
	Fleet  *sim.Fleet
	Dir    string
	Config config.Config
}

// Start starts the peers of a gateway with the given number of
// devices and gateway UUID.
func Start(t *testing.T, devices int, uuid string, bo testpeer.MosquittoOptions) *Gateway {
	t.Helper()
	g := &Gateway{Dir: t.TempDir()}
	g.Broker = testpeer.StartMosquitto(t, bo)
	g.Sink = sim.NewSink("/tenant")
	sinkSrv := httptest.NewServer(g.Sink)
	t.Cleanup(sinkSrv.Close)
	g.Fleet = sim.NewFleet(devices, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 1)
	g.MPower = sim.NewMPower()
	g.MPower.SetDefaultApp(sim.DefaultApp(sinkSrv.URL + "/tenant"))
	g.MPower.SetLoraNetwork(sim.LoraNetwork("00-80-00-00-d0-00-01-ff", "127.0.0.1", g.Broker.Port))
	mpSrv := httptest.NewServer(g.MPower)
	t.Cleanup(mpSrv.Close)
	sysfs := filepath.Join(g.Dir, "mts-io")
	if err := sim.WriteMtsIO(sysfs, uuid, "19186550"); err != nil {
		t.Fatal(err)
	}
	g.Config = config.Default()
	g.Config.LNS.Broker = g.Broker.URL()
	g.Config.MPower.API = mpSrv.URL
	g.Config.Gateway.SysfsRoot = sysfs
	g.Config.Storage.Database = filepath.Join(g.Dir, "app-connect.db")
	g.Config.Admin.Listen = ""
	g.Config.Delivery.RetryMin = 50 * time.Millisecond
	g.Config.Delivery.RetryMax = 400 * time.Millisecond
	g.Config.Delivery.HTTPTimeout = 5 * time.Second
	return g
}
