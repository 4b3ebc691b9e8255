package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Space management: the database lives on a small flash partition
// (/var/config on a Conduit) that the outbox must never fill by itself, and
// that something else may fill anyway. Three mechanisms:
//
//   - The WAL is bounded (wal_autocheckpoint walCheckpointPages, and
//     journal_size_limit walLimitBytes) so queued rows live in the main file,
//     where a deleted row's pages go to the free list and are reused in place.
//     Without the bound, a 3 MB file system filled with a WAL holding every
//     row and an empty main file: neither a delete (WAL append) nor a
//     checkpoint (main file growth) could get space, and nothing ever recovered.
//   - A reserve file "<db>.reserve" of reserveBytes of incompressible bytes
//     (UBIFS compresses zeros away) is held while there is room. When a write
//     fails because the file system is full, the reserve is released, so the
//     deletes of delivered rows and the checkpoint that makes their pages
//     reusable always get the space they need. It is re-created when the file
//     system has room again.
//   - The outbox's byte cap follows the file system (statfs): the database may
//     take at most fsShareMax of the partition, less the reserve and the WAL
//     bound (see capBytesLocked; README "Reliability" works the arithmetic for
//     a gateway). The reserve is re-created only while fsKeepFree of the
//     partition stays free for everything else.
//
// While the reserve is released, new rows are accepted only into the
// database's own free pages (rows delivered and deleted) and the file
// system's free space beyond one WAL's worth; otherwise appends are refused
// with ErrStorageFull, the intake leaves the messages with the local broker,
// and the state is "full" in Storage(), logged once per episode.
//
// Each commit also notices a database file deleted, replaced or truncated
// under the running program (checkFile) and moves to a fresh file at the
// path, copying what it can still read.

const (
	walCheckpointPages = 64 // PRAGMA wal_autocheckpoint: 256 KiB of 4 KiB pages
	walCheckpointBytes = walCheckpointPages * 4096
	// walLimitBytes is PRAGMA journal_size_limit: the WAL file is truncated to
	// it after a checkpoint. Twice the checkpoint size, so a WAL that ran a
	// little past the checkpoint is not truncated and regrown every cycle
	// (that churn halved the outbox's append rate).
	walLimitBytes = 2 * walCheckpointBytes
	reserveBytes  = 512 << 10
	fsShareMax    = 0.5  // of the file system's size, for the database at most
	fsKeepFree    = 0.10 // of the file system's size (at most fsKeepFreeMax), left free for everything else
	fsKeepFreeMax = 256 << 20
	// defaultOverhead is the database bytes per payload byte assumed before
	// the outbox holds enough rows to measure it.
	defaultOverhead = 2.0
	refreshEvery    = time.Second
	reserveRetry    = 5 * time.Second
	fullLogEvery    = 10 * time.Minute
)

// ErrStorageFull is returned by Append while the database's file system is
// full: the rows were not stored (the local broker keeps the messages).
var ErrStorageFull = errors.New("cache: no space left for new rows")

// isFull reports whether err means the file system (or the database) is full.
func isFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrStorageFull) || errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrFull
}

// StorageStatus is the database's view of its file system, for /status and
// AppInfo.
type StorageStatus struct {
	// State is "ok", "low" (running without its reserve: the file system had
	// no room for it) or "full" (new rows refused; the local broker keeps them).
	State          string    `json:"state"`
	Since          time.Time `json:"since,omitzero"` // when State was entered (low, full)
	FSBytes        int64     `json:"fs_bytes"`
	FSFreeBytes    int64     `json:"fs_free_bytes"`
	DBBytes        int64     `json:"db_bytes"`      // database and WAL files on disk
	ReserveBytes   int64     `json:"reserve_bytes"` // held now
	CapBytes       int64     `json:"cap_bytes"`     // outbox payload bytes the file system allows in total
	RefusedCommits int64     `json:"refused_commits"`
	FullEpisodes   int64     `json:"full_episodes"`
	Replacements   int64     `json:"replacements"` // database file deleted, replaced or truncated under the program
	LostRows       int64     `json:"lost_rows"`    // queued rows lost with such a file
	LastError      string    `json:"last_error,omitempty"`
}

