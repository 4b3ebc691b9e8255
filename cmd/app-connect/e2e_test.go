package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/simgw"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

const testUUID = "029998E06156CDD44523264B523115C1"

// harness is a simulated Conduit around app-connect: a real Mosquitto, the
// mPower API, the mts-io files and the remote HTTP sink.
type harness struct {
	t      *testing.T
	broker *testpeer.Mosquitto
	mpower *sim.MPower
	sink   *sim.Sink
	fleet  *sim.Fleet
	dir    string
	cfg    config.Config
	logs   *syncBuffer
}

// newHarness's broker has Mosquitto's default limits. A no-loss test that
// publishes more than its 1,000-message queue holds uses noLossBroker: it must
// blame app-connect only for what app-connect lost, and under a burst on a
// busy machine the broker itself drops; that figure is measured by make bench,
// never asserted by a test.
func newHarness(t *testing.T, devices int) *harness {
	t.Helper()
	return newHarnessWith(t, devices, testpeer.MosquittoOptions{})
}

// noLossBroker is a broker that queues without limit (max_queued_messages 0).
var noLossBroker = testpeer.MosquittoOptions{MaxQueued: ptr(0)}

func ptr[T any](v T) *T { return &v }

func newHarnessWith(t *testing.T, devices int, bo testpeer.MosquittoOptions) *harness {
	t.Helper()
	g := simgw.Start(t, devices, testUUID, bo)
	h := &harness{t: t, dir: g.Dir, broker: g.Broker, mpower: g.MPower, sink: g.Sink, fleet: g.Fleet, cfg: g.Config, logs: &syncBuffer{}}
	return h
}

// start runs app-connect in this process until the returned stop is called.
func (h *harness) start() (stop func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { done <- run(ctx, h.cfg, log) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				h.t.Errorf("run did not stop within 30s")
			}
		})
	}
	h.t.Cleanup(stop)
	h.waitSubscribed(1)
	return stop
}

