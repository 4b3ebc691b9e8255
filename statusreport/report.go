package statusreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Type is the report's "type" field: it tells a status report apart from
// uplinks in a mixed stream (Azure telemetry, a catch-all subscription).
const Type = "status"

// Schema is the report layout version. A decoder accepts later schemas (their
// extra fields are ignored), so a fleet can be upgraded gateway by gateway.
const Schema = 1

// Limits of a report; the decoder refuses anything beyond them, so an
// exporter's memory per gateway is bounded whatever a peer sends.
const (
	MaxSize         = 64 << 10 // bytes of JSON
	MaxApplications = 64
	MaxEUIs         = 16
	MaxOutcomes     = 32  // keys of joins and downlinks
	MaxLastError    = 256 // characters of an application's last error
	maxShort        = 64  // serial, version, names, outcome keys
)

// Report is the status report, one JSON object. Field by field in the
// README ("Status report").
type Report struct {
	Type          string        `json:"type"`   // always "status"
	Schema        int           `json:"schema"` // layout version, 1
	Time          time.Time     `json:"time"`   // when the gateway built it (UTC)
	Seq           uint64        `json:"seq"`    // 1, 2, … since the process started: a gap is a lost report, never a replay
	Gateway       Gateway       `json:"gateway"`
	Version       string        `json:"version"` // app-connect's version
	UptimeSeconds int64         `json:"uptime_seconds"`
	Applications  []Application `json:"applications"`
	LocalBroker   LocalBroker   `json:"local_broker"`
	LNS           LNS           `json:"lns"`
	Unrouted      uint64        `json:"unrouted"`  // local events no application takes
	Joins         Outcomes      `json:"joins"`     // join attempts forwarded to Join Servers, by result
	Downlinks     Outcomes      `json:"downlinks"` // downlinks by outcome (sent, refused, failed, …)
	Process       Process       `json:"process"`
	Database      Database      `json:"database"`
}

// Gateway is the gateway's identity (never a key).
type Gateway struct {
	UUID   string   `json:"uuid"`   // mts-io UUID, dashed lowercase
	Serial string   `json:"serial"` // mts-io device-id
	EUIs   []string `json:"euis"`   // the gateway EUIs sent in init, dashed lowercase
}

// Application is one remote application's delivery state.
type Application struct {
	EUI                 string  `json:"eui"`
	Name                string  `json:"name"`  // "default" or the appnet id
	State               string  `json:"state"` // starting, up, retrying, stopped, misconfigured
	LastError           string  `json:"last_error"`
	QueueRows           uint64  `json:"queue_rows"`
	QueueBytes          uint64  `json:"queue_bytes"`
	OldestQueuedSeconds float64 `json:"oldest_queued_seconds"` // age of the oldest queued row, 0 when empty
	Received            uint64  `json:"received"`              // events queued for it since start
	Forwarded           uint64  `json:"forwarded"`             // acknowledged by the remote side since start
	Failures            uint64  `json:"failures"`              // failed attempts (retried) since start
	Dropped             uint64  `json:"dropped"`               // dropped by the outbox caps (since the database was created)
	DeadLettered        uint64  `json:"dead_lettered"`         // refused for good (since the database was created)
}

// LocalBroker is the gateway's own Mosquitto, where the network server publishes.
type LocalBroker struct {
	Connected bool   `json:"connected"`
	Received  uint64 `json:"received"`  // valid events taken since start
	Malformed uint64 `json:"malformed"` // payloads refused as malformed
}

// LNS is the embedded network server.
type LNS struct {
	// Available is false in packet-forwarder or Basic Station mode (mPower
	// loraNetwork): then no event comes from the local broker.
	Available bool `json:"available"`
}

// Outcomes counts events by outcome or result.
type Outcomes map[string]uint64

// Process is the app-connect process.
type Process struct {
	RSSBytes   uint64  `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"` // user + system since start
}

// Database is the on-gateway SQLite database.
type Database struct {
	SizeBytes uint64 `json:"size_bytes"` // the file with its -wal and -shm
	FreeBytes uint64 `json:"free_bytes"` // free for unprivileged writers on its file system
}

// Encode returns the report's JSON form.
func (r Report) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("statusreport: encode: %w", err)
	}
	return b, nil
}

// ValidationError names what was wrong in a refused report.
type ValidationError struct {
	Field  string // JSON path, e.g. applications[2].eui
	Reason string
}

