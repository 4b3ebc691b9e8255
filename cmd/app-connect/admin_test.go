package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

func httpGet(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// A known traffic pattern: 10 devices, each a joined event and 20 uplinks,
// one uplink refused for good. /status and /metrics count exactly that.
func TestAdminEndpointsCountTheTraffic(t *testing.T) {
	h := newHarness(t, 10)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	bad := h.fleet.Devices()[3].DevEUI
	h.sink.FailUplink(bad, 5, http.StatusBadRequest)
	h.start()
	base := "http://" + h.cfg.Admin.Listen
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 20)
	const total, refused = 10 + 10*20, 1
	d := waitFor(t, time.Minute, "every event forwarded or dead-lettered", func() (statusDoc, bool) {
		d, err := fetchStatus(ctx, h.cfg.Admin.Listen)
		ok := err == nil && len(d.Applications) == 1 &&
			d.Applications[0].Forwarded+uint64(d.Applications[0].DeadLettered) == total
		return d, ok
	})
	a := d.Applications[0]
	if a.Queued != total || a.Forwarded != total-refused || a.DeadLettered != refused || a.Dropped != 0 || a.QueueRows != 0 || a.QueueBytes != 0 {
		t.Fatalf("application status %+v", a)
	}
	if a.EUI != config.CatchAll || a.Name != "default" || a.State != "up" {
		t.Fatalf("application %+v", a)
	}
	if d.Local.Received != total || !d.Local.Connected || d.Intake.Received != total {
		t.Fatalf("local %+v intake %+v", d.Local, d.Intake)
	}
	if d.Version != version || d.UptimeSeconds < 0 || d.Started.IsZero() || d.Joins == nil || d.Downlinks == nil {
		t.Fatalf("status %+v", d)
	}

	code, ctype, body := httpGet(t, base+"/healthz")
	if code != 200 || ctype != "text/plain" || body != "ok\n" {
		t.Fatalf("/healthz %d %q %q", code, ctype, body)
	}
	code, ctype, body = httpGet(t, base+"/status")
	var raw map[string]any
	if code != 200 || ctype != "application/json" || json.Unmarshal([]byte(body), &raw) != nil {
		t.Fatalf("/status %d %q %s", code, ctype, body)
	}
	for _, k := range []string{"version", "pid", "uptime", "local", "intake", "applications", "joins", "downlinks", "requests", "delivery_latency", "join_latency", "last_errors"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status has no %q", k)
		}
	}
	code, ctype, body = httpGet(t, base+"/metrics")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("/metrics %d %q", code, ctype)
	}
	app := fmt.Sprintf(`{app=%q,name="default"}`, config.CatchAll)
	for _, line := range []string{
		"appconnect_local_received_total 210",
		"appconnect_local_connected 1",
		"appconnect_uplinks_received_total" + app + " 210",
		"appconnect_uplinks_forwarded_total" + app + " 209",
		"appconnect_uplinks_dead_lettered_total" + app + " 1",
		"appconnect_uplinks_dropped_total" + app + " 0",
		"appconnect_queue_rows" + app + " 0",
		"appconnect_queue_bytes" + app + " 0",
		"appconnect_application_up" + app + " 1",
		"# TYPE appconnect_downlinks_total counter",
		"# TYPE appconnect_join_requests_total counter",
		"# TYPE appconnect_delivery_latency_seconds histogram",
		`appconnect_delivery_latency_seconds_bucket{le="+Inf"} `,
		"# TYPE appconnect_join_latency_seconds histogram",
	} {
		if !strings.Contains(body, line+"\n") && !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	checkExposition(t, body)

	// app-connect status prints the same figures for a person.
	var out, errb bytes.Buffer
	if code := printStatus(ctx, h.cfg.Admin.Listen, &out, &errb); code != 0 {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	for _, s := range []string{"local broker: connected, 210 events received", "application default (" + config.CatchAll + "): up",
		"received 210, forwarded 209, queued now 0 rows / 0 bytes, dropped 0, dead-lettered 1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("status output lacks %q:\n%s", s, out.String())
		}
	}
}

