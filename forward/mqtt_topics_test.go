package forward

import (
	"encoding/json"
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
