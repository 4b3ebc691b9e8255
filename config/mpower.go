package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// CatchAll is the AppEUI filter that matches every device.
const CatchAll = "ff-ff-ff-ff-ff-ff-ff-ff"

// API versions of the remote protocol, as mPower spells them.
const (
	API10  = "1.0"
	API11  = "1.1"
	API111 = "1.1.1"
)

// DefaultApp is mPower's loraNetwork.defaultApp ("Cloud Connector" settings),
// JSON camelCase as mPower sends it.
type DefaultApp struct {
	Enabled        bool           `json:"enabled"`
	EUI            string         `json:"eui"`
	APIVersion     string         `json:"apiVersion"`
	URL            string         `json:"url"`
	EncodeHex      bool           `json:"encodeHex"`
	Options        AppOptions     `json:"options"`
	RequestOptions RequestOptions `json:"requestOptions"`
	BackhaulDetect BackhaulDetect `json:"backhaulDetect"`
	Log            AppLog         `json:"log"`
	// Invalid is why mPower's document cannot be used as it stands (see
	// MisconfiguredDefaultApp); "" for a valid one.
	Invalid string `json:"-"`
}

// AppOptions is defaultApp.options (also the options of a Lens appnet).
type AppOptions struct {
	ServerCert               string `json:"server_cert"`
	ClientCert               string `json:"client_cert"`
	APIKey                   string `json:"apikey"` // the client private key (UI "Client Key")
	CheckHostname            *bool  `json:"check_hostname"`
	ClientID                 string `json:"client_id"`
	CleanSession             bool   `json:"clean_session"`
	Username                 string `json:"username"`
	Password                 string `json:"password"`
	UplinkTopic              string `json:"uplinkTopic"`
	DownlinkTopic            string `json:"downlinkTopic"`
	OverrideTopicsForAllApps bool   `json:"overrideTopicsForAllApps"`
	CloudService             string `json:"cloudService"`
}

// RequestOptions enables remote management requests.
type RequestOptions struct {
	API  bool `json:"api"`
	Lora bool `json:"lora"`
	Log  bool `json:"log"`
}

// BackhaulDetect is defaultApp.backhaulDetect.
type BackhaulDetect struct {
	Enabled bool   `json:"enabled"`
	Port    int    `json:"port"`
	Payload string `json:"payload"`
	Timeout int    `json:"timeout"`
}

// AppLog is defaultApp.log.
type AppLog struct {
	Destination string `json:"destination"`
	Level       int    `json:"level"`
	Path        string `json:"path"`
}

// ParseDefaultApp decodes and normalises a defaultApp object (the envelope's
// result). The EUI is re-dashed lowercase, forced to the catch-all for any API
// version but 1.0, and the API version defaults to 1.0.
func ParseDefaultApp(data []byte) (DefaultApp, error) {
	var d DefaultApp
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("defaultApp: %w", err)
	}
	if d.APIVersion == "" {
		d.APIVersion = API10
	}
	if err := CheckAPIVersion(d.APIVersion); err != nil {
		return d, fmt.Errorf("defaultApp: %w", err)
	}
	if d.APIVersion != API10 {
		d.EUI = CatchAll
	} else if d.EUI == "" {
		d.EUI = CatchAll
	} else {
		eui, err := NormalizeEUI(d.EUI)
		if err != nil {
			return d, fmt.Errorf("defaultApp: %w", FieldError{Key: "eui", Err: err})
		}
		d.EUI = eui
	}
	if d.BackhaulDetect.Port == 0 {
		d.BackhaulDetect.Port = 1
	}
	if d.BackhaulDetect.Payload == "" {
		d.BackhaulDetect.Payload = "FF"
	}
	if d.BackhaulDetect.Timeout == 0 {
		d.BackhaulDetect.Timeout = 600
	}
	return d, nil
}

