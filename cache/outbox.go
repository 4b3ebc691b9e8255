package cache

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Row is one queued message for one remote application.
type Row struct {
	ID            int64
	Application   string // EUI of the destination application
	Kind          string // "up", "joined", "moved"
	AppEUI        EUI64  // the device's AppEUI
	DevEUI        EUI64  // the device; each transport derives its path or topic from Kind, AppEUI and DevEUI
	Body          []byte
	EnqueuedAt    time.Time
	Attempts      int
	NextAttemptAt time.Time
}

// Limits caps each application's share of the outbox. On overflow the oldest
// rows of that application are dropped and counted.
type Limits struct {
	MaxRows  int
	MaxBytes int64
}

// AppStats is the state of one application's queue.
type AppStats struct {
	Rows         int
	Bytes        int64
	Dropped      int64 // rows dropped by the caps, since the database was created
	DeadLettered int64 // rows refused permanently by the remote side
}

// Outbox is the durable FIFO between the local broker and the remote
// applications, used as a write-ahead log:
//
//   - Append commits rows in one transaction in the caller's goroutine (the
//     intake groups messages, so one commit carries everything that arrived
//     meanwhile) and hands them to their application's Feed in memory at
//     commit time. An application reads the database only when its feed is
//     cold: at start-up, after Rewind, and when its window overflowed.
//   - Delete and DeadLetter need no durability of their own (a lost deletion
//     only resends: at-least-once): delivered rows collect in memory and are
//     removed in bulk, ranges of consecutive IDs, riding on an append's
//     commit once a second (flushEvery), or sooner when deleteBatch wait or
//     the append would otherwise meet its application's caps, and by a
//     commit of their own when no append came for a second. A crash can
//     resend the delivered rows whose deletion had not ridden on a commit
//     yet, normally the last second's.
//   - Every commit goes through write (space.go): the byte cap follows the
//     file system, a full file system refuses the appended rows with
//     ErrStorageFull but still commits the deletions, and a database file
//     deleted, replaced or damaged under the program is noticed and replaced.
//
// Every transaction runs on a connection of the pool inside one Raw call
// (writer.go), with the write path's statements, BEGIN IMMEDIATE, COMMIT and
// ROLLBACK included, prepared once on each connection and finalized with it;
// a replacement file recycles the connections and the statements follow.
// The reads (Peek, the damage check) are prepared once on the *sql.DB, which
// prepares them on each connection it hands out.
type Outbox struct {
	db     *DB
	limits Limits
	now    func() time.Time
	stamps stamps // stored times ↔ monotonic ones (clock.go)
	window int    // rows a feed holds in memory

	st stmts  // reads on the pool
	w  writer // the transactions' statements per connection (writer.go); o.wmu guards it

	wmu    sync.Mutex // one transaction at a time; guards w, closed and deletesWaiting
	closed bool
	// deletesWaiting: pending deletions could not commit for want of space
	// (logged once until they do, space.go).
	deletesWaiting bool

	mu      sync.Mutex // guards everything below
	stats   map[string]*AppStats
	feeds   map[string]*Feed
	pend    pendingWrites     // applied with the next transaction
	pendApp map[string]*delta // per application: rows/bytes of pend.deletes (not yet committed)
	floor   map[string]int64  // per application: highest ID dropped by the caps or DropApplication
	lastID  int64             // the highest row ID ever assigned; a replacement file continues above it (space.go)
	// lastCommit is when the last transaction committed; the flusher leaves
	// deletions to the appends while they come at least once per flushEvery.
	lastCommit time.Time
	// deletedAt is when deletions last rode on a transaction: an append's
	// commit carries them once flushEvery has passed (deletesDueLocked).
	deletedAt time.Time
	stop      chan struct{} // ends the flusher
	flushed   chan struct{} // closed when the flusher ended

	byApp map[string][]Row // Append's hand-off, reused; o.wmu guards it
}

// stmts are the outbox's reads on the pool, prepared once on the *sql.DB
// (which prepares them on each connection it hands out, so they follow the
// connections to a replacement file).
type stmts struct {
	peek       *sql.Stmt // a cold feed's read
	head, span *sql.Stmt // the damage check's reads (space.go)
}

