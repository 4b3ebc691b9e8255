package lnsbridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lorawan-gateway/app-connect/config"
)

// Kind is the type of an LNS event.
type Kind string

// The LNS events app-connect forwards.
const (
	KindUp     Kind = "up"
	KindJoined Kind = "joined"
	KindMoved  Kind = "moved"
)

// Event is one parsed LNS message. Raw keeps the bytes as the LNS sent them:
// uplinks are forwarded unchanged.
type Event struct {
	Kind    Kind
	Topic   string
	DevEUI  string // dashed lowercase
	AppEUI  string // the device's AppEUI (dashed lowercase): the topic's for up and moved, the payload's for joined
	JoinEUI string // when the LNS gives it
	FCnt    uint32 // uplinks only
	Port    int    // uplinks only, -1 when absent
	GWEUI   string
	Raw     []byte
	// Body is what is forwarded: Raw for up and moved; for joined the payload with
	// "time" and "deveui" appended as the original does.
	Body []byte
	// Gateways is the moved event's list of gateway EUIs.
	Gateways []string
}

// ParseError says why a local message was refused.
type ParseError struct {
	Topic  string
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("lnsbridge: topic %q: %s", e.Topic, e.Reason) }

func perr(topic, format string, args ...any) error {
	return &ParseError{Topic: topic, Reason: fmt.Sprintf(format, args...)}
}

// Subscriptions are the local topics app-connect listens to, with QoS 1.
var Subscriptions = []string{"lora/+/+/up", "lora/+/joined", "lora/+/+/moved"}

// MaxPayload bounds a local message; the LNS never sends more than a few hundred bytes.
const MaxPayload = 64 << 10

// ParseEvent classifies a local message by topic and parses its payload. now
// stamps joined events. Any problem is a *ParseError naming the topic and reason.
func ParseEvent(topic string, payload []byte, now time.Time) (Event, error) {
	parts := strings.Split(topic, "/")
	if len(parts) < 3 || parts[0] != "lora" {
		return Event{}, perr(topic, "not an LNS event topic")
	}
	if len(payload) > MaxPayload {
		return Event{}, perr(topic, "payload of %d bytes exceeds %d", len(payload), MaxPayload)
	}
	switch {
	case len(parts) == 4 && parts[3] == "up":
		return parseUplink(topic, parts[1], parts[2], payload)
	case len(parts) == 3 && parts[2] == "joined":
		return parseJoined(topic, parts[1], payload, now)
	case len(parts) == 4 && parts[3] == "moved":
		return parseMoved(topic, parts[1], parts[2], payload)
	}
	return Event{}, perr(topic, "unknown event")
}

func topicEUI(topic, what, s string) (string, error) {
	eui, err := config.NormalizeEUI(s)
	if err != nil {
		return "", perr(topic, "%s in topic: %v", what, err)
	}
	return eui, nil
}