// MisconfiguredDefaultApp is what stands for a defaultApp document that
// ParseDefaultApp refused with reason (an unsupported apiVersion, a bad eui,
// a value of the wrong type, text that is not JSON): a misconfigured
// application is still an application. ok is false when not even the
// document's enabled flag can be read: then the configuration says nothing
// and the caller keeps what it had (or waits for mPower at start-up).
//
// The result routes every event to the default app under the catch-all EUI
// (filter-off): while the API version or the AppEUI filter is unknown, the
// catch-all is the only key that keeps every event. Rows are keyed by
// application EUI; once the setting is fixed to 1.1/1.1.1, or to 1.0 with
// the catch-all filter, the fixed default app owns that same key and delivers
// the rows in order. APIVersion keeps the raw text ("" when unreadable) and
// Invalid names the field.
func MisconfiguredDefaultApp(data []byte, reason error) (d DefaultApp, ok bool) {
	var flag struct {
		Enabled *bool `json:"enabled"`
	}
	if err := json.Unmarshal(data, &flag); err != nil || flag.Enabled == nil {
		// Maybe only another field has the wrong type: read the flag alone.
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) != nil || json.Unmarshal(fields["enabled"], &flag.Enabled) != nil || flag.Enabled == nil {
			return DefaultApp{}, false
		}
	}
	// Whatever decodes is kept (url, options, ...): it decides nothing until
	// the document is valid, but status and logs can show it.
	_ = json.Unmarshal(data, &d)
	var raw struct {
		APIVersion json.RawMessage `json:"apiVersion"`
	}
	_ = json.Unmarshal(data, &raw)
	d.APIVersion = ""
	_ = json.Unmarshal(raw.APIVersion, &d.APIVersion)
	d.Enabled = *flag.Enabled
	d.EUI = CatchAll
	d.Invalid = reason.Error()
	if d.Invalid == "" {
		d.Invalid = "defaultApp: invalid"
	}
	return d, true
}

// CheckAPIVersion refuses an API version this build does not speak, naming
// the field.
func CheckAPIVersion(v string) error {
	switch v {
	case API10, API11, API111:
		return nil
	}
	return fieldErr("apiVersion", "%q not supported (want 1.0, 1.1 or 1.1.1)", v)
}

// FilterOff reports whether every LNS event goes to this application whatever its AppEUI.
func (d DefaultApp) FilterOff() bool {
	return d.APIVersion != API10 || d.EUI == CatchAll
}

