package cache

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The outbox's promise (a row Append returned is on the flash) rests on
// the WAL syncer: every Append syncs the file now at the WAL's path, after
// the commit.
func TestAppendSyncsTheWALBeforeReturning(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a.db")
	db := openTest(t, path)
	if db.wal == nil {
		t.Fatal("no WAL syncer on Linux: commits would be synced inside SQLite, on the scheduler's only P")
	}
	ob := newOutbox(t, db, Limits{MaxRows: 1000, MaxBytes: 1 << 20})
	for i := 1; i <= 3; i++ {
		before := db.wal.syncs()
		if _, err := ob.Append(ctx, rowsFor("app", i, 2)); err != nil {
			t.Fatal(err)
		}
		if got := db.wal.syncs(); got != before+1 {
			t.Fatalf("Append %d: %d WAL syncs, want 1", i, got-before)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path+"-wal", &st); err != nil {
			t.Fatal(err)
		}
		if db.wal.ino != st.Ino {
			t.Fatalf("Append %d synced inode %d, the WAL is inode %d", i, db.wal.ino, st.Ino)
		}
	}
	// Deletions need no sync of their own (a lost one only resends).
	before := db.wal.syncs()
	rows, err := ob.Feed("app").Take(ctx, 10)
	if err != nil || len(rows) == 0 {
		t.Fatalf("Take: %d rows, %v", len(rows), err)
	}
	ob.Delete(rows)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := db.wal.syncs(); got != before {
		t.Errorf("committing deletions synced the WAL %d times, want 0", got-before)
	}
}

// The syncer follows the file at the WAL's path: SQLite deletes the WAL at
// its last close and creates a new one at the next open.
func TestWALSyncerFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	w, err := newWALSyncer(filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	wal := filepath.Join(dir, "x.db-wal")
	if err := w.sync(); err != nil || w.syncs() != 0 {
		t.Fatalf("no WAL file: sync = %v after %d syncs, want nil after 0", err, w.syncs())
	}
	if err := os.WriteFile(wal, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil || w.syncs() != 1 {
		t.Fatalf("sync = %v after %d syncs, want nil after 1", err, w.syncs())
	}
	first := w.ino
	if err := os.Remove(wal); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wal+".new", []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(wal+".new", wal); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil || w.syncs() != 2 {
		t.Fatalf("sync = %v after %d syncs, want nil after 2", err, w.syncs())
	}
	if w.ino == first {
		t.Fatal("synced the deleted WAL file again, not the new one")
	}
	w.close()
	if err := w.sync(); err == nil {
		t.Fatal("sync after close succeeded")
	}
}
