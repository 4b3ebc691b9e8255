// Command conduit-sim is a MultiTech Conduit in a process: an MQTT broker endpoint (embedded, or an
// external Mosquitto) carrying the network server's event stream for simulated devices, the mPower
// REST API, the mts-io identity files and a remote cloud HTTP sink counting what arrives.
//
// It prints one summary line every -report-every and, at the end, the totals line
//
//	sent N, delivered N, duplicates N, missing N
//
// Exit status: 0 on success, 1 when something failed to start, 2 on bad flags, 3 when -wait
// expired with uplinks still missing.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/internal/sim"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitMissing = 3
)

type options struct {
	broker       string
	mqttListen   string
	mpowerListen string
	mpowerRefuse time.Duration
	defaultApp   string
	loraNetwork  string
	appURL       string
	sinkListen   string
	sinkCert     string // PEM files: the sink serves HTTPS with them
	sinkKey      string
	sinkClientCA string // PEM CA: the sink requires a client certificate it signed
	remoteMQTT   string // the cloud side over MQTT: this broker's messages are counted
	sinkPrefix   string
	sinkLatency  time.Duration
	sinkDown     bool
	sysfs        string
	uuid         string
	deviceID     string
	devices      int
	uplinks      int
	rate         float64
	appEUI       string
	gwEUI        string
	seed         int64
	reportEvery  time.Duration
	statusReport time.Duration // -write-config: status_report.interval (0: off)
	duration     time.Duration
	wait         time.Duration
	stall        time.Duration
	probe        time.Duration
	jsonFile     string
	writeConfig  string
	database     string
	adminListen  string
	hold         bool
	verbose      bool
	joinProxy    string
	jsListen     string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("conduit-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.broker, "broker", "", "external MQTT broker URL (tcp://127.0.0.1:1883); empty: embedded broker on -mqtt-listen")
	fs.StringVar(&o.mqttListen, "mqtt-listen", "127.0.0.1:1883", "embedded broker address (port 0: any free port)")
	fs.StringVar(&o.mpowerListen, "mpower-listen", "127.0.0.1:8080", "mPower REST API address")
	fs.DurationVar(&o.mpowerRefuse, "mpower-refuse", 0, "answer 503 on the mPower API for this long after start (slow boot)")
	fs.StringVar(&o.defaultApp, "default-app", "", "defaultApp JSON file (envelope or bare result)")
	fs.StringVar(&o.loraNetwork, "lora-network", "", "loraNetwork JSON file (envelope or bare result); default: LNS available, broker as used")
	fs.StringVar(&o.appURL, "app-url", "", "default application URL (enabled, API 1.0, catch-all EUI); default: this simulator's sink")
	fs.StringVar(&o.sinkListen, "sink-listen", "127.0.0.1:8090", "remote cloud HTTP sink address; empty disables the sink")
	fs.StringVar(&o.sinkCert, "sink-tls-cert", "", "serve the sink over HTTPS with this PEM certificate (needs -sink-tls-key)")
	fs.StringVar(&o.sinkKey, "sink-tls-key", "", "PEM private key of -sink-tls-cert")
	fs.StringVar(&o.remoteMQTT, "remote-mqtt", "", "remote MQTT broker (tcp://host:port) whose messages from app-connect are counted instead of the HTTP sink's; default app URL mqtt://… unless -app-url")
	fs.StringVar(&o.sinkClientCA, "sink-client-ca", "", "PEM CA: the HTTPS sink requires a client certificate signed by it")
	fs.DurationVar(&o.sinkLatency, "sink-latency", 0, "the sink answers every request this much later (a slow backhaul)")
	fs.BoolVar(&o.sinkDown, "sink-down-while-publishing", false, "the sink answers 503 from the first publish until publishing ended (a backlog builds up)")
	fs.StringVar(&o.sinkPrefix, "sink-prefix", "", "path prefix of the sink's API (e.g. /tenant-a)")
	fs.StringVar(&o.sysfs, "sysfs", "", "directory for the mts-io files uuid and device-id (default: a temporary directory)")
	fs.StringVar(&o.uuid, "uuid", "029998E06156CDD44523264B523115C1", "gateway UUID written to <sysfs>/uuid")
	fs.StringVar(&o.deviceID, "device-id", "18292371", "gateway serial written to <sysfs>/device-id")
	fs.IntVar(&o.devices, "devices", 10, "number of simulated devices")
	fs.IntVar(&o.uplinks, "uplinks", 0, "uplinks per device (0: until -duration or a signal)")
	fs.Float64Var(&o.rate, "rate", 0, "messages per second in total (0: as fast as possible)")
	fs.StringVar(&o.appEUI, "app-eui", "16-ea-76-f6-ab-66-3d-80", "AppEUI of the devices")
	fs.StringVar(&o.gwEUI, "gw-eui", "00-80-00-00-d0-00-01-ff", "gateway EUI")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the device identities and radio values")
	fs.DurationVar(&o.reportEvery, "report-every", 0, "print a summary line this often (0: never)")
	fs.DurationVar(&o.statusReport, "status-report", 0, "with -write-config: turn app-connect's status report on at this interval and print the last one received before the totals (0: off)")
	fs.DurationVar(&o.duration, "duration", 0, "stop publishing after this long (0: no limit)")
	fs.DurationVar(&o.wait, "wait", 0, "after publishing, wait up to this long for the sink to have received everything")
	fs.DurationVar(&o.stall, "stall", 0, "during -wait, give up when the sink received nothing new for this long (0: wait the whole -wait)")
	fs.DurationVar(&o.probe, "probe", 0, "before publishing, send probe uplinks from an extra device until the sink receives one, up to this long (0: no probe)")
	fs.StringVar(&o.jsonFile, "json", "", "write the final report as JSON to this file")
	fs.StringVar(&o.writeConfig, "write-config", "", "write an app-connect YAML configuration pointing at the simulator to this file")
	fs.StringVar(&o.database, "database", "", "storage.database for -write-config (default: in the temporary directory)")
	fs.StringVar(&o.adminListen, "admin-listen", "", "admin.listen for -write-config (port 0: a free port is chosen)")
	fs.BoolVar(&o.hold, "hold", false, "after the final report keep serving until SIGINT/SIGTERM")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	fs.StringVar(&o.joinProxy, "join-proxy", "", "app-connect's join proxy URL (http://127.0.0.1:8651/): join every device through it before publishing")
	fs.StringVar(&o.jsListen, "js-listen", "", "serve the Join Server role (brocaar/lorawan's handler with the devices' keys) on this address; empty: off")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.devices < 1:
		return o, errors.New("-devices must be at least 1")
	case o.uplinks < 0 || o.rate < 0:
		return o, errors.New("-uplinks and -rate must not be negative")
	case o.mpowerListen == "":
		return o, errors.New("-mpower-listen must not be empty")
	}
	if err := checkJoinFlags(o); err != nil {
		return o, err
	}
	return o, nil
}

func main() {
	// Installed (linked) under the name lora-query, the binary is the gateway's
	// lora-query stand-in, answering from the state file next to the link.
	if filepath.Base(os.Args[0]) == "lora-query" {
		os.Exit(sim.RunLoraQuery(os.Args[1:], filepath.Dir(os.Args[0]), os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "conduit-sim:", err)
		return exitUsage
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	brokerLevel := slog.LevelError // the broker's connection chatter is noise unless debugging
	if o.verbose {
		brokerLevel = slog.LevelDebug
	}
	brokerLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: brokerLevel})).With("part", "broker")
	s := &simulator{o: o, log: log, brokerLog: brokerLog, out: stdout}
	defer s.close()
	if err := s.start(); err != nil {
		log.Error("start failed", "err", err)
		return exitFailed
	}
	return s.runStream()
}

