package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// mPower API paths app-connect reads (conduit.md §3.1).
const (
	PathLoraNetwork     = "/api/loraNetwork"
	PathDefaultApp      = "/api/loraNetwork/defaultApp"
	PathAccessoryCards  = "/api/system/accessoryCards"
	CatchAllEUI         = "ff-ff-ff-ff-ff-ff-ff-ff"
	defaultGatewayEUI   = "00-80-00-00-d0-00-01-ff"
	defaultMQTTHost     = "127.0.0.1"
	defaultMQTTPort     = 1883
	mpowerRefusalStatus = http.StatusServiceUnavailable
)

// MPower serves the mPower REST API of a Conduit in its {"code","result","status"} envelope.
// Results are set at run time; all methods are safe for concurrent use.
type MPower struct {
	mu          sync.Mutex
	results     map[string]json.RawMessage // path → result
	refuseUntil time.Time
	requests    map[string]int // path → requests served
}

// NewMPower returns an API with a gateway's defaults: LNS available (LoRa enabled, no basic
// station nor packet forwarder mode, broker 127.0.0.1:1883), default application disabled
// (mPower 7.x defaults), one LoRa accessory card.
func NewMPower() *MPower {
	return &MPower{
		results: map[string]json.RawMessage{
			PathLoraNetwork:    LoraNetwork(defaultGatewayEUI, defaultMQTTHost, defaultMQTTPort),
			PathDefaultApp:     DefaultApp(""),
			PathAccessoryCards: AccessoryCards(defaultGatewayEUI),
		},
		requests: map[string]int{},
	}
}

// SetDefaultApp replaces the result of GET /api/loraNetwork/defaultApp. It accepts the envelope
// form or a bare result.
func (m *MPower) SetDefaultApp(v json.RawMessage) { m.SetResult(PathDefaultApp, v) }

// SetLoraNetwork replaces the result of GET /api/loraNetwork (envelope or bare result).
func (m *MPower) SetLoraNetwork(v json.RawMessage) { m.SetResult(PathLoraNetwork, v) }

// SetAccessoryCards replaces the result of GET /api/system/accessoryCards (envelope or bare).
func (m *MPower) SetAccessoryCards(v json.RawMessage) { m.SetResult(PathAccessoryCards, v) }

// SetResult serves v (envelope or bare result) on GET path, for any mPower endpoint (api_req
// targets included). A nil v removes the path.
func (m *MPower) SetResult(path string, v json.RawMessage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == nil {
		delete(m.results, path)
		return
	}
	m.results[path] = unwrapEnvelope(v)
}

// LoadFiles loads the defaultApp and loraNetwork results from files (envelope form as in the
// fixtures, or a bare result object). An empty name leaves that result unchanged.
func (m *MPower) LoadFiles(defaultAppFile, loraNetworkFile string) error {
	for _, f := range []struct{ name, path string }{
		{defaultAppFile, PathDefaultApp},
		{loraNetworkFile, PathLoraNetwork},
	} {
		if f.name == "" {
			continue
		}
		b, err := os.ReadFile(f.name)
		if err != nil {
			return fmt.Errorf("sim: mpower: %w", err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("sim: mpower: %s: not valid JSON", f.name)
		}
		m.SetResult(f.path, json.RawMessage(b))
	}
	return nil
}

// RefuseFor makes the API answer 503 fail envelopes for d from now: mPower still booting.
// A zero or negative d ends refusal.
func (m *MPower) RefuseFor(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refuseUntil = time.Now().Add(d)
}

// Requests returns how many requests path received (refused ones included).
func (m *MPower) Requests(path string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[path]
}

// ServeHTTP implements http.Handler.
func (m *MPower) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	m.mu.Lock()
	m.requests[path]++
	refusing := time.Now().Before(m.refuseUntil)
	result, ok := m.results[path]
	m.mu.Unlock()
	switch {
	case refusing:
		writeFail(w, mpowerRefusalStatus, "Service Unavailable")
	case !ok:
		writeFail(w, http.StatusNotFound, "Not Found")
	case r.Method != http.MethodGet:
		writeFail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	default:
		var buf bytes.Buffer
		buf.WriteString(`{"code":200,"result":`)
		buf.Write(result)
		buf.WriteString(`,"status":"success"}`)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(buf.Bytes())
	}
}