// object decodes a JSON object into raw fields, refusing anything else.
func object(topic string, payload []byte) (map[string]json.RawMessage, error) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || p[0] != '{' {
		return nil, perr(topic, "payload is not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, perr(topic, "payload is not valid JSON: %v", err)
	}
	return m, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// str reads an optional string field; present-but-not-a-string is an error.
func str(topic string, m map[string]json.RawMessage, key string, required bool) (string, bool, error) {
	v, ok := m[key]
	if !ok {
		if required {
			return "", false, perr(topic, "field %q missing", key)
		}
		return "", false, nil
	}
	var s string
	if isNull(v) || json.Unmarshal(v, &s) != nil {
		return "", false, perr(topic, "field %q is not a string", key)
	}
	return s, true, nil
}

func euiField(topic string, m map[string]json.RawMessage, key string, required bool) (string, error) {
	s, ok, err := str(topic, m, key, required)
	if err != nil || !ok {
		return "", err
	}
	eui, err := config.NormalizeEUI(s)
	if err != nil {
		return "", perr(topic, "field %q: %v", key, err)
	}
	return eui, nil
}

// uplinkFields are the members of an uplink that validation and routing
// read; every other member is only checked to be valid JSON and forwarded
// as it came.
type uplinkFields struct {
	deveui, appeui, joineui, gweui, fcnt, port, size, data []byte // raw JSON values; nil when absent
}

// parseUplink validates an uplink in one pass over its bytes: the JSON is
// checked once (json.Valid), the top-level members are split without
// decoding, and only the fields above are decoded. It accepts and refuses
// exactly what decoding the object into a map did (the last of duplicate
// keys counts; FuzzUplinkParsers compares both).
func parseUplink(topic, appPart, devPart string, payload []byte) (Event, error) {
	ev := Event{Kind: KindUp, Topic: topic, Raw: payload, Body: payload, Port: -1}
	var err error
	if ev.AppEUI, err = topicEUI(topic, "AppEUI", appPart); err != nil {
		return ev, err
	}
	if ev.DevEUI, err = topicEUI(topic, "DevEUI", devPart); err != nil {
		return ev, err
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || p[0] != '{' {
		return ev, perr(topic, "payload is not a JSON object")
	}
	if !json.Valid(p) {
		var m map[string]json.RawMessage // only for json's own description of the fault
		err := json.Unmarshal(p, &m)
		return ev, perr(topic, "payload is not valid JSON: %v", err)
	}
	var f uplinkFields
	members(p, func(key, val []byte) {
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k) != nil {
				return
			}
			key = []byte(k)
		}
		switch string(key) {
		case "deveui":
			f.deveui = val
		case "appeui":
			f.appeui = val
		case "joineui":
			f.joineui = val
		case "gweui":
			f.gweui = val
		case "fcnt":
			f.fcnt = val
		case "port":
			f.port = val
		case "size":
			f.size = val
		case "data":
			f.data = val
		}
	})
	dev, err := rawEUI(topic, "deveui", f.deveui, true)
	if err != nil {
		return ev, err
	}
	if dev != ev.DevEUI {
		return ev, perr(topic, "field \"deveui\" %s differs from the topic's %s", dev, ev.DevEUI)
	}
	if app, err := rawEUI(topic, "appeui", f.appeui, false); err != nil {
		return ev, err
	} else if app != "" && app != ev.AppEUI {
		return ev, perr(topic, "field \"appeui\" %s differs from the topic's %s", app, ev.AppEUI)
	}
	if ev.JoinEUI, err = rawEUI(topic, "joineui", f.joineui, false); err != nil {
		return ev, err
	}
	if ev.GWEUI, err = rawEUI(topic, "gweui", f.gweui, false); err != nil {
		return ev, err
	}
	fcnt, _, err := rawInteger(topic, "fcnt", f.fcnt, true, 0, 1<<32-1)
	if err != nil {
		return ev, err
	}
	ev.FCnt = uint32(fcnt)
	if port, ok, err := rawInteger(topic, "port", f.port, false, 0, 255); err != nil {
		return ev, err
	} else if ok {
		ev.Port = int(port)
	}
	if _, _, err := rawInteger(topic, "size", f.size, false, 0, 255); err != nil {
		return ev, err
	}
	if data, ok, err := rawString(topic, "data", f.data, false); err != nil {
		return ev, err
	} else if ok {
		if _, err := base64.StdEncoding.DecodeString(data); err != nil {
			return ev, perr(topic, "field \"data\" is not base64: %v", err)
		}
	}
	return ev, nil
}