// simulator holds the running parts.
type simulator struct {
	o         options
	log       *slog.Logger
	brokerLog *slog.Logger
	out       io.Writer

	tmpDir    string
	broker    *sim.Broker
	brokerURL string
	mpower    *sim.MPower
	sink      *sim.Sink
	sinkURL   string
	source    sim.Source // set by joinAll: uplinks through the joined sessions
	remote    *sim.MQTTRemote
	servers   []*http.Server
	pub       *sim.Publisher
	fleet     *sim.Fleet
}

func (s *simulator) start() error {
	o := s.o
	if o.sysfs == "" || (o.writeConfig != "" && o.database == "") {
		dir, err := os.MkdirTemp("", "conduit-sim-*")
		if err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		s.tmpDir = dir
		if o.sysfs == "" {
			s.o.sysfs = filepath.Join(dir, "mts-io")
		}
		if o.database == "" {
			s.o.database = filepath.Join(dir, "app-connect.db")
		}
	}
	if err := sim.WriteMtsIO(s.o.sysfs, o.uuid, o.deviceID); err != nil {
		return err
	}

	s.brokerURL = o.broker
	if s.brokerURL == "" {
		b, err := sim.StartBrokerWith(o.mqttListen, sim.BrokerOptions{Logger: s.brokerLog})
		if err != nil {
			return err
		}
		s.broker = b
		s.brokerURL = b.URL()
		s.log.Info("embedded broker listening", "addr", b.Addr())
	}

	if o.sinkListen != "" {
		s.sink = sim.NewSink(o.sinkPrefix)
		if o.uplinks == 0 {
			s.sink.SetRecordLimit(1000) // a run without end must not grow without end
		}
		s.sink.SetDelay(o.sinkLatency)
		tc, err := sinkTLS(o)
		if err != nil {
			return err
		}
		addr, err := s.serveTLS("sink", o.sinkListen, s.sink, tc)
		if err != nil {
			return err
		}
		scheme := "http://"
		if tc != nil {
			scheme = "https://"
		}
		s.sinkURL = scheme + addr + o.sinkPrefix
		s.log.Info("remote sink listening", "url", s.sinkURL)
	}

	if o.remoteMQTT != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		remote, err := sim.NewMQTTRemote(ctx, o.remoteMQTT, nil)
		cancel()
		if err != nil {
			return err
		}
		s.remote, s.sink = remote, remote.Sink
		if u, err := url.Parse(o.remoteMQTT); err == nil && u.Host != "" {
			s.sinkURL = "mqtt://" + u.Host
		}
		s.log.Info("remote MQTT role subscribed", "broker", o.remoteMQTT)
	}

	s.mpower = sim.NewMPower()
	host, port := brokerHostPort(s.brokerURL)
	s.mpower.SetLoraNetwork(sim.LoraNetwork(o.gwEUI, host, port))
	s.mpower.SetAccessoryCards(sim.AccessoryCards(o.gwEUI))
	switch appURL := firstNonEmpty(o.appURL, s.sinkURL); {
	case appURL != "":
		s.mpower.SetDefaultApp(sim.DefaultApp(appURL))
	default:
		s.mpower.SetDefaultApp(sim.DefaultApp(""))
	}
	if err := s.mpower.LoadFiles(o.defaultApp, o.loraNetwork); err != nil {
		return err
	}
	if o.mpowerRefuse > 0 {
		s.mpower.RefuseFor(o.mpowerRefuse)
	}
	mpAddr, err := s.serve("mpower", o.mpowerListen, s.mpower)
	if err != nil {
		return err
	}
	s.log.Info("mPower API listening", "url", "http://"+mpAddr)

	if o.writeConfig != "" {
		if err := s.writeConfig(mpAddr); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := sim.NewPublisher(ctx, s.brokerURL)
	if err != nil {
		return err
	}
	s.pub = pub
	s.fleet = sim.NewFleet(o.devices, o.appEUI, o.gwEUI, o.seed)
	return s.startJoinServer()
}

