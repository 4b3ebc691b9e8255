package cache

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/mattn/go-sqlite3"
)

// The outbox's transactions run on connections of the pool, like any other
// user's, so the connection that commits is the one that read last (the
// pool hands out the most recently returned one) and its page cache holds
// what the damage check and the salvage need (space.go). What they do not
// use is database/sql's transaction machinery: a transaction is one
// (*sql.Conn).Raw call that binds and steps statements prepared once on
// go-sqlite3's connection itself (writerStmts, BEGIN IMMEDIATE, COMMIT and
// ROLLBACK included): no SQL text parsed per commit, no sql.Tx with its
// goroutine and cancellable context, no tx.Stmt, no goroutine per statement
// watching a context, no database/sql bookkeeping per statement. Under
// qemu's ARMv5, go-sqlite3's BEGIN IMMEDIATE and COMMIT (parsed again and
// run through sqlite3_exec at every commit, inside database/sql's
// transaction) were 16 % of the CPU at 20 uplinks/s, and a
// one-row commit takes 0.67-0.69 ms of CPU instead of 1.05-1.11
// (BenchmarkOutboxCommitOne).
//
// A connection's statements are prepared the first time a transaction runs
// on it and finalized when the pool closes it (conn.Close): a database file
// replaced under the program (space.go) recycles the pool's connections, and
// the statements follow.

// conn is a connection of the pool: go-sqlite3's, with the write path's
// statements once an outbox transaction ran on it. database/sql holds the
// connection's lock around Raw's callback and around Close, so out needs no
// lock of its own.
type conn struct {
	*sqlite3.SQLiteConn
	out *writerStmts
}

// Close finalizes the write path's statements, then closes the connection
// (with a statement left unfinalized SQLite would keep the file open).
func (c *conn) Close() error {
	if c.out != nil {
		c.out.close()
		c.out = nil
	}
	return c.SQLiteConn.Close()
}

// writer runs the outbox's transactions (every one under o.wmu).
type writer struct {
	db   *DB
	nv   [6]driver.NamedValue // a statement's arguments, reused
	dest [3]driver.Value      // a query's row, reused
}

// writerStmts are the write path's statements on one connection.
type writerStmts struct {
	begin, commit, rollback                                              *sqlite3.SQLiteStmt
	insert, delRange, fail, counter, countApp, dropApp, capScan, capDrop *sqlite3.SQLiteStmt
}

// prepare compiles writerSQL on c.
func (st *writerStmts) prepare(c *sqlite3.SQLiteConn) error {
	for _, p := range writerSQL(st) {
		s, err := c.Prepare(p.q)
		if err != nil {
			st.close()
			return fmt.Errorf("cache: outbox: preparing %q: %w", p.q, err)
		}
		*p.dst = s.(*sqlite3.SQLiteStmt)
	}
	return nil
}

// close finalizes the statements.
func (st *writerStmts) close() {
	for _, p := range writerSQL(st) {
		if *p.dst != nil {
			(*p.dst).Close()
			*p.dst = nil
		}
	}
}

// wtx is a transaction in progress: valid only inside the callback of
// writer.tx.
type wtx struct {
	w  *writer
	st *writerStmts
}

// tx runs fn in one transaction on a connection of the pool: BEGIN
// IMMEDIATE, fn, COMMIT; ROLLBACK when fn or COMMIT fails. A connection left
// inside a transaction or suspect (I/O error, corrupt file) is closed rather
// than returned to the pool.
func (w *writer) tx(fn func(*wtx) error) error {
	ctx := context.Background()
	c, err := w.db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cache: outbox connection: %w", err)
	}
	defer c.Close()
	var txErr error
	err = c.Raw(func(dc any) error {
		oc, ok := dc.(*conn)
		if !ok {
			return fmt.Errorf("cache: outbox: driver connection is %T, not the cache's", dc)
		}
		if oc.out == nil {
			st := &writerStmts{}
			if err := st.prepare(oc.SQLiteConn); err != nil {
				return err
			}
			oc.out = st
		}
		t := &wtx{w: w, st: oc.out}
		if _, err := t.exec(t.st.begin); err != nil {
			txErr = fmt.Errorf("cache: outbox begin: %w", err)
		} else if err := fn(t); err != nil {
			txErr = err
		} else if _, err := t.exec(t.st.commit); err != nil {
			txErr = fmt.Errorf("cache: outbox commit: %w", err)
		}
		if txErr == nil {
			return nil
		}
		if !oc.AutoCommit() { // still inside the transaction: undo it
			if _, err := t.exec(t.st.rollback); err != nil {
				txErr = fmt.Errorf("%w (rollback: %v)", txErr, err)
			}
		}
		if !oc.AutoCommit() || connBroken(txErr) {
			return driver.ErrBadConn // database/sql closes the connection (conn.Close)
		}
		return nil
	})
	if txErr != nil {
		return txErr
	}
	if err != nil { // no transaction ran: no connection, statements not prepared
		return fmt.Errorf("cache: outbox: %w", err)
	}
	return nil
}

// connBroken reports whether err leaves a connection suspect: I/O errors, a
// file that is not (any more) a database, a bad connection.
func connBroken(err error) bool {
	if errors.Is(err, driver.ErrBadConn) {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrIoErr, sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen, sqlite3.ErrMisuse:
			return true
		}
	}
	return false
}

// exec binds args to s (no allocation of its own for them) and steps it.
func (t *wtx) exec(s *sqlite3.SQLiteStmt, args ...driver.Value) (driver.Result, error) {
	nv := t.w.nv[:len(args)]
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	res, err := s.ExecContext(context.Background(), nv)
	clear(nv)
	return res, err
}

// query runs s and calls row with each result row's values (valid during
// the call only).
func (t *wtx) query(s *sqlite3.SQLiteStmt, row func([]driver.Value) (more bool, err error), args ...driver.Value) error {
	nv := t.w.nv[:len(args)]
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	rows, err := s.QueryContext(context.Background(), nv)
	clear(nv)
	if err != nil {
		return err
	}
	dest := t.w.dest[:len(rows.Columns())]
	for {
		if err := rows.Next(dest); err != nil {
			rows.Close()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		more, err := row(dest)
		if err != nil || !more {
			rows.Close()
			return err
		}
	}
}

// int64Of reads an INTEGER column (NULL is 0).
func int64Of(v driver.Value) int64 {
	n, _ := v.(int64)
	return n
}
