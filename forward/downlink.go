package forward

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lorawan-gateway/app-connect/config"
)

// MaxDownlinkPayload is the default bound of a downlink's decoded payload.
const MaxDownlinkPayload = 242

// DownlinkError says why a remote downlink was refused.
type DownlinkError struct{ Reason string }

func (e *DownlinkError) Error() string { return "downlink refused: " + e.Reason }

func dlErr(format string, args ...any) error {
	return &DownlinkError{Reason: fmt.Sprintf(format, args...)}
}

// Downlink is a validated downlink ready for lora/<DevEUI>/down.
type Downlink struct {
	DevEUI  string
	Payload []byte // the remote object, fields unchanged except data (hex → base64 under encodeHex)
}

// ValidateDownlink checks a remote downlink object (conduit.md §8.2): a valid
// DevEUI (the object's deveui, else topicDevEUI), data present and decodable
// (hex when encodeHex, else base64), decoded size ≤ maxPayload, port 0..223,
// ack bool, ack_retries ≥ 0, rx_wnd 0/1/2. Unknown fields pass through.
func ValidateDownlink(raw []byte, topicDevEUI string, encodeHex bool, maxPayload int) (Downlink, error) {
	var dl Downlink
	p := bytes.TrimSpace(raw)
	if len(p) == 0 || p[0] != '{' {
		return dl, dlErr("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return dl, dlErr("not valid JSON: %v", err)
	}
	if dec.More() {
		return dl, dlErr("trailing data after the object")
	}
	dev := topicDevEUI
	if v, ok := m["deveui"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return dl, dlErr("deveui is not a string")
		}
		dev = s
	}
	if dev == "" {
		return dl, dlErr("no deveui")
	}
	eui, err := config.NormalizeEUI(dev)
	if err != nil {
		return dl, dlErr("deveui: %v", err)
	}
	dl.DevEUI = eui
	data, ok := m["data"].(string)
	if !ok {
		return dl, dlErr("data missing or not a string")
	}
	var decoded []byte
	if encodeHex {
		decoded, err = hex.DecodeString(strings.TrimSpace(data))
		if err != nil {
			return dl, dlErr("data is not hex: %v", err)
		}
		m["data"] = base64.StdEncoding.EncodeToString(decoded)
	} else if decoded, err = base64.StdEncoding.DecodeString(data); err != nil {
		return dl, dlErr("data is not base64: %v", err)
	}
	if len(decoded) > maxPayload {
		return dl, dlErr("payload of %d bytes exceeds %d", len(decoded), maxPayload)
	}
	if err := intField(m, "port", 0, 223); err != nil {
		return dl, err
	}
	if err := intField(m, "ack_retries", 0, 255); err != nil {
		return dl, err
	}
	if err := intField(m, "rx_wnd", 0, 2); err != nil {
		return dl, err
	}
	if v, ok := m["ack"]; ok {
		if _, isBool := v.(bool); !isBool {
			return dl, dlErr("ack is not a boolean")
		}
	}
	if encodeHex {
		if dl.Payload, err = json.Marshal(m); err != nil {
			return dl, dlErr("re-encoding: %v", err)
		}
	} else {
		dl.Payload = append([]byte(nil), p...) // unchanged, as the original
	}
	return dl, nil
}

func intField(m map[string]any, key string, lo, hi int64) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return dlErr("%s is not a number", key)
	}
	i, err := n.Int64()
	if err != nil {
		return dlErr("%s is not an integer", key)
	}
	if i < lo || i > hi {
		return dlErr("%s = %d out of range %d..%d", key, i, lo, hi)
	}
	return nil
}

// SplitDownlinks reads a remote answer (an object or an array) and returns the
// elements that are downlinks: objects with deveui and data. Anything else in
// the answer is ignored, as the original does.
func SplitDownlinks(reply []byte) []json.RawMessage {
	p := bytes.TrimSpace(reply)
	if len(p) == 0 || emptyJSON(p) {
		return nil // most answers: spared encoding/json (3 % of the ARMv5 binary's CPU under qemu at 20/s)
	}
	var elems []json.RawMessage
	switch p[0] {
	case '{':
		elems = []json.RawMessage{p}
	case '[':
		if json.Unmarshal(p, &elems) != nil {
			return nil
		}
	default:
		return nil
	}
	var out []json.RawMessage
	for _, e := range elems {
		var probe struct {
			DevEUI json.RawMessage `json:"deveui"`
			Data   json.RawMessage `json:"data"`
		}
		if json.Unmarshal(e, &probe) == nil && probe.DevEUI != nil && probe.Data != nil {
			out = append(out, e)
		}
	}
	return out
}

// emptyJSON reports whether p is an empty array or object, [ ] or { }.
func emptyJSON(p []byte) bool {
	if len(p) < 2 || !(p[0] == '[' && p[len(p)-1] == ']' || p[0] == '{' && p[len(p)-1] == '}') {
		return false
	}
	for _, c := range p[1 : len(p)-1] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' { // JSON's whitespace only
			return false
		}
	}
	return true
}

// HexUplink rewrites an uplink's base64 data as lowercase hex and adds
// "data-format":"hexadecimal" (encodeHex). Bodies without data pass unchanged.
func HexUplink(body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	raw, ok := m["data"]
	if !ok {
		return body, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	// Keep the key order of the LNS: replace the value in place, append data-format.
	hexs, _ := json.Marshal(hex.EncodeToString(b))
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	out.WriteByte('{')
	first := true
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if k == "data-format" {
			continue
		}
		if !first {
			out.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		out.Write(kb)
		out.WriteByte(':')
		if k == "data" {
			out.Write(hexs)
		} else {
			out.Write(v)
		}
	}
	if !first {
		out.WriteByte(',')
	}
	out.WriteString(`"data-format":"hexadecimal"}`)
	return out.Bytes(), nil
}