func writeFail(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Code   int    `json:"code"`
		Error  string `json:"error"`
		Status string `json:"status"`
	}{code, msg, "fail"})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// unwrapEnvelope returns the result of a success envelope, or v itself when it is not one.
func unwrapEnvelope(v json.RawMessage) json.RawMessage {
	var env struct {
		Status *string          `json:"status"`
		Result *json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(v, &env); err == nil && env.Status != nil && env.Result != nil {
		return compact(*env.Result)
	}
	return compact(v)
}

func compact(v json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return append(json.RawMessage(nil), v...)
	}
	return buf.Bytes()
}

// DefaultApp returns a defaultApp result: mPower 7.x's disabled default when url is empty,
// otherwise an enabled API v1.0 catch-all application forwarding to url.
func DefaultApp(url string) json.RawMessage {
	app := map[string]any{
		"apiVersion":     "1.1.1",
		"backhaulDetect": map[string]any{"enabled": false, "payload": "FF", "port": 1, "timeout": 300},
		"enabled":        false,
		"encodeHex":      false,
		"eui":            CatchAllEUI,
		"log":            map[string]any{"destination": "SYSLOG", "level": 30, "path": "/var/log/lora-cloud-connector.log"},
		"module":         "",
		"options": map[string]any{
			"NewOption": false, "apikey": "", "check_hostname": false, "clean_session": false,
			"client_cert": "", "cloudService": "MQTT", "downlinkTopic": "lorawan/%(appeui)s/%(deveui)s/down",
			"overrideTopicsForAllApps": false, "password": "", "server_cert": "",
			"uplinkTopic": "lorawan/%(appeui)s/%(deveui)s/up", "username": "",
		},
		"requestOptions": map[string]any{"api": false, "log": false, "lora": false},
		"url":            "",
	}
	if url != "" {
		app["apiVersion"] = "1.0"
		app["enabled"] = true
		app["url"] = url
	}
	return mustJSON(app)
}

// LoraNetwork returns a loraNetwork result with the LNS available, the broker at
// mqttHost:mqttPort and gwEUI as the first LoRa card's EUI.
func LoraNetwork(gwEUI, mqttHost string, mqttPort int) json.RawMessage {
	return mustJSON(map[string]any{
		"lora": map[string]any{
			"enabled": true, "basicStationMode": false, "packetForwarderMode": false,
			"channelPlan": "US915", "frequencySubBand": 2, "netID": "000013", "eui_1": colonEUI(gwEUI),
		},
		"log":  map[string]any{"console": false, "level": 30, "path": "/var/log/lora-network-server.log", "syslog": true},
		"mqtt": map[string]any{"enabled": true, "host": mqttHost, "port": mqttPort, "username": "", "password": ""},
		"network": map[string]any{
			"localJoinServerEnabled": true, "joinServer": "", "joinServerCheck": false, "joinServerCert": "",
			"joinServerCertFile": "", "joinServerCertUseFile": false, "joinServerClientCert": "",
			"joinServerClientKey": "", "joinServerAppEUI": "", "lensEnabled": false,
			"lensServer": "https://lens-de.devicehq.com/api/", "eui": "16ea76f6ab663d80", "public": 1, "name": "sim-net",
		},
		"defaultApp": map[string]any{"enabled": false, "apiVersion": "1.1.1", "eui": CatchAllEUI, "url": ""},
	})
}

// AccessoryCards returns an accessoryCards result with one LoRa card of EUI gwEUI.
func AccessoryCards(gwEUI string) json.RawMessage {
	return mustJSON([]map[string]any{{
		"port": "ap1", "productId": "MTAC-LORA-H-915", "hwVersion": "MTAC-LORA-1.5", "eui": colonEUI(gwEUI),
	}})
}

// colonEUI is mPower's accessory-card form, 00:80:00:00:D0:00:01:FF.
func colonEUI(eui string) string {
	return strings.ToUpper(strings.ReplaceAll(NormalizeEUI(eui), "-", ":"))
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sim: marshal: %v", err)) // maps of plain values
	}
	return b
}
