package lnsbridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2023, 9, 13, 16, 52, 20, 498194000, time.UTC)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func topicOf(t testing.TB, name string) string {
	return strings.TrimSpace(string(fixture(t, name)))
}

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		name    string
		kind    Kind
		dev     string
		app     string
		join    string
		fcnt    uint32
		port    int
		payload string
	}{
		{"uplink-as923", KindUp, "00-11-00-11-00-11-00-11", "6c-4e-ef-66-f4-79-86-a6", "6c-4e-ef-66-f4-79-86-a6", 0, 1, "uplink-as923.json"},
		{"uplink-us915-sx1302", KindUp, "00-80-00-ff-ff-00-00-03", "8b-6c-f0-8e-ee-df-1b-b6", "16-ea-76-f6-ab-66-3d-80", 1, 33, "uplink-us915-sx1302.json"},
		{"joined", KindJoined, "00-11-00-11-00-11-00-11", "6c-4e-ef-66-f4-79-86-a6", "6c-4e-ef-66-f4-79-86-a6", 0, -1, "joined.json"},
		{"moved", KindMoved, "00-11-00-11-00-11-00-11", "6c-4e-ef-66-f4-79-86-a6", "", 0, -1, "moved.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := fixture(t, tc.payload)
			ev, err := ParseEvent(topicOf(t, tc.name+".topic"), payload, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != tc.kind || ev.DevEUI != tc.dev || ev.AppEUI != tc.app || ev.JoinEUI != tc.join || ev.FCnt != tc.fcnt || ev.Port != tc.port {
				t.Fatalf("got %+v", ev)
			}
			if string(ev.Raw) != string(payload) {
				t.Fatal("raw bytes not kept")
			}
			if tc.kind == KindUp && string(ev.Body) != string(payload) {
				t.Fatal("uplinks must be forwarded byte for byte")
			}
		})
	}
}

func TestJoinedAppendsTimeAndDevEUI(t *testing.T) {
	ev, err := ParseEvent(topicOf(t, "joined.topic"), fixture(t, "joined.json"), testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"joineui":"6c-4e-ef-66-f4-79-86-a6","appeui":"6c-4e-ef-66-f4-79-86-a6","gweui":"00-80-00-00-00-01-b5-fc","remote":false,"time":"2023-09-13T16:52:20.498194Z","deveui":"00-11-00-11-00-11-00-11"}`
	if string(ev.Body) != want {
		t.Fatalf("body\n%s\nwant\n%s", ev.Body, want)
	}
	// An LNS that already sends time/deveui: ours replace them, keys not duplicated.
	ev, err = ParseEvent("lora/00-11-00-11-00-11-00-11/joined", []byte(`{"appeui":"6c4eef66f47986a6","deveui":"x","time":"old"}`), testNow)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.Body, &m); err != nil || m["deveui"] != "00-11-00-11-00-11-00-11" || m["time"] != "2023-09-13T16:52:20.498194Z" || strings.Count(string(ev.Body), `"deveui"`) != 1 {
		t.Fatalf("body %s", ev.Body)
	}
	if ev.AppEUI != "6c-4e-ef-66-f4-79-86-a6" {
		t.Fatalf("appeui not normalised: %s", ev.AppEUI)
	}
}

func TestBadInputsRejected(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "bad-inputs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	topics := []string{
		"lora/6c-4e-ef-66-f4-79-86-a6/00-11-00-11-00-11-00-11/up",
		"lora/00-11-00-11-00-11-00-11/joined",
		"lora/6c-4e-ef-66-f4-79-86-a6/00-11-00-11-00-11-00-11/moved",
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		for _, topic := range topics {
			_, err := ParseEvent(topic, []byte(line), testNow)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason == "" || pe.Topic != topic {
				t.Errorf("%s on %s: err %v, want a ParseError with a reason", line, topic, err)
			}
		}
	}
	if n < 10 {
		t.Fatalf("read %d bad inputs", n)
	}
}

func TestParseRejects(t *testing.T) {
	up := "lora/6c-4e-ef-66-f4-79-86-a6/00-11-00-11-00-11-00-11/up"
	tests := []struct {
		name, topic, payload, reason string
	}{
		{"bad topic eui", "lora/xx/00-11-00-11-00-11-00-11/up", `{}`, "AppEUI in topic"},
		{"deveui differs from topic", up, `{"deveui":"00-11-00-11-00-11-00-12","fcnt":1}`, "differs from the topic"},
		{"appeui differs from topic", up, `{"deveui":"00-11-00-11-00-11-00-11","appeui":"00-00-00-00-00-00-00-01","fcnt":1}`, "differs from the topic"},
		{"fcnt missing", up, `{"deveui":"00-11-00-11-00-11-00-11"}`, `"fcnt" missing`},
		{"fcnt negative", up, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":-1}`, "out of range"},
		{"fcnt fractional", up, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1.5}`, "not an integer"},
		{"port too big", up, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1,"port":256}`, "out of range"},
		{"not base64", up, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1,"data":"@@"}`, "not base64"},
		{"trailing garbage", up, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1} x`, "not valid JSON"},
		{"unknown event", "lora/00-11-00-11-00-11-00-11/rx", `{}`, "unknown event"},
		{"foreign topic", "scada/x/y/up", `{}`, "not an LNS event topic"},
		{"moved with bad eui", "lora/6c-4e-ef-66-f4-79-86-a6/00-11-00-11-00-11-00-11/moved", `["nope"]`, "gateway 0"},
		{"oversized", up, `{"x":"` + strings.Repeat("a", MaxPayload) + `"}`, "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEvent(tc.topic, []byte(tc.payload), testNow)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %v, want %q", err, tc.reason)
			}
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, n := range []string{"uplink-as923", "uplink-us915-sx1302", "joined", "moved"} {
		payload := "uplink-as923.json"
		switch n {
		case "uplink-us915-sx1302", "joined", "moved":
			payload = n + ".json"
		}
		f.Add(topicOf(f, n+".topic"), fixture(f, payload))
	}
	f.Add("lora/00-11-00-11-00-11-00-11/joined", []byte(`{"appeui":"$(reboot)"}`))
	f.Add("lora/a/b/up", []byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		ev, err := ParseEvent(topic, payload, testNow)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a ParseError", err)
			}
			return
		}
		if len(ev.DevEUI) != 23 {
			t.Fatalf("accepted DevEUI %q", ev.DevEUI)
		}
		if ev.Kind != KindMoved && len(ev.AppEUI) != 23 {
			t.Fatalf("accepted AppEUI %q", ev.AppEUI)
		}
		if ev.Kind == KindJoined && !json.Valid(ev.Body) {
			t.Fatalf("joined body is not JSON: %s", ev.Body)
		}
	})
}

