package statusreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func sample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/sample.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeSample(t *testing.T) {
	r, err := Decode(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Gateway.UUID != "8ffa106f-c751-cfcd-6300-80918d516837" || r.Seq != 192 || len(r.Applications) != 1 {
		t.Fatalf("decoded %+v", r)
	}
	a := r.Applications[0]
	if a.QueueRows != 1290 || a.OldestQueuedSeconds != 641.5 || a.DeadLettered != 2 || r.Joins["Success"] != 12 || r.Downlinks["refused"] != 1 {
		t.Fatalf("decoded %+v", r)
	}
}

// edit applies f to the sample decoded as a generic map and re-encodes it.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(sample(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, _ := json.Marshal(m)
	return b
}

func TestDecodeRefuses(t *testing.T) {
	app := func(m map[string]any) map[string]any { return m["applications"].([]any)[0].(map[string]any) }
	tests := []struct {
		name, field string
		edit        func(m map[string]any)
	}{
		{"wrong type", "type", func(m map[string]any) { m["type"] = "up" }},
		{"no schema", "schema", func(m map[string]any) { delete(m, "schema") }},
		{"no time", "time", func(m map[string]any) { delete(m, "time") }},
		{"bad uuid", "gateway.uuid", func(m map[string]any) { m["gateway"].(map[string]any)["uuid"] = "8ffa106f-c751-cfcd-6300-80918d51683z" }},
		{"label injection in serial", "gateway.serial", func(m map[string]any) { m["gateway"].(map[string]any)["serial"] = "a\"}\nfake_metric 1" }},
		{"bad gateway eui", "gateway.euis[0]", func(m map[string]any) { m["gateway"].(map[string]any)["euis"] = []string{"0080000000"} }},
		{"too many euis", "gateway.euis", func(m map[string]any) { m["gateway"].(map[string]any)["euis"] = make([]string, MaxEUIs+1) }},
		{"long version", "version", func(m map[string]any) { m["version"] = strings.Repeat("v", 65) }},
		{"negative uptime", "uptime_seconds", func(m map[string]any) { m["uptime_seconds"] = -1 }},
		{"bad app eui", "applications[0].eui", func(m map[string]any) { app(m)["eui"] = "FF-FF-FF-FF-FF-FF-FF-FF" }},
		{"app twice", "applications[1].eui", func(m map[string]any) {
			m["applications"] = append(m["applications"].([]any), m["applications"].([]any)[0])
		}},
		{"bad state", "applications[0].state", func(m map[string]any) { app(m)["state"] = "up down" }},
		{"negative age", "applications[0].oldest_queued_seconds", func(m map[string]any) { app(m)["oldest_queued_seconds"] = -3 }},
		{"long last error", "applications[0].last_error", func(m map[string]any) { app(m)["last_error"] = strings.Repeat("é", MaxLastError+1) }},
		{"bad outcome", "joins", func(m map[string]any) { m["joins"] = map[string]int{"a b": 1} }},
		{"negative cpu", "process.cpu_seconds", func(m map[string]any) { m["process"] = map[string]any{"cpu_seconds": -1} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(edit(t, tc.edit))
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("want a ValidationError on %s, got %v", tc.field, err)
			}
		})
	}
	for name, body := range map[string][]byte{
		"not json":       []byte("{"),
		"array":          []byte("[]"),
		"trailing data":  append(sample(t), []byte(" {}")...),
		"negative count": bytes.Replace(sample(t), []byte(`"unrouted": 0`), []byte(`"unrouted": -1`), 1),
	} {
		if _, err := Decode(body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	big := edit(t, func(m map[string]any) { m["pad"] = strings.Repeat("x", MaxSize) })
	if _, err := Decode(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized report: %v", err)
	}
}

func TestDecodeAcceptsLaterSchemaAndRawUUID(t *testing.T) {
	r, err := Decode(edit(t, func(m map[string]any) {
		m["schema"] = 2
		m["new_field"] = map[string]any{"x": 1}
		m["gateway"].(map[string]any)["uuid"] = "8FFA106FC751CFCD630080918D516837"
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Gateway.UUID != "8ffa106f-c751-cfcd-6300-80918d516837" {
		t.Fatalf("uuid %q", r.Gateway.UUID)
	}
}

func TestBuildIsDecodable(t *testing.T) {
	started := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	b := &Builder{
		Gateway:      Gateway{UUID: "8FFA106FC751CFCD630080918D516837", Serial: "1942\x001234", EUIs: []string{"00-80-00-00-a0-00-0f-4d", "bad"}},
		Version:      "1.0.0",
		Started:      started,
		DatabasePath: "testdata/sample.json",
		Redact:       func(s string) string { return strings.ReplaceAll(s, "hunter2", "REDACTED") },
		Now:          func() time.Time { return started.Add(90 * time.Minute) },
	}
	outcomes := Outcomes{}
	for i := range 50 {
		outcomes[strings.Repeat("k", i+1)] = 1
	}
	snap := Snapshot{
		Applications: []Application{
			{EUI: "ff-ff-ff-ff-ff-ff-ff-ff", Name: "default", State: "up", LastError: "dial https://u:hunter2@x: " + strings.Repeat("é", 400)},
			{EUI: "16-ea-76-f6-ab-66-3d-80", Name: "appnet", State: "", OldestQueuedSeconds: -1},
			{EUI: "16-ea-76-f6-ab-66-3d-80", Name: "twice"},
		},
		Joins: outcomes, Downlinks: Outcomes{"sent ok": 2},
	}
	r := b.Build(snap)
	body, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatalf("Build produced a report Decode refuses: %v\n%s", err, body)
	}
	if got.Seq != 1 || b.Build(snap).Seq != 2 {
		t.Errorf("sequence: %d", got.Seq)
	}
	if got.UptimeSeconds != 5400 || got.Gateway.UUID != "8ffa106f-c751-cfcd-6300-80918d516837" || len(got.Gateway.EUIs) != 1 {
		t.Errorf("identity: %+v uptime %d", got.Gateway, got.UptimeSeconds)
	}
	if len(got.Applications) != 2 || got.Applications[0].EUI != "16-ea-76-f6-ab-66-3d-80" || got.Applications[0].State != "unknown" {
		t.Errorf("applications: %+v", got.Applications)
	}
	if strings.Contains(string(body), "hunter2") {
		t.Error("the last error was not redacted")
	}
	if len(got.Joins) != MaxOutcomes || got.Downlinks["sent_ok"] != 2 {
		t.Errorf("outcomes: joins %d, downlinks %v", len(got.Joins), got.Downlinks)
	}
	if got.Database.SizeBytes == 0 {
		t.Error("database size not read")
	}
	if got.Process.RSSBytes == 0 && isLinux() {
		t.Error("process RSS not read")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample(f))
	f.Add([]byte(`{"type":"status","schema":1,"time":"2026-01-01T00:00:00Z","gateway":{"uuid":"8ffa106fc751cfcd630080918d516837"}}`))
	f.Add([]byte(`{"type":"status","joins":{"":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever is accepted re-encodes and decodes to the same report.
		body, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Decode(body)
		if err != nil {
			t.Fatalf("accepted report does not round-trip: %v", err)
		}
		if r2.Gateway.UUID != r.Gateway.UUID || len(r2.Applications) != len(r.Applications) {
			t.Fatal("round trip changed the report")
		}
	})
}
