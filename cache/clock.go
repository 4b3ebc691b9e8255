package cache

import "time"

// stamps converts the outbox's stored times (enqueued_at, next_attempt_at:
// Unix milliseconds) to and from time.Time so that a row read back from the
// database is aged on Go's monotonic clock, like a row handed over in memory.
//
// The wall clock jumps: NTP corrects a gateway's clock by hours either way,
// and one that booted without a good time does so while rows wait. Stored as
// wall-clock times and compared with time.Now, a row's delivery latency or a
// queue's age would be hours, or negative, after such a jump. So a stored
// time is this process's steady clock: the wall time when the outbox was
// opened, advanced by the monotonic clock; and a time read back carries a
// monotonic reading (base.Add keeps it), so time.Since of it ignores later
// jumps. Rows stored by an earlier process are aged across the restart by
// the wall clock, as nothing else spans it (callers clamp a negative age).
type stamps struct {
	base   time.Time // time.Now() at open, on a whole millisecond: wall and monotonic readings
	baseMs int64     // base.UnixMilli()
}

func newStamps(now time.Time) stamps {
	base := now.Add(-(time.Duration(now.Nanosecond()) % time.Millisecond))
	return stamps{base: base, baseMs: base.UnixMilli()}
}

// maxStampSpan bounds the stored times converted with the monotonic reading;
// beyond it (a damaged value) a time is read as it is stored.
const maxStampSpan = 100 * 365 * 24 * time.Hour

// store is the stored form of t. A t with a monotonic reading (time.Now) is
// placed by it; a t without one (from a caller's clock or a file) by its wall
// reading.
func (s stamps) store(t time.Time) int64 {
	d := t.Sub(s.base)
	ms := d.Milliseconds()
	if d < 0 && d%time.Millisecond != 0 {
		ms-- // floor, so store(load(ms)) == ms either side of base
	}
	return s.baseMs + ms
}

// load is the time of a stored value, with a monotonic reading.
func (s stamps) load(ms int64) time.Time {
	d := ms - s.baseMs
	if d > int64(maxStampSpan/time.Millisecond) || d < -int64(maxStampSpan/time.Millisecond) {
		return time.UnixMilli(ms)
	}
	return s.base.Add(time.Duration(d) * time.Millisecond)
}