// members calls f with the key (raw, between the quotes) and the value
// bytes of each top-level member of p, a valid JSON object.
func members(p []byte, f func(key, val []byte)) {
	i := skipSpace(p, 1)
	if p[i] == '}' {
		return
	}
	for {
		kEnd := skipString(p, i)
		key := p[i+1 : kEnd-1]
		i = skipSpace(p, skipSpace(p, kEnd)+1) // past ':'
		vEnd := skipValue(p, i)
		f(key, p[i:vEnd])
		i = skipSpace(p, vEnd)
		if p[i] != ',' {
			return // '}'
		}
		i = skipSpace(p, i+1)
	}
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at p[i] ('"').
func skipString(p []byte, i int) int {
	for j := i + 1; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(p)
}

// skipValue returns the index after the valid JSON value starting at p[i].
func skipValue(p []byte, i int) int {
	switch p[i] {
	case '"':
		return skipString(p, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(p); j++ {
			switch p[j] {
			case '"':
				j = skipString(p, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(p)
	}
	j := i
	for j < len(p) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(p[j])) {
		j++
	}
	return j
}

// rawString reads an optional string member from its raw value; present but
// not a string (null included) is an error.
func rawString(topic, key string, v []byte, required bool) (string, bool, error) {
	if v == nil {
		if required {
			return "", false, perr(topic, "field %q missing", key)
		}
		return "", false, nil
	}
	if v[0] != '"' {
		return "", false, perr(topic, "field %q is not a string", key)
	}
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), true, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false, perr(topic, "field %q is not a string", key)
	}
	return s, true, nil
}

func rawEUI(topic, key string, v []byte, required bool) (string, error) {
	s, ok, err := rawString(topic, key, v, required)
	if err != nil || !ok {
		return "", err
	}
	eui, err := config.NormalizeEUI(s)
	if err != nil {
		return "", perr(topic, "field %q: %v", key, err)
	}
	return eui, nil
}

// rawInteger reads an optional integer member in [lo, hi] from its raw value.
func rawInteger(topic, key string, v []byte, required bool, lo, hi int64) (int64, bool, error) {
	if v == nil {
		if required {
			return 0, false, perr(topic, "field %q missing", key)
		}
		return 0, false, nil
	}
	var i int64
	var err error
	switch {
	case v[0] == '"':
		// A string holding a valid number decodes into a json.Number too.
		var n json.Number
		if json.Unmarshal(v, &n) != nil {
			return 0, false, perr(topic, "field %q is not a number", key)
		}
		i, err = n.Int64()
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		i, err = strconv.ParseInt(string(v), 10, 64)
	default:
		return 0, false, perr(topic, "field %q is not a number", key)
	}
	if err != nil {
		return 0, false, perr(topic, "field %q is not an integer", key)
	}
	if i < lo || i > hi {
		return 0, false, perr(topic, "field %q = %d out of range %d..%d", key, i, lo, hi)
	}
	return i, true, nil
}

func parseJoined(topic, devPart string, payload []byte, now time.Time) (Event, error) {
	ev := Event{Kind: KindJoined, Topic: topic, Raw: payload, Port: -1}
	var err error
	if ev.DevEUI, err = topicEUI(topic, "DevEUI", devPart); err != nil {
		return ev, err
	}
	m, err := object(topic, payload)
	if err != nil {
		return ev, err
	}
	if ev.AppEUI, err = euiField(topic, m, "appeui", true); err != nil {
		return ev, err
	}
	if ev.JoinEUI, err = euiField(topic, m, "joineui", false); err != nil {
		return ev, err
	}
	if ev.GWEUI, err = euiField(topic, m, "gweui", false); err != nil {
		return ev, err
	}
	// The original appends time and deveui to what it forwards [keep].
	tb, _ := json.Marshal(now.UTC().Format("2006-01-02T15:04:05.000000Z"))
	db, _ := json.Marshal(ev.DevEUI)
	m["time"] = tb
	m["deveui"] = db
	ev.Body, err = marshalOrdered(payload, m)
	if err != nil {
		return ev, perr(topic, "re-encoding: %v", err)
	}
	return ev, nil
}

// marshalOrdered re-encodes a joined object keeping the LNS's own keys first in
// their order, followed by time and deveui (as the original's dict would).
func marshalOrdered(orig []byte, m map[string]json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(orig))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
		if k != "time" && k != "deveui" && !seen[k] {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	keys = append(keys, "time", "deveui")
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		var c bytes.Buffer
		if err := json.Compact(&c, m[k]); err != nil {
			return nil, err
		}
		b.Write(c.Bytes())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func parseMoved(topic, appPart, devPart string, payload []byte) (Event, error) {
	ev := Event{Kind: KindMoved, Topic: topic, Raw: payload, Body: payload, Port: -1}
	var err error
	if ev.AppEUI, err = topicEUI(topic, "AppEUI", appPart); err != nil {
		return ev, err
	}
	if ev.DevEUI, err = topicEUI(topic, "DevEUI", devPart); err != nil {
		return ev, err
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || p[0] != '[' {
		return ev, perr(topic, "payload is not a JSON array of gateway EUIs")
	}
	var gws []string
	if err := json.Unmarshal(p, &gws); err != nil {
		return ev, perr(topic, "payload is not a JSON array of gateway EUIs: %v", err)
	}
	for i, g := range gws {
		eui, err := config.NormalizeEUI(g)
		if err != nil {
			return ev, perr(topic, "gateway %d: %v", i, err)
		}
		gws[i] = eui
	}
	ev.Gateways = gws
	return ev, nil
}
