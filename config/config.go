package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config mirrors the program's YAML file (app-connect.yml) one to one.
// Every key has a gateway default (see Default), so an empty or absent file works.
type Config struct {
	LNS      LNS      `yaml:"lns"`
	MPower   MPower   `yaml:"mpower"`
	Gateway  Gateway  `yaml:"gateway"`
	Storage  Storage  `yaml:"storage"`
	Delivery Delivery `yaml:"delivery"`
	Admin    Admin    `yaml:"admin"`
	Log      Log      `yaml:"log"`
	Join     Join     `yaml:"join"`
	Claim    Claim    `yaml:"claim"`
	// RemoteRequests is the policy of api_req, lora_req and log_req.
	RemoteRequests RemoteRequests `yaml:"remote_requests"`
	StatusReport   StatusReport   `yaml:"status_report"`
	Memory         Memory         `yaml:"memory"`
	// DefaultApp, when present, replaces mPower's defaultApp entirely (same
	// fields and names as mPower's JSON). Parsed into DefaultAppOverride.
	DefaultApp yaml.Node `yaml:"default_app"`

	// DefaultAppOverride is the parsed default_app block (nil when absent).
	DefaultAppOverride *DefaultApp `yaml:"-"`
}

// LNS is the gateway's local MQTT broker, where the embedded network server publishes.
type LNS struct {
	Broker   string `yaml:"broker"`    // tcp://host:port
	Username string `yaml:"username"`  // usually empty: the local broker is anonymous
	Password string `yaml:"password"`  //
	ClientID string `yaml:"client_id"` // empty: derived from the gateway UUID
}

// MPower is the gateway's local REST API.
type MPower struct {
	API          string        `yaml:"api"`           // base URL, http://127.0.0.1
	PollInterval time.Duration `yaml:"poll_interval"` // how often defaultApp/loraNetwork and appnets are re-read
	Timeout      time.Duration `yaml:"timeout"`       // per request
	// DefaultAppWhenDisabled uses mPower's defaultApp settings even while its
	// enabled flag is off, so mPower's built-in Cloud Connector stays stopped.
	DefaultAppWhenDisabled bool `yaml:"default_app_when_disabled"`
	// BootWait is how long start-up waits for mPower before it runs from the
	// application info cached by an earlier run.
	BootWait time.Duration `yaml:"boot_wait"`
}

// Gateway is how the program finds the gateway's identity and tools.
type Gateway struct {
	SysfsRoot string `yaml:"sysfs_root"` // directory holding mts-io's uuid and device-id
	LoraQuery string `yaml:"lora_query"` // path or name of the lora-query command
}

// Storage is the on-gateway SQLite database and the bounds of its outbox.
type Storage struct {
	Database string `yaml:"database"`
	// Per-application outbox caps; beyond them the oldest rows of that application
	// are dropped and counted.
	OutboxMaxRows  int   `yaml:"outbox_max_rows"`
	OutboxMaxBytes int64 `yaml:"outbox_max_bytes"`
}

// Delivery tunes how queued rows reach the remote applications.
type Delivery struct {
	RetryMin        time.Duration `yaml:"retry_min"`        // first retry delay
	RetryMax        time.Duration `yaml:"retry_max"`        // retry delay ceiling
	HTTPTimeout     time.Duration `yaml:"http_timeout"`     // per HTTP request (the init reply's timeout overrides it)
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"` // how long a stop waits for in-flight deliveries
	// RemovedAppGrace is how long the queued rows of an application that
	// disappeared from the configuration are kept before they are dropped (counted).
	RemovedAppGrace time.Duration `yaml:"removed_app_grace"`
	// MaxDownlinkPayload bounds a downlink's decoded payload, bytes.
	MaxDownlinkPayload int `yaml:"max_downlink_payload"`
	// MQTTRetainEvents retains MQTT up/joined/moved publishes like the
	// original (off: new subscribers do not get stale uplinks).
	MQTTRetainEvents bool `yaml:"mqtt_retain_events"`
	// HTTPLanes is how many HTTP requests one application may have in flight,
	// on lanes chosen by DevEUI (each device's order kept); 0: 16.
	HTTPLanes int `yaml:"http_lanes"`
	// MQTTInflight is how many MQTT publishes one application may have
	// awaiting their PUBACK; 0: 100.
	MQTTInflight int `yaml:"mqtt_inflight"`
}

// Memory tunes the Go runtime's garbage collector (README "Resource budget").
type Memory struct {
	// GCPercent is the collector's GOGC: a collection starts when the heap has
	// grown by this percentage of what the last one left live, and not below
	// 4 MiB × GCPercent/100. The default, 50, keeps the heap near 2 MiB at a
	// steady rate (100, Go's default, lets it reach 4 MiB) for a few more
	// collections in a burst. The GOGC environment variable, when set,
	// overrides it. Applied at start.
	GCPercent int `yaml:"gc_percent"`
}

