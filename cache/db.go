package cache

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// DB is the open database. Its methods are safe for concurrent use.
type DB struct {
	sql   *sql.DB
	path  string
	log   *slog.Logger
	space *space // nil until Open has checked and migrated the file
	// wal syncs the WAL file off the Go scheduler (walsync_linux.go); with it
	// the connections run synchronous=NORMAL and durable() does the commit's
	// fsync. nil: synchronous=FULL, SQLite syncs in the commit.
	wal *walSyncer
	// syncs shares the WAL's syncs between commits close in time
	// (syncgroup.go); nil without wal.
	syncs *syncGroups
}

// migrations are applied in order, each once; never edit a released one, append.
var migrations = []string{
	// 1: outbox, applications, devices, counters
	`CREATE TABLE outbox (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		application     TEXT    NOT NULL,
		kind            TEXT    NOT NULL,
		target          TEXT    NOT NULL,
		body            BLOB    NOT NULL,
		enqueued_at     INTEGER NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		next_attempt_at INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX outbox_application_id ON outbox(application, id);
	CREATE TABLE applications (
		eui        TEXT PRIMARY KEY,
		source     TEXT    NOT NULL,
		info       BLOB    NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE devices (
		deveui    TEXT PRIMARY KEY,
		appeui    TEXT    NOT NULL,
		joineui   TEXT    NOT NULL DEFAULT '',
		last_seen INTEGER NOT NULL
	);
	CREATE TABLE counters (
		application TEXT NOT NULL,
		name        TEXT NOT NULL,
		value       INTEGER NOT NULL,
		PRIMARY KEY (application, name)
	);`,
	// 2: join attempts forwarded by the join proxy (never keys; see joins.go)
	`CREATE TABLE join_attempts (
		id                   INTEGER PRIMARY KEY,
		at                   INTEGER NOT NULL,
		message_type         TEXT    NOT NULL,
		deveui               TEXT    NOT NULL,
		joineui              TEXT    NOT NULL,
		join_server          TEXT    NOT NULL,
		result               TEXT    NOT NULL,
		latency_ms           INTEGER NOT NULL,
		session_key_id       BLOB,
		session_key_id_local INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX join_attempts_deveui ON join_attempts(deveui, id);`,
	// 3: outbox rows carry the device's AppEUI and DevEUI (8-byte BLOBs,
	// cache.EUI64) instead of an HTTP path: each transport derives its own
	// path or topic. Rows queued by an earlier version get them from their
	// target "/api/v1/lorawan/<AppEUI>/<DevEUI>/<kind>" (the only form it
	// wrote), so a backlog is delivered unchanged after the upgrade.
	`ALTER TABLE outbox ADD COLUMN appeui BLOB NOT NULL DEFAULT x'0000000000000000';
	ALTER TABLE outbox ADD COLUMN deveui BLOB NOT NULL DEFAULT x'0000000000000000';
	UPDATE outbox SET
		appeui = COALESCE(unhex(substr(target, 17, 23), '-'), appeui),
		deveui = COALESCE(unhex(substr(target, 41, 23), '-'), deveui)
	WHERE target LIKE '/api/v1/lorawan/%' AND substr(target, 40, 1) = '/' AND substr(target, 64, 1) = '/'
		AND length(unhex(substr(target, 17, 23), '-')) = 8 AND length(unhex(substr(target, 41, 23), '-')) = 8;
	ALTER TABLE outbox DROP COLUMN target;`,
}

// Options tunes Open.
type Options struct {
	Logger *slog.Logger
	// Now is the clock used for the name of a moved-aside corrupt file; nil = time.Now.
	Now func() time.Time
}

// Open opens or creates the database at path (WAL, durable commits, busy
// timeout) and migrates it. A corrupt or unreadable file is moved aside as
// "<path>.corrupt-<UTC timestamp>" (with its -wal and -shm files) and a new
// database is created, with one error log line. The WAL is bounded and a
// space reserve "<path>.reserve" is kept beside the file (space.go).
func Open(ctx context.Context, path string, opt Options) (*DB, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cache: create directory for %s: %w", path, err)
	}
	db, err := openChecked(ctx, path, log)
	if err == nil {
		db.space = newSpace(db, now)
		return db, nil
	}
	if !recoverable(err) {
		return nil, err
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, now().UTC().Format("20060102T150405Z"))
	if mvErr := os.Rename(path, aside); mvErr != nil {
		return nil, fmt.Errorf("cache: %s is unusable (%v) and could not be moved aside: %w", path, err, mvErr)
	}
	for _, sfx := range []string{"-wal", "-shm"} {
		if _, statErr := os.Stat(path + sfx); statErr == nil {
			_ = os.Rename(path+sfx, aside+sfx)
		}
	}
	log.Error("database unusable, moved aside and starting a new one",
		"path", path, "moved_to", aside, "err", err)
	if db, err = openChecked(ctx, path, log); err != nil {
		return nil, err
	}
	db.space = newSpace(db, now)
	return db, nil
}

