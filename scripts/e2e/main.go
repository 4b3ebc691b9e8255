// Command e2e runs app-connect end to end against conduit-sim; the Makefile calls it.
//
//	go run ./scripts/e2e demo  [-app-connect build/app-connect] [-sim build/conduit-sim]
//	go run ./scripts/e2e bench [-app-connect build/app-connect] [-sim build/conduit-sim] [-mosquitto PATH]
//
// demo: conduit-sim (embedded broker, 20 devices at about 50 uplinks/s, mPower API, sink) and
// app-connect pointed at it for about 20 s with a summary line every 3 s, then totals. Exit status
// 1 when something failed to start or uplinks were lost.
//
// bench: app-connect runs with GOMAXPROCS=1 (the gateways have one core; -gomaxprocs changes it)
// against real Mosquitto brokers (the local one, and a second one as the remote MQTT cloud):
//   - steady: 50 uplinks/s for 60 s over HTTP and over MQTT (Mosquitto defaults): app-connect's CPU
//     seconds per 1,000 uplinks and the latency p50/p99 (LNS time in the uplink → arrival at the cloud);
//   - burst: 20,000 uplinks from 200 devices as fast as possible, over HTTP and MQTT, with Mosquitto's
//     default queue limits and with unlimited queues: delivered/s, lost, duplicates, CPU s/1,000, peak RSS;
//   - floor: the steady HTTP run with scripts/floor in app-connect's place (paho subscriber, one
//     net/http POST per uplink, no storage): the least CPU per uplink these libraries need here;
//   - drain: 20,000 uplinks queued while the HTTP remote answers 503, then the remote back with 100 ms
//     added to every answer: the drain rate (first to last delivery after the outage).
//
// It asserts nothing about speed: exit status 1 only when something failed to start. -only runs a
// subset (steady, floor, burst, drain; comma-separated); "arm" runs the steady part at 20/s with the ARMv5 binary
// (-arm, make build-arm) under qemu-arm-static, the stand-in for the gateways' ARM926, and with
// -arm-floor the ARMv5 floor at the same rate.
//
// Every program is started with an argument vector, never through a shell.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	appConnect string
	sim        string
	mosquitto  string
	keep       bool
	devices    int
	uplinks    int
	rate       float64
	duration   time.Duration
	gomaxprocs int
	only       string
	arm        string // ARMv5 app-connect binary for the "arm" part
	qemu       string
	floor      string // reference subscriber of the "floor" part (scripts/floor)
	armFloor   string // the same for ARMv5, run by the "arm" part when set
	transports string // "http,mqtt": the transports of the steady, burst and arm parts
	queues     string // "default,unlimited": the local broker's queue limits of the burst part
	inflight   int    // delivery.mqtt_inflight of the MQTT runs; 0: app-connect's default
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: e2e demo|bench [flags]   (e2e <mode> -h for the flags)")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "demo" && args[0] != "bench") {
		usage(stderr)
		return 2
	}
	mode := args[0]
	var o options
	fs := flag.NewFlagSet("e2e "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.appConnect, "app-connect", "build/app-connect", "app-connect binary")
	fs.StringVar(&o.sim, "sim", "build/conduit-sim", "conduit-sim binary")
	fs.StringVar(&o.mosquitto, "mosquitto", "mosquitto", "mosquitto binary (bench), looked up in PATH and /usr/sbin")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, configuration, database)")
	defDevices, defUplinks, defRate := 20, 0, 50.0
	if mode == "bench" {
		defDevices, defUplinks, defRate = 200, 100, 0
	}
	fs.IntVar(&o.devices, "devices", defDevices, "simulated devices")
	fs.IntVar(&o.uplinks, "uplinks", defUplinks, "uplinks per device (bench)")
	fs.Float64Var(&o.rate, "rate", defRate, "uplinks per second in total (0: as fast as possible)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the demo publishes")
	fs.IntVar(&o.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS of app-connect (bench; 0: Go's default)")
	fs.StringVar(&o.only, "only", "steady,floor,burst,drain", "bench parts to run (steady, floor, burst, drain, arm)")
	fs.StringVar(&o.transports, "transports", "http,mqtt", "transports of the steady, burst and arm parts (http, mqtt; comma-separated)")
	fs.IntVar(&o.inflight, "mqtt-inflight", 0, "delivery.mqtt_inflight of the MQTT runs (0: app-connect's default)")
	fs.StringVar(&o.queues, "queues", "default,unlimited", "local broker queue limits of the burst part (default, unlimited; comma-separated)")
	fs.StringVar(&o.floor, "floor", "build/bench-floor", "reference subscriber of the floor part (scripts/floor: paho + net/http, no storage)")
	fs.StringVar(&o.armFloor, "arm-floor", "", "ARMv5 build of scripts/floor: the arm part runs it too, as a reference")
	fs.StringVar(&o.arm, "arm", "build/app-connect-armv5", "ARMv5 app-connect binary for the arm part (make build-arm)")
	fs.StringVar(&o.qemu, "qemu", "qemu-arm-static", "user-mode emulator of the arm part")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	for _, p := range []*string{&o.appConnect, &o.sim} {
		abs, err := filepath.Abs(*p)
		if err == nil {
			*p = abs
		}
		if _, err := os.Stat(*p); err != nil {
			log.Error("binary missing (run make build first)", "path", *p, "err", err)
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "app-connect-"+mode+"-*")
	if err != nil {
		log.Error("temporary directory", "err", err)
		return 1
	}
	if o.keep {
		fmt.Fprintln(stdout, "files kept in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	e := &orchestrator{o: o, log: log, out: stdout}
	if mode == "demo" {
		return e.demo(ctx, dir)
	}
	return e.bench(ctx, dir)
}

type orchestrator struct {
	o   options
	log *slog.Logger
	out io.Writer
}

// simReport is conduit-sim's -json report.
type simReport struct {
	LatencyP50Ms  float64   `json:"latency_p50_ms"`
	LatencyP99Ms  float64   `json:"latency_p99_ms"`
	FirstDelivery time.Time `json:"first_delivery"`
	Sent          int64     `json:"sent"`
	Delivered     int64     `json:"delivered_unique"`
	Duplicates    int       `json:"duplicates"`
	OutOfOrder    int       `json:"out_of_order"`
	Missing       int64     `json:"missing"`
	PublishFailed int64     `json:"publish_failed"`
	FirstPublish  time.Time `json:"first_publish"`
	LastDelivery  time.Time `json:"last_delivery"`
	Seconds       float64   `json:"seconds"`
	UplinksPerSec float64   `json:"uplinks_per_second"`
}

// session is one simulator + app-connect run.
type session struct {
	name     string
	dir      string
	broker   string // external broker URL; empty: the simulator's embedded broker
	simArgs  []string
	echo     string // prefix for the simulator's stdout lines shown
	deadline time.Duration
	env      []string // app-connect's extra environment
	emulator string   // run app-connect under this user-mode emulator (the ARM binary)
	binary   string   // app-connect binary; empty: -app-connect
	yamlMore string   // appended to the app-connect configuration the simulator writes
}

type sessionResult struct {
	report   simReport
	cpu      float64 // app-connect CPU seconds from the first publication to the totals
	rss      int64   // app-connect peak RSS, bytes
	startErr bool    // something failed to start (as opposed to running badly)
}

func (e *orchestrator) runSession(ctx context.Context, s session) (sessionResult, error) {
	var res sessionResult
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		res.startErr = true
		return res, err
	}
	cfg := filepath.Join(s.dir, "app-connect.yml")
	reportFile := filepath.Join(s.dir, "report.json")
	args := []string{
		"-mpower-listen", "127.0.0.1:0", "-sink-listen", "127.0.0.1:0",
		"-sysfs", filepath.Join(s.dir, "mts-io"), "-database", filepath.Join(s.dir, "app-connect.db"),
		"-write-config", cfg, "-admin-listen", "127.0.0.1:0", "-json", reportFile, "-hold",
	}
	if s.broker != "" {
		args = append(args, "-broker", s.broker)
	} else {
		args = append(args, "-mqtt-listen", "127.0.0.1:0")
	}
	args = append(args, s.simArgs...)
	simProc, err := startProc("conduit-sim", e.o.sim, args, filepath.Join(s.dir, "conduit-sim.log"), true)
	if err != nil {
		res.startErr = true
		return res, err
	}
	defer func() { _ = simProc.stop(5 * time.Second) }()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = waitFile(wctx, simProc, cfg)
	cancel()
	if err != nil {
		res.startErr = true
		return res, fmt.Errorf("%w\n%s", err, simProc.logTail(20))
	}

	if s.yamlMore != "" {
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("\n" + s.yamlMore)
			f.Close()
		}
		if err != nil {
			res.startErr = true
			return res, fmt.Errorf("app-connect configuration: %w", err)
		}
	}
	acPath, acArgs := e.o.appConnect, []string{"run", "--config", cfg}
	if s.binary != "" {
		acPath = s.binary
	}
	if s.emulator != "" {
		acPath, acArgs = s.emulator, append([]string{acPath}, acArgs...)
	}
	ac, err := startProc("app-connect", acPath, acArgs, filepath.Join(s.dir, "app-connect.log"), false, s.env...)
	if err != nil {
		res.startErr = true
		return res, err
	}
	defer func() { _ = ac.stop(10 * time.Second) }()
	e.log.Info("started", "run", s.name, "conduit-sim", simProc.pid(), "app-connect", ac.pid(), "dir", s.dir)

	var cpu0 float64
	timeout := time.NewTimer(s.deadline)
	defer timeout.Stop()
	for done := false; !done; {
		select {
		case line, ok := <-simProc.lines:
			if !ok {
				res.startErr = true
				return res, fmt.Errorf("conduit-sim exited early (%v):\n%s", simProc.err, simProc.logTail(20))
			}
			if s.echo != "" {
				fmt.Fprintln(e.out, s.echo+line)
			}
			switch {
			case strings.HasPrefix(line, "publishing:"):
				cpu0, _ = cpuSeconds(ac.pid())
			case isTotals(line):
				done = true
			}
		case <-ac.done:
			probing := cpu0 == 0
			res.startErr = probing
			return res, fmt.Errorf("app-connect exited (%v):\n%s", ac.err, ac.logTail(30))
		case <-timeout.C:
			res.startErr = cpu0 == 0
			return res, fmt.Errorf("%s: no totals within %v; app-connect log:\n%s", s.name, s.deadline, ac.logTail(20))
		case <-ctx.Done():
			return res, fmt.Errorf("%s: interrupted: %w", s.name, ctx.Err())
		}
	}
	if cpu1, err := cpuSeconds(ac.pid()); err == nil {
		res.cpu = cpu1 - cpu0
	}
	res.rss, _ = peakRSS(ac.pid())
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	err = waitFile(wctx, simProc, reportFile)
	cancel()
	if err != nil {
		return res, err
	}
	// The file may exist before it is completely written: read until it parses.
	for attempt := 0; ; attempt++ {
		b, err := os.ReadFile(reportFile)
		if err == nil {
			err = json.Unmarshal(b, &res.report)
		}
		if err == nil {
			break
		}
		if attempt == 50 {
			return res, fmt.Errorf("report %s: %w", reportFile, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// app-connect first, so its close reaches the sink; then the simulator.
	if err := ac.stop(10 * time.Second); err != nil {
		e.log.Warn("app-connect did not stop cleanly", "err", err)
	}
	return res, nil
}

// isTotals recognises conduit-sim's final line "sent N, delivered N, duplicates N, missing N".
func isTotals(line string) bool {
	var a, b, c, d int
	n, err := fmt.Sscanf(line, "sent %d, delivered %d, duplicates %d, missing %d", &a, &b, &c, &d)
	return err == nil && n == 4
}

func (e *orchestrator) demo(ctx context.Context, dir string) int {
	fmt.Fprintf(e.out, "demo: %d simulated devices, about %g uplinks/s for %v, app-connect forwarding to the simulator's sink\n",
		e.o.devices, e.o.rate, e.o.duration)
	res, err := e.runSession(ctx, session{
		name: "demo",
		dir:  dir,
		echo: "  ",
		simArgs: []string{
			"-devices", strconv.Itoa(e.o.devices), "-rate", fmt.Sprint(e.o.rate),
			"-duration", e.o.duration.String(), "-wait", "10s", "-report-every", "3s", "-probe", "30s",
			"-status-report", "5s", // app-connect's status report: the simulator prints the last one
		},
		deadline: e.o.duration + 60*time.Second,
	})
	if err != nil {
		e.log.Error("demo failed", "err", err)
		return 1
	}
	r := res.report
	fmt.Fprintf(e.out, "totals: sent %d, delivered %d, lost %d (duplicates %d, out of order %d)\n",
		r.Sent, r.Delivered, r.Missing, r.Duplicates, r.OutOfOrder)
	if r.Missing > 0 {
		e.log.Error("uplinks lost", "lost", r.Missing)
		return 1
	}
	return 0
}

// brokerRun is one Mosquitto configuration of the benchmark.
type brokerRun struct {
	name  string
	extra []string // mosquitto.conf lines
}

var (
	defaultQueues   = brokerRun{name: "Mosquitto defaults (max_inflight_messages 20, max_queued_messages 1000)"}
	unlimitedQueues = brokerRun{name: "Mosquitto unlimited queue (max_queued_messages 0)", extra: []string{"max_queued_messages 0"}}
)

// benchRun is one run of the benchmark.
type benchRun struct {
	part, name string
	broker     brokerRun
	mqtt       bool // the cloud is a remote MQTT broker, not the HTTP sink
	devices    int
	uplinks    int
	rate       float64
	drain      bool
	arm        bool // the ARMv5 binary under the emulator
	floor      bool // scripts/floor instead of app-connect: the libraries' least CPU per uplink
	floorRaw   bool // scripts/floor in its raw mode: one goroutine, no client libraries' machinery
}

func (e *orchestrator) bench(ctx context.Context, dir string) int {
	mosq, err := lookMosquitto(e.o.mosquitto)
	if err != nil {
		e.log.Error("mosquitto not found (scripts/install-test-deps.sh installs it)", "err", err)
		return 1
	}
	var mqs []bool
	for _, tr := range strings.Split(e.o.transports, ",") {
		switch strings.TrimSpace(tr) {
		case "http":
			mqs = append(mqs, false)
		case "mqtt":
			mqs = append(mqs, true)
		default:
			e.log.Error("unknown transport in -transports (http, mqtt)", "transport", tr)
			return 2
		}
	}
	var queues []brokerRun
	for _, q := range strings.Split(e.o.queues, ",") {
		switch strings.TrimSpace(q) {
		case "default":
			queues = append(queues, defaultQueues)
		case "unlimited":
			queues = append(queues, unlimitedQueues)
		default:
			e.log.Error("unknown queue limit in -queues (default, unlimited)", "queues", q)
			return 2
		}
	}
	var runs []benchRun
	for _, part := range strings.Split(e.o.only, ",") {
		switch strings.TrimSpace(part) {
		case "steady":
			for _, mq := range mqs {
				runs = append(runs, benchRun{part: "steady", name: "50 uplinks/s for 60 s, " + transportName(mq), broker: defaultQueues,
					mqtt: mq, devices: 50, uplinks: 60, rate: 50})
			}
		case "burst":
			for _, mq := range mqs {
				for _, br := range queues {
					runs = append(runs, benchRun{part: "burst", name: fmt.Sprintf("burst of %d from %d devices, %s, %s", e.o.devices*e.o.uplinks, e.o.devices, transportName(mq), br.name),
						broker: br, mqtt: mq, devices: e.o.devices, uplinks: e.o.uplinks, rate: e.o.rate})
				}
			}
		case "floor":
			runs = append(runs, benchRun{part: "floor", name: "reference, not app-connect: paho subscriber + one net/http POST per uplink, no storage, 50 uplinks/s for 60 s, HTTP",
				broker: defaultQueues, devices: 50, uplinks: 60, rate: 50, floor: true},
				benchRun{part: "floor", name: "reference, not app-connect: the raw floor, one goroutine relaying each uplink with its own MQTT packet loop and HTTP request writing, no storage, 50 uplinks/s for 60 s, HTTP",
					broker: defaultQueues, devices: 50, uplinks: 60, rate: 50, floor: true, floorRaw: true})
		case "arm":
			for _, mq := range mqs {
				runs = append(runs, benchRun{part: "arm", name: "ARMv5 binary under " + e.o.qemu + ", 20 uplinks/s for 60 s, " + transportName(mq),
					broker: defaultQueues, mqtt: mq, devices: 20, uplinks: 60, rate: 20, arm: true})
			}
			if e.o.armFloor != "" {
				runs = append(runs, benchRun{part: "arm", name: "reference, not app-connect: the floor (scripts/floor) for ARMv5 under " + e.o.qemu + ", 20 uplinks/s for 60 s, HTTP",
					broker: defaultQueues, devices: 20, uplinks: 60, rate: 20, arm: true, floor: true},
					benchRun{part: "arm", name: "reference, not app-connect: the raw floor (scripts/floor, APPCONNECT_FLOOR=raw) for ARMv5 under " + e.o.qemu + ", 20 uplinks/s for 60 s, HTTP",
						broker: defaultQueues, devices: 20, uplinks: 60, rate: 20, arm: true, floor: true, floorRaw: true})
			}
		case "drain":
			runs = append(runs, benchRun{part: "drain", name: fmt.Sprintf("drain: %d queued while the remote was down, then 100 ms per answer, HTTP", e.o.devices*e.o.uplinks),
				broker: unlimitedQueues, devices: e.o.devices, uplinks: e.o.uplinks, drain: true})
		}
	}
	fmt.Fprintf(e.out, "bench: app-connect with GOMAXPROCS=%d, Mosquitto as the local broker (and as the remote for MQTT)\n", e.o.gomaxprocs)
	type line struct {
		run benchRun
		res sessionResult
		err error
	}
	var results []line
	for i, r := range runs {
		runDir := filepath.Join(dir, fmt.Sprintf("run%d", i+1))
		fmt.Fprintf(e.out, "== run %d: %s\n", i+1, r.name)
		res, err := e.benchRun(ctx, mosq, runDir, r)
		if err != nil && (res.startErr || ctx.Err() != nil) {
			e.log.Error("bench run failed to start", "run", i+1, "err", err)
			return 1
		}
		results = append(results, line{r, res, err})
		if err != nil {
			fmt.Fprintf(e.out, "  run failed: %v\n", err)
			continue
		}
		printBench(e.out, "  ", r, res)
	}
	fmt.Fprintln(e.out, "== summary")
	for i, l := range results {
		if l.err != nil {
			fmt.Fprintf(e.out, "run %d (%s): failed: %v\n", i+1, l.run.name, l.err)
			continue
		}
		printBench(e.out, fmt.Sprintf("run %d (%s): ", i+1, l.run.name), l.run, l.res)
	}
	return 0
}

func transportName(mqtt bool) string {
	if mqtt {
		return "MQTT"
	}
	return "HTTP"
}

func printBench(w io.Writer, prefix string, run benchRun, res sessionResult) {
	r := res.report
	proc := "app-connect"
	if run.floor {
		proc = "floor"
	}
	perK := 0.0
	if r.Delivered > 0 {
		perK = res.cpu / float64(r.Delivered) * 1000
	}
	switch {
	case run.drain:
		rate := 0.0
		if d := r.LastDelivery.Sub(r.FirstDelivery).Seconds(); d > 0 {
			rate = float64(r.Delivered) / d
		}
		fmt.Fprintf(w, "%sdelivered %d of %d; drain %.0f uplinks/s (first → last delivery after the outage, %.2f s); lost %d, duplicates %d, out of order %d; %s %.3f CPU s per 1,000 uplinks, peak RSS %.1f MiB\n",
			prefix, r.Delivered, r.Sent, rate, r.LastDelivery.Sub(r.FirstDelivery).Seconds(), r.Missing, r.Duplicates, r.OutOfOrder, proc, perK, float64(res.rss)/(1<<20))
	case run.rate > 0:
		fmt.Fprintf(w, "%sdelivered %d of %d; lost %d, duplicates %d, out of order %d; %s %.3f CPU s per 1,000 uplinks; latency p50 %.1f ms, p99 %.1f ms; peak RSS %.1f MiB\n",
			prefix, r.Delivered, r.Sent, r.Missing, r.Duplicates, r.OutOfOrder, proc, perK, r.LatencyP50Ms, r.LatencyP99Ms, float64(res.rss)/(1<<20))
	default:
		fmt.Fprintf(w, "%sdelivered %d of %d: %.0f uplinks/s (%.2f s first publish → last delivery); lost %d, duplicates %d, out of order %d; %s %.3f CPU s per 1,000 uplinks, peak RSS %.1f MiB\n",
			prefix, r.Delivered, r.Sent, r.UplinksPerSec, r.Seconds, r.Missing, r.Duplicates, r.OutOfOrder, proc, perK, float64(res.rss)/(1<<20))
	}
}

func (e *orchestrator) benchRun(ctx context.Context, mosq, dir string, r benchRun) (sessionResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sessionResult{startErr: true}, err
	}
	broker, addr, err := e.startMosquitto(ctx, mosq, dir, r.broker.extra)
	if err != nil {
		return sessionResult{startErr: true}, err
	}
	defer func() { _ = broker.stop(5 * time.Second) }()
	simArgs := []string{
		"-devices", strconv.Itoa(r.devices), "-uplinks", strconv.Itoa(r.uplinks), "-rate", fmt.Sprint(r.rate),
		"-probe", "30s", "-wait", "30m", "-stall", "20s", "-report-every", "5s",
	}
	if r.mqtt {
		remoteDir := filepath.Join(dir, "remote")
		if err := os.MkdirAll(remoteDir, 0o755); err != nil {
			return sessionResult{startErr: true}, err
		}
		// The remote broker is the cloud, not what is measured: its queue towards
		// the simulator's subscriber is unlimited so it drops nothing itself.
		remote, raddr, err := e.startMosquitto(ctx, mosq, remoteDir, []string{"max_queued_messages 0"})
		if err != nil {
			return sessionResult{startErr: true}, err
		}
		defer func() { _ = remote.stop(5 * time.Second) }()
		simArgs = append(simArgs, "-remote-mqtt", "tcp://"+raddr)
	}
	var yamlMore string
	if r.drain {
		simArgs = append(simArgs, "-sink-down-while-publishing", "-sink-latency", "100ms")
		yamlMore = "delivery:\n  retry_max: 1s\n" // the drain measures the lanes, not the outage's last backoff
	} else if r.mqtt && e.o.inflight > 0 {
		yamlMore = fmt.Sprintf("delivery:\n  mqtt_inflight: %d\n", e.o.inflight)
	}
	var env []string
	var emulator, binary string
	if r.floor {
		if binary, err = filepath.Abs(e.o.floor); err != nil {
			return sessionResult{startErr: true}, err
		}
	}
	if r.arm {
		if emulator, err = exec.LookPath(e.o.qemu); err != nil {
			return sessionResult{startErr: true}, err
		}
		armBinary := e.o.arm
		if r.floor {
			armBinary = e.o.armFloor
		}
		if binary, err = filepath.Abs(armBinary); err != nil {
			return sessionResult{startErr: true}, err
		}
	}
	if e.o.gomaxprocs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", e.o.gomaxprocs))
	}
	if r.floorRaw {
		env = append(env, "APPCONNECT_FLOOR=raw")
	}
	return e.runSession(ctx, session{
		name:     r.name,
		dir:      dir,
		broker:   "tcp://" + addr,
		echo:     "  | ",
		simArgs:  simArgs,
		deadline: 45 * time.Minute,
		env:      env,
		yamlMore: yamlMore,
		emulator: emulator,
		binary:   binary,
	})
}

// startMosquitto starts Debian's mosquitto on a free loopback port, retrying on a port collision.
func (e *orchestrator) startMosquitto(ctx context.Context, path, dir string, extra []string) (*proc, string, error) {
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		conf := []string{
			fmt.Sprintf("listener %d 127.0.0.1", port),
			"allow_anonymous true",
			"persistence false",
			"log_dest stderr",
			"log_type error", "log_type warning", "log_type notice",
		}
		if os.Geteuid() == 0 {
			conf = append(conf, "user root") // otherwise it drops to the mosquitto user
		}
		conf = append(conf, extra...)
		confPath := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("mosquitto config: %w", err)
		}
		p, err := startProc("mosquitto", path, []string{"-c", confPath}, filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", attempt)), false)
		if err != nil {
			return nil, "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = waitDial(wctx, p, addr)
		cancel()
		if err == nil && !p.exited() {
			return p, addr, nil
		}
		lastErr = fmt.Errorf("%w\n%s", err, p.logTail(10))
		_ = p.stop(2 * time.Second)
		e.log.Warn("mosquitto did not start, retrying on another port", "attempt", attempt, "err", err)
	}
	return nil, "", fmt.Errorf("mosquitto: %w", lastErr)
}

func lookMosquitto(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin"} {
			p := filepath.Join(d, name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not in PATH nor /usr/sbin", name)
}
