package cache

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// Every connection of the pool bounds its page cache to cacheKiB and keeps
// WAL, the busy timeout and the synchronous level the commits rely on.
func TestConnectionSettings(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "a.db"))
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 { // held at once: three distinct connections
		c, err := db.sql.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var cacheSize, busy, sync int
		var mode string
		if err := c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cacheSize); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		wantSync := 2 // FULL without the WAL syncer
		if db.wal != nil {
			wantSync = 1 // NORMAL: durable() syncs the WAL
		}
		if cacheSize != -cacheKiB || busy != 10000 || sync != wantSync || mode != "wal" {
			t.Fatalf("connection %d: cache_size %d, busy_timeout %d, synchronous %d, journal_mode %s; want %d, 10000, %d, wal",
				i+1, cacheSize, busy, sync, mode, -cacheKiB, wantSync)
		}
	}
}
