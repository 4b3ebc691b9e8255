package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadEmptyAndAbsentGiveDefaults(t *testing.T) {
	for _, content := range []string{"", "\n# only a comment\n", "---\n"} {
		cfg, err := Parse("app-connect.yml", []byte(content))
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if cfg.LNS.Broker != "tcp://127.0.0.1:1883" || cfg.MPower.API != "http://127.0.0.1" ||
			cfg.Gateway.SysfsRoot != "/sys/devices/platform/mts-io" || cfg.Gateway.LoraQuery != "lora-query" ||
			cfg.Storage.Database != "/var/config/app/app-connect/app-connect.db" || cfg.Admin.Listen != "127.0.0.1:8650" {
			t.Fatalf("defaults wrong: %+v", cfg)
		}
	}
	cfg, err := Load("")
	if err != nil || cfg.Delivery.RetryMax != time.Minute {
		t.Fatalf("Load(\"\") = %+v, %v", cfg, err)
	}
}

func TestLoadOverrides(t *testing.T) {
	yml := `
lns:
  broker: tcp://10.0.0.1:1884
mpower:
  api: http://127.0.0.1:8080
gateway:
  sysfs_root: /tmp/mts-io
  lora_query: /opt/bin/lora-query
storage:
  database: /tmp/x.db
  outbox_max_rows: 10
delivery:
  retry_min: 250ms
admin:
  listen: "[::1]:9000"
`
	cfg, err := Parse("a.yml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LNS.Broker != "tcp://10.0.0.1:1884" || cfg.Gateway.LoraQuery != "/opt/bin/lora-query" ||
		cfg.Storage.OutboxMaxRows != 10 || cfg.Delivery.RetryMin != 250*time.Millisecond ||
		cfg.Admin.Listen != "[::1]:9000" || cfg.Storage.OutboxMaxBytes != Default().Storage.OutboxMaxBytes {
		t.Fatalf("got %+v", cfg)
	}
}

// Every message names file, line and key and says what was expected in the
// words of the file (issue 12 item 6), matched exactly.
func TestLoadErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want string // the whole error text, one line per problem
	}{
		{"unknown top-level key", "lnss:\n  broker: x\n",
			"a.yml:1: lnss: unknown key (known: admin, claim, default_app, delivery, gateway, join, lns, log, memory, mpower, remote_requests, status_report, storage)"},
		{"unknown nested key", "lns:\n  broker: tcp://h:1\n  brokr: x\n",
			"a.yml:3: lns.brokr: unknown key (known: broker, client_id, password, username)"},
		{"duplicate key", "lns:\n  broker: tcp://h:1\n  broker: tcp://h:2\n", "a.yml:3: lns.broker: given twice (first on line 2)"},
		{"word for a number", "storage:\n  outbox_max_rows: many\n", `a.yml:2: storage.outbox_max_rows: must be a whole number, got "many"`},
		{"fraction for a number", "storage:\n  outbox_max_rows: 1.5\n", `a.yml:2: storage.outbox_max_rows: must be a whole number, got "1.5"`},
		{"number for a duration", "delivery:\n  retry_min: 5\n", `a.yml:2: delivery.retry_min: must be a duration such as 5s, got "5"`},
		{"word for a duration", "delivery:\n  retry_min: soon\n", `a.yml:2: delivery.retry_min: must be a duration such as 5s, got "soon"`},
		{"GC percentage too low", "memory:\n  gc_percent: 5\n", "a.yml:2: memory.gc_percent: must be 10..1000, got 5"},
		{"GC percentage too high", "memory:\n  gc_percent: 5000\n", "a.yml:2: memory.gc_percent: must be 10..1000, got 5000"},
		{"GC percentage off", "memory:\n  gc_percent: off\n", `a.yml:2: memory.gc_percent: must be a whole number, got "off"`},
		{"word for a flag", "delivery:\n  mqtt_retain_events: maybe\n", `a.yml:2: delivery.mqtt_retain_events: must be true or false, got "maybe"`},
		{"list for a text", "lns:\n  broker: [a, b]\n", "a.yml:2: lns.broker: must be a single value, got a list"},
		{"tab indentation", "lns:\n\tbroker: tcp://h:1\n", "a.yml:2: tabs are not allowed for indentation; use spaces"},
		{"tab before a nested key", "lns:\n  broker: tcp://h:1\n \t username: x\n", "a.yml:3: tabs are not allowed for indentation; use spaces"},
		{"section not a mapping", "lns: 5\n", "a.yml:1: lns: must be a mapping of keys"},
		{"broker without scheme", "lns:\n  broker: 127.0.0.1:1883\n", `a.yml:2: lns.broker: must be a URL such as tcp://127.0.0.1:1883, got "127.0.0.1:1883"`},
		{"broker host only", "lns:\n  broker: localhost\n", `a.yml:2: lns.broker: must be a URL such as tcp://127.0.0.1:1883, got "localhost"`},
		{"bad broker scheme", "lns:\n  broker: http://x\n", `a.yml:2: lns.broker: scheme "http" not supported (want tcp or mqtt), as in tcp://127.0.0.1:1883`},
		{"mPower API without scheme", "mpower:\n  api: 127.0.0.1\n", `a.yml:2: mpower.api: must be a URL such as http://127.0.0.1, got "127.0.0.1"`},
		{"non-loopback admin", "admin:\n  listen: 0.0.0.0:8650\n", `a.yml:2: admin.listen: "0.0.0.0:8650" is not a loopback address (use 127.0.0.1 or [::1])`},
		{"retry max below min", "delivery:\n  retry_min: 10s\n  retry_max: 1s\n", "a.yml:3: delivery.retry_max: must not be below retry_min (10s), got 1s"},
		{"syntax error", "lns:\n  broker: [\n", "a.yml:2: invalid YAML: did not find expected node content"},
		{"default_app unknown key", "lns:\n  broker: tcp://h:1\ndefault_app:\n  url: https://example.com\n  bogus: 1\n",
			"a.yml:5: default_app.bogus: unknown key (known: apiVersion, backhaulDetect, enabled, encodeHex, eui, log, options, requestOptions, url)"},
		{"default_app nested unknown key", "default_app:\n  url: https://example.com\n  options:\n    server_cert: x\n    clientcert: y\n",
			"a.yml:5: default_app.options.clientcert: unknown key (known: apikey, check_hostname, clean_session, client_cert, client_id, cloudService, downlinkTopic, overrideTopicsForAllApps, password, server_cert, uplinkTopic, username)"},
		{"default_app word for a number", "default_app:\n  url: https://example.com\n  backhaulDetect:\n    port: first\n",
			`a.yml:4: default_app.backhaulDetect.port: must be a whole number, got "first"`},
		{"default_app word for a flag", "default_app:\n  url: https://example.com\n  encodeHex: sometimes\n",
			`a.yml:3: default_app.encodeHex: must be true or false, got "sometimes"`},
		{"default_app API version", "default_app:\n  url: https://example.com\n  apiVersion: '2.0'\n",
			`a.yml:3: default_app.apiVersion: "2.0" not supported (want 1.0, 1.1 or 1.1.1)`},
		{"default_app EUI", "default_app:\n  url: https://example.com\n  eui: 12-34\n",
			`a.yml:3: default_app.eui: "12-34" is not an EUI-64 (want 16 hex digits)`},
		{"default_app not a mapping", "default_app: yes\n", "a.yml:1: default_app: must be a mapping of mPower defaultApp fields"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("a.yml", []byte(tc.yml))
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got %s\nwant %s", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "a.yml" {
				t.Fatalf("error %T is not a located *Error", err)
			}
		})
	}
	// Several problems: one line each, in file order.
	_, err := Parse("a.yml", []byte("storage:\n  outbox_max_rows: 0\nlog:\n  level: loud\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "a.yml:2: storage.outbox_max_rows: must be at least 1, got 0\na.yml:4: log.level: ") {
		t.Fatalf("several errors: %v", err)
	}
	// Type, validation and default_app problems are all reported in one run.
	_, err = Parse("a.yml", []byte("lns:\n  broker: 127.0.0.1:1883\ndelivery:\n  retry_min: 5\ndefault_app:\n  url: https://example.com\n  bogus: 1\n"))
	want := `a.yml:2: lns.broker: must be a URL such as tcp://127.0.0.1:1883, got "127.0.0.1:1883"` + "\n" +
		`a.yml:4: delivery.retry_min: must be a duration such as 5s, got "5"` + "\n" +
		"a.yml:7: default_app.bogus: unknown key (known: apiVersion, backhaulDetect, enabled, encodeHex, eui, log, options, requestOptions, url)"
	if err == nil || err.Error() != want {
		t.Fatalf("errors of one run\n got %v\nwant %s", err, want)
	}
}