// LoraNetwork is the part of mPower's /api/loraNetwork the program uses.
type LoraNetwork struct {
	Lora struct {
		Enabled             bool   `json:"enabled"`
		BasicStationMode    bool   `json:"basicStationMode"`
		PacketForwarderMode bool   `json:"packetForwarderMode"`
		NetID               string `json:"netID"`
		EUI1                string `json:"eui_1"`
	} `json:"lora"`
	Log struct {
		Level int `json:"level"`
	} `json:"log"`
	MQTT struct {
		Enabled  bool   `json:"enabled"`
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"mqtt"`
	DefaultApp json.RawMessage `json:"defaultApp"`
}

// ParseLoraNetwork decodes a loraNetwork object (the envelope's result).
func ParseLoraNetwork(data []byte) (LoraNetwork, error) {
	var n LoraNetwork
	if err := json.Unmarshal(data, &n); err != nil {
		return n, fmt.Errorf("loraNetwork: %w", err)
	}
	return n, nil
}

// LNSAvailable reports whether the embedded network server runs (not basic
// station nor packet-forwarder mode).
func (n LoraNetwork) LNSAvailable() bool {
	return n.Lora.Enabled && !n.Lora.BasicStationMode && !n.Lora.PacketForwarderMode
}

// NormalizeEUI accepts an EUI-64 with any of the usual separators (-, :, none)
// and returns it dashed lowercase ("00-80-00-00-d0-00-01-ff").
func NormalizeEUI(s string) (string, error) {
	// One pass, no allocation when s is already in the normal form (the LNS
	// sends it so on every uplink, and this runs for each of them).
	if isNormalEUI(s) {
		return s, nil
	}
	t := strings.TrimSpace(s)
	var out [23]byte
	n := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '-', c == ':', c == ' ':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%q is not an EUI-64 (want 16 hex digits)", s)
		}
		if n == 16 {
			return "", fmt.Errorf("%q is not an EUI-64 (want 16 hex digits)", s)
		}
		pos := n + n/2
		if n > 0 && n%2 == 0 {
			out[pos-1] = '-'
		}
		out[pos] = c
		n++
	}
	if n != 16 {
		return "", fmt.Errorf("%q is not an EUI-64 (want 16 hex digits)", s)
	}
	return string(out[:]), nil
}

// isNormalEUI reports whether s is already dashed lowercase hex.
func isNormalEUI(s string) bool {
	if len(s) != 23 {
		return false
	}
	for i := 0; i < 23; i++ {
		c := s[i]
		if i%3 == 2 {
			if c != '-' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Transport kinds selected by an application URL.
const (
	TransportHTTP = "http"
	TransportMQTT = "mqtt"
)

// Endpoint is an application URL parsed as conduit.md §5.3 says.
type Endpoint struct {
	Scheme    string // http, https, mqtt, mqtts, wss
	Transport string // TransportHTTP or TransportMQTT
	Host      string // without brackets for IPv6
	Port      int
	Path      string   // HTTP prefix without trailing "/", or the WebSocket path
	Warnings  []string // ignored URL parts (user info, query, fragment)
}

// Address is host:port, bracketed for IPv6.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// BaseURL is scheme://host:port/prefix for HTTP endpoints.
func (e Endpoint) BaseURL() string { return e.Scheme + "://" + e.Address() + e.Path }

// ParseEndpoint parses an application URL with net/url (never by splitting on ":").
func ParseEndpoint(raw string) (Endpoint, error) {
	var e Endpoint
	if strings.TrimSpace(raw) == "" {
		return e, errors.New("url is empty")
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return e, fmt.Errorf("url %q: %w", raw, err)
	}
	e.Scheme = strings.ToLower(u.Scheme)
	var defPort int
	switch e.Scheme {
	case "http":
		e.Transport, defPort = TransportHTTP, 80
	case "https":
		e.Transport, defPort = TransportHTTP, 443
	case "mqtt", "tcp":
		e.Scheme, e.Transport, defPort = "mqtt", TransportMQTT, 1883
	case "mqtts", "ssl", "tls":
		e.Scheme, e.Transport, defPort = "mqtts", TransportMQTT, 8883
	case "wss":
		e.Transport, defPort = TransportMQTT, 443
	default:
		return e, fmt.Errorf("url %q: scheme %q not supported (want http, https, mqtt, mqtts or wss)", raw, u.Scheme)
	}
	e.Host = u.Hostname()
	if e.Host == "" {
		return e, fmt.Errorf("url %q has no host", raw)
	}
	e.Port = defPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return e, fmt.Errorf("url %q: port %q out of range", raw, p)
		}
		e.Port = n
	}
	e.Path = strings.TrimRight(u.EscapedPath(), "/")
	if e.Scheme == "wss" && e.Path == "" {
		e.Path = "/mqtt"
	}
	if u.User != nil {
		e.Warnings = append(e.Warnings, "user info ignored")
	}
	if u.RawQuery != "" {
		e.Warnings = append(e.Warnings, "query ignored")
	}
	if u.Fragment != "" {
		e.Warnings = append(e.Warnings, "fragment ignored")
	}
	return e, nil
}

// Appnet is a Lens application network as `lora-query -x appnet list json`
// and `appnet get` give it.
type Appnet struct {
	EUI        string
	AppNetID   string
	AppNetUUID string
	URL        string
	Options    AppOptions
	// Fingerprint changes when eui, app_net_id, app_net_uuid, url or options
	// (as JSON text) change: the original's rule for re-creating an appnet.
	Fingerprint string
}

type rawAppnet struct {
	EUI        string          `json:"eui"`
	AppNetID   json.RawMessage `json:"app_net_id"`
	AppNetUUID json.RawMessage `json:"app_net_uuid"`
	URL        string          `json:"url"`
	Options    json.RawMessage `json:"options"`
	Status     string          `json:"status"`
	Error      string          `json:"error"`
}

func (r rawAppnet) appnet() (Appnet, error) {
	a := Appnet{URL: r.URL}
	eui, err := NormalizeEUI(r.EUI)
	if err != nil {
		return a, fmt.Errorf("appnet eui: %w", err)
	}
	a.EUI = eui
	a.AppNetID = jsonText(r.AppNetID)
	a.AppNetUUID = jsonText(r.AppNetUUID)
	if len(r.Options) > 0 && string(r.Options) != "null" {
		if err := json.Unmarshal(r.Options, &a.Options); err != nil {
			return a, fmt.Errorf("appnet %s options: %w", eui, err)
		}
	}
	fp, _ := json.Marshal([]string{a.EUI, string(r.AppNetID), string(r.AppNetUUID), r.URL, string(r.Options)})
	a.Fingerprint = string(fp)
	return a, nil
}

// jsonText is a JSON string's value, or the raw text of any other JSON value.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// ParseAppnets decodes `appnet list json`. One bad entry is an error naming it;
// the caller decides whether to keep the others (it logs and skips it).
func ParseAppnets(data []byte) ([]Appnet, []error, error) {
	var raws []rawAppnet
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, nil, fmt.Errorf("appnet list: not a JSON array of appnets: %w", err)
	}
	var out []Appnet
	var bad []error
	for i, r := range raws {
		a, err := r.appnet()
		if err != nil {
			bad = append(bad, fmt.Errorf("appnet list entry %d: %w", i, err))
			continue
		}
		out = append(out, a)
	}
	return out, bad, nil
}

// ParseAppnet decodes `appnet get <eui>`; found is false for a {"status":"fail"} answer.
func ParseAppnet(data []byte) (a Appnet, found bool, err error) {
	var r rawAppnet
	if err := json.Unmarshal(data, &r); err != nil {
		return a, false, fmt.Errorf("appnet get: not a JSON object: %w", err)
	}
	if r.Status == "fail" {
		return a, false, nil
	}
	a, err = r.appnet()
	return a, err == nil, err
}