// waitSubscribed waits until app-connect has subscribed n times in total
// (messages published before the first subscription have no receiver).
func (h *harness) waitSubscribed(n int) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(h.logs.String(), "local broker connected") < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("app-connect did not subscribe within 30s:\n%s", h.logs.Tail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishRate is what the tests' simulated network server sends, in messages
// per second: far above a real gateway's radio load. A test publishing more
// than the broker's default queue (1,000 messages) uses noLossBroker, so a slow
// machine only makes it slower; bursts into the default queue are measured by
// make bench.
const publishRate = 1000

// publish sends every device's joined event and perDevice uplinks to the broker.
func (h *harness) publish(ctx context.Context, perDevice int) sim.RunStats {
	h.t.Helper()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	st, err := p.Run(ctx, h.fleet, perDevice, publishRate)
	if err != nil {
		h.t.Fatalf("publish: %v", err)
	}
	return st
}

func (h *harness) waitAll(timeout time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := h.sink.Wait(ctx, h.fleet.Expected()); err != nil {
		h.t.Fatalf("%v; sink %+v\nlogs:\n%s", err, h.sink.Stats(), h.logs.Tail(40))
	}
}

// checkOrder reports a device whose uplinks did not arrive in FCnt order
// (duplicates of already-delivered rows allowed after a crash).
func (h *harness) checkOrder(allowDuplicates bool) {
	h.t.Helper()
	if err := h.sink.CheckOrder(h.fleet, allowDuplicates); err != nil {
		h.t.Fatal(err)
	}
}

// checkSink reports what a remote HTTP sink saw besides the uplinks (sim.Sink.CheckFaults).
func checkSink(t *testing.T, name string, s *sim.Sink, faultsInjected bool) {
	t.Helper()
	if err := s.CheckFaults(faultsInjected); err != nil {
		t.Errorf("sink %s: %v", name, err)
	}
}

// withLoraQuery installs the lora-query stand-in (conduit-sim linked as
// lora-query) and points app-connect at it.
func (h *harness) withLoraQuery(state sim.LoraQueryState) *sim.LoraQueryDir {
	h.t.Helper()
	lq, err := sim.InstallLoraQuery(filepath.Join(h.dir, "lq"), testpeer.GoBuild(h.t, "../conduit-sim"), state)
	if err != nil {
		h.t.Fatal(err)
	}
	h.cfg.Gateway.LoraQuery = lq.Path()
	return lq
}

// watchLocalDownlinks records the downlinks published on the local broker
// (sim.WatchDownlinks) and returns what arrived so far, in order.
func (h *harness) watchLocalDownlinks() func() []string {
	h.t.Helper()
	w, err := sim.WatchDownlinks(h.broker.URL())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(w.Close)
	return w.Got
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestForwardsEveryUplinkInOrder(t *testing.T) {
	h := newHarnessWith(t, 50, noLossBroker) // 5,050 messages: more than the default queue
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := h.publish(ctx, 100) // 5,000 uplinks from 50 devices
	if st.Uplinks != 5000 {
		t.Fatalf("published %d uplinks", st.Uplinks)
	}
	h.waitAll(2 * time.Minute)
	h.checkOrder(false)
	s := h.sink.Stats()
	if s.Duplicates != 0 || s.Unique != 5000 || s.Joined != 50 || s.Inits != 1 {
		t.Fatalf("sink stats %+v", s)
	}
	checkSink(t, "default", h.sink, false)
	// Uplinks are forwarded byte for byte, to the device's AppEUI path (or in
	// a batch to the application's), with the protocol's headers. Under load
	// every uplink of a device may travel in batches.
	d := h.fleet.Devices()[0]
	var up *sim.Request
	var upBody []byte
	for _, r := range h.sink.Recorded() {
		if r.Status != 200 {
			continue
		}
		if strings.HasSuffix(r.Path, "/"+d.DevEUI+"/up") {
			if want := "/tenant/api/v1/lorawan/" + d.AppEUI + "/" + d.DevEUI + "/up"; r.Path != want {
				t.Fatalf("path %s, want %s", r.Path, want)
			}
			up, upBody = &r, r.Body
			break
		}
		if r.Path == "/tenant/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/up" {
			var arr []json.RawMessage
			if err := json.Unmarshal(r.Body, &arr); err != nil {
				t.Fatalf("batch %s: %v", r.Body, err)
			}
			for _, e := range arr {
				if bytes.Contains(e, []byte(`"deveui":"`+d.DevEUI+`"`)) {
					up, upBody = &r, e
					break
				}
			}
			if up != nil {
				break
			}
		}
	}
	if up == nil {
		t.Fatal("no uplink recorded")
	}
	if up.Header.Get("Content-Type") != "application/json" || up.Header.Get("Accept") != "text/plain" {
		t.Fatalf("headers %v", up.Header)
	}
	if !bytes.Contains(upBody, []byte(`"deveui":"`+d.DevEUI+`"`)) || !bytes.Contains(upBody, []byte(`"appeui":"`+d.AppEUI+`"`)) {
		t.Fatalf("uplink body %s", upBody)
	}
	var init *sim.Request
	for _, r := range h.sink.Recorded() {
		if strings.HasSuffix(r.Path, "/init") {
			init = &r
			break
		}
	}
	if init == nil || init.Path != "/tenant/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/"+testUUID+"/init" ||
		string(init.Body) != `{"gateways_euis":["00-80-00-00-d0-00-01-ff"]}` {
		t.Fatalf("init request %+v", init)
	}
}

// Without the LNS (packet-forwarder mode) the gateway EUIs come from the LoRa cards.
func TestInitUsesAccessoryCardsWithoutLNS(t *testing.T) {
	h := newHarness(t, 1)
	h.mpower.SetLoraNetwork(json.RawMessage(`{"lora":{"enabled":true,"packetForwarderMode":true,"eui_1":"00:80:00:00:D0:00:01:FF"}}`))
	h.mpower.SetAccessoryCards(sim.AccessoryCards("00-80-00-00-a0-00-0f-4d"))
	h.start()
	deadline := time.Now().Add(30 * time.Second)
	for h.sink.Stats().Inits == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range h.sink.Recorded() {
		if strings.HasSuffix(r.Path, "/init") {
			if string(r.Body) != `{"gateways_euis":["00-80-00-00-a0-00-0f-4d"]}` {
				t.Fatalf("init body %s", r.Body)
			}
			checkSink(t, "default", h.sink, false)
			return
		}
	}
	t.Fatal("no init")
}

func TestRecoversFromRemoteOutage(t *testing.T) {
	h := newHarness(t, 10)
	h.sink.FailFor(3*time.Second, http.StatusServiceUnavailable)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 50)
	h.waitAll(time.Minute)
	h.checkOrder(false)
	s := h.sink.Stats()
	if s.Failed == 0 {
		t.Fatalf("the outage was not seen: %+v", s)
	}
	if s.Duplicates != 0 || s.Unique != 500 {
		t.Fatalf("sink stats %+v", s)
	}
	checkSink(t, "default", h.sink, true)
}

// One uplink refused for good (HTTP 400): it alone is missing, the rest flows
// in order, and the refusal is visible to the operator — the log line, the
// application's dead-letter count in /status and in /metrics.
func TestPermanentRefusalDeadLettersOneUplink(t *testing.T) {
	h := newHarness(t, 5)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	bad := h.fleet.Devices()[2].DevEUI
	h.sink.FailUplink(bad, 7, http.StatusBadRequest)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 20)
	exp := h.fleet.Expected()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	for h.sink.Missing(exp) > 1 && wctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if m := h.sink.Missing(exp); m != 1 {
		t.Fatalf("missing %d, want exactly the refused one", m)
	}
	got := h.sink.Received(bad)
	if len(got) != 19 || got[7] != 8 {
		t.Fatalf("device %s received %v", bad, got)
	}
	if !strings.Contains(h.logs.String(), "dead-lettered") || !strings.Contains(h.logs.String(), "HTTP 400") {
		t.Fatalf("no dead-letter log line:\n%s", h.logs.Tail(20))
	}
	checkSink(t, "default", h.sink, true)

	// The counters: exactly one row dead-lettered, every other event forwarded.
	const total = 5 + 5*20
	base := "http://" + h.cfg.Admin.Listen
	var dead, forwarded float64
	waitUntil(t, "/metrics counting the dead letter", 30*time.Second, func() bool {
		_, _, body := testpeer.HTTPGet(t, base+"/metrics")
		var ok1, ok2 bool
		dead, ok1 = metricValue(body, "appconnect_events_dead_lettered_total", "ff-ff-ff-ff-ff-ff-ff-ff")
		forwarded, ok2 = metricValue(body, "appconnect_events_forwarded_total", "ff-ff-ff-ff-ff-ff-ff-ff")
		return ok1 && ok2 && dead+forwarded >= total
	})
	if dead != 1 || forwarded != total-1 {
		t.Fatalf("/metrics: dead-lettered %v, forwarded %v; want 1 and %d", dead, forwarded, total-1)
	}
	_, _, body := testpeer.HTTPGet(t, base+"/status")
	var st struct {
		Applications []map[string]any `json:"applications"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Applications) != 1 {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if a := st.Applications[0]; a["events_dead_lettered"] != float64(1) || a["events_forwarded"] != float64(total-1) {
		t.Fatalf("/status application %v, want events_dead_lettered 1, events_forwarded %d", a, total-1)
	}
}

// metricValue is the value of the sample of name whose labels include
// app="<app>" in a Prometheus text exposition.
func metricValue(exposition, name, app string) (float64, bool) {
	for line := range strings.SplitSeq(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(","+labels+",", `,app="`+app+`",`) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		return v, err == nil
	}
	return 0, false
}

func TestMalformedLocalPayloadsDoNotBlockTheStream(t *testing.T) {
	h := newHarness(t, 1)
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := sim.NewPublisher(ctx, h.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f, err := os.Open("../../lnsbridge/testdata/bad-inputs.txt") // the one copy of the fixture
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dev := h.fleet.Devices()[0]
	var bad [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad = append(bad, []byte(line))
	}
	if len(bad) < 5 {
		t.Fatalf("only %d bad inputs", len(bad))
	}
	topicJ, payloadJ := h.fleet.Joined(0)
	if err := p.Publish(ctx, topicJ, payloadJ); err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, b := range bad {
		for _, topic := range []string{
			"lora/" + dev.AppEUI + "/" + dev.DevEUI + "/up",
			"lora/" + dev.DevEUI + "/joined",
			"lora/" + dev.AppEUI + "/" + dev.DevEUI + "/moved",
		} {
			topicU, good, _ := h.fleet.Uplink(0)
			if err := p.Publish(ctx, topicU, good); err != nil {
				t.Fatal(err)
			}
			sent++
			if err := p.Publish(ctx, topic, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.waitAll(time.Minute)
	h.checkOrder(false)
	if s := h.sink.Stats(); s.Unique != sent || s.Joined != 1 {
		t.Fatalf("sink %+v, want %d uplinks and 1 joined", s, sent)
	}
	// The last bad message was published after the last good one: its
	// refusal may still be on its way when the good ones have all arrived.
	refused := 0
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		refused = strings.Count(h.logs.String(), "local message refused")
		if refused >= 3*len(bad) || time.Now().After(end) {
			break
		}
	}
	if refused != 3*len(bad) {
		t.Fatalf("%d refusal log lines, want %d:\n%s", refused, 3*len(bad), h.logs.Tail(20))
	}
	checkSink(t, "default", h.sink, false)
}

func TestCorruptDatabaseBetweenRuns(t *testing.T) {
	h := newHarness(t, 3)
	stop := h.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 10)
	h.waitAll(time.Minute)
	stop()
	if err := os.WriteFile(h.cfg.Storage.Database, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(h.cfg.Storage.Database + "-wal")
	os.Remove(h.cfg.Storage.Database + "-shm")
	h.start()
	h.publish(ctx, 10)
	h.waitAll(time.Minute)
	matches, _ := filepath.Glob(h.cfg.Storage.Database + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", matches)
	}
	if n := strings.Count(h.logs.String(), "database unusable"); n != 1 {
		t.Fatalf("%d 'database unusable' lines", n)
	}
	checkSink(t, "default", h.sink, false)
}

// TestKilledMidStreamLosesNothing runs the real binary and SIGKILLs it while
// uplinks flow: after a restart every uplink arrives (duplicates allowed).
func TestKilledMidStreamLosesNothing(t *testing.T) {
	bin := buildBinary(t)
	// While app-connect is down the broker queues its session's messages; with
	// the default max_queued_messages (1000) a burst publisher would overflow
	// that queue, which is the broker's loss, not app-connect's.
	h := newHarnessWith(t, 20, noLossBroker)
	cfgFile := h.writeConfigFile("")
	h.sink.SetDelay(time.Millisecond) // keep a backlog in the outbox when the kill comes
	startProc := func() *exec.Cmd { return h.startBinary(bin, cfgFile) }
	proc := startProc()
	h.waitSubscribed(1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pubDone := make(chan sim.RunStats, 1)
	go func() { pubDone <- h.publish(ctx, 100) }()
	// Kill once part of the stream went through.
	for h.sink.Stats().Unique < 300 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	proc.Process.Kill()
	proc.Wait()
	atKill := h.sink.Stats().Unique
	proc = startProc()
	defer func() { proc.Process.Kill(); proc.Wait() }()
	st := <-pubDone
	if st.Uplinks != 2000 {
		t.Fatalf("published %d", st.Uplinks)
	}
	h.waitAll(2 * time.Minute)
	h.checkOrder(true)
	s := h.sink.Stats()
	t.Logf("killed after %d unique; final %+v", atKill, s)
	if atKill >= 2000 {
		t.Fatalf("the kill came after the stream ended; the test proves nothing")
	}
	checkSink(t, "default", h.sink, true) // the kill may cut a request short
}

func buildBinary(t *testing.T) string { return testpeer.GoBuild(t, ".") }

// writeConfigFile writes an app-connect.yml pointing the real binary at the
// harness, with extra YAML lines for the delivery section.
func (h *harness) writeConfigFile(deliveryExtra string) string {
	h.t.Helper()
	cfgFile := filepath.Join(h.dir, "app-connect.yml")
	yml := fmt.Sprintf("lns:\n  broker: %s\nmpower:\n  api: %s\ngateway:\n  sysfs_root: %s\nstorage:\n  database: %s\nadmin:\n  listen: \"\"\ndelivery:\n  retry_min: 50ms\n  retry_max: 400ms\n%s",
		h.cfg.LNS.Broker, h.cfg.MPower.API, h.cfg.Gateway.SysfsRoot, h.cfg.Storage.Database, deliveryExtra)
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return cfgFile
}

// startBinary runs the real binary on cfgFile, its output in the harness's logs.
func (h *harness) startBinary(bin, cfgFile string) *exec.Cmd {
	h.t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	return cmd
}

// syncBuffer is a goroutine-safe log sink (testpeer.LogBuffer).
type syncBuffer = testpeer.LogBuffer
