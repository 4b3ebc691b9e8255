package cache

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func bigRows(app string, n int) []Row {
	out := make([]Row, n)
	for i := range out {
		out[i] = Row{Application: app, Kind: "up", Body: bytes.Repeat([]byte{'x'}, 300)}
	}
	return out
}

// TestFullDatabaseStillDeletes fills the database (PRAGMA max_page_count: the
// SQLITE_FULL a full file system gives, on any machine) and checks that
// appends are refused with ErrStorageFull, logged once, that deletions
// riding on the commit of refused appends still commit, and
// that the freed pages take new rows again. The file-system version runs in
// faults/ (make faults).
func TestFullDatabaseStillDeletes(t *testing.T) {
	ctx := context.Background()
	logs := &lockedBuffer{}
	db, err := Open(ctx, t.TempDir()+"/full.db", Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.sql.SetMaxOpenConns(1) // the page limit is per connection
	var pages int
	if err := db.sql.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := db.sql.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages+150)); err != nil {
		t.Fatal(err)
	}
	ob := newOutbox(t, db, Limits{MaxRows: 1 << 30, MaxBytes: 1 << 40})
	stored := 0
	var appendErr error
	for i := 0; i < 1000 && appendErr == nil; i++ {
		if _, appendErr = ob.Append(ctx, bigRows("a", 20)); appendErr == nil {
			stored += 20
		}
	}
	if !errors.Is(appendErr, ErrStorageFull) || stored < 200 {
		t.Fatalf("after %d rows: append error %v, want ErrStorageFull", stored, appendErr)
	}
	for range 20 { // refused again and again: one log line
		if _, err := ob.Append(ctx, bigRows("a", 20)); !errors.Is(err, ErrStorageFull) {
			t.Fatalf("append while full: %v", err)
		}
	}
	if st := db.Storage(); st.State != "full" || st.RefusedCommits < 21 || st.FullEpisodes != 1 {
		t.Fatalf("storage %+v, want full with 21+ refused commits in one episode", st)
	}
	if n := strings.Count(logs.String(), "database file system full"); n != 1 {
		t.Fatalf("%d full log lines, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "outbox write failed") {
		t.Fatalf("a full file system logged as a write failure:\n%s", logs.String())
	}

	// The delivered rows' deletes ride on the next append's commit: they
	// commit although the appended rows are refused.
	delivered, err := ob.Peek(ctx, "a", 0, stored)
	if err != nil || len(delivered) != stored {
		t.Fatalf("peek: %d rows, %v", len(delivered), err)
	}
	ob.Delete(delivered)
	if _, err := ob.Append(ctx, bigRows("a", stored+100)); !errors.Is(err, ErrStorageFull) { // more than the file can take even empty
		t.Fatalf("appends on a full database: %v, want ErrStorageFull", err)
	}
	var inFile int
	if err := db.sql.QueryRow("SELECT COUNT(*) FROM outbox").Scan(&inFile); err != nil || inFile != 0 {
		t.Fatalf("%d rows left in the file after deleting every delivered row beside refused appends (%v)", inFile, err)
	}
	if ob.pending() {
		t.Fatal("deletions still pending after the refused append's commit")
	}
	if s := ob.Stats("a"); s.Rows != 0 {
		t.Fatalf("%d rows left after deleting every delivered row", s.Rows)
	}
	// Their pages take new rows: uplinks flow again with the limit unchanged.
	if _, err := ob.Append(ctx, bigRows("a", 100)); err != nil {
		t.Fatalf("append after the deletes freed pages: %v", err)
	}
	if st := db.Storage(); st.State == "full" {
		t.Fatalf("storage still full after rows were accepted: %+v", st)
	}
	if n := strings.Count(logs.String(), "database accepting new rows again"); n != 1 {
		t.Fatalf("%d recovery log lines, want 1:\n%s", n, logs.String())
	}
	var res string
	if err := db.sql.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
}

