package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse runs the Prometheus text parser over an exposition.
func parse(t testing.TB, body string) map[string]labelsAndValue {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus text parser: %v\n%s", err, body)
	}
	out := map[string]labelsAndValue{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			lv := labelsAndValue{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				lv.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				lv.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				lv.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				lv.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[name+"|"+lv.labels["app"]] = lv
		}
	}
	return out
}

type labelsAndValue struct {
	labels map[string]string
	value  float64
}

func TestLabelValueEscaping(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"tab\there", "tab\there"}, // strconv.Quote would write \t, which the format does not know
		{`back\slash`, `back\\slash`},
		{`say "hi"`, `say \"hi\"`},
		{"two\nlines", `two\nlines`},
		{"cr\rstays", "cr\rstays"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"ünïcødé ☃", "ünïcødé ☃"},
	} {
		if got := EscapeLabelValue(tc.in); got != tc.want {
			t.Errorf("EscapeLabelValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Hostile label values survive a round trip through the Prometheus parser.
func TestWriterParsesWithPrometheusParser(t *testing.T) {
	hostile := []string{"tab\tname", `quote"name`, `back\slash`, "new\nline", "}{,=\" ", "\x00nul", "ü☃", "\xff\xfe", ""}
	var b bytes.Buffer
	m := NewWriter(&b)
	m.BuildInfo("appconnect", `v1.2.3-"dirty"`)
	m.Family("x_total", Counter, "A help text with \\ and\na new line.")
	for i, h := range hostile {
		m.Sample("x_total", float64(i), "app", h, "name", h)
	}
	h := NewLatencyHistogram()
	h.Observe(3 * time.Millisecond)
	h.Observe(time.Minute)
	m.Histogram("lat_seconds", "Latency.", h.Snapshot())
	p, err := ReadProcess("/proc")
	if err != nil {
		t.Fatal(err)
	}
	m.Process(p)
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	got := parse(t, b.String())
	for i, h := range hostile {
		want := strings.ToValidUTF8(h, "\uFFFD")
		s, ok := got["x_total|"+want]
		if !ok || s.value != float64(i) || s.labels["name"] != want {
			t.Errorf("label %q: parsed %+v (present %v)", h, s, ok)
		}
	}
	if s := got["lat_seconds|"]; s.value != 2 {
		t.Errorf("histogram %+v", s)
	}
	if s := got["appconnect_build_info|"]; s.value != 1 || s.labels["version"] != `v1.2.3-"dirty"` || !strings.HasPrefix(s.labels["goversion"], "go") {
		t.Errorf("build_info %+v", s)
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds", "process_open_fds", "process_virtual_memory_bytes"} {
		if _, ok := got[name+"|"]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 1.5: "1.5", 1e21: "1e+21", 62.083: "62.083"} {
		if got := FormatValue(in); got != want {
			t.Errorf("FormatValue(%v) = %q", in, got)
		}
	}
}

// Whatever the label values and help text, the Prometheus parser reads the
// writer's output back and finds the same values.
func FuzzWriterLabelValues(f *testing.F) {
	for _, s := range []string{"", "tab\t", `"`, `\`, "\n", "\\n", "\xff", "a\"b\\c\nd"} {
		f.Add(s, s, "help")
	}
	f.Fuzz(func(t *testing.T, v1, v2, help string) {
		var b bytes.Buffer
		m := NewWriter(&b)
		m.Family("fuzz_total", Counter, help)
		m.Sample("fuzz_total", 1, "app", v1, "name", v2)
		m.Sample("fuzz_total", 2, "app", v1+"x", "name", v2)
		if err := m.Flush(); err != nil {
			t.Fatal(err)
		}
		got := parse(t, b.String())
		s, ok := got["fuzz_total|"+strings.ToValidUTF8(v1, "\uFFFD")]
		if !ok || s.value != 1 || s.labels["name"] != strings.ToValidUTF8(v2, "\uFFFD") {
			t.Fatalf("values %q %q: parsed %+v", v1, v2, got)
		}
	})
}
