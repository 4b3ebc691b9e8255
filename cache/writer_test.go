package cache

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

// countWrites counts the statements SQLite compiles that write or open and
// end transactions (BEGIN, COMMIT, ROLLBACK, INSERT, UPDATE, DELETE) on every
// connection of the pool (compiles). Reads (the space checks, Peek) are not
// counted.
func countWrites(t testing.TB, db *DB) *atomic.Int64 {
	t.Helper()
	return compiles(t, db, sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)
}

// The outbox's commits parse no SQL: every statement of the write path,
// BEGIN, COMMIT and ROLLBACK included, was prepared once (before, go-sqlite3
// parsed BEGIN IMMEDIATE and COMMIT again on every commit).
func TestCommitsParseNoSQL(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "p.db"))
	compiled := countWrites(t, db)
	ob := newOutbox(t, db, Limits{MaxRows: 5, MaxBytes: 1 << 20})
	if _, err := ob.Append(ctx, rowsFor("a", 0, 2)); err != nil {
		t.Fatal(err)
	}
	if compiled.Load() == 0 {
		t.Fatal("the authorizer counted nothing while the first commit prepared the statements")
	}
	if _, err := ob.DropApplication(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := compiled.Load()
	// Inserts, deletions riding on them, failure records, the caps (5 rows)
	// dropping and counting rows, DropApplication, Sync and Close's commit.
	for i := range 20 {
		rows := rowsFor("a", 2+i, 1)
		if _, err := ob.Append(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			ob.Delete(rows)
		} else {
			ob.RecordFailure(rows[0].ID, time.Now())
		}
	}
	if _, err := ob.DropApplication(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s := ob.Stats("a"); s.Rows != 0 || s.Dropped == 0 {
		t.Fatalf("stats %+v: the commits did not do what they should", s)
	}
	ob.Close()
	if n := compiled.Load() - before; n != 0 {
		t.Fatalf("22 commits compiled %d writing or transaction statements, want 0", n)
	}
}

// A statement that fails in the middle of a group rolls the whole group
// back (the rows inserted before it, the deletions and failure records that
// rode on it); the connection goes on (its statements and the trigger with
// it), and the next commit carries the deletions and failure records.
func TestFailedStatementRollsBackTheGroup(t *testing.T) {
	// RAISE's modes: ABORT undoes the statement, FAIL keeps what the
	// statement did before failing, ROLLBACK ends the transaction itself.
	for _, mode := range []string{"ABORT", "FAIL", "ROLLBACK"} {
		t.Run(mode, func(t *testing.T) { failedStatementRollsBackTheGroup(t, mode) })
	}
}

func failedStatementRollsBackTheGroup(t *testing.T, mode string) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "f.db"))
	db.sql.SetMaxOpenConns(1) // the temporary trigger is per connection
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	queued := rowsFor("a", 0, 4)
	if _, err := ob.Append(ctx, queued); err != nil {
		t.Fatal(err)
	}
	ob.Delete(queued[:2])
	ob.RecordFailure(queued[2].ID, time.Now().Add(time.Minute))
	if _, err := db.sql.Exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.kind = 'boom'
		BEGIN SELECT RAISE(` + mode + `, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	inFile := func() (rows, attempts int) {
		t.Helper()
		if err := db.sql.QueryRow("SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM outbox").Scan(&rows, &attempts); err != nil {
			t.Fatal(err)
		}
		return rows, attempts
	}
	for try := range 2 { // the same connection, its trigger and statements, each time
		group := append(rowsFor("a", 10, 2), Row{Application: "a", Kind: "boom", Body: []byte("{}")}, Row{Application: "a", Kind: "up", Body: []byte("{}")})
		if _, err := ob.Append(ctx, group); err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("try %d: append through the failing statement: %v", try, err)
		}
		if group[0].ID != 0 || group[1].ID != 0 {
			t.Fatalf("try %d: rows of a rolled-back group keep IDs %d, %d", try, group[0].ID, group[1].ID)
		}
		if rows, attempts := inFile(); rows != 4 || attempts != 0 {
			t.Fatalf("try %d: %d rows in the file with %d attempts, want the 4 queued, none deleted, no failure recorded", try, rows, attempts)
		}
		if !ob.pending() {
			t.Fatalf("try %d: the deletions and failure record were lost with the rolled-back group", try)
		}
	}
	if s := ob.Stats("a"); s.Rows != 2 {
		t.Fatalf("stats %+v, want the 2 rows not deleted", s)
	}
	next := rowsFor("a", 20, 1)
	if _, err := ob.Append(ctx, next); err != nil {
		t.Fatal(err)
	}
	if rows, attempts := inFile(); rows != 3 || attempts != 1 {
		t.Fatalf("after the next commit: %d rows in the file with %d attempts, want 3 and 1", rows, attempts)
	}
	if ob.pending() {
		t.Fatal("deletions still pending after the next commit")
	}
	if s := ob.Stats("a"); s.Rows != 3 {
		t.Fatalf("stats %+v, want 3 rows", s)
	}
}

