package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
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
		out[i] = Row{Application: app, Kind: "up", Target: "/up", Body: bytes.Repeat([]byte{'x'}, 300)}
	}
	return out
}

// TestFullDatabaseStillDeletes fills the database (PRAGMA max_page_count: the
// SQLITE_FULL a full file system gives, on any machine) and checks that
// appends are refused with ErrStorageFull, logged once, that deletes
// committed in the same writer group as refused appends still commit, and
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

	// The delivered rows' deletes and new rows in one writer group: the
	// deletes commit although the rows cannot.
	delivered, err := ob.Peek(ctx, "a", 0, stored)
	if err != nil || len(delivered) != stored {
		t.Fatalf("peek: %d rows, %v", len(delivered), err)
	}
	del := &writeReq{deletes: delivered}
	add := &writeReq{appends: bigRows("a", stored+100)} // more than the file can take even empty
	errFor := ob.commitGroup([]*writeReq{del, add})
	if err := errFor(del); err != nil {
		t.Fatalf("deletes beside refused appends: %v", err)
	}
	if err := errFor(add); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("appends on a full database: %v, want ErrStorageFull", err)
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
