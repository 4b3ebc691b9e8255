package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Device is what the program remembers of an end device.
type Device struct {
	DevEUI   string
	AppEUI   string
	JoinEUI  string
	LastSeen time.Time
}

// PutDevices upserts devices in one transaction.
func (db *DB) PutDevices(ctx context.Context, devs []Device) error {
	if len(devs) == 0 {
		return nil
	}
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cache: devices: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO devices (deveui, appeui, joineui, last_seen) VALUES (?, ?, ?, ?)
		ON CONFLICT (deveui) DO UPDATE SET appeui = excluded.appeui,
			joineui = CASE WHEN excluded.joineui = '' THEN devices.joineui ELSE excluded.joineui END,
			last_seen = MAX(devices.last_seen, excluded.last_seen)`)
	if err != nil {
		return fmt.Errorf("cache: devices: %w", err)
	}
	defer st.Close()
	for _, d := range devs {
		if _, err := st.ExecContext(ctx, d.DevEUI, d.AppEUI, d.JoinEUI, d.LastSeen.UnixMilli()); err != nil {
			return fmt.Errorf("cache: device %s: %w", d.DevEUI, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cache: devices: %w", err)
	}
	return nil
}

// Devices lists every known device.
func (db *DB) Devices(ctx context.Context) ([]Device, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT deveui, appeui, joineui, last_seen FROM devices ORDER BY deveui`)
	if err != nil {
		return nil, fmt.Errorf("cache: devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		var ls int64
		if err := rows.Scan(&d.DevEUI, &d.AppEUI, &d.JoinEUI, &ls); err != nil {
			return nil, fmt.Errorf("cache: devices: %w", err)
		}
		d.LastSeen = time.UnixMilli(ls)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Application is cached information about a remote application: the
// defaultApp snapshot or a Lens appnet, as the JSON it came in.
type Application struct {
	EUI       string
	Source    string // "default" or "appnet"
	Info      []byte
	UpdatedAt time.Time
}

// PutApplication stores (or replaces) an application's info.
func (db *DB) PutApplication(ctx context.Context, a Application) error {
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = time.Now()
	}
	_, err := db.sql.ExecContext(ctx, `INSERT INTO applications (eui, source, info, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (eui) DO UPDATE SET source = excluded.source, info = excluded.info, updated_at = excluded.updated_at`,
		a.EUI, a.Source, a.Info, a.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("cache: application %s: %w", a.EUI, err)
	}
	return nil
}

// GetApplication returns the cached application, ok false when unknown.
func (db *DB) GetApplication(ctx context.Context, eui string) (a Application, ok bool, err error) {
	var ts int64
	err = db.sql.QueryRowContext(ctx, `SELECT eui, source, info, updated_at FROM applications WHERE eui = ?`, eui).
		Scan(&a.EUI, &a.Source, &a.Info, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("cache: application %s: %w", eui, err)
	}
	a.UpdatedAt = time.UnixMilli(ts)
	return a, true, nil
}

// DeleteApplication forgets an application's info (its queued rows stay).
func (db *DB) DeleteApplication(ctx context.Context, eui string) error {
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM applications WHERE eui = ?`, eui); err != nil {
		return fmt.Errorf("cache: application %s: %w", eui, err)
	}
	return nil
}

// SelfTest exercises the database end to end (create, migrate, append, peek,
// delete) in a fresh file at path; the ARM builds run it under qemu.
func SelfTest(ctx context.Context, path string) error {
	db, err := Open(ctx, path, Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := db.NewOutbox(ctx, Limits{MaxRows: 10, MaxBytes: 1 << 20})
	if err != nil {
		return err
	}
	defer ob.Close()
	rows := []Row{{Application: "app", Kind: "up", Body: []byte(`{"a":1}`)}, {Application: "app", Kind: "up", Body: []byte(`{"a":2}`)}}
	if _, err := ob.Append(ctx, rows); err != nil {
		return err
	}
	if runtime.GOOS == "linux" && (db.wal == nil || db.wal.syncs() == 0) {
		return errors.New("cache: self-test: the commit was not synced by the WAL syncer thread")
	}
	got, err := ob.Peek(ctx, "app", 0, 10)
	if err != nil {
		return err
	}
	if len(got) != 2 || string(got[1].Body) != `{"a":2}` {
		return fmt.Errorf("cache: self-test: peek returned %d rows", len(got))
	}
	ob.Delete(got)
	if err := ob.Sync(ctx); err != nil {
		return err
	}
	if s := ob.Stats("app"); s.Rows != 0 {
		return fmt.Errorf("cache: self-test: %d rows left after delete", s.Rows)
	}
	return nil
}

// DeviceAppEUI returns a known device's AppEUI.
func (db *DB) DeviceAppEUI(ctx context.Context, devEUI string) (string, bool, error) {
	var app string
	err := db.sql.QueryRowContext(ctx, `SELECT appeui FROM devices WHERE deveui = ?`, devEUI).Scan(&app)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("cache: device %s: %w", devEUI, err)
	}
	return app, true, nil
}