// When the database file is deleted under the program, the pool's
// connections (open on the deleted file) are recycled and the outbox's
// transactions prepare their statements on new ones, on the fresh file at
// the path: what they commit afterwards is in that file.
func TestWriterFollowsAReplacedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.db")
	db := openTest(t, path)
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	if _, err := ob.Append(ctx, rowsFor("a", 0, 3)); err != nil {
		t.Fatal(err)
	}
	for _, sfx := range []string{"", "-wal", "-shm"} {
		os.Remove(path + sfx)
	}
	db.space.mu.Lock()
	db.space.fileChecked = time.Time{}
	db.space.mu.Unlock()
	later := rowsFor("a", 3, 2)
	if _, err := ob.Append(ctx, later); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var n int
	if err := other.QueryRow("SELECT COUNT(*) FROM outbox WHERE id >= ?", later[0].ID).Scan(&n); err != nil || n != 2 {
		t.Fatalf("the file at the path holds %d of the rows committed after the replacement (%v), want 2", n, err)
	}
	if s := db.Storage(); s.Replacements != 1 || s.LostRows != 0 {
		t.Fatalf("storage %+v, want one replacement, nothing lost", s)
	}
}

// Another writer on the pool (devices, applications, join attempts) holds
// the write lock: the outbox's writer waits for it (the busy timeout of its
// connection) instead of failing with SQLITE_BUSY, and commits after it.
func TestWriterWaitsForPoolWriters(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "b.db"))
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	tx, err := db.sql.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO devices (deveui, appeui, last_seen) VALUES ('d', 'a', 1)`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ob.Append(ctx, rowsFor("a", 0, 3))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the writer is in BEGIN IMMEDIATE's busy wait (or not started: either way it must wait)
	select {
	case err := <-done:
		t.Fatalf("append returned while another connection held the write lock (SQLITE_BUSY instead of waiting?): %v", err)
	default:
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("append after the pool's transaction: %v", err)
	}
	if s := ob.Stats("a"); s.Rows != 3 {
		t.Fatalf("stats %+v, want 3 rows", s)
	}
}

// BenchmarkWriterPath compares the two ways to run the outbox's statements
// on one connection with every statement prepared once: through
// database/sql (*sql.Conn and its *sql.Stmt, BEGIN and COMMIT prepared as
// statements too) and through go-sqlite3's connection inside one
// (*sql.Conn).Raw call per transaction, which the outbox uses (writer.tx).
// tx=1: each transaction inserts one row and deletes it (SQLite's commit
// dominates); tx=all: one transaction for every iteration's insert and
// delete, which isolates the cost per statement of the layer above SQLite.
func BenchmarkWriterPath(b *testing.B) {
	const (
		ins = `INSERT INTO outbox (application, kind, appeui, deveui, body, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)`
		del = `DELETE FROM outbox WHERE id BETWEEN ? AND ? AND application = ?`
	)
	body := make([]byte, 300)
	var eui EUI64
	for _, perTx := range []bool{true, false} {
		name := "tx=all"
		if perTx {
			name = "tx=1"
		}
		b.Run(name+"/sql.Conn", func(b *testing.B) {
			ctx := context.Background()
			db := openTest(b, filepath.Join(b.TempDir(), "c.db"))
			c, err := db.sql.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var st [4]*sql.Stmt
			for i, q := range []string{"BEGIN IMMEDIATE", ins, del, "COMMIT"} {
				if st[i], err = c.PrepareContext(ctx, q); err != nil {
					b.Fatal(err)
				}
				defer st[i].Close()
			}
			exec := func(s *sql.Stmt, args ...any) sql.Result {
				res, err := s.ExecContext(ctx, args...)
				if err != nil {
					b.Fatal(err)
				}
				return res
			}
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if perTx || i == 0 {
					exec(st[0])
				}
				id, _ := exec(st[1], "a", "up", eui[:], eui[:], body, int64(i)).LastInsertId()
				exec(st[2], id, id, "a")
				if perTx || i == b.N-1 {
					exec(st[3])
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(name+"/Raw", func(b *testing.B) {
			db := openTest(b, filepath.Join(b.TempDir(), "r.db"))
			w := &writer{db: db}
			one := func(t *wtx, i int) error {
				res, err := t.exec(t.st.insert, "a", "up", eui[:], eui[:], body, int64(i))
				if err != nil {
					return err
				}
				id, _ := res.LastInsertId()
				_, err = t.exec(t.st.delRange, id, id, "a")
				return err
			}
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			if perTx {
				for i := 0; i < b.N; i++ {
					if err := w.tx(func(t *wtx) error { return one(t, i) }); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				err := w.tx(func(t *wtx) error {
					for i := 0; i < b.N; i++ {
						if err := one(t, i); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