// errCorrupt marks a failure that a fresh database file cures.
var errCorrupt = errors.New("database corrupt")

func recoverable(err error) bool {
	if errors.Is(err, errCorrupt) {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrIoErr:
			return true
		}
	}
	return false
}

func openChecked(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	// Commits that must survive a power cut call durable(): with the WAL
	// syncer that is an fdatasync of the WAL on its own thread, and SQLite
	// itself only syncs around checkpoints (synchronous=NORMAL); without it,
	// SQLite syncs every commit (FULL).
	wal, err := newWALSyncer(path)
	sync := "NORMAL"
	if err != nil {
		log.Warn("WAL syncer unavailable; SQLite syncs each commit itself", "err", err)
		wal, sync = nil, "FULL"
	}
	dsn := "file:" + url.PathEscape(path) + "?" + url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {sync},
		"_busy_timeout": {"10000"},
		"_txlock":       {"immediate"},
		"_foreign_keys": {"on"},
		"_cache_size":   {strconv.Itoa(-cacheKiB)},
	}.Encode()
	sdb := sql.OpenDB(connector{dsn: dsn, drv: &sqlite3.SQLiteDriver{ConnectHook: boundWAL}})
	sdb.SetMaxOpenConns(4)
	sdb.SetConnMaxIdleTime(0)
	db := &DB{sql: sdb, path: path, log: log, wal: wal}
	if wal != nil {
		db.syncs = newSyncGroups(wal.sync, time.Now, syncDelay)
	}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: %s: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: %s: %w", path, err)
	}
	if err := db.durable(); err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: %s: %w", path, err)
	}
	return db, nil
}

// cacheKiB bounds each connection's page cache (PRAGMA cache_size = -N, in
// KiB; SQLite's default is 2,000 KiB per connection, and the pool may hold
// four). The outbox's working set is a few dozen 4 KiB pages: the b-trees'
// interior pages, the tail being appended and the head being read and
// deleted. With the default, a 20,000-uplink burst grew SQLite's memory to
// 2.3 to 3.4 MiB, held in malloc's arenas; with 256 KiB it stays under
// 1 MiB, and a page needed again is read from the OS's page cache (README
// "Resource budget").
const cacheKiB = 256

// connector opens go-sqlite3 connections with a per-connection hook, without
// registering a driver name globally.
type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

// Connect opens a connection; the outbox's transactions prepare their
// statements on it (conn, writer.go).
func (c connector) Connect(context.Context) (driver.Conn, error) {
	dc, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(*sqlite3.SQLiteConn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("cache: go-sqlite3 opened a %T", dc)
	}
	return &conn{SQLiteConn: sc}, nil
}

func (c connector) Driver() driver.Driver { return c.drv }

// boundWAL keeps the WAL small (space.go): checkpoint every
// walCheckpointPages and truncate the WAL file to walLimitBytes after one.
func boundWAL(c *sqlite3.SQLiteConn) error {
	_, err := c.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint = %d; PRAGMA journal_size_limit = %d", walCheckpointPages, walLimitBytes), nil)
	return err
}

func (db *DB) check(ctx context.Context) error {
	var mode string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("%w: journal mode is %q, not wal", errCorrupt, mode)
	}
	var res string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("%w: quick_check: %s", errCorrupt, res)
	}
	return nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.sql.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	var v int
	if err := db.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this program knows (%d): downgrade refused", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: commit: %w", i+1, err)
		}
	}
	return nil
}

// SchemaVersion is the version the database is at.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := db.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Close closes the database.
func (db *DB) Close() error {
	if db.syncs != nil {
		db.syncs.close() // what waits is synced first
	}
	err := db.sql.Close()
	if db.wal != nil {
		db.wal.close()
	}
	return err
}

// durable returns once every transaction committed so far survives a power
// cut (see DB.wal): it syncs at once, with whatever commits wait.
func (db *DB) durable() error {
	if db.syncs == nil {
		return nil
	}
	return db.syncs.wait()
}

// syncSoon returns when the transactions committed so far survive a power
// cut; the sync is shared with the commits that follow within syncDelay.
// weight is how many acknowledgements wait on it.
func (db *DB) syncSoon(weight int) Synced {
	if db.syncs == nil {
		return Synced{}
	}
	return db.syncs.join(weight, false)
}

// SQLiteVersion is the version of the SQLite library linked in.
func SQLiteVersion() string {
	v, _, _ := sqlite3.Version()
	return v
}
