package cache

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestJoinAttemptsRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "joins.db")
	db := openTest(t, path)
	t0 := time.UnixMilli(1_700_000_000_123)
	in := []JoinAttempt{
		{Time: t0, MessageType: "JoinReq", DevEUI: "AABBCCDDEEFF0011", JoinEUI: "0011223300000001", JoinServer: "fallback/js",
			Result: "Success", Latency: 42 * time.Millisecond, SessionKeyID: []byte("ac-local:0123456789abcdef"), SessionKeyIDLocal: true},
		{Time: t0.Add(time.Second), MessageType: "JoinReq", DevEUI: "AABBCCDDEEFF0012", JoinEUI: "0011223300000001",
			Result: "no_route", Latency: time.Millisecond},
		{Time: t0.Add(2 * time.Second), MessageType: "HomeNSReq", DevEUI: "AABBCCDDEEFF0013", JoinEUI: "EC656E0000000001",
			JoinServer: "tti/ns-js", Result: "UnknownDevEUI", Latency: 1500 * time.Millisecond, SessionKeyID: []byte{1, 2, 3}},
	}
	for _, a := range in {
		if err := db.RecordJoinAttempt(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	// Read back from the file by a new handle: the rows are durable.
	db = openTest(t, path)
	got, err := db.JoinAttempts(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("got %d attempts, want %d", len(got), len(in))
	}
	for i, g := range got {
		w := in[len(in)-1-i] // newest first
		if g.ID == 0 || !g.Time.Equal(w.Time) || g.MessageType != w.MessageType || g.DevEUI != w.DevEUI || g.JoinEUI != w.JoinEUI ||
			g.JoinServer != w.JoinServer || g.Result != w.Result || g.Latency != w.Latency ||
			!bytes.Equal(g.SessionKeyID, w.SessionKeyID) || g.SessionKeyIDLocal != w.SessionKeyIDLocal {
			t.Errorf("attempt %d = %+v, want %+v", i, g, w)
		}
	}
	if got[0].ID <= got[1].ID {
		t.Errorf("ids not newest first: %d, %d", got[0].ID, got[1].ID)
	}
	if got[1].SessionKeyID != nil {
		t.Errorf("absent session key id read back as %v", got[1].SessionKeyID)
	}
	two, err := db.JoinAttempts(ctx, 2)
	if err != nil || len(two) != 2 || two[0].DevEUI != "AABBCCDDEEFF0013" {
		t.Fatalf("limit 2: %+v, %v", two, err)
	}
}

func TestJoinAttemptsRetention(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "joins.db"))
	const keep = 5
	for i := range 12 {
		a := JoinAttempt{Time: time.Now(), MessageType: "JoinReq", DevEUI: fmt.Sprintf("00000000000000%02X", i), Result: "Success"}
		if err := db.recordJoinAttempt(ctx, a, keep); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.JoinAttempts(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != keep {
		t.Fatalf("%d rows kept, want %d", len(got), keep)
	}
	for i, a := range got {
		if want := fmt.Sprintf("00000000000000%02X", 11-i); a.DevEUI != want {
			t.Errorf("row %d: %s, want %s (newest kept)", i, a.DevEUI, want)
		}
	}
	var n int
	if err := db.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM join_attempts`).Scan(&n); err != nil || n != keep {
		t.Fatalf("table holds %d rows (%v), want %d", n, err, keep)
	}
}

// Concurrent recorders (the proxy records from each request's goroutine) and
// the public bound.
func TestJoinAttemptsConcurrent(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "joins.db"))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			errs <- db.RecordJoinAttempt(ctx, JoinAttempt{Time: time.Now(), MessageType: "JoinReq", DevEUI: fmt.Sprintf("%016X", i), Result: "Success"})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.JoinAttempts(ctx, 0)
	if err != nil || len(got) != 40 {
		t.Fatalf("%d attempts, %v", len(got), err)
	}
}

// A database created by the first release (schema 1) gains the table and
// keeps its rows.
func TestJoinAttemptsMigrationFromV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO devices (deveui, appeui, last_seen) VALUES ('0000000000000001', '0000000000000002', 1)`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	db := openTest(t, path)
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	if devs, err := db.Devices(ctx); err != nil || len(devs) != 1 {
		t.Fatalf("devices after migration: %+v, %v", devs, err)
	}
	if err := db.RecordJoinAttempt(ctx, JoinAttempt{Time: time.Now(), MessageType: "JoinReq", DevEUI: "0000000000000001", Result: "Success"}); err != nil {
		t.Fatal(err)
	}
}
