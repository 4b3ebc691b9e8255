package cache

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/mattn/go-sqlite3"
)

// writer is the outbox's own connection to the database, held for the life
// of the Outbox (every transaction runs under o.wmu). Every statement of the
// write path, BEGIN IMMEDIATE, COMMIT and ROLLBACK included, is prepared once
// on it, on go-sqlite3's connection itself (writerStmts): a group is then one
// (*sql.Conn).Raw call that binds and steps those statements, with no
// sql.Tx, no tx.Stmt, no database/sql bookkeeping per statement and no SQL
// text parsed per commit. The driver connection and its statements are
// touched only inside Raw's callback, where database/sql holds the
// connection's lock. Against the same statements prepared on the *sql.Conn
// (BenchmarkWriterPath) this saves database/sql's lock, argument conversion
// and result per statement: 4 allocations and about 1 µs of x86 CPU per
// insert-and-delete pair; in a one-row commit SQLite's COMMIT dominates and
// the difference is within the noise.
//
// The connection comes from the pool (it counts in its MaxOpenConns; the
// readers share the rest) and opens with the same settings (WAL, busy
// timeout, BEGIN IMMEDIATE's lock, the WAL bounds). Only the writer writes
// the outbox; the other writers (devices, applications, join attempts,
// migrations) take the write lock on pool connections, and the busy timeout
// serialises them with it. A writer whose connection went bad (a failed
// ROLLBACK left it inside a transaction, an I/O error, a database file
// replaced under the program: space.go) is closed and the next transaction
// takes a new connection and prepares its statements again.
type writer struct {
	db   *DB
	conn *sql.Conn // nil: none held; the next transaction opens one
	st   writerStmts
	nv   [6]driver.NamedValue // a statement's arguments, reused
	dest [3]driver.Value      // a query's row, reused
}

// writerStmts are the write path's statements on the writer's connection.
type writerStmts struct {
	begin, commit, rollback                                              *sqlite3.SQLiteStmt
	insert, delRange, fail, counter, countApp, dropApp, capScan, capDrop *sqlite3.SQLiteStmt
}

// wtx is the writer's transaction in progress: valid only inside the
// callback of writer.tx.
type wtx struct{ w *writer }

// open takes a connection from the pool and prepares the statements on it.
func (w *writer) open(ctx context.Context) error {
	c, err := w.db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cache: outbox writer connection: %w", err)
	}
	err = c.Raw(func(dc any) error {
		sc, ok := dc.(*sqlite3.SQLiteConn)
		if !ok {
			return fmt.Errorf("cache: outbox writer: driver connection is %T, not go-sqlite3's", dc)
		}
		for _, p := range writerSQL(&w.st) {
			s, err := sc.Prepare(p.q)
			if err != nil {
				w.closeStmts()
				return fmt.Errorf("cache: outbox: preparing %q: %w", p.q, err)
			}
			*p.dst = s.(*sqlite3.SQLiteStmt)
		}
		return nil
	})
	if err != nil {
		c.Close()
		return err
	}
	w.conn = c
	return nil
}

// closeStmts finalizes the statements (inside Raw's callback).
func (w *writer) closeStmts() {
	for _, p := range writerSQL(&w.st) {
		if *p.dst != nil {
			(*p.dst).Close()
			*p.dst = nil
		}
	}
}

// close finalizes the statements and gives the connection back to the pool.
func (w *writer) close() {
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { w.closeStmts(); return nil })
	w.conn.Close()
	w.conn = nil
}

// discard finalizes the statements and closes the connection for good (it
// does not go back to the pool): the next transaction opens a new one.
func (w *writer) discard() {
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { w.closeStmts(); return driver.ErrBadConn })
	w.conn.Close()
	w.conn = nil
}

// tx runs fn in one transaction on the writer's connection (opened first if
// none is held): BEGIN IMMEDIATE, fn, COMMIT; ROLLBACK when fn or COMMIT
// fails. A connection left unusable is discarded.
func (w *writer) tx(fn func(*wtx) error) error {
	if w.conn == nil {
		if err := w.open(context.Background()); err != nil {
			return err
		}
	}
	var txErr error
	bad := false
	err := w.conn.Raw(func(dc any) error {
		sc := dc.(*sqlite3.SQLiteConn)
		t := &wtx{w}
		if _, err := t.exec(w.st.begin); err != nil {
			txErr = fmt.Errorf("cache: outbox begin: %w", err)
		} else if err := fn(t); err != nil {
			txErr = err
		} else if _, err := t.exec(w.st.commit); err != nil {
			txErr = fmt.Errorf("cache: outbox commit: %w", err)
		}
		if txErr == nil {
			return nil
		}
		if !sc.AutoCommit() { // still inside the transaction: undo it
			if _, err := t.exec(w.st.rollback); err != nil {
				txErr = fmt.Errorf("%w (rollback: %v)", txErr, err)
			}
		}
		if !sc.AutoCommit() || connBroken(txErr) {
			bad = true
			w.closeStmts()
			return driver.ErrBadConn // database/sql closes the connection
		}
		return nil
	})
	if bad {
		w.conn.Close()
		w.conn = nil
		return txErr
	}
	if txErr != nil {
		return txErr
	}
	if err != nil { // the connection itself failed (closed database, bad connection)
		w.discard()
		return fmt.Errorf("cache: outbox writer: %w", err)
	}
	return nil
}

// connBroken reports whether err leaves the writer's connection suspect:
// I/O errors, a file that is not (any more) a database, a bad connection.
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
