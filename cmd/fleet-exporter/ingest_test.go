package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// TestHTTPIngest: the status POSTs of app-connect's HTTP applications, under
// any URL prefix, with the GW-UUID of the path checked against the body.
func TestHTTPIngest(t *testing.T) {
	clk := newClock()
	metrics := startExporter(t, options{listen: "127.0.0.1:0", ingest: true, stale: time.Minute, expire: time.Hour, maxGateways: 10, maxApps: 16, now: clk.Now})
	base := strings.TrimSuffix(metrics, "/metrics")
	uuid, body := sim.GatewayStatus(4, clk.Now(), 1)
	other, _ := sim.GatewayStatus(5, clk.Now(), 1)
	tests := []struct {
		name, path string
		body       []byte
		want       int
	}{
		{"report", "/tenant/a/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/" + uuid + "/status", body, http.StatusNoContent},
		{"path names another gateway", "/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/" + other + "/status", body, http.StatusBadRequest},
		{"not a report", "/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/" + uuid + "/status", []byte(`{"deveui":"x"}`), http.StatusBadRequest},
		{"an uplink path", "/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/00-11-22-33-44-55-66-77/up", body, http.StatusNotFound},
		{"too large", "/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/" + uuid + "/status", bytes.Repeat([]byte(" "), 70<<10), http.StatusBadRequest},
	}
	for _, tc := range tests {
		resp, err := http.Post(base+tc.path, "application/json", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	waitMetric(t, metrics, fmt.Sprintf(`appconnect_fleet_gateway_up{gateway="%s"} 1`, uuid))
	out := waitMetric(t, metrics, `appconnect_fleet_reports_total{source="http"} 1`)
	if !strings.Contains(out, `appconnect_fleet_reports_refused_total{reason="invalid"} 2`+"\n") ||
		!strings.Contains(out, `appconnect_fleet_reports_refused_total{reason="mismatch"} 1`+"\n") {
		t.Errorf("refusals not counted:\n%s", tail(out))
	}
}

// TestMQTTSClientCertificate: the exporter subscribes over TLS with a client
// certificate to a Mosquitto that requires one.
func TestMQTTSClientCertificate(t *testing.T) {
	p := jstest.NewPKI(t)
	srvCert, srvKey := p.Issue(t, "broker")
	port, lines := testpeer.TLSLines(t, testpeer.TLSListener{CAPEM: string(p.CAPEM), CertPEM: string(srvCert), KeyPEM: string(srvKey), RequireCertificate: true})
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{Extra: lines})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cert, key := p.Issue(t, "fleet-exporter")
	clk := newClock()
	metrics := startExporter(t, options{
		listen: "127.0.0.1:0", broker: fmt.Sprintf("mqtts://127.0.0.1:%d", port), clientID: "exporter-tls",
		ca: write("ca.pem", p.CAPEM), cert: write("cert.pem", cert), key: write("key.pem", key),
		stale: time.Minute, expire: time.Hour, maxGateways: 10, maxApps: 16, now: clk.Now,
	})
	waitMetric(t, metrics, "appconnect_fleet_mqtt_connected 1")
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(m.URL()).SetClientID("gw-plain"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(250)
	publishFleet(t, pub, 0, 3, clk.Now(), 1, -1)
	waitMetric(t, metrics, "appconnect_fleet_gateways 3")
}
