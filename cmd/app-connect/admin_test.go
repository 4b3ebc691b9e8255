package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// A known traffic pattern: 10 devices, each a joined event and 20 uplinks,
// one uplink refused for good. /status, /metrics and `app-connect status`
// count exactly that, each counter under its one name.
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
	// The counters move at acknowledgement, the queue once the deletions are
	// committed: wait for both.
	d := waitFor(t, time.Minute, "every event forwarded or dead-lettered, the queue empty", func() (admin.Status, bool) {
		d, err := admin.Fetch(ctx, h.cfg.Admin.Listen)
		ok := err == nil && len(d.Applications) == 1 &&
			d.Applications[0].EventsForwarded+uint64(d.Applications[0].EventsDeadLettered) == total && d.Applications[0].QueueRows == 0
		return d, ok
	})
	a := d.Applications[0]
	if a.EventsQueued != total || a.EventsForwarded != total-refused || a.EventsDeadLettered != refused || a.EventsDropped != 0 || a.QueueRows != 0 || a.QueueBytes != 0 {
		t.Fatalf("application status %+v", a)
	}
	if a.EUI != config.CatchAll || a.Name != "default" || a.State != "up" {
		t.Fatalf("application %+v", a)
	}
	if d.Local.EventsReceived != total || !d.Local.Connected || d.Intake.Stored != total || d.Startup.State != admin.StateRunning {
		t.Fatalf("local %+v intake %+v startup %+v", d.Local, d.Intake, d.Startup)
	}
	if d.Version != version || d.UptimeSeconds < 0 || d.Started.IsZero() || d.Joins == nil || d.Downlinks == nil {
		t.Fatalf("status %+v", d)
	}

	code, ctype, body := testpeer.HTTPGet(t, base+"/metrics")
	if code != 200 || ctype != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics %d %q", code, ctype)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(strings.NewReader(body)); err != nil {
		t.Fatalf("Prometheus text parser: %v\n%s", err, body)
	}
	app := `{app="` + config.CatchAll + `",name="default"}`
	for _, line := range []string{
		"appconnect_local_events_received_total 210",
		"appconnect_local_connected 1",
		"appconnect_starting 0",
		"appconnect_events_queued_total" + app + " 210",
		"appconnect_events_forwarded_total" + app + " 209",
		"appconnect_events_dead_lettered_total" + app + " 1",
		"appconnect_events_dropped_total" + app + " 0",
		"appconnect_queue_rows" + app + " 0",
		"appconnect_application_up" + app + " 1",
		`appconnect_build_info{version="` + version + `",goversion="go`,
		"process_resident_memory_bytes ",
		"process_cpu_seconds_total ",
		"process_start_time_seconds ",
		"process_open_fds ",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// app-connect status prints the same figures for a person, and as JSON.
	var out, errb bytes.Buffer
	if code := admin.PrintStatus(ctx, h.cfg.Admin.Listen, admin.PrintOptions{}, &out, &errb); code != 0 {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	for _, s := range []string{"local broker: connected, events received 210, malformed 0, unrouted 0", "application default (" + config.CatchAll + "): up",
		"events queued 210, forwarded 209, dropped 0, dead-lettered 1; delivery failures 0; queue 0 rows / 0 bytes"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("status output lacks %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	if code := admin.PrintStatus(ctx, h.cfg.Admin.Listen, admin.PrintOptions{JSON: true}, &out, &errb); code != 0 {
		t.Fatalf("status --json: %d %s", code, errb.String())
	}
	var js admin.Status
	if err := json.Unmarshal(out.Bytes(), &js); err != nil || len(js.Applications) != 1 || js.Applications[0].EventsForwarded != 209 {
		t.Fatalf("status --json %v:\n%s", err, out.String())
	}
}

// After a downgrade the database refuses to open: /status, `app-connect
// status` and the status file show the step and its error while app-connect
// keeps retrying.
func TestStartupStepVisibleWithADowngradedDatabase(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	db, err := cache.Open(context.Background(), h.cfg.Storage.Database, cache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite3", h.cfg.Storage.Database)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO schema_version (version) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &daemon{log: slog.New(slog.NewTextHandler(h.logs, nil)), state: admin.NewState(version, nil)}
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, h.cfg) }()
	st := waitFor(t, 30*time.Second, "the step and its error in /status", func() (admin.Status, bool) {
		s, err := admin.Fetch(ctx, h.cfg.Admin.Listen)
		return s, err == nil && s.Startup.LastError != ""
	})
	if st.Startup.State != "starting" || st.Startup.Step != "opening the database" || st.Startup.Attempts < 1 {
		t.Fatalf("startup %+v", st.Startup)
	}
	if !strings.Contains(st.Startup.LastError, "schema version 999 is newer than this program knows") || !strings.HasSuffix(st.Startup.LastError, "downgrade refused") {
		t.Fatalf("last error %q", st.Startup.LastError)
	}
	var out, errb bytes.Buffer
	if code := admin.PrintStatus(ctx, h.cfg.Admin.Listen, admin.PrintOptions{}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "start-up: opening the database (since ") || !strings.Contains(out.String(), "downgrade refused") {
		t.Fatalf("status text:\n%s", out.String())
	}
	if info := admin.AppInfo(st); !strings.HasPrefix(info, "starting: opening the database (failed ") || !strings.Contains(info, "schema version 999") {
		t.Fatalf("AppInfo %q", info)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// The admin port is taken by another program: forwarding works all the same,
// and the endpoint comes up once the port is free.
func TestAdminPortTakenForwardingWorks(t *testing.T) {
	h := newHarness(t, 3)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h.cfg.Admin.Listen = l.Addr().String()
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 5)
	h.waitAll(time.Minute)
	h.checkOrder(false)
	if !strings.Contains(h.logs.String(), "admin endpoint not listening; forwarding goes on, retrying") {
		t.Fatalf("the busy port was not logged:\n%s", h.logs.Tail(20))
	}
	l.Close()
	waitFor(t, 30*time.Second, "the admin endpoint once the port is free", func() (struct{}, bool) {
		s, err := admin.Fetch(ctx, h.cfg.Admin.Listen)
		return struct{}{}, err == nil && s.Startup.State == admin.StateRunning
	})
}

func TestStatusCommandWithoutInstance(t *testing.T) {
	var out, errb bytes.Buffer
	cfg := writeTempConfig(t, "admin:\n  listen: "+freeLoopbackAddr(t)+"\n")
	if code := realMain([]string{"status", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is app-connect running?") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	errb.Reset()
	cfg = writeTempConfig(t, "admin:\n  listen: \"\"\n")
	if code := realMain([]string{"status", "--config", cfg}, &out, &errb); code != 1 || errb.String() != "app-connect status: admin.listen is empty in the configuration; no status endpoint\n" {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// status.json and /status come before anything that can wait: while mPower
// does not answer (its log settings are read before the logger exists, for
// at most 3 s) both already show the step; after it, start-up waits for the
// gateway identity (none here), still visible.
func TestStatusVisibleBeforeMPowerAnswers(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	dir := t.TempDir()
	addr := freeLoopbackAddr(t)
	statusPath := filepath.Join(dir, "status.json")
	cfgPath := writeTempConfig(t, "mpower:\n  api: "+hang.URL+"\nadmin:\n  listen: "+addr+"\n  status_file: "+statusPath+
		"\nstorage:\n  database: "+filepath.Join(dir, "app-connect.db")+"\ngateway:\n  sysfs_root: "+filepath.Join(dir, "none")+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- runDaemon(ctx, cfgPath, &errb) }()
	st := waitFor(t, 10*time.Second, "/status while mPower hangs", func() (admin.Status, bool) {
		s, err := admin.Fetch(ctx, addr)
		return s, err == nil
	})
	steps := []string{"reading mPower's log settings", "opening the database", "reading the gateway identity"}
	if st.Startup.State != admin.StateStarting || !slices.Contains(steps, st.Startup.Step) {
		t.Fatalf("startup %+v", st.Startup)
	}
	b, err := os.ReadFile(statusPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc admin.FileDocument
	if err := json.Unmarshal(b, &doc); err != nil || doc.PID != os.Getpid() ||
		!slices.ContainsFunc(steps, func(s string) bool { return strings.HasPrefix(doc.AppInfo, "starting: "+s) }) {
		t.Fatalf("status.json %s (%v)", b, err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// Start-up is complete only once the local broker is connected; until then
// /status names that step.
func TestStartupWaitsForTheLocalBroker(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	h.cfg.LNS.Broker = "tcp://" + freeLoopbackAddr(t) // nothing listens there
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &daemon{log: slog.New(slog.NewTextHandler(h.logs, nil)), state: admin.NewState(version, nil)}
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, h.cfg) }()
	st := waitFor(t, 30*time.Second, "the local broker step", func() (admin.Status, bool) {
		s, err := admin.Fetch(ctx, h.cfg.Admin.Listen)
		return s, err == nil && s.Startup.Step == "connecting to the local broker"
	})
	if st.Startup.State != admin.StateStarting || st.Local.Connected || len(st.Applications) != 1 {
		t.Fatalf("status %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// mPower not answering at boot (and no cached copy): /status names the step
// and mPower's error while the client keeps waiting.
func TestStartupShowsMPowerNotAnswering(t *testing.T) {
	h := newHarness(t, 1)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	down := httptest.NewServer(nil)
	down.Close()
	h.cfg.MPower.API = down.URL
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &daemon{log: slog.New(slog.NewTextHandler(h.logs, nil)), state: admin.NewState(version, nil)}
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, h.cfg) }()
	st := waitFor(t, 30*time.Second, "the mPower step and its error", func() (admin.Status, bool) {
		s, err := admin.Fetch(ctx, h.cfg.Admin.Listen)
		return s, err == nil && s.Startup.Step == "reading mPower's LoRa network settings" && s.Startup.LastError != ""
	})
	if !strings.Contains(st.Startup.LastError, "connection refused") || st.Startup.State != admin.StateStarting {
		t.Fatalf("startup %+v", st.Startup)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
