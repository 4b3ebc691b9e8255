package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

const fleetSize = 1000

// startExporter runs serve with opts and returns the /metrics URL.
func startExporter(t *testing.T, o options) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- serve(ctx, o, "", log, ready) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case addr := <-ready:
		return "http://" + addr + "/metrics"
	case err := <-done:
		t.Fatalf("exporter: %v", err)
	}
	return ""
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetric scrapes until the exposition contains line.
func waitMetric(t *testing.T, url, line string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := scrape(t, url)
		if strings.Contains(out, line+"\n") {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in 60 s; last scrape:\n%s", line, tail(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}

// publishFleet publishes the reports of gateways [from, to) as their
// app-connect would: QoS 1, retained; even gateways on the API 1.1 topic,
// odd ones on the API 1.0 topic (raw UUID).
func publishFleet(t *testing.T, c paho.Client, from, to int, at time.Time, seq uint64, skip int) {
	t.Helper()
	var toks []paho.Token
	for i := from; i < to; i++ {
		if i == skip {
			continue
		}
		uuid, body := sim.GatewayStatus(i, at, seq)
		topic := "lorawan/" + uuid + "/status"
		if i%2 == 1 {
			topic = "lorawan/ff-ff-ff-ff-ff-ff-ff-ff/" + strings.ReplaceAll(uuid, "-", "") + "/status"
		}
		toks = append(toks, c.Publish(topic, 1, true, body))
	}
	for _, tk := range toks {
		if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			t.Fatalf("publish: %v", tk.Error())
		}
	}
}

// TestFleetThroughMosquitto feeds the exporter with 1,000 simulated gateways
// through a real Mosquitto, as a shared-subscription group member: every
// gateway appears with its labels; one that stops reporting is marked stale,
// then expires; a gateway beyond -max-gateways is refused and counted, so
// memory stays bounded.
func TestFleetThroughMosquitto(t *testing.T) {
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	clk := newClock()
	url := startExporter(t, options{
		listen: "127.0.0.1:0", broker: m.URL(), clientID: "exporter-test", group: "fleet",
		stale: 5 * time.Minute, expire: 10 * time.Minute, maxGateways: fleetSize, maxApps: 16, now: clk.Now,
	})
	waitMetric(t, url, "appconnect_fleet_mqtt_connected 1")

	pub := paho.NewClient(paho.NewClientOptions().AddBroker(m.URL()).SetClientID("fleet-sim"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(250)
	publishFleet(t, pub, 0, fleetSize, clk.Now(), 1, -1)
	out := waitMetric(t, url, "appconnect_fleet_gateways 1000")
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[l] = true
	}
	for i := range fleetSize {
		uuid, _ := sim.GatewayStatus(i, clk.Now(), 1)
		for _, want := range []string{
			fmt.Sprintf(`appconnect_fleet_gateway_up{gateway="%s"} 1`, uuid),
			fmt.Sprintf(`appconnect_fleet_queue_rows{gateway="%s",app="ff-ff-ff-ff-ff-ff-ff-ff",name="default"} %d`, uuid, i%7),
			fmt.Sprintf(`appconnect_fleet_gateway_info{gateway="%s",serial="%08d",version="sim"} 1`, uuid, 19000000+i),
			fmt.Sprintf(`appconnect_fleet_join_requests_total{gateway="%s",result="Success"} %d`, uuid, i%5),
		} {
			if !lines[want] {
				t.Fatalf("gateway %d: no %s", i, want)
			}
		}
	}
	promtoolCheck(t, []byte(out))

	// Gateway 7 stops reporting; the others report again 6 minutes later.
	clk.Add(6 * time.Minute)
	publishFleet(t, pub, 0, fleetSize, clk.Now(), 2, 7)
	out = waitMetric(t, url, fmt.Sprintf(`appconnect_fleet_reports_total{source="mqtt"} %d`, 2*fleetSize-1))
	stale, _ := sim.GatewayStatus(7, clk.Now(), 1)
	other, _ := sim.GatewayStatus(8, clk.Now(), 1)
	for _, want := range []string{
		fmt.Sprintf(`appconnect_fleet_gateway_up{gateway="%s"} 0`, stale),
		fmt.Sprintf(`appconnect_fleet_gateway_up{gateway="%s"} 1`, other),
		"appconnect_fleet_gateways_stale 1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("after 6 minutes: no %s", want)
		}
	}

	// Beyond the cap: a 1,001st gateway is refused and counted.
	publishFleet(t, pub, fleetSize, fleetSize+1, clk.Now(), 1, -1)
	waitMetric(t, url, `appconnect_fleet_reports_refused_total{reason="capacity"} 1`)

	// 11 minutes after its last report, gateway 7 is forgotten; the others stay.
	clk.Add(5 * time.Minute)
	out = waitMetric(t, url, "appconnect_fleet_gateways 999")
	if strings.Contains(out, stale) || !strings.Contains(out, "appconnect_fleet_gateways_expired_total 1\n") {
		t.Errorf("gateway 7 not expired:\n%s", tail(out))
	}
}