// parseUplinkReference is the uplink parser before the one-pass one: the
// object decoded into a map, each field decoded from it. FuzzUplinkParsers
// holds the two to the same verdicts.
func parseUplinkReference(topic, appPart, devPart string, payload []byte) (Event, error) {
	ev := Event{Kind: KindUp, Topic: topic, Raw: payload, Body: payload, Port: -1}
	var err error
	if ev.AppEUI, err = topicEUI(topic, "AppEUI", appPart); err != nil {
		return ev, err
	}
	if ev.DevEUI, err = topicEUI(topic, "DevEUI", devPart); err != nil {
		return ev, err
	}
	m, err := object(topic, payload)
	if err != nil {
		return ev, err
	}
	dev, err := euiField(topic, m, "deveui", true)
	if err != nil {
		return ev, err
	}
	if dev != ev.DevEUI {
		return ev, perr(topic, "field \"deveui\" %s differs from the topic's %s", dev, ev.DevEUI)
	}
	if app, err := euiField(topic, m, "appeui", false); err != nil {
		return ev, err
	} else if app != "" && app != ev.AppEUI {
		return ev, perr(topic, "field \"appeui\" %s differs from the topic's %s", app, ev.AppEUI)
	}
	if ev.JoinEUI, err = euiField(topic, m, "joineui", false); err != nil {
		return ev, err
	}
	if ev.GWEUI, err = euiField(topic, m, "gweui", false); err != nil {
		return ev, err
	}
	fcnt, _, err := integer(topic, m, "fcnt", true, 0, 1<<32-1)
	if err != nil {
		return ev, err
	}
	ev.FCnt = uint32(fcnt)
	if port, ok, err := integer(topic, m, "port", false, 0, 255); err != nil {
		return ev, err
	} else if ok {
		ev.Port = int(port)
	}
	if _, _, err := integer(topic, m, "size", false, 0, 255); err != nil {
		return ev, err
	}
	if data, ok, err := str(topic, m, "data", false); err != nil {
		return ev, err
	} else if ok {
		if _, err := base64.StdEncoding.DecodeString(data); err != nil {
			return ev, perr(topic, "field \"data\" is not base64: %v", err)
		}
	}
	return ev, nil
}

// integer reads an optional integer field in [lo, hi].
func integer(topic string, m map[string]json.RawMessage, key string, required bool, lo, hi int64) (int64, bool, error) {
	v, ok := m[key]
	if !ok {
		if required {
			return 0, false, perr(topic, "field %q missing", key)
		}
		return 0, false, nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if isNull(v) || dec.Decode(&n) != nil {
		return 0, false, perr(topic, "field %q is not a number", key)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, false, perr(topic, "field %q is not an integer", key)
	}
	if i < lo || i > hi {
		return 0, false, perr(topic, "field %q = %d out of range %d..%d", key, i, lo, hi)
	}
	return i, true, nil
}

func FuzzUplinkParsers(f *testing.F) {
	up := fixture(f, "uplink-as923.json")
	f.Add(up)
	for _, s := range []string{
		`{"deveui":"00-11-00-11-00-11-00-11","fcnt":"5"}`, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1.0}`,
		`{"deveui":"00-11-00-11-00-11-00-11","fcnt":"x","fcnt":2}`, `{"dev\u0065ui":"00-11-00-11-00-11-00-11","fcnt":1}`,
		`{"deveui":null,"fcnt":1}`, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":1,"data":"QQ=="} x`,
		`{"deveui":"00-11-00-11-00-11-00-11","fcnt":1,"port":256}`, `{"deveui":"00-11-00-11-00-11-00-11","fcnt":-1}`,
		`{"deveui":"00-11-00-11-00-11-00-11","fcnt":4294967295,"size":"7","data":"\u0051Q=="}`, ` {"a":[{"b":"}"}],"deveui":"0011001100110011","fcnt":0}`,
	} {
		f.Add([]byte(s))
	}
	const topic, app, dev = "lora/00-11-00-11-00-11-00-11/00-11-00-11-00-11-00-11/up", "00-11-00-11-00-11-00-11", "00-11-00-11-00-11-00-11"
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, gerr := parseUplink(topic, app, dev, payload)
		want, werr := parseUplinkReference(topic, app, dev, payload)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: one-pass %v, reference %v", payload, gerr, werr)
		}
		if gerr == nil && (got.DevEUI != want.DevEUI || got.AppEUI != want.AppEUI || got.JoinEUI != want.JoinEUI ||
			got.GWEUI != want.GWEUI || got.FCnt != want.FCnt || got.Port != want.Port || !bytes.Equal(got.Body, want.Body)) {
			t.Fatalf("%q: one-pass %+v, reference %+v", payload, got, want)
		}
	})
}
