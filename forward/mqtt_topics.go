package forward

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lorawan-gateway/app-connect/config"
)

// ProtocolAppVersion is the app_version of the MQTT init message until the
// program version is passed in AppSettings (conduit.md §7.1).
const ProtocolAppVersion = "1.0.6"

// topicTable lists the topics of one API version (conduit.md §7.2, §7.3).
// Placeholders: {app} the application EUI, {gw} the GW-UUID in the version's
// form, {appeui} the device's AppEUI, {deveui} the DevEUI, {gweui} a gateway EUI.
type topicTable struct {
	init, close, disconnected string
	connected                 string   // "" when the version has none
	up, moved                 []string // per device
	joined                    []string // per device; v1.0 publishes it twice
	appSubs                   []string // application-level down/clear (deveui in the payload)
	deviceSubs                []string // per device, {gweui} expanded per gateway
	rawUUID                   bool     // v1.0 uses the undashed GW-UUID
	uplinkDefault             string   // the version's default uplinkTopic template
	downlinkDefault           string   // the version's default downlinkTopic template
	requests                  string   // prefix of …/{api,lora,log}_{req,res}
}

var (
	topicsV10 = topicTable{
		init:         "lorawan/{app}/{gw}/init",
		close:        "lorawan/{app}/{gw}/close",
		disconnected: "lorawan/{app}/{gw}/disconnected",
		up:           []string{"lorawan/{appeui}/{deveui}/up"},
		joined:       []string{"lorawan/{appeui}/{deveui}/joined", "lorawan/{gw}/{deveui}/joined"},
		moved:        []string{"lorawan/{appeui}/{deveui}/moved"},
		appSubs:      []string{"lorawan/{app}/{gw}/down", "lorawan/{app}/{gw}/clear"},
		deviceSubs: []string{
			"lorawan/{appeui}/{deveui}/down", "lorawan/{appeui}/{deveui}/clear",
			"lorawan/{gw}/{deveui}/down", "lorawan/{gw}/{deveui}/clear",
			"lorawan/{gweui}/{deveui}/down", "lorawan/{gweui}/{deveui}/clear",
		},
		rawUUID:         true,
		requests:        "lorawan/{app}/{gw}",
		uplinkDefault:   "lorawan/%(appeui)s/%(deveui)s/up",
		downlinkDefault: "lorawan/%(appeui)s/%(deveui)s/down",
	}
	topicsV11 = topicTable{
		init:            "lorawan/{gw}/init",
		close:           "lorawan/{gw}/close",
		disconnected:    "lorawan/{gw}/disconnected",
		up:              []string{"lorawan/{gw}/{appeui}/{deveui}/up"},
		joined:          []string{"lorawan/{gw}/{appeui}/{deveui}/joined"},
		moved:           []string{"lorawan/{gw}/{appeui}/{deveui}/moved"},
		appSubs:         []string{"lorawan/{gw}/down"},
		requests:        "lorawan/{gw}",
		uplinkDefault:   "lorawan/%(gwuuid)s/%(appeui)s/%(deveui)s/up",
		downlinkDefault: "lorawan/%(gwuuid)s/down",
	}
	topicsV111 = topicTable{
		init:            "lorawan/{gw}/init",
		close:           "lorawan/{gw}/close",
		disconnected:    "lorawan/{gw}/disconnected",
		connected:       "lorawan/{gw}/connected",
		up:              []string{"lorawan/{gw}/{appeui}/{deveui}/up"},
		joined:          []string{"lorawan/{gw}/{appeui}/{deveui}/joined"},
		moved:           []string{"lorawan/{gw}/{appeui}/{deveui}/moved"},
		appSubs:         []string{"lorawan/{gw}/down", "lorawan/{gw}/clear"},
		requests:        "lorawan/{gw}",
		uplinkDefault:   "lorawan/%(gwuuid)s/%(appeui)s/%(deveui)s/up",
		downlinkDefault: "lorawan/%(gwuuid)s/down",
	}
)

// tableFor returns the topic table of an API version (1.0 when unknown).
func tableFor(version string) topicTable {
	switch version {
	case config.API11:
		return topicsV11
	case config.API111:
		return topicsV111
	}
	return topicsV10
}

// topicVars fills a table entry.
type topicVars struct{ app, gw, appEUI, devEUI, gwEUI string }

func (v topicVars) fill(t string) string {
	var b strings.Builder
	b.Grow(len(t) + 64)
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String()
		}
		b.WriteString(t[:i])
		t = t[i:]
		j := strings.IndexByte(t, '}')
		if j < 0 {
			b.WriteString(t)
			return b.String()
		}
		switch t[:j+1] {
		case "{app}":
			b.WriteString(v.app)
		case "{gw}":
			b.WriteString(v.gw)
		case "{appeui}":
			b.WriteString(v.appEUI)
		case "{deveui}":
			b.WriteString(v.devEUI)
		case "{gweui}":
			b.WriteString(v.gwEUI)
		default: // not a placeholder: the brace is text
			b.WriteByte('{')
			t = t[1:]
			continue
		}
		t = t[j+1:]
	}
}

// errTemplateKey is a template naming a key the message lacks.
var errTemplateKey = errors.New("template key missing")

// fillTemplate applies Python %(key)s substitution (conduit.md §7.4): only
// %(key)s and %% are allowed. Values print as Python would.
func fillTemplate(tmpl string, keys map[string]json.RawMessage) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		rest := tmpl[i+1:]
		if strings.HasPrefix(rest, "%") {
			b.WriteByte('%')
			i++
			continue
		}
		if !strings.HasPrefix(rest, "(") {
			return "", fmt.Errorf("template %q: only %%(key)s and %%%% are allowed", tmpl)
		}
		end := strings.Index(rest, ")s")
		if end < 0 {
			return "", fmt.Errorf("template %q: unterminated %%(key)s", tmpl)
		}
		key := rest[1:end]
		raw, ok := keys[key]
		if !ok {
			return "", fmt.Errorf("%w: %q", errTemplateKey, key)
		}
		b.WriteString(pythonString(raw))
		i += end + 2
	}
	return b.String(), nil
}

// pythonString prints a JSON value as Python's str() of its decoded value.
func pythonString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case 't':
		return "True"
	case 'f':
		return "False"
	case 'n':
		return "None"
	case '{', '[':
		return string(raw)
	}
	lit := string(raw)
	if !strings.ContainsAny(lit, ".eE") {
		return lit // an integer: decimal, any size
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return lit
	}
	return pythonFloat(f)
}

// pythonFloat is Python's repr of a float: shortest round trip, fixed
// notation for exponents -4..15, else d.ddde±XX.
func pythonFloat(f float64) string {
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, exp)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") && !strings.ContainsAny(s, "nN") {
		s += ".0"
	}
	return s
}

// matchFilter reports whether an MQTT topic matches a filter (+ and #).
func matchFilter(filter, topic string) bool {
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && len(f) > 0 && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, lvl := range f {
		if lvl == "#" {
			return i == len(f)-1
		}
		if i >= len(t) {
			return false
		}
		if lvl != "+" && lvl != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}