// checkExposition checks the Prometheus text format line by line: every
// sample belongs to a declared metric, and names and values parse.
func checkExposition(t *testing.T, body string) {
	t.Helper()
	typed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("bad TYPE line %q", line)
			}
			typed[f[2]] = f[3]
		case strings.HasPrefix(line, "# HELP "):
		default:
			name, rest, _ := strings.Cut(line, " ")
			if i := strings.IndexByte(name, '{'); i >= 0 {
				if !strings.HasSuffix(name, "}") {
					t.Fatalf("bad labels in %q", line)
				}
				name = name[:i]
			}
			base := name
			for _, sfx := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, sfx); ok && typed[b] == "histogram" {
					base = b
				}
			}
			if typed[base] == "" {
				t.Fatalf("sample %q without TYPE", line)
			}
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("value of %q: %v", line, err)
			}
		}
	}
}

func TestAdminRefusesNonLoopback(t *testing.T) {
	st := &state{started: time.Now()}
	if _, err := startAdmin("0.0.0.0:0", st, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("admin listened on every interface")
	}
	stop, err := startAdmin("", st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if st.downlinks == nil || st.deliveryLatency == nil || st.joinLatency == nil || st.requests == nil {
		t.Fatal("counters not created")
	}
}

func TestAdminCountersAndHistograms(t *testing.T) {
	log, closeLog, err := newLogger(config.Log{Level: "info", Destination: config.LogStderr, MaxBytes: 1 << 20, SyslogIdent: "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	st := &state{started: time.Now().Add(-90 * time.Second), joins: newJoinCounts()}
	st.ensure(log)
	st.downlinks.Add("sent")
	st.downlinks.Add("sent")
	st.downlinks.Add("refused")
	st.requests.Add("denied")
	st.joins.add("remote/js", "Success")
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second, time.Minute} {
		st.deliveryLatency.Observe(d)
	}
	st.joinLatency.Observe(300 * time.Millisecond)
	for i := range 12 {
		log.Error("remote unreachable", "err", fmt.Errorf("dial %d", i), "password", "hunter2")
	}
	srv := httptest.NewServer(adminHandler(st))
	defer srv.Close()
	_, _, body := httpGet(t, srv.URL+"/metrics")
	for _, line := range []string{
		`appconnect_downlinks_total{outcome="refused"} 1`,
		`appconnect_downlinks_total{outcome="sent"} 2`,
		`appconnect_remote_requests_total{outcome="denied"} 1`,
		`appconnect_join_requests_total{js="remote/js",result="Success"} 1`,
		`appconnect_delivery_latency_seconds_bucket{le="0.005"} 1`,
		`appconnect_delivery_latency_seconds_bucket{le="0.05"} 3`,
		`appconnect_delivery_latency_seconds_bucket{le="2.5"} 4`,
		`appconnect_delivery_latency_seconds_bucket{le="30"} 4`,
		`appconnect_delivery_latency_seconds_bucket{le="+Inf"} 5`,
		`appconnect_delivery_latency_seconds_count 5`,
		`appconnect_delivery_latency_seconds_sum 62.083`,
		`appconnect_join_latency_seconds_bucket{le="0.25"} 0`,
		`appconnect_join_latency_seconds_bucket{le="0.5"} 1`,
		`appconnect_errors_logged_total 12`,
		`appconnect_uptime_seconds 90`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	checkExposition(t, body)
	d := st.status()
	if len(d.LastErrors) != errorRingSize || d.ErrorsLogged != 12 || d.LastErrors[0].Err != "dial 2" || d.LastErrors[9].Err != "dial 11" {
		t.Fatalf("last errors %+v (%d)", d.LastErrors, d.ErrorsLogged)
	}
	var out bytes.Buffer
	writeStatusText(&out, d)
	for _, s := range []string{"downlinks: refused 1, sent 2", "joins via remote/js: Success 1", "last errors (12 since start)", "remote unreachable: dial 11"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("status text lacks %q:\n%s", s, out.String())
		}
	}
}

func TestStatusCommandWithoutInstance(t *testing.T) {
	var out, errb bytes.Buffer
	cfg := writeTempConfig(t, "admin:\n  listen: "+freeLoopbackAddr(t)+"\n")
	if code := realMain([]string{"status", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is app-connect running?") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	errb.Reset()
	cfg = writeTempConfig(t, "admin:\n  listen: \"\"\n")
	if code := realMain([]string{"status", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "admin.listen is empty") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