// TestCapsFollowFileSystem: on a 4 MiB file system the outbox keeps within
// what statfs allows (half the file system less the reserve and the WAL
// bound, in database bytes), dropping and counting the oldest rows, although
// the configured caps are far larger.
func TestCapsFollowFileSystem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openTest(t, dir+"/caps.db")
	const total = 4 << 20
	db.space.fs = func(string) (int64, int64, error) {
		used := fileSize(db.path) + fileSize(db.path+"-wal") + fileSize(db.space.reservePath) + 200<<10
		return total, max(total-used, 0), nil
	}
	db.space.refresh(ctx, 0, true)
	ob := newOutbox(t, db, Limits{MaxRows: 100_000, MaxBytes: 32 << 20})
	for range 100 { // 6,000 rows, 1.8 MB of payload
		if _, err := ob.Append(ctx, bigRows("a", 60)); err != nil {
			t.Fatal(err)
		}
	}
	st, s := db.Storage(), ob.Stats("a")
	if st.CapBytes <= 0 || st.CapBytes >= 32<<20 {
		t.Fatalf("cap %d bytes: not derived from the file system", st.CapBytes)
	}
	if s.Dropped == 0 || s.Bytes > st.CapBytes {
		t.Fatalf("queue %+v with a file-system cap of %d bytes", s, st.CapBytes)
	}
	if onDisk := fileSize(db.path) + fileSize(db.path+"-wal"); onDisk > total*fsShareMax {
		t.Fatalf("database takes %d bytes of a %d-byte file system", onDisk, total)
	}
	t.Logf("cap %d payload bytes, %d rows kept, %d dropped, %d bytes on disk", st.CapBytes, s.Rows, s.Dropped, st.DBBytes)
}

