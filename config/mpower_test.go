package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDefaultAppFixtures(t *testing.T) {
	tests := []struct {
		file      string
		enabled   bool
		eui       string
		api       string
		filterOff bool
		transport string
	}{
		{"defaultApp-http-v1_0.json", true, "16-ea-76-f6-ab-66-3d-80", "1.0", false, TransportHTTP},
		{"defaultApp-mqtts-v1_1_1.json", true, CatchAll, "1.1.1", true, TransportMQTT},
		{"defaultApp-disabled.json", false, CatchAll, "1.1.1", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var env struct {
				Result json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(raw, &env); err != nil {
				t.Fatal(err)
			}
			d, err := ParseDefaultApp(env.Result)
			if err != nil {
				t.Fatal(err)
			}
			if d.Enabled != tc.enabled || d.EUI != tc.eui || d.APIVersion != tc.api || d.FilterOff() != tc.filterOff {
				t.Fatalf("got %+v", d)
			}
			if tc.transport != "" {
				ep, err := ParseEndpoint(d.URL)
				if err != nil || ep.Transport != tc.transport {
					t.Fatalf("endpoint %+v %v", ep, err)
				}
			}
		})
	}
}

func TestParseDefaultAppRejects(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"apiVersion":"2.0"}`, "apiVersion"},
		{`{"apiVersion":"1.0","eui":"12-34"}`, "eui"},
		{`{"apiVersion":"1.0","eui":"zz-zz-zz-zz-zz-zz-zz-zz"}`, "eui"},
		{`[1,2]`, "defaultApp"},
		{`{"enabled":"yes"}`, "defaultApp"},
	} {
		if _, err := ParseDefaultApp([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want mention of %q", tc.json, err, tc.want)
		}
	}
}

func TestNormalizeEUI(t *testing.T) {
	for in, want := range map[string]string{
		"16-EA-76-F6-AB-66-3D-80":  "16-ea-76-f6-ab-66-3d-80",
		"00:80:00:00:D0:00:01:FF":  "00-80-00-00-d0-00-01-ff",
		"0080000000d00001":         "00-80-00-00-00-d0-00-01",
		" ff-ff-ff-ff-ff-ff-ff-ff": CatchAll,
	} {
		got, err := NormalizeEUI(in)
		if err != nil || got != want {
			t.Errorf("NormalizeEUI(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "00-11", "$(reboot)", "00-80-00-00-d0-00-01-fg", "00-80-00-00-d0-00-01-ff-00"} {
		if _, err := NormalizeEUI(bad); err == nil {
			t.Errorf("NormalizeEUI(%q) accepted", bad)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		url, scheme, transport, host string
		port                         int
		path                         string
		warnings                     int
	}{
		{"http://api.example.net", "http", TransportHTTP, "api.example.net", 80, "", 0},
		{"https://api.example.net:8443/tenant-a/", "https", TransportHTTP, "api.example.net", 8443, "/tenant-a", 0},
		{"https://api.example.net/tenant-a", "https", TransportHTTP, "api.example.net", 443, "/tenant-a", 0},
		{"mqtt://broker", "mqtt", TransportMQTT, "broker", 1883, "", 0},
		{"mqtts://broker", "mqtts", TransportMQTT, "broker", 8883, "", 0},
		{"wss://broker", "wss", TransportMQTT, "broker", 443, "/mqtt", 0},
		{"wss://broker:8084/ws", "wss", TransportMQTT, "broker", 8084, "/ws", 0},
		{"http://[2001:db8::1]:8080/p", "http", TransportHTTP, "2001:db8::1", 8080, "/p", 0},
		{"http://user:pw@h/p?q=1#f", "http", TransportHTTP, "h", 80, "/p", 3},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			ep, err := ParseEndpoint(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if ep.Scheme != tc.scheme || ep.Transport != tc.transport || ep.Host != tc.host || ep.Port != tc.port || ep.Path != tc.path || len(ep.Warnings) != tc.warnings {
				t.Fatalf("got %+v", ep)
			}
		})
	}
	for _, bad := range []string{"", "ftp://h", "http://", "http://h:99999", "h:1883"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
	if ep, _ := ParseEndpoint("http://[::1]:80"); ep.Address() != "[::1]:80" {
		t.Errorf("IPv6 address %q", ep.Address())
	}
}

func FuzzParseDefaultApp(f *testing.F) {
	for _, name := range []string{"defaultApp-http-v1_0.json", "defaultApp-azure.json"} {
		if raw, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte(`{"apiVersion":"1.0","eui":"00-11-22-33-44-55-66-77"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDefaultApp(data)
		if err != nil {
			md, ok := MisconfiguredDefaultApp(data, err)
			if ok && (md.EUI != CatchAll || md.Invalid == "") {
				t.Fatalf("misconfigured stand-in %+v", md)
			}
			return
		}
		if _, err := NormalizeEUI(d.EUI); err != nil {
			t.Fatalf("accepted EUI %q", d.EUI)
		}
	})
}