// space tracks the file system of one database. Its methods are called by the
// outbox's commits (one at a time, under the outbox's wmu), by readers
// (sawError) and by Storage (any goroutine).
type space struct {
	db          *DB
	dir         string
	reservePath string
	log         *slog.Logger
	now         func() time.Time
	fs          func(dir string) (total, free int64, err error) // statfs; tests replace it

	mu           sync.Mutex
	st           StorageStatus
	reserveHeld  bool
	refreshed    time.Time
	reserveTried time.Time
	overhead     float64
	freePages    int64 // bytes in the database's free list, at the last refresh
	lastFullLog  time.Time
	fullLogged   bool // this episode's start was logged at error level

	corruptSeen atomic.Bool // a read or write found the file corrupt (sawError)
	fileID      fileID      // of the file the connections opened
	fileChecked time.Time   // checkFile's last run (o.wmu held; under mu for Storage)
	// recycleUntil: no connection is pooled until then (a new file at the path).
	recycleUntil time.Time
}

func newSpace(db *DB, now func() time.Time) *space {
	s := &space{db: db, dir: filepath.Dir(db.path), reservePath: db.path + ".reserve", log: db.log, now: now,
		fs: statfs, overhead: defaultOverhead}
	s.st.State = "ok"
	s.fileID, _, _ = statID(db.path)
	if fi, err := os.Stat(s.reservePath); err == nil && fi.Size() == reserveBytes {
		s.reserveHeld = true
	} else {
		s.ensureReserve(true)
	}
	s.refresh(context.Background(), 0, true)
	return s
}

func (s *space) statfs() (total, free int64, err error) { return s.fs(s.dir) }

// statfs returns the size of the file system holding dir and the space
// available on it to an unprivileged process.
func statfs(dir string) (total, free int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("cache: statfs %s: %w", dir, err)
	}
	bs := int64(st.Bsize) // int32 on 32-bit ARM
	return int64(st.Blocks) * bs, int64(st.Bavail) * bs, nil
}

// keepFree is what the database leaves free on a file system of total bytes.
func keepFree(total int64) int64 { return min(int64(float64(total)*fsKeepFree), fsKeepFreeMax) }

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ensureReserve (re)creates the reserve file when the file system has room
// for it and some to spare; force skips the retry interval. s.mu must not be
// held.
func (s *space) ensureReserve(force bool) {
	s.mu.Lock()
	if s.reserveHeld || (!force && s.now().Sub(s.reserveTried) < reserveRetry) {
		s.mu.Unlock()
		return
	}
	s.reserveTried = s.now()
	s.mu.Unlock()
	total, free, err := s.statfs()
	if err != nil || free < 2*reserveBytes+keepFree(total)/2 {
		return
	}
	if err := writeReserve(s.reservePath); err != nil {
		os.Remove(s.reservePath)
		s.log.Warn("could not create the database's space reserve", "path", s.reservePath, "err", err)
		return
	}
	s.mu.Lock()
	s.reserveHeld = true
	s.mu.Unlock()
}

