package forward

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFillTemplate(t *testing.T) {
	keys := map[string]json.RawMessage{"deveui": json.RawMessage(`"00-11"`), "port": json.RawMessage(`5`), "rssi": json.RawMessage(`-7.0`),
		"lsnr": json.RawMessage(`1e-05`), "ack": json.RawMessage(`true`), "big": json.RawMessage(`12345678901234567890`), "f": json.RawMessage(`1234567.5`)}
	for tmpl, want := range map[string]string{
		"a/%(deveui)s/%(port)s":     "a/00-11/5",
		"%(rssi)s %(lsnr)s %(ack)s": "-7.0 1e-05 True",
		"100%% %(big)s %(f)s":       "100% 12345678901234567890 1234567.5",
	} {
		got, err := fillTemplate(tmpl, keys)
		if err != nil || got != want {
			t.Errorf("%q → %q %v, want %q", tmpl, got, err, want)
		}
	}
	for _, bad := range []string{"a/%(missing)s", "a/%d", "a/%(port", "a/%"} {
		if _, err := fillTemplate(bad, keys); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := pythonFloat(1e16); got != "1e+16" {
		t.Errorf("1e16 → %s", got)
	}
}

func TestMatchFilter(t *testing.T) {
	for _, tc := range []struct {
		f, t string
		ok   bool
	}{
		{"a/b", "a/b", true}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false}, {"a/#", "a", true}, {"a/#", "a/b/c", true},
		{"#", "$SYS/x", false}, {"+/b", "a/b", true}, {"a/b", "a/b/c", false}, {"a/b/c", "a/b", false},
	} {
		if got := matchFilter(tc.f, tc.t); got != tc.ok {
			t.Errorf("%s ~ %s = %v", tc.f, tc.t, got)
		}
	}
}

// fill gives every topic of every version's table exactly what replacing the
// placeholders one by one gives (rows' EUIs in their text form).
func TestTopicFill(t *testing.T) {
	v := topicVars{app: "ff-ff-ff-ff-ff-ff-ff-ff", gw: "029998e0-6156-cdd4-4523-264b523115c1", appEUI: "16-ea-76-f6-ab-66-3d-80",
		devEUI: "00-00-00-00-00-00-00-01", gwEUI: "00-80-00-00-d0-00-01-ff"}
	r := strings.NewReplacer("{app}", v.app, "{gw}", v.gw, "{appeui}", v.appEUI, "{deveui}", v.devEUI, "{gweui}", v.gwEUI)
	for _, tb := range []topicTable{topicsV10, topicsV11, topicsV111} {
		all := append([]string{tb.init, tb.close, tb.disconnected, tb.connected, tb.requests, "a/{x}/{{app}}/{", "{appeui"}, tb.up...)
		all = append(append(append(append(all, tb.moved...), tb.joined...), tb.appSubs...), tb.deviceSubs...)
		for _, tm := range all {
			if got, want := v.fill(tm), r.Replace(tm); got != want {
				t.Errorf("fill(%q) = %q, want %q", tm, got, want)
			}
		}
	}
}
