package cache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTest(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newOutbox(t testing.TB, db *DB, l Limits) *Outbox {
	t.Helper()
	ob, err := db.NewOutbox(context.Background(), l)
	if err != nil {
		t.Fatalf("NewOutbox: %v", err)
	}
	t.Cleanup(ob.Close)
	return ob
}

func rowsFor(app string, from, n int) []Row {
	out := make([]Row, n)
	for i := range out {
		out[i] = Row{Application: app, Kind: "up", Body: fmt.Appendf(nil, `{"n":%d}`, from+i)}
	}
	return out
}

func TestOpenCreatesSchemaWithWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "app.db")
	db := openTest(t, path)
	v, err := db.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	// NORMAL (1): SQLite syncs around checkpoints, the WAL syncer after each
	// durable commit (walsync_test.go); FULL (2) only without the syncer.
	sync := "1"
	if db.wal == nil {
		sync = "2"
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": sync} {
		var got string
		if err := db.sql.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || !strings.EqualFold(got, want) {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	db.Close()
	// Re-opening applies no migration twice.
	db2 := openTest(t, path)
	if v, _ := db2.SchemaVersion(context.Background()); v != len(migrations) {
		t.Fatalf("schema version after reopen = %d", v)
	}
}

func TestOutboxFIFOPerApplication(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "a.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	var all []Row
	for i := 0; i < 10; i++ {
		all = append(all, rowsFor("a", i*2, 2)...)
		all = append(all, rowsFor("b", i, 1)...)
	}
	if _, err := ob.Append(ctx, all); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		app  string
		want int
	}{{"a", 20}, {"b", 10}, {"c", 0}} {
		t.Run(tc.app, func(t *testing.T) {
			got, err := ob.Peek(ctx, tc.app, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("peek %s: %d rows, want %d", tc.app, len(got), tc.want)
			}
			for i, r := range got {
				if want := fmt.Sprintf(`{"n":%d}`, i); string(r.Body) != want {
					t.Fatalf("row %d body %s, want %s", i, r.Body, want)
				}
				if i > 0 && r.ID <= got[i-1].ID {
					t.Fatalf("ids not increasing")
				}
			}
			if s := ob.Stats(tc.app); s.Rows != tc.want {
				t.Fatalf("stats rows = %d, want %d", s.Rows, tc.want)
			}
		})
	}
	// Peek after a cursor, then delete the first half.
	head, _ := ob.Peek(ctx, "a", 0, 5)
	next, _ := ob.Peek(ctx, "a", head[4].ID, 5)
	if string(next[0].Body) != `{"n":5}` {
		t.Fatalf("peek after cursor: %s", next[0].Body)
	}
	ob.Delete(head)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rest, _ := ob.Peek(ctx, "a", 0, 100)
	if len(rest) != 15 || string(rest[0].Body) != `{"n":5}` {
		t.Fatalf("after delete: %d rows, head %s", len(rest), rest[0].Body)
	}
	if s := ob.Stats("a"); s.Rows != 15 {
		t.Fatalf("stats after delete = %+v", s)
	}
}