// writeReserve writes reserveBytes of pseudo-random bytes (compressing file
// systems would not allocate zeros) and syncs them.
func writeReserve(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	src := rand.NewChaCha8([32]byte{'a', 'p', 'p', '-', 'c', 'o', 'n', 'n', 'e', 'c', 't'})
	buf := make([]byte, 64<<10)
	for n := 0; n < reserveBytes; n += len(buf) {
		src.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// release gives the reserve back to the file system; it reports whether there
// was one.
func (s *space) release() bool {
	s.mu.Lock()
	held := s.reserveHeld
	s.reserveHeld = false
	s.reserveTried = s.now()
	s.mu.Unlock()
	if !held {
		return false
	}
	if err := os.Remove(s.reservePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("could not release the database's space reserve", "path", s.reservePath, "err", err)
	}
	return true
}

// refresh re-reads the file system and the database's size at most once per
// refreshEvery (always with force). payload is the outbox's payload bytes.
func (s *space) refresh(ctx context.Context, payload int64, force bool) {
	s.mu.Lock()
	if !force && s.now().Sub(s.refreshed) < refreshEvery {
		s.mu.Unlock()
		return
	}
	s.refreshed = s.now()
	s.mu.Unlock()
	total, free, err := s.statfs()
	var pageSize, pages, freePages int64
	if err == nil {
		// One query, not three: each costs a connection from the pool and a compilation.
		err = s.db.sql.QueryRowContext(ctx, "SELECT * FROM pragma_page_size(), pragma_page_count(), pragma_freelist_count()").
			Scan(&pageSize, &pages, &freePages)
	}
	dbBytes := fileSize(s.db.path) + fileSize(s.db.path+"-wal")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.st.LastError = err.Error()
		return
	}
	s.st.FSBytes, s.st.FSFreeBytes, s.st.DBBytes = total, free, dbBytes
	s.freePages = freePages * pageSize
	if used := (pages - freePages) * pageSize; payload >= 32<<10 && used > 0 {
		s.overhead = min(max(float64(used)/float64(payload), 1.2), 8)
	}
	s.st.ReserveBytes = 0
	if s.reserveHeld {
		s.st.ReserveBytes = reserveBytes
	}
	s.st.CapBytes = s.capBytesLocked()
	if s.st.State == "ok" && !s.reserveHeld {
		s.st.State, s.st.Since = "low", s.now()
	} else if s.st.State == "low" && s.reserveHeld {
		s.st.State, s.st.Since = "ok", time.Time{}
	}
}

// capBytesLocked is the outbox payload the file system's size allows: the
// database may take fsShareMax of it, less the reserve and the WAL bound,
// divided by the measured database bytes per payload byte. It depends on the
// size, not on the free space: when something else fills the file system the
// outbox stops taking rows (the broker keeps them) rather than dropping rows
// it acknowledged.
func (s *space) capBytesLocked() int64 {
	total := float64(s.st.FSBytes)
	if total <= 0 {
		return 0 // unknown: the configured caps alone
	}
	allowed := total*fsShareMax - reserveBytes - walLimitBytes
	return max(int64(allowed/s.overhead), 64<<10)
}

// limits returns the caps for the next commit: the configured ones, with the
// byte cap lowered to the file system's share of each of apps applications.
func (s *space) limits(ctx context.Context, configured Limits, payload int64, apps int) Limits {
	s.refresh(ctx, payload, false)
	s.mu.Lock()
	c := s.st.CapBytes
	s.mu.Unlock()
	if c > 0 {
		configured.MaxBytes = min(configured.MaxBytes, c/int64(max(apps, 1)))
	}
	return configured
}

// appendsAllowed decides, before a commit that adds bytes of payload, whether
// to try it: always while the reserve is held; without it only when the
// database's free pages and the file system's free space beyond a WAL's worth
// take the rows, so what deletes and checkpoints need stays free.
func (s *space) appendsAllowed(ctx context.Context, bytes int64, payload int64) (bool, error) {
	s.ensureReserve(false)
	s.mu.Lock()
	held := s.reserveHeld
	s.mu.Unlock()
	if held {
		return true, nil
	}
	s.refresh(ctx, payload, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	need := int64(float64(bytes)*s.overhead) + 8<<10
	room := s.freePages + max(s.st.FSFreeBytes-walCheckpointBytes, 0)
	if room >= need {
		return true, nil
	}
	return false, fmt.Errorf("%w: %d bytes needed, %d free in the database and %d on its file system, no reserve",
		ErrStorageFull, need, s.freePages, s.st.FSFreeBytes)
}

// refused records appends refused or failed for want of space (err says
// why), logging the start of a full episode once.
func (s *space) refused(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.RefusedCommits++
	if err != nil {
		s.st.LastError = err.Error()
	}
	if s.st.State == "full" {
		return
	}
	s.st.State, s.st.Since = "full", s.now()
	s.st.FullEpisodes++
	lvl := slog.LevelError
	s.fullLogged = s.lastFullLog.IsZero() || s.now().Sub(s.lastFullLog) >= fullLogEvery
	if !s.fullLogged {
		lvl = slog.LevelDebug // flapping at the edge: an episode was logged minutes ago
	} else {
		s.lastFullLog = s.now()
	}
	s.log.Log(context.Background(), lvl, "database file system full: new local messages are not acknowledged and stay with the local broker until delivered rows free space",
		"path", s.db.path, "fs_free_bytes", s.st.FSFreeBytes, "db_bytes", s.st.DBBytes, "err", err)
}

// accepted records a commit that stored new rows, ending a full episode.
func (s *space) accepted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.State != "full" {
		return
	}
	lvl := slog.LevelWarn
	if !s.fullLogged {
		lvl = slog.LevelDebug
	}
	s.log.Log(context.Background(), lvl, "database accepting new rows again",
		"full_for", s.now().Sub(s.st.Since).Round(time.Millisecond), "refused_commits", s.st.RefusedCommits)
	s.st.State, s.st.Since = "low", s.now()
	if s.reserveHeld {
		s.st.State, s.st.Since = "ok", time.Time{}
	}
}

func (s *space) status() StorageStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Storage is the state of the database's file system: ok, low (no reserve) or
// full (new rows refused), sizes and the outbox cap they allow.
func (db *DB) Storage() StorageStatus {
	if db.space == nil {
		return StorageStatus{State: "ok"}
	}
	db.space.refresh(context.Background(), 0, false)
	return db.space.status()
}

// write is commit (o.wmu held) with the file system in mind. When it is
// full, the reserve is released and what frees space (the pending deletions,
// dead letters and failure records, a DropApplication) is committed on its
// own, with a WAL checkpoint, and the appended rows are refused with
// ErrStorageFull (the intake leaves the messages with the local broker): a
// full file system never blocks the deletes that cure it. Deletions that
// still cannot commit stay pending and go with the next transaction (the
// flusher retries them every flushEvery).
func (o *Outbox) write(rows []Row, extra func(*wtx, func(string) *delta) error) (map[string]int, error) {
	sp := o.db.space
	ctx := context.Background()
	o.checkFile(ctx)
	var appendBytes int64
	for _, row := range rows {
		appendBytes += int64(len(row.Body)) + int64(len(row.AppEUI)+len(row.DevEUI)+len(row.Application)) + 64
	}
	payload, _ := o.payloadBytes()
	ok, why := true, error(nil)
	if appendBytes > 0 {
		ok, why = sp.appendsAllowed(ctx, appendBytes, payload)
	}
	if ok {
		dropped, err := o.commit(rows, extra)
		if err == nil {
			o.deletesCommitted()
			if appendBytes > 0 {
				sp.accepted()
			}
			return dropped, nil
		}
		if !isFull(err) {
			sp.sawError(err)
			o.db.log.Error("outbox write failed", "err", err, "rows", len(rows))
			return nil, err
		}
		why = err
		sp.release()
	}
	// Full: commit everything but the appends, then refuse the appends.
	var restErr error
	if extra != nil || o.pending() {
		if _, restErr = o.commit(nil, extra); restErr != nil {
			// A checkpoint may make WAL room; then once more, else later.
			o.checkpoint(ctx)
			_, restErr = o.commit(nil, extra)
		}
		switch {
		case restErr == nil:
			o.deletesCommitted()
		case isFull(restErr):
			o.deletesWait(restErr)
		default:
			sp.sawError(restErr)
			o.db.log.Error("outbox write failed", "err", restErr)
		}
	}
	o.checkpoint(ctx)
	if appendBytes > 0 {
		sp.refused(why)
	}
	sp.refresh(ctx, payload, true)
	if appendBytes > 0 {
		return nil, fmt.Errorf("%w: %s", ErrStorageFull, o.db.path)
	}
	return nil, restErr
}

// pending reports whether deletions or failure records wait for a transaction.
func (o *Outbox) pending() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pend.deletes) > 0 || len(o.pend.failures) > 0
}