func (e *ValidationError) Error() string {
	return "statusreport: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, a ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// ErrTooLarge is a report over MaxSize bytes.
var ErrTooLarge = fmt.Errorf("statusreport: report larger than %d bytes", MaxSize)

// Decode parses and validates a report from an untrusted peer. Unknown
// fields are ignored (a later schema); anything beyond the limits, a wrong
// type, a malformed identity or a negative count is refused with an error
// naming the field. The gateway UUID comes back dashed lowercase.
func Decode(b []byte) (Report, error) {
	var r Report
	if len(b) > MaxSize {
		return r, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("statusreport: not a report: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Report{}, errors.New("statusreport: not a report: data after the JSON object")
	}
	if err := r.validate(); err != nil {
		return Report{}, err
	}
	return r, nil
}

func (r *Report) validate() error {
	if r.Type != Type {
		return invalid("type", "want %q, got %q", Type, clip(r.Type))
	}
	if r.Schema < 1 {
		return invalid("schema", "want 1 or later, got %d", r.Schema)
	}
	if r.Time.IsZero() {
		return invalid("time", "missing")
	}
	uuid, err := NormalizeUUID(r.Gateway.UUID)
	if err != nil {
		return invalid("gateway.uuid", "%v", err)
	}
	r.Gateway.UUID = uuid
	if err := short(r.Gateway.Serial); err != nil {
		return invalid("gateway.serial", "%v", err)
	}
	if len(r.Gateway.EUIs) > MaxEUIs {
		return invalid("gateway.euis", "more than %d", MaxEUIs)
	}
	for i, e := range r.Gateway.EUIs {
		if !isEUI(e) {
			return invalid(fmt.Sprintf("gateway.euis[%d]", i), "%q is not a dashed lowercase EUI-64", clip(e))
		}
	}
	if err := short(r.Version); err != nil {
		return invalid("version", "%v", err)
	}
	if r.UptimeSeconds < 0 {
		return invalid("uptime_seconds", "negative")
	}
	if len(r.Applications) > MaxApplications {
		return invalid("applications", "more than %d", MaxApplications)
	}
	seen := make(map[string]bool, len(r.Applications))
	for i, a := range r.Applications {
		f := fmt.Sprintf("applications[%d]", i)
		switch {
		case !isEUI(a.EUI):
			return invalid(f+".eui", "%q is not a dashed lowercase EUI-64", clip(a.EUI))
		case seen[a.EUI]:
			return invalid(f+".eui", "%s listed twice", a.EUI)
		case !isKey(a.State):
			return invalid(f+".state", "%q is not a state name", clip(a.State))
		case a.OldestQueuedSeconds < 0:
			return invalid(f+".oldest_queued_seconds", "negative")
		case utf8.RuneCountInString(a.LastError) > MaxLastError || !utf8.ValidString(a.LastError):
			return invalid(f+".last_error", "not UTF-8 text of at most %d characters", MaxLastError)
		}
		if err := short(a.Name); err != nil {
			return invalid(f+".name", "%v", err)
		}
		seen[a.EUI] = true
	}
	for name, o := range map[string]Outcomes{"joins": r.Joins, "downlinks": r.Downlinks} {
		if len(o) > MaxOutcomes {
			return invalid(name, "more than %d outcomes", MaxOutcomes)
		}
		for k := range o {
			if !isKey(k) {
				return invalid(name, "%q is not an outcome name", clip(k))
			}
		}
	}
	if r.Process.CPUSeconds < 0 {
		return invalid("process.cpu_seconds", "negative")
	}
	return nil
}

// NormalizeUUID accepts a gateway UUID dashed (8-4-4-4-12) or raw (32 hex
// digits, the API 1.0 form), any case, and returns it dashed lowercase.
func NormalizeUUID(s string) (string, error) {
	raw := s
	if len(s) == 36 {
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return "", fmt.Errorf("%q is not a UUID", clip(s))
		}
		raw = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	}
	if len(raw) != 32 {
		return "", fmt.Errorf("%q is not a UUID", clip(s))
	}
	b := []byte(strings.ToLower(raw))
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%q is not a UUID", clip(s))
		}
	}
	return string(b[:8]) + "-" + string(b[8:12]) + "-" + string(b[12:16]) + "-" + string(b[16:20]) + "-" + string(b[20:]), nil
}

// isEUI: 8 bytes, dashed lowercase hex.
func isEUI(s string) bool {
	if len(s) != 23 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isKey: a state or outcome name, [A-Za-z0-9_.-]{1,64}.
func isKey(s string) bool {
	if s == "" || len(s) > maxShort {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// short: printable UTF-8 of at most 64 bytes.
func short(s string) error {
	if len(s) > maxShort {
		return fmt.Errorf("longer than %d bytes", maxShort)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// clip shortens hostile text quoted in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