func TestOutboxCaps(t *testing.T) {
	tests := []struct {
		name        string
		limits      Limits
		appends     int
		wantRows    int
		wantDropped int64
		wantHead    string
	}{
		{"rows cap drops oldest", Limits{MaxRows: 5, MaxBytes: 1 << 20}, 8, 5, 3, `{"n":3}`},
		{"bytes cap drops oldest", Limits{MaxRows: 100, MaxBytes: 4 * 8}, 6, 4, 2, `{"n":2}`},
		{"under caps keeps all", Limits{MaxRows: 10, MaxBytes: 1 << 20}, 10, 10, 0, `{"n":0}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "c.db")
			db := openTest(t, path)
			ob := newOutbox(t, db, tc.limits)
			for i := 0; i < tc.appends; i++ {
				if _, err := ob.Append(ctx, rowsFor("a", i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := ob.Append(ctx, rowsFor("other", 0, 1)); err != nil {
				t.Fatal(err)
			}
			s := ob.Stats("a")
			if s.Rows != tc.wantRows || s.Dropped != tc.wantDropped {
				t.Fatalf("stats %+v, want rows %d dropped %d", s, tc.wantRows, tc.wantDropped)
			}
			got, _ := ob.Peek(ctx, "a", 0, 100)
			if len(got) != tc.wantRows || string(got[0].Body) != tc.wantHead {
				t.Fatalf("peek: %d rows head %s", len(got), got[0].Body)
			}
			if o := ob.Stats("other"); o.Rows != 1 || o.Dropped != 0 {
				t.Fatalf("other app touched by the cap: %+v", o)
			}
			// Counters survive a restart.
			ob.Close()
			db.Close()
			db2 := openTest(t, path)
			ob2 := newOutbox(t, db2, tc.limits)
			if s2 := ob2.Stats("a"); s2 != s {
				t.Fatalf("after reopen %+v, want %+v", s2, s)
			}
		})
	}
}

func TestOutboxDeadLetterAndFailure(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "d.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 20})
	if _, err := ob.Append(ctx, rowsFor("a", 0, 3)); err != nil {
		t.Fatal(err)
	}
	rows, _ := ob.Peek(ctx, "a", 0, 3)
	next := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	ob.RecordFailure(rows[1].ID, next)
	ob.RecordFailure(rows[1].ID, next)
	ob.DeadLetter(rows[:1])
	ob.DeadLetter(rows[:1]) // twice: counted once
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := ob.Peek(ctx, "a", 0, 3)
	if len(got) != 2 || got[0].Attempts != 2 || !got[0].NextAttemptAt.Equal(next) {
		t.Fatalf("got %+v", got)
	}
	if s := ob.Stats("a"); s.DeadLettered != 1 || s.Rows != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOutboxConcurrentWritersKeepCounts(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "e.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1 << 20, MaxBytes: 1 << 30})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			app := fmt.Sprintf("app%d", g%2)
			for i := 0; i < 50; i++ {
				rows := rowsFor(app, i, 3)
				if _, err := ob.Append(ctx, rows); err != nil {
					t.Error(err)
					return
				}
				ob.Delete(rows[:1])
			}
		}(g)
	}
	wg.Wait()
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"app0", "app1"} {
		var n int
		if err := db.sql.QueryRow(`SELECT COUNT(*) FROM outbox WHERE application = ?`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if s := ob.Stats(app); s.Rows != n || n != 4*50*2 {
			t.Fatalf("%s: stats %d rows, table %d", app, s.Rows, n)
		}
	}
}

func TestOutboxClosed(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "f.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 10, MaxBytes: 1 << 20})
	ob.Close()
	if _, err := ob.Append(context.Background(), rowsFor("a", 0, 1)); err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
	ob.Delete(rowsFor("a", 0, 1)) // must not panic
}

func TestCorruptDatabaseMovedAside(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(path string) error
	}{
		{"garbage file", func(p string) error {
			return os.WriteFile(p, bytes.Repeat([]byte("not a database "), 1000), 0o600)
		}},
		{"truncated file", func(p string) error { return os.Truncate(p, 1000) }},
		{"overwritten pages", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(bytes.Repeat([]byte{0xA5}, 8192), 4096)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			db := openTest(t, path)
			ob := newOutbox(t, db, Limits{MaxRows: 10000, MaxBytes: 1 << 30})
			if _, err := ob.Append(ctx, rowsFor("a", 0, 2000)); err != nil {
				t.Fatal(err)
			}
			ob.Close()
			if _, err := db.sql.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if err := tc.corrupt(path); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			now := time.Date(2026, 11, 21, 22, 30, 0, 0, time.UTC)
			db2, err := Open(ctx, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatalf("Open after corruption: %v", err)
			}
			defer db2.Close()
			aside := path + ".corrupt-20261121T223000Z"
			if _, err := os.Stat(aside); err != nil {
				t.Fatalf("corrupt file not moved aside: %v", err)
			}
			if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
				t.Fatalf("want one error line, got %d:\n%s", n, logs.String())
			}
			ob2 := newOutbox(t, db2, Limits{MaxRows: 10, MaxBytes: 1 << 20})
			if _, err := ob2.Append(ctx, rowsFor("a", 0, 1)); err != nil {
				t.Fatalf("new database unusable: %v", err)
			}
		})
	}
}

func TestSelfTest(t *testing.T) {
	if err := SelfTest(context.Background(), filepath.Join(t.TempDir(), "self.db")); err != nil {
		t.Fatal(err)
	}
}

func TestDevicesAndApplications(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	t0 := time.UnixMilli(1_700_000_000_000)
	if err := db.PutDevices(ctx, []Device{{DevEUI: "d1", AppEUI: "a1", JoinEUI: "j1", LastSeen: t0}}); err != nil {
		t.Fatal(err)
	}
	// An uplink without joineui keeps the known one; last_seen never goes back.
	if err := db.PutDevices(ctx, []Device{{DevEUI: "d1", AppEUI: "a2", LastSeen: t0.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	devs, err := db.Devices(ctx)
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices %v %v", devs, err)
	}
	if d := devs[0]; d.AppEUI != "a2" || d.JoinEUI != "j1" || !d.LastSeen.Equal(t0) {
		t.Fatalf("device %+v", d)
	}
	if app, ok, err := db.DeviceAppEUI(ctx, "d1"); err != nil || !ok || app != "a2" {
		t.Fatalf("DeviceAppEUI = %q %v %v", app, ok, err)
	}
	if _, ok, _ := db.DeviceAppEUI(ctx, "nope"); ok {
		t.Fatal("unknown device found")
	}
	if err := db.PutApplication(ctx, Application{EUI: "x", Source: "default", Info: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	a, ok, err := db.GetApplication(ctx, "x")
	if err != nil || !ok || a.Source != "default" {
		t.Fatalf("app %+v %v %v", a, ok, err)
	}
	if _, ok, _ := db.GetApplication(ctx, "y"); ok {
		t.Fatal("unknown application found")
	}
}

func BenchmarkOutboxAppend(b *testing.B) {
	for _, batch := range []int{1, 20, 200} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			db := openTest(b, filepath.Join(b.TempDir(), "bench.db"))
			ob := newOutbox(b, db, Limits{MaxRows: 1 << 30, MaxBytes: 1 << 40})
			body := bytes.Repeat([]byte("x"), 500)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rows := make([]Row, batch)
				for j := range rows {
					rows[j] = Row{Application: "a", Kind: "up", Body: body}
				}
				if _, err := ob.Append(ctx, rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkOutboxCommitOne is the steady trickle of a gateway (50 uplinks/s
// is a commit every 20 ms): each commit carries one row, and the row
// delivered before it is deleted (lazily: a commit carries the deletions
// once a second). It measures the commit's CPU, not the
// flash: the syncs run on their own thread and are waited for at the end.
// cpu-ns/op is the process's CPU time (user and system, every thread) per
// commit: the figure a one-core gateway cares about; ns/op is mostly I/O
// waits.
func BenchmarkOutboxCommitOne(b *testing.B) {
	ctx := context.Background()
	db := openTest(b, filepath.Join(b.TempDir(), "bench.db"))
	ob := newOutbox(b, db, Limits{MaxRows: 1 << 30, MaxBytes: 1 << 40})
	body := bytes.Repeat([]byte("x"), 300)
	var prev []Row
	var synced Synced
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows := []Row{{Application: "a", Kind: "up", Body: body}}
		var err error
		if _, synced, err = ob.Commit(ctx, rows, 1); err != nil {
			b.Fatal(err)
		}
		ob.Delete(prev)
		prev = rows
	}
	if err := synced.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process used so far (every thread).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkOutboxPeekDelete(b *testing.B) {
	ctx := context.Background()
	db := openTest(b, filepath.Join(b.TempDir(), "bench.db"))
	ob := newOutbox(b, db, Limits{MaxRows: 1 << 30, MaxBytes: 1 << 40})
	body := bytes.Repeat([]byte("x"), 500)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rows := make([]Row, 10)
		for j := range rows {
			rows[j] = Row{Application: "a", Kind: "up", Body: body}
		}
		if _, err := ob.Append(ctx, rows); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := ob.Peek(ctx, "a", 0, 10)
		if err != nil || len(got) != 10 {
			b.Fatal(err)
		}
		ob.Delete(got)
		if err := ob.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "rows/s")
}

func TestOutboxDropApplication(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "h.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 20})
	if _, err := ob.Append(ctx, append(rowsFor("gone", 0, 4), rowsFor("kept", 0, 2)...)); err != nil {
		t.Fatal(err)
	}
	n, err := ob.DropApplication(ctx, "gone")
	if err != nil || n != 4 {
		t.Fatalf("dropped %d, %v", n, err)
	}
	if s := ob.Stats("gone"); s.Rows != 0 || s.Bytes != 0 || s.Dropped != 4 {
		t.Fatalf("gone %+v", s)
	}
	if s := ob.Stats("kept"); s.Rows != 2 {
		t.Fatalf("kept %+v", s)
	}
}

// A feed hands over committed rows in memory, goes cold when its window
// overflows (the rows are then read from the database, none lost, in order)
// and when rewound.
func TestFeedWindowOverflowAndRewind(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "feed.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	ob.window = 4
	if _, err := ob.Append(ctx, rowsFor("a", 0, 2)); err != nil { // before the feed exists
		t.Fatal(err)
	}
	f := ob.Feed("a")
	take := func(n int) []string {
		t.Helper()
		rows, err := f.Take(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, string(r.Body))
		}
		return out
	}
	want := func(got []string, from, n int) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("got %v, want %d rows from %d", got, n, from)
		}
		for i, b := range got {
			if b != fmt.Sprintf(`{"n":%d}`, from+i) {
				t.Fatalf("got %v, want rows from %d", got, from)
			}
		}
	}
	want(take(10), 0, 2) // cold: from the database, to its end
	if _, err := ob.Append(ctx, rowsFor("a", 2, 3)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Wake():
	default:
		t.Fatal("no wake-up after a commit")
	}
	f.mu.Lock()
	inMemory := len(f.mem)
	f.mu.Unlock()
	if inMemory != 3 {
		t.Fatalf("%d rows in memory after the commit, want 3", inMemory)
	}
	want(take(2), 2, 2)
	for i := 5; i < 12; i++ { // overflows the window of 4
		if _, err := ob.Append(ctx, rowsFor("a", i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	cold := f.cold
	f.mu.Unlock()
	if !cold {
		t.Fatal("the feed did not go cold on overflow")
	}
	want(take(3), 4, 3)
	want(take(100), 7, 5)
	head, _ := ob.Peek(ctx, "a", 0, 1)
	f.Rewind(head[0].ID)
	want(take(100), 1, 11)
	ob.Delete(head)
	if s := ob.Stats("a"); s.Rows != 11 {
		t.Fatalf("stats %+v right after Delete", s)
	}
}

// Deliveries are deleted lazily: an append's commit carries the pending
// deletions once a second (not every commit, which was a DELETE per uplink
// at a steady rate), at once when deleteBatch wait, when the appended rows
// would otherwise meet their application's caps (the caps must not drop a
// queued row while delivered ones still fill the queue), and in any commit
// without rows (Sync).
func TestDeletionsRideOncePerSecond(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "d.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 30})
	advance := stopClock(ob)
	inFile := func() int {
		t.Helper()
		var n int
		if err := db.sql.QueryRow("SELECT COUNT(*) FROM outbox").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	appendRows := func(app string, from, n int) []Row {
		t.Helper()
		rows := rowsFor(app, from, n)
		if _, err := ob.Append(ctx, rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	first := appendRows("a", 0, 10) // deletedAt is zero: this commit carried (no) deletions
	ob.Delete(first[:4])
	appendRows("a", 10, 1) // carries them: they last rode at time zero
	appendRows("a", 11, 1)
	if n := inFile(); n != 12-4 {
		// The first append after Delete carried them (deletedAt was zero).
		t.Fatalf("%d rows in the file, want 8 (the first deletions rode at once)", n)
	}
	ob.Delete(first[4:6])
	for i := range 5 {
		appendRows("a", 12+i, 1)
	}
	if n, s := inFile(), ob.Stats("a"); n != 8+5 || s.Rows != 8+5-2 {
		t.Fatalf("%d rows in the file and %d queued, want 13 and 11: deletions rode before a second passed", n, s.Rows)
	}
	advance(flushEvery)
	appendRows("a", 17, 1)
	if n := inFile(); n != 13+1-2 {
		t.Fatalf("%d rows in the file a second later, want 12", n)
	}
	// deleteBatch pending: the next append carries them.
	many := appendRows("a", 100, deleteBatch)
	ob.Delete(many)
	before := inFile()
	appendRows("a", 1000, 1)
	if n := inFile(); n != before+1-deleteBatch {
		t.Fatalf("%d rows in the file, want %d: %d pending deletions did not ride", n, before+1-deleteBatch, deleteBatch)
	}
	// Sync commits them whatever the time.
	last := appendRows("a", 2000, 2)
	ob.Delete(last)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ob.pending() {
		t.Fatal("deletions pending after Sync")
	}
}

// An append that would meet its application's row cap carries the pending
// deletions: delivered rows are deleted, not dropped in place of queued ones.
func TestDeletionsRideBeforeTheCaps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other int // rows of another application in the same commit
	}{{"one application", 0}, {"with another application", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := openTest(t, filepath.Join(t.TempDir(), "c.db"))
			ob := newOutbox(t, db, Limits{MaxRows: 5, MaxBytes: 1 << 30})
			stopClock(ob)
			ob.mu.Lock()
			ob.deletedAt = ob.now() // as if deletions had just ridden: they wait a second
			ob.mu.Unlock()
			rows := rowsFor("a", 0, 5)
			if _, err := ob.Append(ctx, rows); err != nil {
				t.Fatal(err)
			}
			ob.Delete(rows[:2])
			if _, err := ob.Append(ctx, append(rowsFor("b", 0, tc.other), rowsFor("a", 5, 2)...)); err != nil {
				t.Fatal(err)
			}
			if s := ob.Stats("a"); s.Rows != 5 || s.Dropped != 0 {
				t.Fatalf("stats %+v: want 5 rows queued, none dropped", s)
			}
			got, err := ob.Peek(ctx, "a", 0, 10)
			if err != nil || len(got) != 5 || string(got[0].Body) != `{"n":2}` {
				t.Fatalf("peek: %d rows, first %s, %v; want 5 from n=2", len(got), got[0].Body, err)
			}
		})
	}
}

// stopClock freezes the outbox's clock (the flusher then stays idle) and
// returns what moves it on; both hold ob.mu, where the flusher reads it.
func stopClock(ob *Outbox) (advance func(time.Duration)) {
	now := time.Now()
	ob.mu.Lock()
	ob.now = func() time.Time { return now }
	ob.mu.Unlock()
	return func(d time.Duration) {
		ob.mu.Lock()
		now = now.Add(d)
		ob.mu.Unlock()
	}
}

// TestForgottenWhileDroppedCountsOnce: a row delivered (forgotten) while the
// transaction dropping it runs (DropApplication, the caps) is not forgotten
// again after it: the stats do not count it gone twice, and no deletion of
// it stays pending.
func TestForgottenWhileDroppedCountsOnce(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 30})
	stopClock(ob)
	rows := rowsFor("a", 0, 3)
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// DropApplication's transaction, with the lane's Delete arriving while it runs.
	ob.wmu.Lock()
	_, err := ob.write(nil, func(tx *wtx, d func(string) *delta) error {
		ob.Delete(rows[:1])
		if _, err := tx.exec(tx.st.dropApp, "a", rows[2].ID); err != nil {
			return err
		}
		x := d("a")
		x.rows -= 3
		x.bytes -= int64(3 * len(rows[0].Body))
		x.dropped += 3
		x.floor = rows[2].ID
		return nil
	})
	ob.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if s := ob.Stats("a"); s.Rows != 0 || s.Bytes != 0 || s.Dropped != 3 {
		t.Fatalf("stats %+v: want 0 rows, 0 bytes, 3 dropped", s)
	}
	ob.mu.Lock()
	pending := len(ob.pend.deletes)
	ob.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d deletions still pending for dropped rows", pending)
	}
}