// DefaultGCPercent is memory.gc_percent's default.
const DefaultGCPercent = 50

// Admin is the loopback-only HTTP endpoint for health, status and metrics,
// and the status.json file mPower's app-manager shows.
type Admin struct {
	Listen string `yaml:"listen"` // empty disables it
	// StatusFile is rewritten every 10 s; empty: $APP_DIR/status.json when
	// APP_DIR is set (as app-manager sets it), else none.
	StatusFile string `yaml:"status_file"`
}

// Default returns the configuration of a stock Conduit with no YAML file.
func Default() Config {
	return Config{
		LNS:    LNS{Broker: "tcp://127.0.0.1:1883"},
		MPower: MPower{API: "http://127.0.0.1", PollInterval: 60 * time.Second, Timeout: 10 * time.Second, BootWait: 30 * time.Second},
		Gateway: Gateway{
			SysfsRoot: "/sys/devices/platform/mts-io",
			LoraQuery: "lora-query",
		},
		Storage: Storage{
			Database:       "/var/config/app/app-connect/app-connect.db",
			OutboxMaxRows:  100_000,
			OutboxMaxBytes: 32 << 20,
		},
		Delivery: Delivery{
			RetryMin:           time.Second,
			RetryMax:           60 * time.Second,
			HTTPTimeout:        20 * time.Second,
			ShutdownTimeout:    5 * time.Second,
			RemovedAppGrace:    24 * time.Hour,
			MaxDownlinkPayload: 242,
		},
		Admin:          Admin{Listen: "127.0.0.1:8650"},
		Log:            DefaultLog(),
		Join:           DefaultJoin(),
		Claim:          DefaultClaim(),
		RemoteRequests: DefaultRemoteRequests(),
		StatusReport:   DefaultStatusReport(),
		Memory:         Memory{GCPercent: DefaultGCPercent},
	}
}

// Validate checks every value; each problem is one FieldError naming its key.
func (c Config) Validate() []FieldError {
	var errs []FieldError
	if err := checkURL(c.LNS.Broker, "tcp://127.0.0.1:1883", "tcp", "mqtt"); err != nil {
		errs = append(errs, FieldError{Key: "lns.broker", Err: err})
	}
	if err := checkURL(c.MPower.API, "http://127.0.0.1", "http", "https"); err != nil {
		errs = append(errs, FieldError{Key: "mpower.api", Err: err})
	}
	if c.MPower.PollInterval < time.Second {
		errs = append(errs, fieldErr("mpower.poll_interval", "must be at least 1s, got %s", c.MPower.PollInterval))
	}
	if c.MPower.BootWait < 0 {
		errs = append(errs, fieldErr("mpower.boot_wait", "must not be negative, got %s", c.MPower.BootWait))
	}
	if c.MPower.Timeout <= 0 {
		errs = append(errs, fieldErr("mpower.timeout", "must be positive, got %s", c.MPower.Timeout))
	}
	if c.Gateway.SysfsRoot == "" {
		errs = append(errs, fieldErr("gateway.sysfs_root", "must not be empty"))
	}
	if c.Gateway.LoraQuery == "" {
		errs = append(errs, fieldErr("gateway.lora_query", "must not be empty"))
	}
	if c.Storage.Database == "" {
		errs = append(errs, fieldErr("storage.database", "must not be empty"))
	}
	if c.Storage.OutboxMaxRows < 1 {
		errs = append(errs, fieldErr("storage.outbox_max_rows", "must be at least 1, got %d", c.Storage.OutboxMaxRows))
	}
	if c.Storage.OutboxMaxBytes < 1024 {
		errs = append(errs, fieldErr("storage.outbox_max_bytes", "must be at least 1024, got %d", c.Storage.OutboxMaxBytes))
	}
	if c.Delivery.RetryMin <= 0 {
		errs = append(errs, fieldErr("delivery.retry_min", "must be positive, got %s", c.Delivery.RetryMin))
	}
	if c.Delivery.RetryMax < c.Delivery.RetryMin {
		errs = append(errs, fieldErr("delivery.retry_max", "must not be below retry_min (%s), got %s", c.Delivery.RetryMin, c.Delivery.RetryMax))
	}
	if c.Delivery.HTTPTimeout <= 0 {
		errs = append(errs, fieldErr("delivery.http_timeout", "must be positive, got %s", c.Delivery.HTTPTimeout))
	}
	if c.Delivery.RemovedAppGrace < 0 {
		errs = append(errs, fieldErr("delivery.removed_app_grace", "must not be negative, got %s", c.Delivery.RemovedAppGrace))
	}
	if c.Delivery.MaxDownlinkPayload < 1 || c.Delivery.MaxDownlinkPayload > 1024 {
		errs = append(errs, fieldErr("delivery.max_downlink_payload", "must be 1..1024, got %d", c.Delivery.MaxDownlinkPayload))
	}
	if c.Delivery.ShutdownTimeout <= 0 {
		errs = append(errs, fieldErr("delivery.shutdown_timeout", "must be positive, got %s", c.Delivery.ShutdownTimeout))
	}
	if c.Admin.Listen != "" {
		if err := CheckLoopback(c.Admin.Listen); err != nil {
			errs = append(errs, FieldError{Key: "admin.listen", Err: err})
		}
	}
	if c.Memory.GCPercent < 10 || c.Memory.GCPercent > 1000 {
		errs = append(errs, fieldErr("memory.gc_percent", "must be 10..1000, got %d", c.Memory.GCPercent))
	}
	errs = append(errs, c.Log.Validate()...)
	errs = append(errs, c.Join.Validate()...)
	errs = append(errs, c.Claim.Validate()...)
	errs = append(errs, c.RemoteRequests.Validate()...)
	errs = append(errs, c.StatusReport.Validate()...)
	return errs
}