// sinkTLS is the sink's TLS configuration from the flags, nil for plain HTTP.
func sinkTLS(o options) (*tls.Config, error) {
	if o.sinkCert == "" && o.sinkKey == "" {
		if o.sinkClientCA != "" {
			return nil, errors.New("-sink-client-ca needs -sink-tls-cert and -sink-tls-key")
		}
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(o.sinkCert, o.sinkKey)
	if err != nil {
		return nil, fmt.Errorf("sink TLS: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if o.sinkClientCA != "" {
		pem, err := os.ReadFile(o.sinkClientCA)
		if err != nil {
			return nil, fmt.Errorf("sink client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sink client CA %s: no PEM certificate", o.sinkClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// serve starts an HTTP server for h on addr and returns the real address.
func (s *simulator) serve(name, addr string, h http.Handler) (string, error) {
	return s.serveTLS(name, addr, h, nil)
}

// serveTLS is serve over TLS when tc is not nil.
func (s *simulator) serveTLS(name, addr string, h http.Handler, tc *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "part", name, "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// installLoraQuery links this binary as lora-query beside the mts-io
// directory, answering from the simulated gateway and sessions.
func (s *simulator) installLoraQuery() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(s.o.sysfs), "lora-query-sim")
	os.Remove(filepath.Join(dir, "lora-query"))
	gw, _ := json.Marshal(map[string]string{"gweui": s.o.gwEUI})
	state := sim.LoraQueryState{Gateways: []json.RawMessage{gw}}
	// The same devices the run will publish for (the fleet is deterministic).
	fleet := sim.NewFleet(s.o.devices, s.o.appEUI, s.o.gwEUI, s.o.seed)
	for _, d := range fleet.Devices() {
		rec, _ := json.Marshal(map[string]string{"deveui": d.DevEUI, "appeui": d.AppEUI})
		state.Sessions = append(state.Sessions, rec)
	}
	state.Devices = fleet.Len()
	lq, err := sim.InstallLoraQuery(dir, self, state)
	if err != nil {
		return "", err
	}
	return lq.Path(), nil
}

// appConfig is the part of app-connect's YAML file the simulator fills in.
type appConfig struct {
	LNS struct {
		Broker string `yaml:"broker"`
	} `yaml:"lns"`
	MPower struct {
		API string `yaml:"api"`
	} `yaml:"mpower"`
	Gateway struct {
		SysfsRoot string `yaml:"sysfs_root"`
		LoraQuery string `yaml:"lora_query,omitempty"`
	} `yaml:"gateway"`
	Storage struct {
		Database string `yaml:"database"`
	} `yaml:"storage"`
	Admin *struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin,omitempty"`
	StatusReport *struct {
		Enabled  bool   `yaml:"enabled"`
		Interval string `yaml:"interval"`
	} `yaml:"status_report,omitempty"`
}

func (s *simulator) writeConfig(mpowerAddr string) error {
	var c appConfig
	c.LNS.Broker = s.brokerURL
	c.MPower.API = "http://" + mpowerAddr
	c.Gateway.SysfsRoot = s.o.sysfs
	c.Storage.Database = s.o.database
	if lq, err := s.installLoraQuery(); err != nil {
		s.log.Warn("lora-query stand-in not installed", "err", err)
	} else {
		c.Gateway.LoraQuery = lq
	}
	if s.o.adminListen != "" {
		addr, err := resolveFreePort(s.o.adminListen)
		if err != nil {
			return fmt.Errorf("-admin-listen: %w", err)
		}
		c.Admin = &struct {
			Listen string `yaml:"listen"`
		}{addr}
	}
	if s.o.statusReport > 0 {
		c.StatusReport = &struct {
			Enabled  bool   `yaml:"enabled"`
			Interval string `yaml:"interval"`
		}{true, s.o.statusReport.String()}
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	// Written aside and renamed, so whoever waits for the file never reads half of it.
	tmp := s.o.writeConfig + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp, s.o.writeConfig); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	s.log.Info("app-connect configuration written", "file", s.o.writeConfig)
	return nil
}

// report is the final report, also written by -json.
type report struct {
	Sent            int64     `json:"sent"`
	Delivered       int64     `json:"delivered_unique"`
	Duplicates      int       `json:"duplicates"`
	OutOfOrder      int       `json:"out_of_order"`
	Missing         int64     `json:"missing"`
	JoinedSent      int       `json:"joined_sent"`
	PublishFailed   int64     `json:"publish_failed"`
	SinkRequests    int       `json:"sink_requests"`
	BatchRequests   int       `json:"batch_requests"`
	FirstPublish    time.Time `json:"first_publish"`
	LatencyP50Ms    float64   `json:"latency_p50_ms"` // LNS time in the uplink → arrival at the sink
	LatencyP99Ms    float64   `json:"latency_p99_ms"`
	FirstDelivery   time.Time `json:"first_delivery"`
	LastDelivery    time.Time `json:"last_delivery"`
	Seconds         float64   `json:"seconds"`            // first publish → last delivery
	UplinksPerSec   float64   `json:"uplinks_per_second"` // delivered / Seconds
	SinkEnabled     bool      `json:"sink_enabled"`
	PublishFinished bool      `json:"publish_finished"`
}

func (s *simulator) snapshot(firstPublish time.Time) report {
	exp := s.fleet.Expected()
	var r report
	for _, n := range exp {
		r.Sent += int64(n)
	}
	r.FirstPublish = firstPublish
	ps := s.pub.Stats()
	r.PublishFailed = ps.Failed
	if s.sink == nil {
		return r
	}
	r.SinkEnabled = true
	r.Missing = int64(s.sink.Missing(exp))
	r.Delivered = r.Sent - r.Missing
	st := s.sink.Stats()
	r.Duplicates, r.OutOfOrder = st.Duplicates, st.OutOfOrder
	r.SinkRequests, r.BatchRequests = st.Requests, st.BatchRequests
	r.FirstDelivery, r.LastDelivery = st.FirstUplink, st.LastUplink
	r.LatencyP50Ms = float64(s.sink.Latency(0.50).Microseconds()) / 1000
	r.LatencyP99Ms = float64(s.sink.Latency(0.99).Microseconds()) / 1000
	if !firstPublish.IsZero() && r.LastDelivery.After(firstPublish) {
		r.Seconds = r.LastDelivery.Sub(firstPublish).Seconds()
		r.UplinksPerSec = float64(r.Delivered) / r.Seconds
	}
	return r
}

func (s *simulator) runStream() int {
	o := s.o
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if o.probe > 0 {
		if err := s.runProbe(ctx); err != nil {
			s.log.Error("probe failed", "err", err)
			return exitFailed
		}
	}

	if err := s.joinAll(ctx); err != nil {
		s.log.Error("joins failed", "err", err)
		return exitFailed
	}

	pubCtx := ctx
	if o.duration > 0 {
		var cancel context.CancelFunc
		pubCtx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	start := time.Now()
	each, rate := "until stopped", "as fast as possible"
	if o.uplinks > 0 {
		each = fmt.Sprintf("%d uplinks each", o.uplinks)
	}
	if o.rate > 0 {
		rate = fmt.Sprintf("%g messages/s", o.rate)
	}
	if s.sink != nil {
		s.sink.ResetLatencies() // the probe's uplinks waited for app-connect's start
	}
	if o.sinkDown && s.sink != nil {
		s.sink.FailFor(100*365*24*time.Hour, http.StatusServiceUnavailable)
	}
	fmt.Fprintf(s.out, "publishing: %d devices, %s, %s, broker %s\n", o.devices, each, rate, s.brokerURL)

	reportDone := make(chan struct{})
	reportStop := make(chan struct{})
	go func() {
		defer close(reportDone)
		if o.reportEvery <= 0 {
			return
		}
		t := time.NewTicker(o.reportEvery)
		defer t.Stop()
		for {
			select {
			case <-reportStop:
				return
			case <-t.C:
				r := s.snapshot(start)
				fmt.Fprintf(s.out, "t=%.0fs sent %d, delivered %d, duplicates %d, missing-so-far %d\n",
					time.Since(start).Seconds(), r.Sent, r.Delivered, r.Duplicates, r.Missing)
			}
		}
	}()

	var src sim.Source = s.source
	if src == nil {
		src = sim.FleetSource(s.fleet)
	}
	rs, err := s.pub.RunSource(pubCtx, src, o.uplinks, o.rate)
	finished := err == nil
	if err != nil && pubCtx.Err() == nil {
		s.log.Error("publishing failed", "err", err)
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.pub.Flush(flushCtx); err != nil {
		s.log.Warn("some publications failed", "err", err)
	}
	cancelFlush()
	stop() // a first signal ends publishing; a second one ends the wait
	if o.sinkDown && s.sink != nil {
		s.sink.FailFor(0, http.StatusServiceUnavailable) // the remote is back
		fmt.Fprintln(s.out, "sink: answering again")
	}

	status := exitOK
	if o.wait > 0 && s.sink != nil {
		wctx, wstop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		wctx, wcancel := context.WithTimeout(wctx, o.wait)
		if err := s.waitDelivered(wctx); err != nil {
			s.log.Warn("delivery incomplete", "err", err)
			status = exitMissing
		}
		wcancel()
		wstop()
	}
	close(reportStop)
	<-reportDone

	if o.statusReport > 0 && s.sink != nil {
		if b := s.sink.LastStatus(); b != nil {
			fmt.Fprintf(s.out, "status report (%d received), the last: %s\n", s.sink.Stats().Status, b)
		}
	}
	r := s.snapshot(start)
	r.JoinedSent = rs.Joined
	r.PublishFinished = finished
	fmt.Fprintf(s.out, "sent %d, delivered %d, duplicates %d, missing %d\n", r.Sent, r.Delivered, r.Duplicates, r.Missing)
	if o.jsonFile != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(o.jsonFile, append(b, '\n'), 0o644); err != nil {
			s.log.Error("write report", "err", err)
			return exitFailed
		}
	}
	if o.hold {
		hctx, hstop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		<-hctx.Done()
		hstop()
	}
	return status
}

// waitDelivered waits until the sink has every uplink the fleet generated, ctx ends, or (with
// -stall) the sink stopped receiving anything for that long.
func (s *simulator) waitDelivered(ctx context.Context) error {
	expected := s.fleet.Expected()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastCount, lastChange := -1, time.Now()
	for {
		missing := s.sink.Missing(expected)
		if missing == 0 {
			return nil
		}
		if n := s.sink.Stats().Requests; n != lastCount {
			lastCount, lastChange = n, time.Now()
		} else if s.o.stall > 0 && time.Since(lastChange) >= s.o.stall {
			return fmt.Errorf("%d uplinks missing, nothing received for %v", missing, s.o.stall)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d uplinks missing: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// runProbe publishes uplinks of a device outside the fleet until the sink receives one: then the
// whole path (broker subscription, app-connect, delivery) is live and nothing published later is
// lost for want of a subscriber.
func (s *simulator) runProbe(ctx context.Context) error {
	if s.sink == nil {
		return errors.New("-probe needs the sink (-sink-listen)")
	}
	taken := map[string]bool{}
	for _, d := range s.fleet.Devices() {
		taken[d.DevEUI] = true
	}
	var probe *sim.Fleet
	for seed := s.o.seed ^ 0x70726f6265; ; seed++ {
		probe = sim.NewFleet(1, s.o.appEUI, s.o.gwEUI, seed)
		if !taken[probe.Devices()[0].DevEUI] {
			break
		}
	}
	eui := probe.Devices()[0].DevEUI
	ctx, cancel := context.WithTimeout(ctx, s.o.probe)
	defer cancel()
	s.log.Info("probing the delivery path", "deveui", eui)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		topic, payload, _ := probe.Uplink(0)
		if err := s.pub.Publish(ctx, topic, payload); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe: nothing reached the sink within %v: %w", s.o.probe, ctx.Err())
		case <-t.C:
		}
		if len(s.sink.Received(eui)) > 0 {
			fmt.Fprintf(s.out, "probe delivered: the path is live\n")
			return nil
		}
	}
}

func (s *simulator) close() {
	if s.pub != nil {
		s.pub.Close()
	}
	if s.remote != nil {
		s.remote.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
	if s.broker != nil {
		_ = s.broker.Close()
	}
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

// brokerHostPort splits tcp://host:port for mPower's loraNetwork.mqtt.
func brokerHostPort(raw string) (string, int) {
	u, err := url.Parse(raw)
	if err != nil {
		return "127.0.0.1", 1883
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = 1883
	}
	return u.Hostname(), port
}

// resolveFreePort turns host:0 into host:<a port free right now>.
func resolveFreePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