// TestDatabaseFileVanishes deletes the database's files, or replaces the file
// with garbage, under a running outbox: the next write notices, copies the
// rows the open connections still read to a fresh file at the path, moves
// the stranger aside, and nothing queued is lost.
func TestDatabaseFileVanishes(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(path string)
	}{
		{"deleted", func(p string) {
			for _, f := range []string{p, p + "-wal", p + "-shm"} {
				os.Remove(f)
			}
		}},
		{"replaced", func(p string) {
			os.WriteFile(p+".x", bytes.Repeat([]byte("garbage "), 1000), 0o600)
			os.Rename(p+".x", p)
		}},
		{"truncated", func(p string) { os.Truncate(p, 0); os.Truncate(p+"-wal", 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			logs := &lockedBuffer{}
			path := t.TempDir() + "/v.db"
			db, err := Open(ctx, path, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
			if _, err := ob.Append(ctx, bigRows("a", 50)); err != nil {
				t.Fatal(err)
			}
			tc.harm(path)
			db.space.mu.Lock()
			db.space.fileChecked = time.Time{}
			db.space.mu.Unlock()
			if _, err := ob.Append(ctx, bigRows("a", 5)); err != nil {
				t.Fatalf("append after the file %s: %v", tc.name, err)
			}
			st := db.Storage()
			want := 55
			if tc.name == "truncated" {
				// What the connections still read (their page cache) is copied;
				// the rest is counted lost. Every row is one or the other.
				want = 55 - int(st.LostRows)
			} else if st.LostRows != 0 {
				t.Fatalf("storage %+v, want nothing lost", st)
			}
			t.Logf("%d rows kept, %d lost", want, st.LostRows)
			if s := ob.Stats("a"); s.Rows != want || st.Replacements != 1 {
				t.Fatalf("%d rows counted, want %d; storage %+v", s.Rows, want, st)
			}
			if n := strings.Count(logs.String(), "database file "+tc.name+" while running"); n != 1 {
				t.Fatalf("%d log lines:\n%s", n, logs.String())
			}
			ob.Close()
			db.Close()
			db2 := openTest(t, path)
			var n int
			if err := db2.sql.QueryRow("SELECT COUNT(*) FROM outbox").Scan(&n); err != nil || n != want {
				t.Fatalf("the file at the path holds %d rows (%v), want %d", n, err, want)
			}
		})
	}
}

// TestReplacedDatabaseKeepsIDsAndCounters: when nothing can be copied from
// the vanished file (an empty database starts at the path), the outbox's
// memory is reconciled with it: new rows get IDs above every ID handed out
// before (the feeds, the caps' floors and the applications' cursors compare
// IDs), the dropped counter is written back, the pending deletions do not
// count against the new file, and a feed that was hot goes on with the new
// rows.
func TestReplacedDatabaseKeepsIDsAndCounters(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/r.db"
	db := openTest(t, path)
	ob := newOutbox(t, db, Limits{MaxRows: 40, MaxBytes: 1 << 20})
	if _, err := ob.Append(ctx, rowsFor("a", 0, 50)); err != nil { // 10 dropped by the caps
		t.Fatal(err)
	}
	f := ob.Feed("a")
	taken, err := f.Take(ctx, 100) // cold: the 40 rows, then hot
	if err != nil || len(taken) != 40 {
		t.Fatalf("take: %d rows, %v", len(taken), err)
	}
	lastOld := taken[len(taken)-1].ID
	ob.Delete(taken[:5]) // pending when the file goes
	for _, sfx := range []string{"", "-wal", "-shm"} {
		os.Remove(path + sfx)
	}
	// Nothing can be salvaged: VACUUM INTO cannot write its copy.
	if err := os.MkdirAll(path+".salvage/x", 0o700); err != nil {
		t.Fatal(err)
	}
	db.space.mu.Lock()
	db.space.fileChecked = time.Time{}
	db.space.mu.Unlock()
	fresh := rowsFor("a", 50, 5)
	if _, err := ob.Append(ctx, fresh); err != nil {
		t.Fatalf("append after the file vanished: %v", err)
	}
	if fresh[0].ID <= lastOld {
		t.Fatalf("new row ID %d, not above the last one handed out (%d)", fresh[0].ID, lastOld)
	}
	// The statements prepared before read the new file.
	if inFile, err := ob.Peek(ctx, "a", 0, 100); err != nil || len(inFile) != 5 || inFile[0].ID != fresh[0].ID {
		t.Fatalf("peek after the replacement: %d rows, %v; want the 5 new rows", len(inFile), err)
	}
	st := db.Storage()
	if st.Replacements != 1 || st.LostRows != 35 {
		t.Fatalf("storage %+v, want 1 replacement and the 35 undelivered rows lost", st)
	}
	if s := ob.Stats("a"); s.Rows != 5 || s.Dropped != 10 {
		t.Fatalf("stats %+v, want the 5 new rows and 10 dropped", s)
	}
	got, err := f.Take(ctx, 100)
	if err != nil || len(got) != 5 || got[0].ID != fresh[0].ID {
		t.Fatalf("the feed after the replacement: %+v, %v; want the 5 new rows", got, err)
	}
	ob.Delete(got)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s := ob.Stats("a"); s.Rows != 0 {
		t.Fatalf("stats %+v after delivering the new rows", s)
	}
	ob.Close()
	db.Close()
	db2 := openTest(t, path)
	ob2 := newOutbox(t, db2, Limits{MaxRows: 40, MaxBytes: 1 << 20})
	if s := ob2.Stats("a"); s.Rows != 0 || s.Dropped != 10 {
		t.Fatalf("after reopening the new file: %+v, want 0 rows and 10 dropped", s)
	}
}

// TestDeletesWaitForSpace: deletions that cannot commit even on their own
// (here each needs a page the database may not take: a trigger writes one)
// stay pending, are logged once, and commit once there is room.
func TestDeletesWaitForSpace(t *testing.T) {
	ctx := context.Background()
	logs := &lockedBuffer{}
	db, err := Open(ctx, t.TempDir()+"/wait.db", Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.sql.SetMaxOpenConns(1) // the page limit and the temporary trigger are per connection
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	rows := rowsFor("a", 0, 10)
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var pages int
	for _, q := range []string{"CREATE TABLE filler (b BLOB)", "PRAGMA wal_checkpoint(TRUNCATE)"} {
		if _, err := db.sql.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.sql.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf("PRAGMA max_page_count = %d", pages),
		"CREATE TEMP TRIGGER needs_space AFTER DELETE ON outbox BEGIN INSERT INTO filler VALUES (randomblob(65536)); END",
	} {
		if _, err := db.sql.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ob.Delete(rows[:5])
	for range 3 {
		if err := ob.Sync(ctx); !isFull(err) {
			t.Fatalf("sync with no room for the deletes: %v, want a full error", err)
		}
	}
	if !ob.pending() {
		t.Fatal("deletions that could not commit were not kept pending")
	}
	if s := ob.Stats("a"); s.Rows != 5 {
		t.Fatalf("stats %+v, want the 5 rows not deleted", s)
	}
	if n := strings.Count(logs.String(), "outbox deletes wait for space"); n != 1 {
		t.Fatalf("%d wait log lines, want 1:\n%s", n, logs.String())
	}
	if _, err := db.sql.Exec("DROP TRIGGER needs_space"); err != nil {
		t.Fatal(err)
	}
	if err := ob.Sync(ctx); err != nil {
		t.Fatalf("sync once there is room: %v", err)
	}
	var inFile int
	if err := db.sql.QueryRow("SELECT COUNT(*) FROM outbox").Scan(&inFile); err != nil || inFile != 5 {
		t.Fatalf("%d rows in the file (%v), want 5", inFile, err)
	}
	if ob.pending() || !strings.Contains(logs.String(), "outbox deletes committed again") {
		t.Fatalf("deletions still pending or their commit not logged:\n%s", logs.String())
	}
}

// compiles registers, on every connection of the pool, an authorizer that
// counts what SQLite compiles (only the operations ops, when given): SQLite
// calls the authorizer only while it parses and code-generates a statement,
// never when a compiled one runs again.
func compiles(t testing.TB, db *DB, ops ...int) *atomic.Int64 {
	t.Helper()
	ctx := context.Background()
	n := &atomic.Int64{}
	db.sql.SetMaxIdleConns(4) // keep every connection that gets the authorizer
	var conns []*sql.Conn
	for range 4 { // the pool's MaxOpenConns, held at once: every connection
		c, err := db.sql.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		err = c.Raw(func(dc any) error {
			dc.(*conn).RegisterAuthorizer(func(op int, _, _, _ string) int {
				if len(ops) == 0 || slices.Contains(ops, op) {
					n.Add(1)
				}
				return sqlite3.SQLITE_OK
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return n
}

// The outbox's queries compile once, not at every run: the damage check's
// reads of each application's head row (once a second on the commit path),
// the reads of a cold feed (Peek) and of the caps. Before, the damage check
// parsed its SQL text at every run, and every query reading an
// application's rows in ID order was compiled again at every run (outbox.go's
// prepare). (SQLite compiles its PRAGMA page_size and page_count again at
// every run whatever the caller does, so the size checks are not counted.)
func TestOutboxQueriesCompileOnce(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1 << 20, MaxBytes: 1 << 30})
	apps := []string{"a", "b", "c"}
	for _, app := range apps {
		if _, err := ob.Append(ctx, rowsFor(app, 0, 3)); err != nil {
			t.Fatal(err)
		}
	}
	n := compiles(t, db)
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"file checks", func() {
			if ob.damaged(ctx) {
				t.Fatal("a sound database reported damaged")
			}
		}},
		{"peek", func() {
			for _, app := range apps {
				if rows, err := ob.Peek(ctx, app, 1, 2); err != nil || len(rows) == 0 {
					t.Fatalf("peek %s: %d rows, %v", app, len(rows), err)
				}
			}
		}},
		{"caps", func() {
			ob.wmu.Lock()
			defer ob.wmu.Unlock()
			err := ob.w.tx(func(tx *wtx) error {
				for _, app := range apps {
					if err := tx.query(tx.st.capScan, func([]driver.Value) (bool, error) { return false, nil }, app); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Load()
			tc.run() // compiles what it needs on this connection
			if n.Load() == before {
				t.Fatal("the authorizer counted nothing on the first run: the count cannot fail")
			}
			before = n.Load()
			for range 10 {
				tc.run()
			}
			if c := n.Load() - before; c != 0 {
				t.Fatalf("10 more runs compiled SQL %d times, want 0", c)
			}
		})
	}
}

// TestSpaceReadsTheDatabasePages: the free pages and the measured bytes per
// payload byte are the database's own figures.
func TestSpaceReadsTheDatabasePages(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1 << 20, MaxBytes: 1 << 40})
	rows := make([]Row, 300)
	for i := range rows {
		rows[i] = Row{Application: "a", Kind: "up", Body: bytes.Repeat([]byte{'x'}, 400)}
	}
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	ob.Delete(rows[:150])
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	payload := int64(150 * 400)
	db.space.refresh(ctx, payload, true)
	var pageSize, pages, free int64
	for q, dst := range map[string]*int64{"PRAGMA page_size": &pageSize, "PRAGMA page_count": &pages, "PRAGMA freelist_count": &free} {
		if err := db.sql.QueryRowContext(ctx, q).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	if free == 0 || pages <= free {
		t.Fatalf("test setup: %d pages, %d free", pages, free)
	}
	db.space.mu.Lock()
	gotFree, gotOverhead := db.space.freePages, db.space.overhead
	db.space.mu.Unlock()
	wantOverhead := min(max(float64((pages-free)*pageSize)/float64(payload), 1.2), 8)
	if gotFree != free*pageSize || gotOverhead != wantOverhead {
		t.Fatalf("free %d bytes, overhead %.3f; want %d, %.3f (%d pages of %d bytes, %d free)",
			gotFree, gotOverhead, free*pageSize, wantOverhead, pages, pageSize, free)
	}
}
