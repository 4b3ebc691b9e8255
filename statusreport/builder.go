package statusreport

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Builder fills reports: the static identity it holds, the counters of a
// Snapshot, and the process and database figures it reads itself. Safe for
// concurrent use; each Build takes the next sequence number.
type Builder struct {
	Gateway      Gateway
	Version      string
	Started      time.Time // time.Now() at start: uptime is measured on its monotonic reading
	DatabasePath string    // SQLite file: its size (with -wal, -shm) and its file system's free space
	// Redact cleans an application's last error before it is reported
	// (RedactSecrets with the configured secrets); nil leaves it as it is.
	Redact func(string) string
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	seq atomic.Uint64
}

// Snapshot is the running program's counters at one moment.
type Snapshot struct {
	Applications []Application
	LocalBroker  LocalBroker
	LNS          LNS
	Unrouted     uint64
	Joins        Outcomes
	Downlinks    Outcomes
}

// Build returns the next report. It always produces a report the decoder
// accepts: lists are capped, names cleaned, texts clipped.
func (b *Builder) Build(s Snapshot) Report {
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	at := now()
	t := at.UTC() // UTC drops the monotonic reading: uptime is taken from at
	r := Report{
		Type: Type, Schema: Schema, Time: t.Truncate(time.Millisecond), Seq: b.seq.Add(1),
		Gateway: Gateway{
			UUID:   b.Gateway.UUID,
			Serial: clean(b.Gateway.Serial, maxShort),
			EUIs:   []string{},
		},
		Version:      clean(b.Version, maxShort),
		LocalBroker:  s.LocalBroker,
		LNS:          s.LNS,
		Unrouted:     s.Unrouted,
		Joins:        capOutcomes(s.Joins),
		Downlinks:    capOutcomes(s.Downlinks),
		Applications: []Application{},
	}
	if u, err := NormalizeUUID(b.Gateway.UUID); err == nil {
		r.Gateway.UUID = u
	}
	if !b.Started.IsZero() {
		// Monotonic when both readings have it: a wall-clock jump (NTP)
		// does not add or take hours.
		r.UptimeSeconds = max(int64(at.Sub(b.Started)/time.Second), 0)
	}
	for _, e := range b.Gateway.EUIs {
		if isEUI(e) && len(r.Gateway.EUIs) < MaxEUIs {
			r.Gateway.EUIs = append(r.Gateway.EUIs, e)
		}
	}
	apps := slices.Clone(s.Applications)
	slices.SortFunc(apps, func(x, y Application) int { return cmp.Compare(x.EUI, y.EUI) })
	for _, a := range apps {
		if len(r.Applications) == MaxApplications {
			break
		}
		if !isEUI(a.EUI) || (len(r.Applications) > 0 && r.Applications[len(r.Applications)-1].EUI == a.EUI) {
			continue
		}
		a.Name = clean(a.Name, maxShort)
		a.State = keyName(a.State)
		if b.Redact != nil {
			a.LastError = b.Redact(a.LastError)
		}
		a.LastError = clean(a.LastError, MaxLastError)
		a.OldestQueuedSeconds = max(a.OldestQueuedSeconds, 0)
		r.Applications = append(r.Applications, a)
	}
	r.Process = readProcess()
	if b.DatabasePath != "" {
		r.Database = readDatabase(b.DatabasePath)
	}
	return r
}

// capOutcomes keeps at most MaxOutcomes names (the first in order; the rest
// are summed under "other") with clean names.
func capOutcomes(o Outcomes) Outcomes {
	out := Outcomes{}
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := keyName(k)
		if _, ok := out[name]; !ok && len(out) >= MaxOutcomes-1 {
			name = "other"
		}
		out[name] += o[k]
	}
	return out
}

// keyName maps any text to [A-Za-z0-9_.-]{1,64}.
func keyName(s string) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(s)
	if len(b) > maxShort {
		b = b[:maxShort]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// clean keeps valid UTF-8 without control characters, at most n runes for
// n == MaxLastError, else at most n bytes.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if n == MaxLastError {
		if utf8.RuneCountInString(s) > n {
			s = string([]rune(s)[:n-1]) + "…"
		}
		return s
	}
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
