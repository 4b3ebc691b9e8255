package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Row is one queued message for one remote application.
type Row struct {
	ID            int64
	Application   string // EUI of the destination application
	Kind          string // "up", "joined", "moved"
	Target        string // HTTP path or MQTT topic, relative to the application's endpoint
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
// applications. All writes go through one writer goroutine that groups every
// request waiting while the previous transaction ran into the next one, so
// synchronous=FULL costs one fsync per group, not per message.
type Outbox struct {
	db     *DB
	limits Limits
	now    func() time.Time

	reqs   chan *writeReq
	done   chan struct{}
	cmu    sync.RWMutex // guards closed against sends on the closed reqs channel
	closed bool

	mu    sync.Mutex
	stats map[string]*AppStats
}

type writeReq struct {
	appends     []Row
	deletes     []Row
	deadLetters []Row
	failures    []failure
	dropApps    []string
	droppedN    int
	errc        chan error // nil: fire and forget
	dropped     map[string]int
}

type failure struct {
	id   int64
	next time.Time
}

// ErrClosed is returned by operations on a closed Outbox.
var ErrClosed = errors.New("cache: outbox closed")

// NewOutbox loads the per-application counters and starts the writer. Close
// stops it after the requests already queued.
func (db *DB) NewOutbox(ctx context.Context, limits Limits) (*Outbox, error) {
	if limits.MaxRows <= 0 || limits.MaxBytes <= 0 {
		return nil, fmt.Errorf("cache: outbox limits must be positive, got %d rows, %d bytes", limits.MaxRows, limits.MaxBytes)
	}
	o := &Outbox{
		db:     db,
		limits: limits,
		now:    time.Now,
		reqs:   make(chan *writeReq, 256),
		done:   make(chan struct{}),
		stats:  map[string]*AppStats{},
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT application, COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox GROUP BY application`)
	if err != nil {
		return nil, fmt.Errorf("cache: outbox counts: %w", err)
	}
	for rows.Next() {
		var app string
		var n int
		var b int64
		if err := rows.Scan(&app, &n, &b); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cache: outbox counts: %w", err)
		}
		o.app(app).Rows, o.app(app).Bytes = n, b
	}
	rows.Close()
	crows, err := db.sql.QueryContext(ctx, `SELECT application, name, value FROM counters`)
	if err != nil {
		return nil, fmt.Errorf("cache: outbox counters: %w", err)
	}
	for crows.Next() {
		var app, name string
		var v int64
		if err := crows.Scan(&app, &name, &v); err != nil {
			crows.Close()
			return nil, fmt.Errorf("cache: outbox counters: %w", err)
		}
		switch name {
		case "dropped":
			o.app(app).Dropped = v
		case "dead_lettered":
			o.app(app).DeadLettered = v
		}
	}
	crows.Close()
	go o.writer()
	return o, nil
}

// app returns the stats entry of an application; o.mu must be held or the
// writer not yet started.
func (o *Outbox) app(eui string) *AppStats {
	s, ok := o.stats[eui]
	if !ok {
		s = &AppStats{}
		o.stats[eui] = s
	}
	return s
}

// Append stores rows in one transaction and returns once they are durable,
// with their IDs filled in. Rows dropped to respect the caps are reported per
// application.
func (o *Outbox) Append(ctx context.Context, rows []Row) (dropped map[string]int, err error) {
	if len(rows) == 0 {
		return nil, nil
	}
	now := o.now()
	for i := range rows {
		if rows[i].EnqueuedAt.IsZero() {
			rows[i].EnqueuedAt = now
		}
	}
	req := &writeReq{appends: rows, errc: make(chan error, 1)}
	if err := o.submit(ctx, req); err != nil {
		return nil, err
	}
	select {
	case err := <-req.errc:
		return req.dropped, err
	case <-ctx.Done():
		// The write may still commit; the caller must treat the rows as not stored
		// (the local broker redelivers them; at-least-once allows the duplicate).
		return nil, ctx.Err()
	}
}

// Delete removes delivered rows. It does not wait for the commit: a crash
// before it resends those rows, which at-least-once delivery allows.
func (o *Outbox) Delete(rows []Row) {
	if len(rows) > 0 {
		o.submitAsync(&writeReq{deletes: rows})
	}
}

// DeadLetter removes rows the remote side refused permanently and counts them.
func (o *Outbox) DeadLetter(rows []Row) {
	if len(rows) > 0 {
		o.submitAsync(&writeReq{deadLetters: rows})
	}
}

// RecordFailure counts a failed delivery attempt of a row and stores when it
// is next due.
func (o *Outbox) RecordFailure(id int64, next time.Time) {
	o.submitAsync(&writeReq{failures: []failure{{id: id, next: next}}})
}

// DropApplication deletes every queued row of app, counting them as dropped
// (an application removed from the configuration, after its grace period).
func (o *Outbox) DropApplication(ctx context.Context, app string) (int, error) {
	req := &writeReq{dropApps: []string{app}, errc: make(chan error, 1)}
	if err := o.submit(ctx, req); err != nil {
		return 0, err
	}
	select {
	case err := <-req.errc:
		return req.droppedN, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Sync waits until every request submitted before it is committed.
func (o *Outbox) Sync(ctx context.Context) error {
	req := &writeReq{errc: make(chan error, 1)}
	if err := o.submit(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-req.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *Outbox) submit(ctx context.Context, req *writeReq) error {
	o.cmu.RLock()
	defer o.cmu.RUnlock()
	if o.closed {
		return ErrClosed
	}
	select {
	case o.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *Outbox) submitAsync(req *writeReq) {
	o.cmu.RLock()
	defer o.cmu.RUnlock()
	if !o.closed { // closed: the rows stay queued for the next start
		o.reqs <- req
	}
}

// Close commits what is queued and stops the writer.
func (o *Outbox) Close() {
	o.cmu.Lock()
	if !o.closed {
		o.closed = true
		close(o.reqs)
	}
	o.cmu.Unlock()
	<-o.done
}

// Peek returns up to n rows of an application with ID > afterID, oldest first.
func (o *Outbox) Peek(ctx context.Context, app string, afterID int64, n int) ([]Row, error) {
	rows, err := o.db.sql.QueryContext(ctx,
		`SELECT id, kind, target, body, enqueued_at, attempts, next_attempt_at FROM outbox
		 WHERE application = ? AND id > ? ORDER BY id LIMIT ?`, app, afterID, n)
	if err != nil {
		o.db.space.sawError(err) // space.go: a corrupt file is replaced at the writer's next check
		return nil, fmt.Errorf("cache: peek %s: %w", app, err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r := Row{Application: app}
		var enq, next int64
		if err := rows.Scan(&r.ID, &r.Kind, &r.Target, &r.Body, &enq, &r.Attempts, &next); err != nil {
			o.db.space.sawError(err)
			return nil, fmt.Errorf("cache: peek %s: %w", app, err)
		}
		r.EnqueuedAt = time.UnixMilli(enq)
		if next > 0 {
			r.NextAttemptAt = time.UnixMilli(next)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		o.db.space.sawError(err)
		return nil, fmt.Errorf("cache: peek %s: %w", app, err)
	}
	return out, nil
}

// Stats returns the queue state of one application.
func (o *Outbox) Stats(app string) AppStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.stats[app]; ok {
		return *s
	}
	return AppStats{}
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

// maxGroup bounds one transaction so a huge backlog of requests cannot hold
// the write lock for long.
const maxGroup = 512

func (o *Outbox) writer() {
	defer close(o.done)
	for first := range o.reqs {
		group := []*writeReq{first}
	drain:
		for len(group) < maxGroup {
			select {
			case r, ok := <-o.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		errFor := o.commitGroup(group) // space.go: logs, and keeps deletes going on a full file system
		for _, r := range group {
			if r.errc != nil {
				r.errc <- errFor(r)
			}
		}
	}
}

type delta struct {
	rows         int
	bytes        int64
	dropped      int64
	deadLettered int64
}

func (o *Outbox) commit(group []*writeReq) error {
	// The writer's context is independent of callers': a commit that started
	// finishes, so the in-memory counters always match the file.
	ctx := context.Background()
	payload, apps := o.payloadBytes()
	lim := o.db.space.limits(ctx, o.limits, payload, apps) // before the transaction: it reads the file sizes
	tx, err := o.db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cache: outbox begin: %w", err)
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
	if err := o.apply(ctx, tx, group, d); err != nil {
		tx.Rollback()
		return err
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
	for app, x := range deltas {
		s := o.app(app)
		rows, bytes := s.Rows+x.rows, s.Bytes+x.bytes
		if rows > lim.MaxRows || bytes > lim.MaxBytes {
			overs = append(overs, over{app, rows, bytes})
		}
	}
	o.mu.Unlock()
	droppedBy := map[string]int{}
	for _, ov := range overs {
		n, b, err := o.dropOldest(ctx, tx, lim, ov.app, ov.rows, ov.bytes)
		if err != nil {
			tx.Rollback()
			return err
		}
		x := d(ov.app)
		x.rows -= n
		x.bytes -= b
		x.dropped += int64(n)
		droppedBy[ov.app] = n
	}
	for app, x := range deltas {
		for name, v := range map[string]int64{"dropped": x.dropped, "dead_lettered": x.deadLettered} {
			if v == 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO counters (application, name, value) VALUES (?, ?, ?)
				ON CONFLICT (application, name) DO UPDATE SET value = value + excluded.value`, app, name, v); err != nil {
				tx.Rollback()
				return fmt.Errorf("cache: outbox counters: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cache: outbox commit: %w", err)
	}
	o.mu.Lock()
	for app, x := range deltas {
		s := o.app(app)
		s.Rows += x.rows
		s.Bytes += x.bytes
		s.Dropped += x.dropped
		s.DeadLettered += x.deadLettered
	}
	o.mu.Unlock()
	for _, r := range group {
		if len(r.appends) > 0 {
			r.dropped = map[string]int{}
			for _, row := range r.appends {
				if n := droppedBy[row.Application]; n > 0 {
					r.dropped[row.Application] = n
				}
			}
		}
	}
	return nil
}

func (o *Outbox) apply(ctx context.Context, tx *sql.Tx, group []*writeReq, d func(string) *delta) error {
	var ins, del, fail *sql.Stmt
	var err error
	defer func() {
		for _, s := range []*sql.Stmt{ins, del, fail} {
			if s != nil {
				s.Close()
			}
		}
	}()
	for _, r := range group {
		for i := range r.appends {
			row := &r.appends[i]
			if ins == nil {
				if ins, err = tx.PrepareContext(ctx, `INSERT INTO outbox (application, kind, target, body, enqueued_at) VALUES (?, ?, ?, ?, ?)`); err != nil {
					return fmt.Errorf("cache: outbox insert: %w", err)
				}
			}
			body := row.Body
			if body == nil {
				body = []byte{}
			}
			res, err := ins.ExecContext(ctx, row.Application, row.Kind, row.Target, body, row.EnqueuedAt.UnixMilli())
			if err != nil {
				return fmt.Errorf("cache: outbox insert %s: %w", row.Application, err)
			}
			if row.ID, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("cache: outbox insert id: %w", err)
			}
			x := d(row.Application)
			x.rows++
			x.bytes += int64(len(row.Body))
		}
		for _, set := range []struct {
			rows []Row
			dead bool
		}{{r.deletes, false}, {r.deadLetters, true}} {
			for _, row := range set.rows {
				if del == nil {
					if del, err = tx.PrepareContext(ctx, `DELETE FROM outbox WHERE id = ? RETURNING application, LENGTH(body)`); err != nil {
						return fmt.Errorf("cache: outbox delete: %w", err)
					}
				}
				var app string
				var n int64
				err := del.QueryRowContext(ctx, row.ID).Scan(&app, &n)
				if errors.Is(err, sql.ErrNoRows) {
					continue // already dropped by the caps
				}
				if err != nil {
					return fmt.Errorf("cache: outbox delete %d: %w", row.ID, err)
				}
				x := d(app)
				x.rows--
				x.bytes -= n
				if set.dead {
					x.deadLettered++
				}
			}
		}
		for _, app := range r.dropApps {
			var n int
			var b int64
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox WHERE application = ?`, app).Scan(&n, &b); err != nil {
				return fmt.Errorf("cache: outbox drop %s: %w", app, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE application = ?`, app); err != nil {
				return fmt.Errorf("cache: outbox drop %s: %w", app, err)
			}
			x := d(app)
			x.rows -= n
			x.bytes -= b
			x.dropped += int64(n)
			r.droppedN += n
		}
		for _, f := range r.failures {
			if fail == nil {
				if fail, err = tx.PrepareContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?`); err != nil {
					return fmt.Errorf("cache: outbox failure: %w", err)
				}
			}
			if _, err := fail.ExecContext(ctx, f.next.UnixMilli(), f.id); err != nil {
				return fmt.Errorf("cache: outbox failure %d: %w", f.id, err)
			}
		}
	}
	return nil
}

// dropOldest deletes the oldest rows of app until it is within the caps and
// returns how many rows and bytes went.
func (o *Outbox) dropOldest(ctx context.Context, tx *sql.Tx, lim Limits, app string, rows int, bytes int64) (int, int64, error) {
	q, err := tx.QueryContext(ctx, `SELECT id, LENGTH(body) FROM outbox WHERE application = ? ORDER BY id`, app)
	if err != nil {
		return 0, 0, fmt.Errorf("cache: outbox cap %s: %w", app, err)
	}
	var ids []int64
	var freed int64
	for q.Next() && (rows-len(ids) > lim.MaxRows || bytes-freed > lim.MaxBytes) {
		var id, n int64
		if err := q.Scan(&id, &n); err != nil {
			q.Close()
			return 0, 0, fmt.Errorf("cache: outbox cap %s: %w", app, err)
		}
		ids = append(ids, id)
		freed += n
	}
	q.Close()
	if len(ids) == 0 {
		return 0, 0, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE application = ? AND id <= ?`, app, ids[len(ids)-1]); err != nil {
		return 0, 0, fmt.Errorf("cache: outbox cap %s: %w", app, err)
	}
	return len(ids), freed, nil
}