// memory.gc_percent defaults to DefaultGCPercent (below Go's 100: README
// "Resource budget") and takes any value in 10..1000.
func TestMemoryGCPercent(t *testing.T) {
	if got := Default().Memory.GCPercent; got != 50 {
		t.Fatalf("default gc_percent = %d, want 50", got)
	}
	for _, v := range []int{10, 100, 1000} {
		cfg, err := Parse("a.yml", fmt.Appendf(nil, "memory:\n  gc_percent: %d\n", v))
		if err != nil || cfg.Memory.GCPercent != v {
			t.Fatalf("gc_percent %d: got %d, %v", v, cfg.Memory.GCPercent, err)
		}
	}
}

func TestShippedConfigIsValid(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "packaging", "mpower", "app-connect.yml"))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.Join = d.Join.Resolve(filepath.Join("..", "packaging", "mpower"))
	if cfg.LNS != d.LNS || cfg.Storage != d.Storage || cfg.Delivery != d.Delivery || cfg.MPower != d.MPower {
		t.Fatalf("shipped config differs from the defaults:\n%+v\n%+v", cfg, d)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("lns:\n  broker: tcp://127.0.0.1:1883\n"))
	f.Add([]byte("storage:\n  outbox_max_rows: 5\n"))
	f.Add([]byte("a: [1, {b: c}]\n"))
	f.Add([]byte("lns: &a\n  broker: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yml", data)
		if err == nil {
			if fe := cfg.Validate(); len(fe) != 0 {
				t.Fatalf("accepted an invalid config: %v", fe)
			}
		}
	})
}
