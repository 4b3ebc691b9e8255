package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type envelope struct {
	Code   int             `json:"code"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
	Status string          `json:"status"`
}

func getEnvelope(t *testing.T, url string) (int, envelope) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("GET %s: %s: %v", url, b, err)
	}
	return resp.StatusCode, env
}

func TestMPowerDefaults(t *testing.T) {
	m := NewMPower()
	srv := httptest.NewServer(m)
	defer srv.Close()
	tests := []struct {
		path   string
		status int
		check  func(t *testing.T, result json.RawMessage)
	}{
		{PathLoraNetwork, 200, func(t *testing.T, r json.RawMessage) {
			var ln struct {
				Lora struct{ Enabled, BasicStationMode, PacketForwarderMode bool }
				MQTT struct {
					Host string
					Port int
				}
			}
			if err := json.Unmarshal(r, &ln); err != nil {
				t.Fatal(err)
			}
			if !ln.Lora.Enabled || ln.Lora.BasicStationMode || ln.Lora.PacketForwarderMode || ln.MQTT.Port != 1883 {
				t.Errorf("LNS not available by default: %s", r)
			}
		}},
		{PathDefaultApp, 200, func(t *testing.T, r json.RawMessage) {
			var app struct {
				Enabled    bool   `json:"enabled"`
				APIVersion string `json:"apiVersion"`
				EUI        string `json:"eui"`
			}
			if err := json.Unmarshal(r, &app); err != nil {
				t.Fatal(err)
			}
			if app.Enabled || app.APIVersion != "1.1.1" || app.EUI != CatchAllEUI {
				t.Errorf("defaultApp %s", r)
			}
		}},
		{PathAccessoryCards, 200, func(t *testing.T, r json.RawMessage) {
			if !strings.Contains(string(r), `"eui":"00:80:00:00:D0:00:01:FF"`) {
				t.Errorf("accessoryCards %s", r)
			}
		}},
		{PathDefaultApp + "/", 200, nil},
		{"/api/nothing", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, env := getEnvelope(t, srv.URL+tc.path)
			if code != tc.status || env.Code != tc.status {
				t.Fatalf("HTTP %d, code %d, want %d", code, env.Code, tc.status)
			}
			if tc.status == 200 {
				if env.Status != "success" || env.Result == nil {
					t.Fatalf("envelope %+v", env)
				}
			} else if env.Status != "fail" || env.Error == "" {
				t.Fatalf("error envelope %+v", env)
			}
			if tc.check != nil {
				tc.check(t, env.Result)
			}
		})
	}
}

func TestMPowerLoadFilesAndRuntimeChanges(t *testing.T) {
	dir := t.TempDir()
	bare := filepath.Join(dir, "bare.json")
	if err := os.WriteFile(bare, []byte(`{"lora":{"enabled":false},"mqtt":{"host":"10.0.0.1","port":1884}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewMPower()
	if err := m.LoadFiles(filepath.Join("..", "..", "config", "testdata", "defaultApp-http-v1_0.json"), bare); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	defer srv.Close()

	_, env := getEnvelope(t, srv.URL+PathDefaultApp)
	if !strings.Contains(string(env.Result), `"url":"https://api.example.net:8443/tenant-a"`) || strings.Contains(string(env.Result), `"status"`) {
		t.Errorf("envelope file not unwrapped: %s", env.Result)
	}
	_, env = getEnvelope(t, srv.URL+PathLoraNetwork)
	if string(env.Result) != `{"lora":{"enabled":false},"mqtt":{"host":"10.0.0.1","port":1884}}` {
		t.Errorf("bare file: %s", env.Result)
	}

	m.SetDefaultApp(DefaultApp("http://127.0.0.1:9/x"))
	_, env = getEnvelope(t, srv.URL+PathDefaultApp)
	var app struct {
		Enabled    bool   `json:"enabled"`
		APIVersion string `json:"apiVersion"`
		URL        string `json:"url"`
	}
	if err := json.Unmarshal(env.Result, &app); err != nil || !app.Enabled || app.APIVersion != "1.0" || app.URL != "http://127.0.0.1:9/x" {
		t.Errorf("SetDefaultApp: %s", env.Result)
	}
	m.SetLoraNetwork(json.RawMessage(`{"code":200,"status":"success","result":{"lora":{"enabled":true}}}`))
	if _, env = getEnvelope(t, srv.URL+PathLoraNetwork); string(env.Result) != `{"lora":{"enabled":true}}` {
		t.Errorf("SetLoraNetwork envelope: %s", env.Result)
	}
	if err := m.LoadFiles(filepath.Join(dir, "absent.json"), ""); err == nil {
		t.Error("LoadFiles of a missing file succeeded")
	}
	if m.Requests(PathDefaultApp) != 2 {
		t.Errorf("Requests = %d", m.Requests(PathDefaultApp))
	}
}

func TestMPowerRefusesWhileBooting(t *testing.T) {
	m := NewMPower()
	srv := httptest.NewServer(m)
	defer srv.Close()
	m.RefuseFor(150 * time.Millisecond)
	for _, p := range []string{PathLoraNetwork, PathDefaultApp, PathAccessoryCards} {
		code, env := getEnvelope(t, srv.URL+p)
		if code != 503 || env.Code != 503 || env.Status != "fail" || env.Error == "" {
			t.Errorf("%s while refusing: HTTP %d %+v", p, code, env)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if code, env := getEnvelope(t, srv.URL+PathLoraNetwork); code != 200 || env.Status != "success" {
		t.Errorf("after refusal: HTTP %d %+v", code, env)
	}
}

func TestWriteMtsIO(t *testing.T) {
	tests := []struct {
		name, uuid, want string
		ok               bool
	}{
		{"raw", "029998E06156CDD44523264B523115C1", "029998E06156CDD44523264B523115C1\n", true},
		{"dashed lowercase", "029998e0-6156-cdd4-4523-264b523115c1", "029998E06156CDD44523264B523115C1\n", true},
		{"short", "029998E0", "", false},
		{"not hex", "Z29998E06156CDD44523264B523115C1", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mts-io")
			err := WriteMtsIO(dir, tc.uuid, "18292371")
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if !tc.ok {
				return
			}
			for name, want := range map[string]string{"uuid": tc.want, "device-id": "18292371\n"} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != want {
					t.Errorf("%s = %q (%v), want %q", name, b, err, want)
				}
			}
		})
	}
}