// A document ParseDefaultApp refuses is still an application when its enabled
// flag can be read: under the catch-all, with the reason naming the field.
func TestMisconfiguredDefaultApp(t *testing.T) {
	for _, tc := range []struct {
		name, json  string
		ok, enabled bool
		version     string
	}{
		{"unsupported apiVersion", `{"enabled":true,"apiVersion":"9.9","eui":"00-11-22-33-44-55-66-77","url":"https://x"}`, true, true, "9.9"},
		{"numeric apiVersion", `{"enabled":true,"apiVersion":1.0}`, true, true, ""},
		{"bad eui", `{"enabled":true,"apiVersion":"1.0","eui":"zz"}`, true, true, "1.0"},
		{"field of the wrong type", `{"enabled":true,"encodeHex":"yes","apiVersion":"1.1"}`, true, true, "1.1"},
		{"disabled", `{"enabled":false,"apiVersion":"2"}`, true, false, "2"},
		{"enabled unreadable", `{"enabled":"yes","apiVersion":"1.1"}`, false, false, ""},
		{"enabled missing", `{"apiVersion":"9.9"}`, false, false, ""},
		{"not JSON", `{"enabled":true,`, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDefaultApp([]byte(tc.json))
			if err == nil {
				t.Fatal("accepted")
			}
			d, ok := MisconfiguredDefaultApp([]byte(tc.json), err)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if d.Enabled != tc.enabled || d.APIVersion != tc.version || d.EUI != CatchAll || d.Invalid != err.Error() || !d.FilterOff() {
				t.Fatalf("%+v", d)
			}
		})
	}
}

// normalizeEUIReference is NormalizeEUI as it was before its one-pass form:
// the fuzz test below holds the two to the same answers.
func normalizeEUIReference(s string) (string, error) {
	hex := strings.NewReplacer("-", "", ":", "", " ", "").Replace(strings.TrimSpace(s))
	if len(hex) != 16 {
		return "", fmt.Errorf("%q is not an EUI-64", s)
	}
	var b strings.Builder
	for i := 0; i < 16; i++ {
		c := hex[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%q is not an EUI-64", s)
		}
		if i > 0 && i%2 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func FuzzNormalizeEUI(f *testing.F) {
	for _, s := range []string{"16-EA-76-F6-AB-66-3D-80", "00:80:00:00:D0:00:01:FF", "0080000000d00001",
		" ff-ff-ff-ff-ff-ff-ff-ff\t", "00-80-00-00-d0-00-01-ff", "00-80-00-00-d0-00-01-ff-", "\u00a000 80 00 00 d0 00 01 ff", "00--80-00-00-d0-00-01-f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeEUI(s)
		want, werr := normalizeEUIReference(s)
		if (err == nil) != (werr == nil) || got != want {
			t.Fatalf("NormalizeEUI(%q) = %q, %v; the reference says %q, %v", s, got, err, want, werr)
		}
		if err != nil && !strings.Contains(err.Error(), "not an EUI-64") {
			t.Fatalf("NormalizeEUI(%q): error %q does not say what is wrong", s, err)
		}
	})
}

func TestNormalizeEUINormalFormDoesNotAllocate(t *testing.T) {
	const eui = "00-80-00-00-d0-00-01-ff"
	if n := testing.AllocsPerRun(100, func() {
		if got, err := NormalizeEUI(eui); err != nil || got != eui {
			t.Fatalf("NormalizeEUI(%q) = %q, %v", eui, got, err)
		}
	}); n != 0 {
		t.Errorf("NormalizeEUI of an EUI already in normal form allocates %v times per call, want 0", n)
	}
}
