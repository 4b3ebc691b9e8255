package forward

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateDownlink(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("..", "lnsbridge", "testdata", "downlink.json")) // the one copy of the fixture
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, raw, topicDev string
		hex                 bool
		wantDev, wantErr    string
		wantData            string
	}{
		{"fixture", string(fixture), "", false, "00-11-00-11-00-11-00-11", "", "AQID"},
		{"deveui from the topic", `{"data":"AQ==","port":1}`, "0011001100110011", false, "00-11-00-11-00-11-00-11", "", "AQ=="},
		{"payload deveui beats the topic", `{"deveui":"00-00-00-00-00-00-00-01","data":"AQ=="}`, "00-11-00-11-00-11-00-11", false, "00-00-00-00-00-00-00-01", "", "AQ=="},
		{"hex converted to base64", `{"deveui":"00-11-00-11-00-11-00-11","data":"69B71D"}`, "", true, "00-11-00-11-00-11-00-11", "", "abcd"},
		{"unknown fields pass", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","x":{"y":1}}`, "", false, "00-11-00-11-00-11-00-11", "", "AQ=="},
		{"no deveui", `{"data":"AQ=="}`, "", false, "", "no deveui", ""},
		{"bad deveui", `{"deveui":"$(reboot)","data":"AQ=="}`, "", false, "", "deveui", ""},
		{"no data", `{"deveui":"00-11-00-11-00-11-00-11"}`, "", false, "", "data missing", ""},
		{"null data", `{"deveui":"00-11-00-11-00-11-00-11","data":null}`, "", false, "", "data missing", ""},
		{"not base64", `{"deveui":"00-11-00-11-00-11-00-11","data":"###notbase64###"}`, "", false, "", "not base64", ""},
		{"not hex", `{"deveui":"00-11-00-11-00-11-00-11","data":"zz"}`, "", true, "", "not hex", ""},
		{"port 224", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","port":224}`, "", false, "", "port = 224", ""},
		{"port text", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","port":"1"}`, "", false, "", "port is not a number", ""},
		{"rx_wnd now", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","rx_wnd":"now"}`, "", false, "", "rx_wnd", ""},
		{"rx_wnd 3", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","rx_wnd":3}`, "", false, "", "rx_wnd = 3", ""},
		{"ack not bool", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","ack":1}`, "", false, "", "ack is not a boolean", ""},
		{"negative retries", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ==","ack_retries":-1}`, "", false, "", "ack_retries", ""},
		{"too big", `{"deveui":"00-11-00-11-00-11-00-11","data":"` + strings.Repeat("A", 324) + `"}`, "", false, "", "exceeds 242", ""},
		{"array", `[1,2,3]`, "", false, "", "not a JSON object", ""},
		{"trailing", `{"deveui":"00-11-00-11-00-11-00-11","data":"AQ=="}{}`, "", false, "", "trailing", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dl, err := ValidateDownlink([]byte(tc.raw), tc.topicDev, tc.hex, MaxDownlinkPayload)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(dl.Payload, &m); err != nil || dl.DevEUI != tc.wantDev || m["data"] != tc.wantData && !(tc.hex && m["data"] == "abcd") {
				t.Fatalf("dl %s %s err %v", dl.DevEUI, dl.Payload, err)
			}
		})
	}
	// The hex case really produced the bytes 0x69 0xB7 0x1D as base64.
	dl, _ := ValidateDownlink([]byte(`{"deveui":"00-11-00-11-00-11-00-11","data":"69B71D"}`), "", true, MaxDownlinkPayload)
	if !strings.Contains(string(dl.Payload), `"data":"abcd"`) {
		t.Fatalf("hex payload %s", dl.Payload)
	}
}

func TestSplitDownlinks(t *testing.T) {
	for reply, want := range map[string]int{
		`[]`: 0, `{}`: 0, ``: 0, `"ok"`: 0, `not json`: 0, ` [ ` + "\r\n\t" + `] `: 0, `[}`: 0, `{]`: 0, `[x]`: 0,
		`{"deveui":"00-11-00-11-00-11-00-11","data":"AQ=="}`:                         1,
		`[{"deveui":"a","data":"AQ=="},{"data":"AQ=="},{"deveui":"b","data":"x"},5]`: 2,
	} {
		if got := len(SplitDownlinks([]byte(reply))); got != want {
			t.Errorf("%s: %d downlinks, want %d", reply, got, want)
		}
	}
}

// TestSplitDownlinksSparesEmptyAnswers: the answer of nearly every uplink,
// an empty array or object, is recognised without encoding/json.
func TestSplitDownlinksSparesEmptyAnswers(t *testing.T) {
	for _, reply := range []string{`[]`, `{}`, " [ \n] ", "{\t}"} {
		b := []byte(reply)
		if n := testing.AllocsPerRun(100, func() { SplitDownlinks(b) }); n != 0 {
			t.Errorf("%q: %.0f allocations, want none", reply, n)
		}
	}
}

// FuzzSplitDownlinks: a remote answer never panics the split; what it
// returns are objects with deveui and data; an answer taken for empty is an
// empty JSON array or object.
func FuzzSplitDownlinks(f *testing.F) {
	for _, s := range []string{`[]`, `{}`, " [ ] ", `[{"deveui":"a","data":"AQ=="},5]`, `{"deveui":"a","data":"AQ=="}`, `[}`, `[ "]"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		for _, e := range SplitDownlinks(reply) {
			var probe map[string]json.RawMessage
			if err := json.Unmarshal(e, &probe); err != nil {
				t.Fatalf("element %s: %v", e, err)
			}
		}
		if p := bytes.TrimSpace(reply); emptyJSON(p) {
			var v any
			if err := json.Unmarshal(p, &v); err != nil {
				t.Fatalf("%q taken for empty: %v", p, err)
			}
			switch x := v.(type) {
			case []any:
				if len(x) != 0 {
					t.Fatalf("%q taken for empty: %d elements", p, len(x))
				}
			case map[string]any:
				if len(x) != 0 {
					t.Fatalf("%q taken for empty: %d keys", p, len(x))
				}
			}
		}
	})
}

func TestHexUplink(t *testing.T) {
	got, err := HexUplink([]byte(`{"port":1,"data":"dGVzdGRhdGE=","deveui":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"port":1,"data":"7465737464617461","deveui":"x","data-format":"hexadecimal"}` {
		t.Fatalf("got %s", got)
	}
	if same, _ := HexUplink([]byte(`{"port":1}`)); string(same) != `{"port":1}` {
		t.Fatalf("no data: %s", same)
	}
	if _, err := HexUplink([]byte(`{"data":"@@"}`)); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

func FuzzValidateDownlink(f *testing.F) {
	f.Add([]byte(`{"deveui":"00-11-00-11-00-11-00-11","port":2,"data":"AQID","ack":false,"rx_wnd":0}`), "", false)
	f.Add([]byte(`{"data":"69B71D"}`), "00-11-00-11-00-11-00-11", true)
	f.Add([]byte(`[{"deveui":1}]`), "", false)
	f.Fuzz(func(t *testing.T, raw []byte, topicDev string, hex bool) {
		dl, err := ValidateDownlink(raw, topicDev, hex, MaxDownlinkPayload)
		if err != nil {
			return
		}
		if len(dl.DevEUI) != 23 || !json.Valid(dl.Payload) {
			t.Fatalf("accepted %q → %s %s", raw, dl.DevEUI, dl.Payload)
		}
		// What passed must pass again (as the local network server's input) unchanged in meaning.
		if _, err := ValidateDownlink(dl.Payload, dl.DevEUI, false, MaxDownlinkPayload); err != nil {
			t.Fatalf("validated payload fails again: %v (%s)", err, dl.Payload)
		}
	})
}