func (o *Outbox) checkpoint(ctx context.Context) {
	if _, err := o.db.sql.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		o.db.log.Debug("outbox: WAL checkpoint with the file system full", "err", err)
	}
}

// deletesWait logs, once until they commit, that the pending deletions could
// not be committed even on their own (o.wmu held).
func (o *Outbox) deletesWait(err error) {
	if o.deletesWaiting {
		return
	}
	o.deletesWaiting = true
	o.db.log.Warn("outbox deletes wait for space: the file system is full even for them; retrying", "err", err)
}

// deletesCommitted ends a deletesWait episode (o.wmu held).
func (o *Outbox) deletesCommitted() {
	if o.deletesWaiting {
		o.deletesWaiting = false
		o.db.log.Info("outbox deletes committed again")
	}
}

// payloadBytes is the payload of every queued row, and how many applications
// have rows.
func (o *Outbox) payloadBytes() (bytes int64, apps int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.stats {
		bytes += s.Bytes
		if s.Rows > 0 {
			apps++
		}
	}
	return bytes, apps
}

// fileID identifies the database file the connections opened.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fi.Size(), nil
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, fi.Size(), nil // widths differ by platform
}

// vanished says how the file at the database's path differs from the one
// the connections opened: "" (the same), "deleted", "replaced", "truncated"
// or "damaged".
func (s *space) vanished() string {
	id, size, err := statID(s.db.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "deleted"
	case err != nil:
		return "" // unreadable metadata: the next write says more
	case s.fileID != (fileID{}) && id != s.fileID:
		return "replaced"
	case size < 512 || !sqliteHeader(s.db.path):
		return "truncated" // or overwritten in place: not a database any more
	}
	return ""
}