// writerSQL is the write path's SQL, each statement prepared once on each
// connection that runs the outbox's transactions (writer.go).
func writerSQL(st *writerStmts) []struct {
	dst **sqlite3.SQLiteStmt
	q   string
} {
	return []struct {
		dst **sqlite3.SQLiteStmt
		q   string
	}{
		{&st.begin, `BEGIN IMMEDIATE`},
		{&st.commit, `COMMIT`},
		{&st.rollback, `ROLLBACK`},
		{&st.insert, `INSERT INTO outbox (application, kind, appeui, deveui, body, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)`},
		{&st.delRange, `DELETE FROM outbox WHERE id BETWEEN ? AND ? AND application = ?`},
		{&st.fail, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?`},
		{&st.counter, `INSERT INTO counters (application, name, value) VALUES (?, ?, ?)
			ON CONFLICT (application, name) DO UPDATE SET value = value + excluded.value`},
		{&st.countApp, `SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), COALESCE(MAX(id), 0) FROM outbox WHERE application = ?`},
		{&st.dropApp, `DELETE FROM outbox WHERE application = ? AND id <= ?`},
		{&st.capScan, `SELECT id, LENGTH(body) FROM outbox WHERE application = CAST(? AS TEXT) ORDER BY id`},
		{&st.capDrop, `DELETE FROM outbox WHERE application = ? AND id <= ?`},
	}
}

// pendingWrites are deletions, dead letters and failure records waiting for
// the next transaction.
type pendingWrites struct {
	deletes  map[int64]pendingDelete
	failures []failure
}

type pendingDelete struct {
	app   string
	bytes int64
	dead  bool
}

type failure struct {
	id   int64
	next time.Time
}

// flushEvery bounds how long a deletion waits for a transaction to ride on.
const flushEvery = time.Second

// deleteBatch is how many pending deletions make the next commit carry them
// before flushEvery has passed.
const deleteBatch = 256

// DefaultWindow is how many committed rows a feed holds in memory before its
// application reads the database again.
const DefaultWindow = 1024

// ErrClosed is returned by operations on a closed Outbox.
var ErrClosed = errors.New("cache: outbox closed")

// NewOutbox prepares the reads, loads the per-application counters and
// starts the flusher of lazy deletions. Close flushes and stops it.
func (db *DB) NewOutbox(ctx context.Context, limits Limits) (*Outbox, error) {
	if limits.MaxRows <= 0 || limits.MaxBytes <= 0 {
		return nil, fmt.Errorf("cache: outbox limits must be positive, got %d rows, %d bytes", limits.MaxRows, limits.MaxBytes)
	}
	o := &Outbox{
		db: db, limits: limits, now: time.Now, stamps: newStamps(time.Now()), window: DefaultWindow,
		stats: map[string]*AppStats{}, feeds: map[string]*Feed{}, pendApp: map[string]*delta{}, floor: map[string]int64{},
		pend: pendingWrites{deletes: map[int64]pendingDelete{}},
		stop: make(chan struct{}), flushed: make(chan struct{}), byApp: map[string][]Row{},
	}
	o.w.db = db
	if err := o.prepare(ctx); err != nil {
		o.closeStmts()
		return nil, err
	}
	if err := o.load(ctx); err != nil {
		o.closeStmts()
		return nil, err
	}
	go o.flusher()
	return o, nil
}

// prepare compiles the outbox's statements once. The queries that read an
// application's rows in ID order take their parameters through CAST (the
// application, a LIMIT): with a bare ? there, SQLite lets the bound value
// shape the plan and compiles the statement again at every run with a new
// binding (TestOutboxQueriesCompileOnce); the plan is the same index search
// either way.
func (o *Outbox) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&o.st.peek, `SELECT id, kind, appeui, deveui, body, enqueued_at, attempts, next_attempt_at FROM outbox
			WHERE application = CAST(? AS TEXT) AND id > ? ORDER BY id LIMIT CAST(? AS INTEGER)`},
		{&o.st.head, `SELECT id, LENGTH(body) FROM outbox WHERE application = CAST(? AS TEXT) ORDER BY id LIMIT 1`},
		{&o.st.span, `SELECT MIN(id), MAX(id) FROM outbox`},
	} {
		s, err := o.db.sql.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("cache: outbox: preparing %q: %w", p.q, err)
		}
		*p.dst = s
	}
	return nil
}

func (o *Outbox) closeStmts() {
	for _, s := range []*sql.Stmt{o.st.peek, o.st.head, o.st.span} {
		if s != nil {
			s.Close()
		}
	}
}

// load reads the queue sizes, the persistent counters and the last row ID.
func (o *Outbox) load(ctx context.Context) error {
	if err := o.db.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'`).Scan(&o.lastID); err != nil {
		return fmt.Errorf("cache: outbox last id: %w", err)
	}
	rows, err := o.db.sql.QueryContext(ctx, `SELECT application, COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox GROUP BY application`)
	if err != nil {
		return fmt.Errorf("cache: outbox counts: %w", err)
	}
	for rows.Next() {
		var app string
		var n int
		var b int64
		if err := rows.Scan(&app, &n, &b); err != nil {
			rows.Close()
			return fmt.Errorf("cache: outbox counts: %w", err)
		}
		o.app(app).Rows, o.app(app).Bytes = n, b
	}
	rows.Close()
	crows, err := o.db.sql.QueryContext(ctx, `SELECT application, name, value FROM counters`)
	if err != nil {
		return fmt.Errorf("cache: outbox counters: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var app, name string
		var v int64
		if err := crows.Scan(&app, &name, &v); err != nil {
			return fmt.Errorf("cache: outbox counters: %w", err)
		}
		switch name {
		case "dropped":
			o.app(app).Dropped = v
		case "dead_lettered":
			o.app(app).DeadLettered = v
		}
	}
	return crows.Err()
}

// app returns the stats entry of an application; o.mu must be held.
func (o *Outbox) app(eui string) *AppStats {
	s, ok := o.stats[eui]
	if !ok {
		s = &AppStats{}
		o.stats[eui] = s
	}
	return s
}

// Append stores rows in one transaction and returns once they are durable
// (they survive a power cut), with their IDs filled in: Commit, then Wait.
func (o *Outbox) Append(ctx context.Context, rows []Row) (dropped map[string]int, err error) {
	dropped, synced, err := o.Commit(ctx, rows, len(rows))
	if err != nil {
		return nil, err
	}
	if err := synced.Wait(ctx); err != nil {
		return nil, err
	}
	return dropped, nil
}

// Commit stores rows in one transaction, with their IDs filled in, and hands
// them to their applications' feeds at once. The rows are durable (they
// survive a power cut) once synced is done without error: the WAL's sync is
// shared with the commits of the next moments (syncgroup.go), so delivery
// overlaps the flash write and one fdatasync covers several commits. Should
// the power fail before it ends, the broker still holds the messages (they
// are acknowledged only once synced) and sends them again: a duplicate,
// never a loss. acks is how many acknowledgements wait on synced (it bounds
// how long the sync may wait). Rows dropped to respect the caps are reported
// per application. Deletions waiting for a transaction ride on this one.
// While the file system is full the rows are refused with ErrStorageFull
// (the deletions are committed all the same).
func (o *Outbox) Commit(ctx context.Context, rows []Row, acks int) (dropped map[string]int, synced Synced, err error) {
	if len(rows) == 0 {
		return nil, Synced{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, Synced{}, err
	}
	now := o.now()
	for i := range rows {
		if rows[i].EnqueuedAt.IsZero() {
			rows[i].EnqueuedAt = now
		}
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closed {
		return nil, Synced{}, ErrClosed
	}
	droppedBy, err := o.write(rows, nil)
	if err != nil {
		return nil, Synced{}, err
	}
	o.handOff(rows)
	synced = o.db.syncSoon(acks)
	for app, n := range droppedBy {
		if n > 0 {
			if dropped == nil {
				dropped = map[string]int{}
			}
			dropped[app] = n
		}
	}
	return dropped, synced, nil
}

// handOff gives committed rows to their applications' feeds; o.wmu is held,
// so feeds see commits in order.
func (o *Outbox) handOff(rows []Row) {
	clear(o.byApp)
	for _, r := range rows {
		o.byApp[r.Application] = append(o.byApp[r.Application], r)
	}
	o.mu.Lock()
	type target struct {
		f    *Feed
		rows []Row
	}
	targets := make([]target, 0, len(o.byApp))
	for app, rs := range o.byApp {
		if f := o.feeds[app]; f != nil {
			targets = append(targets, target{f, rs})
		}
	}
	o.mu.Unlock()
	for _, t := range targets {
		t.f.push(t.rows)
	}
	for app := range o.byApp {
		o.byApp[app] = o.byApp[app][:0]
	}
}

// Delete forgets delivered rows. It does not wait: the rows are removed with
// the next transaction (at most flushEvery later); a crash before resends
// them, which at-least-once delivery allows. Stats count them gone at once.
func (o *Outbox) Delete(rows []Row) { o.forget(rows, false) }

// DeadLetter forgets rows the remote side refused permanently and counts them.
func (o *Outbox) DeadLetter(rows []Row) { o.forget(rows, true) }

func (o *Outbox) forget(rows []Row, dead bool) {
	if len(rows) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range rows {
		if r.ID <= o.floor[r.Application] {
			continue // already dropped by the caps
		}
		d := o.pendApp[r.Application]
		if d == nil {
			d = &delta{}
			o.pendApp[r.Application] = d
		}
		if p, ok := o.pend.deletes[r.ID]; ok {
			if dead && !p.dead {
				p.dead = true
				o.pend.deletes[r.ID] = p
				d.deadLettered++
			}
			continue
		}
		o.pend.deletes[r.ID] = pendingDelete{app: r.Application, bytes: int64(len(r.Body)), dead: dead}
		d.rows++
		d.bytes += int64(len(r.Body))
		if dead {
			d.deadLettered++
		}
	}
}

// unpend takes a forgotten row off the per-application pending counts; o.mu is held.
func (o *Outbox) unpend(p pendingDelete) {
	pa := o.pendApp[p.app]
	if pa == nil {
		return
	}
	pa.rows--
	pa.bytes -= p.bytes
	if p.dead {
		pa.deadLettered--
	}
	if pa.rows <= 0 {
		delete(o.pendApp, p.app)
	}
}

// RecordFailure counts a failed delivery attempt of a row and stores when it
// is next due (with the next transaction).
func (o *Outbox) RecordFailure(id int64, next time.Time) {
	o.mu.Lock()
	o.pend.failures = append(o.pend.failures, failure{id: id, next: next})
	o.mu.Unlock()
}

// DropApplication deletes every queued row of app, counting them as dropped
// (an application removed from the configuration, after its grace period).
func (o *Outbox) DropApplication(ctx context.Context, app string) (int, error) {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	var n int
	_, err := o.write(nil, func(tx *wtx, d func(string) *delta) error {
		var b, maxID int64
		err := tx.query(tx.st.countApp, func(v []driver.Value) (bool, error) {
			n, b, maxID = int(int64Of(v[0])), int64Of(v[1]), int64Of(v[2])
			return false, nil
		}, app)
		if err != nil {
			return fmt.Errorf("cache: outbox drop %s: %w", app, err)
		}
		if _, err := tx.exec(tx.st.dropApp, app, maxID); err != nil {
			return fmt.Errorf("cache: outbox drop %s: %w", app, err)
		}
		x := d(app)
		x.rows -= n
		x.bytes -= b
		x.dropped += int64(n)
		x.floor = max(x.floor, maxID)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Sync commits every deletion and failure record made before it.
func (o *Outbox) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closed {
		return ErrClosed
	}
	_, err := o.write(nil, nil)
	return err
}

// Close commits the pending deletions and stops the flusher.
func (o *Outbox) Close() {
	o.wmu.Lock()
	if o.closed {
		o.wmu.Unlock()
		return
	}
	close(o.stop)
	o.wmu.Unlock()
	<-o.flushed
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if _, err := o.write(nil, nil); err != nil {
		o.db.log.Error("outbox: deletions not committed at close (the rows are resent at the next start)", "err", err)
	}
	o.closed = true
	o.closeStmts()
}

// flusher commits lazy deletions when no transaction carried them for
// flushEvery: at a steady rate they all ride on the appends' commits.
func (o *Outbox) flusher() {
	defer close(o.flushed)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
		o.mu.Lock()
		idle := len(o.pend.deletes) == 0 && len(o.pend.failures) == 0
		recent := o.now().Sub(o.lastCommit) < flushEvery // deletions ride on the appends
		o.mu.Unlock()
		if idle || recent {
			continue
		}
		o.wmu.Lock()
		if !o.closed {
			// write logs a failure (once per episode on a full file system);
			// the deletions stay pending and the next tick retries them.
			_, _ = o.write(nil, nil)
		}
		o.wmu.Unlock()
	}
}

// Peek returns up to n rows of an application with ID > afterID, oldest
// first, from the database (rows forgotten but not yet removed included).
func (o *Outbox) Peek(ctx context.Context, app string, afterID int64, n int) ([]Row, error) {
	rows, err := o.st.peek.QueryContext(ctx, app, afterID, n)
	if err != nil {
		o.db.space.sawError(err) // space.go: a corrupt file is replaced at the next commit's check
		return nil, fmt.Errorf("cache: peek %s: %w", app, err)
	}
	defer rows.Close()
	out := make([]Row, 0, min(n, 64))
	for rows.Next() {
		r := Row{Application: app}
		var enq, next int64
		if err := rows.Scan(&r.ID, &r.Kind, &r.AppEUI, &r.DevEUI, &r.Body, &enq, &r.Attempts, &next); err != nil {
			o.db.space.sawError(err)
			return nil, fmt.Errorf("cache: peek %s: %w", app, err)
		}
		r.EnqueuedAt = o.stamps.load(enq)
		if next > 0 {
			r.NextAttemptAt = o.stamps.load(next)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		o.db.space.sawError(err)
		return nil, fmt.Errorf("cache: peek %s: %w", app, err)
	}
	return out, nil
}

// Stats returns the queue state of one application; rows forgotten but not
// yet removed count as gone (and as dead-lettered when they were).
func (o *Outbox) Stats(app string) AppStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.stats[app]
	if !ok {
		return AppStats{}
	}
	out := *s
	if d := o.pendApp[app]; d != nil {
		out.Rows -= d.rows
		out.Bytes -= d.bytes
		out.DeadLettered += d.deadLettered
	}
	return out
}

// Applications lists the applications that have or had rows, sorted.
func (o *Outbox) Applications() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.stats))
	for k := range o.stats {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type delta struct {
	rows         int
	bytes        int64
	dropped      int64
	deadLettered int64
	floor        int64 // highest ID dropped (caps, DropApplication)
}

// commit runs one transaction: the appended rows, extra (may be nil), the
// pending deletions and failure records, the caps and the counters. o.wmu is
// held. The transaction finishes whatever the callers' contexts do, so the
// in-memory counters always match the file.
func (o *Outbox) commit(rows []Row, extra func(*wtx, func(string) *delta) error) (map[string]int, error) {
	// The caps for this commit, before the transaction: the file system's
	// share lowers the byte cap (space.go; it reads the file sizes).
	payload, apps := o.payloadBytes()
	lim := o.db.space.limits(context.Background(), o.limits, payload, apps)
	o.mu.Lock()
	pend := o.pend
	if o.deletesDueLocked(lim, rows) {
		o.pend = pendingWrites{deletes: map[int64]pendingDelete{}}
	} else {
		// The deletions wait for a later commit; failure records ride now.
		pend = pendingWrites{failures: o.pend.failures}
		o.pend.failures = nil
	}
	o.mu.Unlock()
	restore := func() {
		o.mu.Lock()
		for id, p := range pend.deletes {
			if _, ok := o.pend.deletes[id]; !ok {
				o.pend.deletes[id] = p
			}
		}
		o.pend.failures = append(pend.failures, o.pend.failures...)
		o.mu.Unlock()
	}
	deltas := map[string]*delta{}
	d := func(app string) *delta {
		x, ok := deltas[app]
		if !ok {
			x = &delta{}
			deltas[app] = x
		}
		return x
	}
	var droppedBy map[string]int
	err := o.w.tx(func(tx *wtx) error {
		var err error
		if droppedBy, err = o.apply(tx, lim, rows, pend, extra, d); err != nil {
			return err
		}
		return o.counters(tx, deltas)
	})
	if err != nil {
		for i := range rows {
			rows[i].ID = 0
		}
		restore()
		return nil, err
	}
	o.mu.Lock()
	o.lastCommit = o.now()
	if len(pend.deletes) > 0 {
		o.deletedAt = o.lastCommit
	}
	for i := range rows {
		o.lastID = max(o.lastID, rows[i].ID)
	}
	var floors map[*Feed]int64 // feeds whose rows up to a new floor went (caps, DropApplication)
	for app, x := range deltas {
		s := o.app(app)
		s.Rows += x.rows
		s.Bytes += x.bytes
		s.Dropped += x.dropped
		s.DeadLettered += x.deadLettered
		if x.floor > o.floor[app] {
			o.floor[app] = x.floor
		}
		if x.floor > 0 {
			if floors == nil {
				floors = map[*Feed]int64{}
			}
			if f := o.feeds[app]; f != nil {
				floors[f] = x.floor
			}
		}
	}
	for _, p := range pend.deletes {
		o.unpend(p)
	}
	// Forgotten rows the caps dropped in this transaction are not forgotten
	// again. Only a floor raised here can cover a pending deletion: forget
	// skips rows under the floor of its time, and floors rise only here.
	if floors != nil {
		for id, p := range o.pend.deletes {
			if id <= o.floor[p.app] {
				delete(o.pend.deletes, id)
				o.unpend(p)
			}
		}
	}
	o.mu.Unlock()
	for f, fl := range floors {
		f.dropThrough(fl)
	}
	return droppedBy, nil
}

// deletesDueLocked reports whether the pending deletions ride on the
// transaction committing rows (o.mu held): always on one without rows (the
// flusher, Sync, Close, a full file system's deletions-only commit, a
// replacement's adoption); on an append's once flushEvery passed since they
// last rode, once deleteBatch wait, or when an application of the rows
// would otherwise go over its caps (so the caps never drop delivered rows
// still waiting to be deleted in place of queued ones).
func (o *Outbox) deletesDueLocked(lim Limits, rows []Row) bool {
	if len(rows) == 0 || len(o.pend.deletes) >= deleteBatch || o.now().Sub(o.deletedAt) >= flushEvery {
		return true
	}
	if len(o.pend.deletes) == 0 {
		return false
	}
	over := func(app string, rows int, bytes int64) bool {
		s := o.stats[app]
		return o.pendApp[app] != nil && s != nil && (s.Rows+rows > lim.MaxRows || s.Bytes+bytes > lim.MaxBytes)
	}
	if app, ok := oneApplication(rows); ok {
		var bytes int64
		for _, r := range rows {
			bytes += int64(len(r.Body))
		}
		return over(app, len(rows), bytes)
	}
	type add struct {
		rows  int
		bytes int64
	}
	adds := map[string]add{}
	for _, r := range rows {
		a := adds[r.Application]
		a.rows++
		a.bytes += int64(len(r.Body))
		adds[r.Application] = a
	}
	for app, a := range adds {
		if over(app, a.rows, a.bytes) {
			return true
		}
	}
	return false
}

// oneApplication returns the application of rows when they all have the
// same one (the common case, spared a map on every commit).
func oneApplication(rows []Row) (string, bool) {
	if len(rows) == 0 {
		return "", false
	}
	app := rows[0].Application
	for _, r := range rows[1:] {
		if r.Application != app {
			return "", false
		}
	}
	return app, true
}

// apply writes one transaction's content.
func (o *Outbox) apply(tx *wtx, lim Limits, rows []Row, pend pendingWrites, extra func(*wtx, func(string) *delta) error, d func(string) *delta) (map[string]int, error) {
	if len(rows) > 0 {
		ins := tx.st.insert
		for i := range rows {
			row := &rows[i]
			body := row.Body
			if body == nil {
				body = []byte{}
			}
			res, err := tx.exec(ins, row.Application, row.Kind, row.AppEUI[:], row.DevEUI[:], body, o.stamps.store(row.EnqueuedAt))
			if err != nil {
				return nil, fmt.Errorf("cache: outbox insert %s: %w", row.Application, err)
			}
			if row.ID, err = res.LastInsertId(); err != nil {
				return nil, fmt.Errorf("cache: outbox insert id: %w", err)
			}
			x := d(row.Application)
			x.rows++
			x.bytes += int64(len(row.Body))
		}
	}
	if err := o.applyDeletes(tx, pend.deletes, d); err != nil {
		return nil, err
	}
	if len(pend.failures) > 0 {
		for _, f := range pend.failures {
			if _, err := tx.exec(tx.st.fail, o.stamps.store(f.next), f.id); err != nil {
				return nil, fmt.Errorf("cache: outbox failure %d: %w", f.id, err)
			}
		}
	}
	if extra != nil {
		if err := extra(tx, d); err != nil {
			return nil, err
		}
	}
	// Caps: drop the oldest rows of each application over its limit (the byte
	// cap lowered to what the file system allows, space.go).
	o.mu.Lock()
	type over struct {
		app   string
		rows  int
		bytes int64
	}
	var overs []over
	check := func(app string, x *delta) {
		s := o.app(app)
		rs, bs := s.Rows+x.rows, s.Bytes+x.bytes
		if rs > lim.MaxRows || bs > lim.MaxBytes {
			overs = append(overs, over{app, rs, bs})
		}
	}
	if app, ok := oneApplication(rows); ok {
		check(app, d(app))
	} else {
		for app, x := range d2list(rows, d) {
			check(app, x)
		}
	}
	o.mu.Unlock()
	var droppedBy map[string]int
	for _, ov := range overs {
		n, b, last, err := o.dropOldest(tx, lim, ov.app, ov.rows, ov.bytes)
		if err != nil {
			return nil, err
		}
		x := d(ov.app)
		x.rows -= n
		x.bytes -= b
		x.dropped += int64(n)
		x.floor = max(x.floor, last)
		if droppedBy == nil {
			droppedBy = map[string]int{}
		}
		droppedBy[ov.app] = n
	}
	return droppedBy, nil
}

// d2list returns the deltas of the applications rows were appended to.
func d2list(rows []Row, d func(string) *delta) map[string]*delta {
	out := map[string]*delta{}
	for _, r := range rows {
		if _, ok := out[r.Application]; !ok {
			out[r.Application] = d(r.Application)
		}
	}
	return out
}

// applyDeletes removes forgotten rows: runs of consecutive IDs of one
// application with one statement each.
func (o *Outbox) applyDeletes(tx *wtx, dels map[int64]pendingDelete, d func(string) *delta) error {
	if len(dels) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(dels))
	for id := range dels {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i := 0; i < len(ids); {
		app := dels[ids[i]].app
		j := i + 1
		for j < len(ids) && ids[j] == ids[j-1]+1 && dels[ids[j]].app == app {
			j++
		}
		run := ids[i:j]
		i = j
		res, err := tx.exec(tx.st.delRange, run[0], run[len(run)-1], app)
		if err != nil {
			return fmt.Errorf("cache: outbox delete: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("cache: outbox delete: %w", err)
		}
		// Rows already gone (forgotten twice, or never stored) are not counted:
		// n rows of the run went now.
		x := d(app)
		for _, id := range run[:min(int(n), len(run))] {
			p := dels[id]
			x.rows--
			x.bytes -= p.bytes
			if p.dead {
				x.deadLettered++
			}
		}
	}
	return nil
}

// counters adds the transaction's dropped and dead-lettered counts.
func (o *Outbox) counters(tx *wtx, deltas map[string]*delta) error {
	for app, x := range deltas {
		for _, c := range [...]struct {
			name string
			v    int64
		}{{"dropped", x.dropped}, {"dead_lettered", x.deadLettered}} {
			if c.v == 0 {
				continue
			}
			if _, err := tx.exec(tx.st.counter, app, c.name, c.v); err != nil {
				return fmt.Errorf("cache: outbox counters: %w", err)
			}
		}
	}
	return nil
}

// dropOldest deletes the oldest rows of app until it is within the caps and
// returns how many rows and bytes went and the last ID dropped.
func (o *Outbox) dropOldest(tx *wtx, lim Limits, app string, rows int, bytes int64) (int, int64, int64, error) {
	var n int
	var last, freed int64
	over := func() bool { return rows-n > lim.MaxRows || bytes-freed > lim.MaxBytes }
	if !over() {
		return 0, 0, 0, nil
	}
	err := tx.query(tx.st.capScan, func(v []driver.Value) (bool, error) {
		n++
		last = int64Of(v[0])
		freed += int64Of(v[1])
		return over(), nil
	}, app)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cache: outbox cap %s: %w", app, err)
	}
	if n == 0 {
		return 0, 0, 0, nil
	}
	if _, err := tx.exec(tx.st.capDrop, app, last); err != nil {
		return 0, 0, 0, fmt.Errorf("cache: outbox cap %s: %w", app, err)
	}
	return n, freed, last, nil
}

// Feed hands one application its rows in order. Rows committed by Append
// are pushed to it in memory at commit time; it reads the database only
// while cold: when created (start-up), after Rewind, and after its window of
// DefaultWindow rows overflowed (the database stays the queue of record, so
// memory stays bounded). A feed outlives rebuilds of its application.
type Feed struct {
	o      *Outbox
	app    string
	window int
	wake   chan struct{}

	mu    sync.Mutex
	mem   []Row // committed, not yet taken, oldest first
	cold  bool  // rows after taken may exist only in the database
	taken int64 // the last row handed out
	hi    int64 // the highest ID the feed knows (taken or in mem)
}

// Feed returns the feed of an application (created cold on first use).
func (o *Outbox) Feed(app string) *Feed {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.feeds[app]
	if f == nil {
		f = &Feed{o: o, app: app, window: o.window, wake: make(chan struct{}, 1), cold: true}
		o.feeds[app] = f
	}
	return f
}

// Wake receives a value when rows were pushed to the feed (or it went cold).
func (f *Feed) Wake() <-chan struct{} { return f.wake }

// Notify wakes the feed's reader (pushes already do).
func (f *Feed) Notify() { f.signal() }

func (f *Feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Take returns up to n rows after the last one taken, oldest first; none
// when nothing is queued.
func (f *Feed) Take(ctx context.Context, n int) ([]Row, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.cold {
		k := min(n, len(f.mem))
		if k == 0 {
			return nil, nil
		}
		out := make([]Row, k)
		copy(out, f.mem[:k])
		rest := copy(f.mem, f.mem[k:])
		clear(f.mem[rest:])
		f.mem = f.mem[:rest]
		f.taken = out[k-1].ID
		return out, nil
	}
	// Cold: read the database under f.mu, so a commit's push waits and then
	// skips what this read already saw.
	rows, err := f.o.Peek(ctx, f.app, f.taken, n)
	if err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		f.taken = rows[len(rows)-1].ID
	}
	f.hi = max(f.hi, f.taken)
	if len(rows) < n {
		f.cold = false // the database is read to its end: pushes carry on
	}
	return rows, nil
}

// Rewind makes the next Take resume after afterID, from the database: rows
// taken but not settled (a lost connection, a rebuilt application) are
// handed out again.
func (f *Feed) Rewind(afterID int64) {
	f.mu.Lock()
	f.taken, f.hi = afterID, afterID
	f.cold = true
	clear(f.mem)
	f.mem = f.mem[:0]
	f.mu.Unlock()
	f.signal()
}

// push appends committed rows (called in commit order).
func (f *Feed) push(rows []Row) {
	f.mu.Lock()
	if f.cold {
		f.mu.Unlock()
		f.signal()
		return
	}
	for _, r := range rows {
		if r.ID <= f.hi {
			continue // already read from the database
		}
		if len(f.mem) >= f.window {
			// Overflow: the database holds the rest; read it from there.
			f.cold = true
			clear(f.mem)
			f.mem = f.mem[:0]
			break
		}
		f.mem = append(f.mem, r)
		f.hi = r.ID
	}
	f.mu.Unlock()
	f.signal()
}

// dropThrough forgets rows up to id the caps dropped.
func (f *Feed) dropThrough(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := 0
	for i < len(f.mem) && f.mem[i].ID <= id {
		i++
	}
	if i > 0 {
		rest := copy(f.mem, f.mem[i:])
		clear(f.mem[rest:])
		f.mem = f.mem[:rest]
	}
	if f.cold && f.taken < id {
		f.taken = id
	}
}