// checkURL accepts an absolute URL with a host and one of schemes; anything
// else is explained with example, a URL the key could hold.
func checkURL(raw, example string, schemes ...string) error {
	if raw == "" {
		return fmt.Errorf("must not be empty; a URL such as %s", example)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return fmt.Errorf("must be a URL such as %s, got %q", example, raw)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("scheme %q not supported (want %s), as in %s", u.Scheme, strings.Join(schemes, " or "), example)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host; a URL such as %s", raw, example)
	}
	return nil
}

// CheckLoopback accepts only host:port addresses on the loopback interface, so
// admin and proxy endpoints are never reachable from the network.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (use 127.0.0.1 or [::1])", addr)
	}
	return nil
}

// Load reads the YAML file at path over the defaults. An empty path means
// "no file": the defaults. Every problem is reported as Errors naming file,
// line and key.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already read; name is used in error messages. All
// problems found are reported together, in file order.
func Parse(name string, data []byte) (Config, error) {
	cfg := Default()
	doc, errs, readable := decodeStrict(name, data, &cfg)
	if !readable {
		return cfg, errs
	}
	if cfg.DefaultApp.Kind != 0 {
		d, err := defaultAppFromYAML(name, doc, &cfg.DefaultApp)
		if err != nil {
			errs = append(errs, err...)
		} else {
			cfg.DefaultAppOverride = &d
		}
	}
	cfg.Join = cfg.Join.Resolve(filepath.Dir(name))
	cfg.Claim = cfg.Claim.Resolve(filepath.Dir(name))
	reported := map[string]bool{}
	for _, e := range errs {
		reported[e.Key] = true
	}
	for _, e := range locate(name, doc, cfg.Validate()) {
		if !reported[e.Key] { // a value refused while decoding keeps its default: no second message
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return cfg, errs
	}
	return cfg, nil
}

// defaultAppFromYAML reads a default_app block: mPower's defaultApp fields
// (their JSON names), strictly, every problem located at its own key's line.
func defaultAppFromYAML(name string, doc, n *yaml.Node) (DefaultApp, Errors) {
	y := NewYAML(name)
	if n.Kind != yaml.MappingNode {
		y.Add(n, "default_app", "must be a mapping of mPower defaultApp fields")
		return DefaultApp{}, y.Errors()
	}
	checkNode(y, n, reflect.TypeOf(DefaultApp{}), "default_app", "json")
	if errs := y.Errors(); len(errs) > 0 {
		return DefaultApp{}, errs
	}
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		return DefaultApp{}, decodeError(name, doc, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return DefaultApp{}, Errors{{File: name, Line: n.Line, Key: "default_app", Err: fmt.Errorf("not a mapping of mPower defaultApp fields: %w", err)}}
	}
	d, err := ParseDefaultApp(b)
	if err != nil {
		var fe FieldError
		if errors.As(err, &fe) {
			key := "default_app." + fe.Key
			return d, Errors{{File: name, Line: lineOf(doc, key), Key: key, Err: fe.Err}}
		}
		return d, Errors{{File: name, Line: n.Line, Key: "default_app", Err: err}}
	}
	if _, has := v["enabled"]; !has {
		d.Enabled = true // a block written in the YAML file means "use this application"
	}
	return d, nil
}
