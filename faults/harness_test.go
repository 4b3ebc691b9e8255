//go:build faults

package faults

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	_ "github.com/mattn/go-sqlite3"
)

const testUUID = "029998E06156CDD44523264B523115C1"

// gateway is a simulated Conduit around the real app-connect binary: a real
// Mosquitto, the mPower API, the mts-io files and the remote HTTP sink behind
// a fault switch.
type gateway struct {
	t       *testing.T
	bin     string
	dir     string
	broker  *testpeer.Mosquitto
	sink    *sim.Sink
	remote  *remote
	sinkSrv *httptest.Server
	fleet   *sim.Fleet
	db      string // database path
	admin   string // admin host:port
	status  string // status file
	cfgFile string
	logs    *syncBuffer
	proc    *exec.Cmd
	exited  chan struct{}
}

type gatewayOptions struct {
	devices int
	broker  testpeer.MosquittoOptions
	dbDir   string // directory of the database; default the test's temporary directory
	// retryMin, retryMax: the delivery backoff; default 100ms..2s.
	retryMin, retryMax time.Duration
	extraYAML          string // more top-level configuration sections
}

func newGateway(t *testing.T, o gatewayOptions) *gateway {
	t.Helper()
	if _, ok := testpeer.MosquittoPath(); !ok {
		testpeer.Missing(t, "mosquitto")
	}
	g := &gateway{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	g.bin = testpeer.GoBuild(t, "../cmd/app-connect")
	g.broker = testpeer.StartMosquitto(t, o.broker)
	g.sink = sim.NewSink("/tenant")
	g.remote = &remote{next: g.sink}
	g.sinkSrv = httptest.NewServer(g.remote)
	t.Cleanup(g.sinkSrv.Close)
	g.fleet = sim.NewFleet(o.devices, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 1)
	mp := sim.NewMPower()
	mp.SetDefaultApp(sim.DefaultApp(g.sinkSrv.URL + "/tenant"))
	mp.SetLoraNetwork(sim.LoraNetwork("00-80-00-00-d0-00-01-ff", "127.0.0.1", g.broker.Port))
	mpSrv := httptest.NewServer(mp)
	t.Cleanup(mpSrv.Close)
	sysfs := filepath.Join(g.dir, "mts-io")
	if err := sim.WriteMtsIO(sysfs, testUUID, "19186550"); err != nil {
		t.Fatal(err)
	}
	dbDir := o.dbDir
	if dbDir == "" {
		dbDir = g.dir
	}
	g.db = filepath.Join(dbDir, "app-connect.db")
	g.admin = fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
	g.status = filepath.Join(g.dir, "status.json")
	g.cfgFile = filepath.Join(g.dir, "app-connect.yml")
	yml := fmt.Sprintf(`lns:
  broker: %s
mpower:
  api: %s
gateway:
  sysfs_root: %s
storage:
  database: %s
admin:
  listen: %q
  status_file: %s
delivery:
  retry_min: %s
  retry_max: %s
log:
  destination: stderr
  level: info
%s`, g.broker.URL(), mpSrv.URL, sysfs, g.db, g.admin, g.status, cmp.Or(o.retryMin, 100*time.Millisecond), cmp.Or(o.retryMax, 2*time.Second), o.extraYAML)
	if err := os.WriteFile(g.cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// start runs the binary and waits until it has subscribed to the broker.
func (g *gateway) start() {
	g.t.Helper()
	n := strings.Count(g.logs.String(), "local broker connected")
	g.proc = exec.Command(g.bin, "run", "--config", g.cfgFile)
	g.proc.Stdout, g.proc.Stderr = g.logs, g.logs
	if err := g.proc.Start(); err != nil {
		g.t.Fatal(err)
	}
	exited := make(chan struct{})
	g.exited = exited
	p := g.proc
	go func() { p.Wait(); close(exited) }()
	g.t.Cleanup(func() { g.kill() })
	g.waitLog("local broker connected", n+1, 30*time.Second)
}

// kill stops the process with SIGKILL (after SIGCONT, should it be stopped).
func (g *gateway) kill() {
	if g.proc == nil {
		return
	}
	select {
	case <-g.exited:
	default:
		g.proc.Process.Signal(syscall.SIGCONT)
		g.proc.Process.Kill()
		<-g.exited
	}
}

// stop sends SIGTERM and waits for the exit.
func (g *gateway) stop() {
	g.t.Helper()
	g.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		g.kill()
		g.t.Errorf("app-connect did not stop within 30s")
	}
}

func (g *gateway) running() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// waitLog waits until the log holds what at least n times.
func (g *gateway) waitLog(what string, n int, timeout time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(g.logs.String(), what) < n {
		if time.Now().After(deadline) {
			g.t.Fatalf("no %q (x%d) in the log within %v:\n%s", what, n, timeout, g.logs.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusDoc is the part of GET /status the suite reads.
type statusDoc struct {
	Local struct {
		EventsReceived uint64 `json:"events_received"`
	} `json:"local"`
	Intake struct {
		Stored       uint64 `json:"stored"`
		Acknowledged uint64 `json:"acknowledged"`
	} `json:"intake"`
	Storage      cache.StorageStatus `json:"storage"`
	Goroutines   int                 `json:"goroutines"`
	Applications []struct {
		QueueRows int   `json:"queue_rows"`
		Dropped   int64 `json:"events_dropped"`
	} `json:"applications"`
}

func (g *gateway) statusNow() (statusDoc, error) {
	var d statusDoc
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.admin + "/status")
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("status: HTTP %d", resp.StatusCode)
	}
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

func (g *gateway) statusDoc() statusDoc {
	g.t.Helper()
	d, err := g.statusNow()
	if err != nil {
		g.t.Fatalf("GET /status: %v", err)
	}
	return d
}

func (d statusDoc) queueRows() (rows int, dropped int64) {
	for _, a := range d.Applications {
		rows += a.QueueRows
		dropped += a.Dropped
	}
	return rows, dropped
}

// appInfo reads AppInfo from the status file.
func (g *gateway) appInfo() string {
	b, err := os.ReadFile(g.status)
	if err != nil {
		return ""
	}
	var v struct{ AppInfo string }
	json.Unmarshal(b, &v)
	return v.AppInfo
}

// load publishes uplinks at rate until ctx ends or perDevice are sent.
type load struct {
	pub   *sim.Publisher
	done  chan struct{}
	stats sim.RunStats
	err   error
}

func (g *gateway) publish(ctx context.Context, perDevice int, rate float64) *load {
	g.t.Helper()
	p, err := sim.NewPublisher(ctx, g.broker.URL())
	if err != nil {
		g.t.Fatal(err)
	}
	l := &load{pub: p, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.stats, l.err = p.Run(ctx, g.fleet, perDevice, rate)
	}()
	g.t.Cleanup(p.Close)
	return l
}

// wait waits for the end of the run and for the PUBACKs still outstanding.
func (l *load) wait(t *testing.T) sim.RunStats {
	t.Helper()
	<-l.done
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.pub.Flush(fctx)
	return l.stats
}

// outcome is one case's figures.
type outcome struct {
	published  int           // uplinks the simulator sent
	pubFailed  int64         // publications the broker never acknowledged
	lost       int           // uplinks sent and never delivered
	appLost    int64         // rows app-connect stored (acknowledged) and never delivered
	duplicates int           // uplinks delivered more than once
	dropped    int64         // rows dropped by the outbox caps (counted, by design)
	recovery   time.Duration // from the end of the fault to the last uplink delivered
	note       string
}

func (o outcome) String() string {
	s := fmt.Sprintf("published %d, lost %d (app-connect %d, broker %d; %d publications unacknowledged by the broker), duplicates %d, dropped by caps %d, recovery %v",
		o.published, o.lost, o.appLost, max(int64(o.lost)-o.appLost, 0), o.pubFailed, o.duplicates, o.dropped, o.recovery.Round(10*time.Millisecond))
	if o.note != "" {
		s += "; " + o.note
	}
	return s
}

// result prints the case's RESULT line (make faults collects them).
func result(t *testing.T, o outcome) {
	t.Helper()
	t.Logf("RESULT %s: %s", t.Name(), o)
	fmt.Printf("RESULT %s: %s\n", t.Name(), o)
}

// settle waits until every sent uplink arrived or nothing new arrived for
// stall, and returns when the last one arrived.
func (g *gateway) settle(timeout, stall time.Duration) time.Time {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	last, lastN := time.Now(), -1
	for time.Now().Before(deadline) {
		miss := g.sink.Missing(g.fleet.Expected())
		if miss == 0 {
			break
		}
		if miss != lastN {
			last, lastN = time.Now(), miss
		} else if time.Since(last) > stall {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g.sink.Stats().LastUplink
}

// measure fills an outcome from the sink, the publisher and app-connect's
// intake counter (stored rows every delivered row must cover).
func (g *gateway) measure(st sim.RunStats, stored uint64) outcome {
	s := g.sink.Stats()
	o := outcome{published: st.Uplinks, pubFailed: st.Failed, lost: g.sink.Missing(g.fleet.Expected()), duplicates: s.Duplicates}
	o.appLost = max(int64(stored)-int64(s.Uplinks+s.Joined), 0)
	return o
}

// remote is the cloud side's fault switch in front of the sink: down (503),
// a random share of failures, and cutting every connection.
type remote struct {
	next     http.Handler
	down     atomic.Bool
	failPPM  atomic.Int64 // failures per million requests
	requests atomic.Int64
	failed   atomic.Int64
	// deliveries counts the requests a retry loop sends: events (uplinks
	// single or batched, joined, …), init and close; every POST but status
	// reports.
	deliveries atomic.Int64
	// statusUp lets status reports through while down.
	statusUp atomic.Bool
}

func (r *remote) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	if p := req.URL.Path; req.Method == http.MethodPost && !strings.HasSuffix(p, "/status") {
		r.deliveries.Add(1)
	}
	if r.statusUp.Load() && strings.HasSuffix(req.URL.Path, "/status") {
		r.next.ServeHTTP(w, req)
		return
	}
	if r.down.Load() || (r.failPPM.Load() > 0 && rand.Int64N(1_000_000) < r.failPPM.Load()) {
		r.failed.Add(1)
		http.Error(w, "injected failure", http.StatusServiceUnavailable)
		return
	}
	r.next.ServeHTTP(w, req)
}

// syncBuffer is a goroutine-safe log sink (testpeer.LogBuffer).
type syncBuffer = testpeer.LogBuffer

// notRun skips a case the machine does not allow (privileges, kernel
// support), saying so: make faults prints it as NOT RUN, never as passed. A
// missing tool is not that: scripts/install-test-deps.sh installs every one
// the suite runs, so the case fails instead, as a missing peer does.
func notRun(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("%s: %v (scripts/install-test-deps.sh installs it)", t.Name(), err)
	}
	t.Skipf("NOT RUN: %s: "+format, append([]any{t.Name()}, args...)...)
}

// needRoot skips a case the machine does not allow, saying so; make faults
// prints it as NOT RUN, never as passed.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		notRun(t, nil, "%s needs root (mount)", what)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted when
// the test ends; it skips the case where mounting is not allowed.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	needRoot(t, "a small file system")
	dir := filepath.Join(t.TempDir(), "flash")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		notRun(t, err, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes a file until the file system is full and returns its size.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			break
		}
	}
	f.Sync()
	return n
}

// checkIntegrity runs SQLite's integrity check on the database file.
func checkIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check of %s: %q %v", path, res, err)
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func itoa(n int) string { return strconv.Itoa(n) }
