package metrics

import (
	"bufio"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
)

// ContentType is the Content-Type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metric types of a family's TYPE line.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// Writer writes the text exposition format. Families are written one at a
// time: Family (HELP and TYPE), then its samples. Label values may hold any
// bytes: they are escaped as the format says (backslash, double quote and
// line feed, nothing else) and invalid UTF-8 becomes U+FFFD. Write errors are
// kept and returned by Flush.
type Writer struct {
	b *bufio.Writer
}

// NewWriter writes to w; call Flush at the end.
func NewWriter(w io.Writer) *Writer { return &Writer{b: bufio.NewWriter(w)} }

// Flush writes what is buffered and returns the first write error.
func (m *Writer) Flush() error { return m.b.Flush() }

// Family starts a metric family: its HELP and TYPE lines.
func (m *Writer) Family(name, typ, help string) {
	m.b.WriteString("# HELP ")
	m.b.WriteString(name)
	m.b.WriteByte(' ')
	m.b.WriteString(escapeHelp(help))
	m.b.WriteString("\n# TYPE ")
	m.b.WriteString(name)
	m.b.WriteByte(' ')
	m.b.WriteString(typ)
	m.b.WriteByte('\n')
}

// Sample writes one sample; labels are name/value pairs (names are the
// caller's constants, values anything).
func (m *Writer) Sample(name string, v float64, labels ...string) {
	m.b.WriteString(name)
	if len(labels) >= 2 {
		m.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.b.WriteByte(',')
			}
			m.b.WriteString(labels[i])
			m.b.WriteString(`="`)
			m.b.WriteString(EscapeLabelValue(labels[i+1]))
			m.b.WriteByte('"')
		}
		m.b.WriteByte('}')
	}
	m.b.WriteByte(' ')
	m.b.WriteString(FormatValue(v))
	m.b.WriteByte('\n')
}

// Single writes a family of one sample without labels.
func (m *Writer) Single(name, typ, help string, v float64) {
	m.Family(name, typ, help)
	m.Sample(name, v)
}

// Histogram writes a histogram family from a snapshot (cumulative buckets,
// +Inf, sum and count).
func (m *Writer) Histogram(name, help string, h HistogramSnapshot) {
	m.Family(name, Histogram, help)
	var cum uint64
	for i, ub := range h.Buckets {
		cum += h.Counts[i]
		m.Sample(name+"_bucket", float64(cum), "le", FormatValue(ub))
	}
	m.Sample(name+"_bucket", float64(h.Count), "le", "+Inf")
	m.Sample(name+"_sum", h.Sum)
	m.Sample(name+"_count", float64(h.Count))
}

// BuildInfo writes the build_info gauge of prefix (value 1, the version and
// the Go version as labels), the usual way to expose a program's version.
func (m *Writer) BuildInfo(prefix, version string) {
	name := prefix + "_build_info"
	m.Family(name, Gauge, "Always 1; the labels say which build is running.")
	m.Sample(name, 1, "version", version, "goversion", runtime.Version())
}

// EscapeLabelValue escapes a label value for the text format: \ as \\, " as
// \" and a line feed as \n; invalid UTF-8 becomes U+FFFD (the format's
// values are UTF-8). Every other character, tabs included, stays as it is.
func EscapeLabelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return labelEscaper.Replace(s)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string {
	return helpEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// FormatValue is a sample value as the format writes it: shortest float,
// +Inf, -Inf or NaN.
func FormatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
