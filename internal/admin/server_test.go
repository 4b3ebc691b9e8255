package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// hostileState is a state whose applications have names no exposition
// written with strconv.Quote survives (a tab, quotes, backslashes, a line
// feed, invalid UTF-8).
func hostileState(t *testing.T) *State {
	cfg := config.DefaultLog()
	cfg.Destination, cfg.Level = config.LogStderr, "critical"
	log, err := logging.New(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(log.Close)
	st := NewState("v1.2.3", log.Errors)
	st.Started = time.Now().Add(-90 * time.Second)
	st.Downlinks.Add("sent")
	st.Downlinks.Add("sent")
	st.Downlinks.Add("refused")
	st.Requests.Add("denied")
	for _, d := range []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second, time.Minute} {
		st.DeliveryLatency.Observe(d)
	}
	st.JoinLatency.Observe(300 * time.Millisecond)
	st.Joins.Add(`js "one"`, "Success")
	for range 12 {
		log.Error("remote unreachable", "err", errors.New("dial"))
	}
	st.Attach(Sources{
		Local:  func() LocalStatus { return LocalStatus{Connected: true, EventsReceived: 210, Malformed: 1} },
		Intake: func() IntakeStatus { return IntakeStatus{Stored: 209, Unrouted: 3, Commits: 17} },
		Applications: func() []AppStatus {
			return []AppStatus{
				{EUI: "00-00-00-00-00-00-00-00", Name: "tab\there", State: StateUp, EventsQueued: 210, EventsForwarded: 209, EventsDeadLettered: 1},
				{EUI: "01-02-03-04-05-06-07-08", Name: "quote\" back\\slash\nline \xff", State: "retrying", QueueRows: 4, QueueBytes: 400},
			}
		},
		JoinProxy: func() *joinclient.ProxyStats {
			return &joinclient.ProxyStats{JoinServers: []joinclient.JoinServerState{{JoinServer: "js\t\"two\"", Breaker: joinclient.BreakerOpen,
				HeaderWarnings: map[string]uint64{"receiver_nsid": 2}}}}
		},
		Storage: func() cache.StorageStatus {
			return cache.StorageStatus{State: "full", FSFreeBytes: 0, DBBytes: 3 << 20, RefusedCommits: 4}
		},
	})
	st.Startup.Running()
	return st
}