// damaged reads the head row of each application the way delivery does
// (index, row, body): a few b-tree descents, failing on a file whose pages
// were cut away under the connections even once SQLite rewrote its header.
// Its statements are prepared once (o.st): it runs every refreshEvery.
func (o *Outbox) damaged(ctx context.Context) bool {
	o.mu.Lock()
	var apps []string
	for app, s := range o.stats {
		if s.Rows > 0 && len(apps) < 8 {
			apps = append(apps, app)
		}
	}
	o.mu.Unlock()
	for _, app := range apps {
		var id, n sql.NullInt64
		err := o.st.head.QueryRowContext(ctx, app).Scan(&id, &n)
		if corrupt(err) {
			return true
		}
	}
	var lo, hi sql.NullInt64
	return corrupt(o.st.span.QueryRowContext(ctx).Scan(&lo, &hi))
}

// sawError notes an error of a read or write of the outbox: a corrupt file
// makes the next commit's check move to a fresh database at once.
func (s *space) sawError(err error) {
	if corrupt(err) {
		s.corruptSeen.Store(true)
		s.mu.Lock()
		s.fileChecked = time.Time{}
		s.mu.Unlock()
	}
}

// corrupt reports whether err is SQLite finding the file is not (any more) a
// sound database.
func corrupt(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB)
}

// sqliteHeader reports whether the file starts with SQLite's magic string.
func sqliteHeader(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true // unreadable: not evidence of damage
	}
	defer f.Close()
	var b [16]byte
	n, _ := io.ReadFull(f, b[:])
	return n == 16 && string(b[:]) == "SQLite format 3\x00"
}

// checkFile runs at the start of a commit (o.wmu held), at most once per
// refreshEvery: when the database file was deleted, replaced or truncated
// under the running program, it copies what the open connections can still
// read (VACUUM INTO) to a fresh file at the path, moving anything else there
// aside; when nothing can be read, it starts an empty database. Either way
// the connections reopen on the new file and the outbox adopts it (adopt);
// the loss (queued rows that could not be copied) is counted in
// Storage().LostRows and logged once.
func (o *Outbox) checkFile(ctx context.Context) {
	sp := o.db.space
	sp.mu.Lock()
	due := sp.now().Sub(sp.fileChecked) >= refreshEvery
	if due {
		sp.fileChecked = sp.now()
	}
	endRecycle := due && !sp.recycleUntil.IsZero() && !sp.now().Before(sp.recycleUntil)
	if endRecycle {
		sp.recycleUntil = time.Time{}
	}
	sp.mu.Unlock()
	if !due {
		return
	}
	if endRecycle {
		// Every connection of the old file has been closed: pool them again.
		o.db.sql.SetMaxIdleConns(2)
	}
	what := sp.vanished()
	if what == "" && (sp.corruptSeen.Swap(false) || o.damaged(ctx)) {
		what = "damaged"
	}
	if what == "" {
		return
	}
	path := o.db.path
	queued := o.queuedRows()
	stamp := sp.now().UTC().Format("20060102T150405Z")
	tmp := path + ".salvage"
	os.Remove(tmp)
	_, salvageErr := o.db.sql.ExecContext(ctx, "VACUUM INTO ?", tmp)
	if salvageErr == nil {
		salvageErr = quickCheck(ctx, tmp)
	}
	// Whatever is at the path now is not this program's database.
	for _, sfx := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(path + sfx); err == nil {
			os.Rename(path+sfx, path+"."+what+"-"+stamp+sfx)
		}
	}
	if salvageErr == nil {
		salvageErr = os.Rename(tmp, path)
	} else {
		os.Remove(tmp)
	}
	// New connections open the new file. The outbox's reads are prepared on
	// the *sql.DB, which prepares them again on each connection it hands
	// out, and its transactions prepare theirs on each connection they run
	// on (writer.go), so both follow: drop the idle connections, and pool
	// none for recycleFor, so the ones readers hold now are closed when they
	// come back (no transaction holds one: o.wmu is held).
	o.db.sql.SetMaxIdleConns(0)
	sp.mu.Lock()
	sp.recycleUntil = sp.now().Add(recycleFor)
	sp.mu.Unlock()
	err := o.db.migrate(ctx)
	if err == nil {
		err = o.adopt(ctx)
	}
	id, _, _ := statID(path)
	left := o.queuedRows()
	lost := max(queued-left, 0)
	sp.mu.Lock()
	sp.fileID = id
	sp.st.LostRows += lost
	sp.st.Replacements++
	sp.st.LastError = "database file " + what + " while running"
	sp.mu.Unlock()
	if salvageErr == nil && err == nil {
		o.db.log.Error("database file "+what+" while running: its rows were copied to a fresh database at the path",
			"path", path, "queued_rows", queued, "lost_rows", lost)
		return
	}
	o.db.log.Error("database file "+what+" while running and could not be read: started an empty database; queued rows lost",
		"path", path, "lost_rows", lost, "salvage_err", salvageErr, "err", err)
}

