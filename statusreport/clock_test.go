package statusreport

import (
	"strings"
	"testing"
	"time"
	"unsafe"
)

// wallJumped returns at as time.Now reads it after the system clock was set
// by d (NTP correcting): the wall reading moved by d, the monotonic reading
// did not. No API builds such a value (Add moves both readings), so this sets
// the monotonic reading — time.Time's ext field while the value has one —
// directly, and fails the test rather than guess should that layout change.
func wallJumped(t *testing.T, at time.Time, d time.Duration) time.Time {
	t.Helper()
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	if unsafe.Sizeof(at) != unsafe.Sizeof(layout{}) || !strings.Contains(at.String(), " m=") {
		t.Fatalf("cannot simulate a clock jump: %v has no monotonic reading or time.Time changed its layout", at)
	}
	j := at.Add(d)
	(*layout)(unsafe.Pointer(&j)).ext -= int64(d)
	if j.Sub(at) != 0 || j.Round(0).Sub(at.Round(0)) != d {
		t.Fatalf("cannot simulate a clock jump: time.Time changed its layout (%v, %v)", j.Sub(at), j.Round(0).Sub(at.Round(0)))
	}
	return j
}

// The report's uptime is measured on the monotonic clock: after NTP set
// the wall clock forward by hours, uptime_seconds is not hours more (nor 0
// after a backward jump). Before, the clock reading was converted to UTC,
// which drops the monotonic reading, before the subtraction.
func TestBuildUptimeIgnoresWallClockJumps(t *testing.T) {
	started := time.Now()
	for _, jump := range []time.Duration{3 * time.Hour, -3 * time.Hour} {
		b := &Builder{Started: started, Now: func() time.Time { return wallJumped(t, started.Add(90*time.Second), jump) }}
		r := b.Build(Snapshot{})
		if r.UptimeSeconds != 90 {
			t.Errorf("wall clock jumped %v: uptime %d s, want 90", jump, r.UptimeSeconds)
		}
		if want := started.Add(90 * time.Second).Add(jump).UTC().Truncate(time.Millisecond); !r.Time.Equal(want) {
			t.Errorf("wall clock jumped %v: report time %v, want the wall clock's %v", jump, r.Time, want)
		}
	}
}