// The whole /metrics output parses with the Prometheus text parser, hostile
// application names included, and carries the right values.
func TestMetricsParseWithPrometheusParser(t *testing.T) {
	srv := httptest.NewServer(Handler(hostileState(t), "/proc", discard))
	defer srv.Close()
	code, ctype, body := testpeer.HTTPGet(t, srv.URL+"/metrics")
	if code != 200 || ctype != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics %d %q", code, ctype)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus text parser: %v\n%s", err, body)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no family %s", name)
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("no sample %s%v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"appconnect_events_queued_total", []string{"name", "tab\there"}, 210},
		{"appconnect_events_forwarded_total", []string{"name", "tab\there"}, 209},
		{"appconnect_events_dead_lettered_total", []string{"name", "tab\there"}, 1},
		{"appconnect_queue_rows", []string{"name", "quote\" back\\slash\nline \uFFFD"}, 4},
		{"appconnect_application_up", []string{"app", "01-02-03-04-05-06-07-08"}, 0},
		{"appconnect_application_up", []string{"app", "00-00-00-00-00-00-00-00"}, 1},
		{"appconnect_local_events_received_total", nil, 210},
		{"appconnect_local_malformed_total", nil, 1},
		{"appconnect_unrouted_total", nil, 3},
		{"appconnect_starting", nil, 0},
		{"appconnect_downlinks_total", []string{"outcome", "sent"}, 2},
		{"appconnect_remote_requests_total", []string{"outcome", "denied"}, 1},
		{"appconnect_join_requests_total", []string{"js", `js "one"`, "result", "Success"}, 1},
		{"appconnect_delivery_latency_seconds", nil, 5},
		{"appconnect_join_latency_seconds", nil, 1},
		{"appconnect_errors_logged_total", nil, 12},
		{"appconnect_uptime_seconds", nil, 90},
		{"appconnect_build_info", []string{"version", "v1.2.3"}, 1},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds", "process_open_fds"} {
		if value(name) <= 0 && name != "process_cpu_seconds_total" {
			t.Errorf("%s not positive", name)
		}
	}
	for _, line := range []string{
		`appconnect_delivery_latency_seconds_bucket{le="0.005"} 1`,
		`appconnect_delivery_latency_seconds_bucket{le="0.05"} 3`,
		`appconnect_delivery_latency_seconds_bucket{le="+Inf"} 5`,
		`appconnect_delivery_latency_seconds_sum 62.083`,
		"appconnect_events_queued_total{app=\"00-00-00-00-00-00-00-00\",name=\"tab\there\"} 210",
		`name="quote\" back\\slash\nline ` + "\uFFFD" + `"`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// /status is snake_case throughout: no Go field name leaks into the JSON.
func TestStatusJSONIsSnakeCase(t *testing.T) {
	srv := httptest.NewServer(Handler(hostileState(t), "", discard))
	defer srv.Close()
	code, ctype, body := testpeer.HTTPGet(t, srv.URL+"/status")
	if code != 200 || ctype != "application/json" {
		t.Fatalf("/status %d %q", code, ctype)
	}
	keys := map[string]bool{}
	dec := jsonKeys(t, body)
	for _, k := range dec {
		keys[k] = true
		if strings.ToLower(k) != k || strings.Contains(k, "-") {
			t.Errorf("key %q is not snake_case", k)
		}
	}
	for _, k := range []string{"events_received", "malformed", "connected", "unrouted", "events_queued", "events_forwarded",
		"events_dropped", "events_dead_lettered", "delivery_failures", "queue_rows", "startup", "state"} {
		if !keys[k] {
			t.Errorf("/status has no %q", k)
		}
	}
	if _, _, body := testpeer.HTTPGet(t, srv.URL+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz %q", body)
	}
}

func TestStatusText(t *testing.T) {
	var b bytes.Buffer
	WriteText(&b, hostileState(t).Status())
	for _, s := range []string{
		"local broker: connected, events received 210, malformed 1, unrouted 3",
		"application tab\there (00-00-00-00-00-00-00-00): up",
		"  events queued 210, forwarded 209, dropped 0, dead-lettered 1; delivery failures 0; queue 0 rows / 0 bytes",
		"downlinks: refused 1, sent 2", `joins via js "one": Success 1`, "last errors (12 since start)", "remote unreachable: dial",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("status text lacks %q:\n%s", s, b.String())
		}
	}
	st := NewState("v1", nil)
	st.Startup.Step("opening the database")
	st.Startup.Failed(errors.New("downgrade refused"))
	b.Reset()
	WriteText(&b, st.Status())
	if !strings.Contains(b.String(), "start-up: opening the database (since ") || !strings.Contains(b.String(), "  failed 1 time(s), last error: downgrade refused\n") {
		t.Errorf("starting:\n%s", b.String())
	}
}

// A port someone else holds is logged and retried; the endpoint comes up as
// soon as the port is free, and Serve never blocks its caller.
func TestServeRetriesABusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	var logs testpeer.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Serve(ctx, addr, Handler(NewState("v1", nil), "", discard), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the busy port logged", func() bool {
		return strings.Contains(logs.String(), "admin endpoint not listening; forwarding goes on, retrying") && strings.Contains(logs.String(), "address already in use")
	})
	l.Close()
	waitFor(t, 30*time.Second, "the endpoint", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cancel()
	srv.Wait()
	if _, err := Serve(context.Background(), "0.0.0.0:0", nil, discard); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("non-loopback: %v", err)
	}
	s, err := Serve(context.Background(), "", nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	s.Wait() // disabled: returns at once
}