// recycleFor is how long after a replacement no connection is pooled, so
// none opened on the old file is used again.
const recycleFor = 5 * refreshEvery

// queuedRows is the rows queued in all (forgotten ones not counted).
func (o *Outbox) queuedRows() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var n int64
	for app, s := range o.stats {
		n += int64(s.Rows)
		if d := o.pendApp[app]; d != nil {
			n -= int64(d.rows)
		}
	}
	return n
}

// adopt reconciles the outbox's memory with a new database file (o.wmu
// held): row IDs continue above the last one handed out (feeds, the caps'
// floors and the applications' cursors compare IDs), the dropped and
// dead-lettered counters are written back, the queue sizes are re-read, and
// the pending deletions and failure records are committed to the new file at
// once, so Stats count what it holds. Feeds keep the rows they hold in memory
// (delivered even when the file lost them); a cold feed reads the new file
// after its last row taken.
func (o *Outbox) adopt(ctx context.Context) error {
	o.mu.Lock()
	last := o.lastID
	type counter struct {
		app, name string
		v         int64
	}
	var cs []counter
	for app, s := range o.stats {
		if s.Dropped > 0 {
			cs = append(cs, counter{app, "dropped", s.Dropped})
		}
		if s.DeadLettered > 0 {
			cs = append(cs, counter{app, "dead_lettered", s.DeadLettered})
		}
	}
	o.mu.Unlock()
	tx, err := o.db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cache: outbox adopt: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox' AND seq < ?`, last, last)
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ?
			WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')`, last)
	}
	for _, c := range cs {
		if err != nil {
			break
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO counters (application, name, value) VALUES (?, ?, ?)
			ON CONFLICT (application, name) DO UPDATE SET value = MAX(value, excluded.value)`, c.app, c.name, c.v)
	}
	if err == nil {
		err = tx.Commit()
	} else {
		tx.Rollback()
	}
	if err != nil {
		return fmt.Errorf("cache: outbox adopt: %w", err)
	}
	if err := o.reloadStats(ctx); err != nil {
		return err
	}
	if _, err := o.commit(nil, nil); err != nil {
		return err
	}
	return nil
}

func quickCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("%w: quick_check: %s", errCorrupt, res)
	}
	return nil
}

// reloadStats re-reads the per-application row counts from the database.
func (o *Outbox) reloadStats(ctx context.Context) error {
	rows, err := o.db.sql.QueryContext(ctx, `SELECT application, COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox GROUP BY application`)
	if err != nil {
		return fmt.Errorf("cache: outbox counts: %w", err)
	}
	defer rows.Close()
	counts := map[string]AppStats{}
	for rows.Next() {
		var app string
		var c AppStats
		if err := rows.Scan(&app, &c.Rows, &c.Bytes); err != nil {
			return fmt.Errorf("cache: outbox counts: %w", err)
		}
		counts[app] = c
	}
	if err := rows.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for app, s := range o.stats {
		s.Rows, s.Bytes = counts[app].Rows, counts[app].Bytes
	}
	for app, c := range counts {
		s := o.app(app)
		s.Rows, s.Bytes = c.Rows, c.Bytes
	}
	return nil
}
