package cache

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

func TestEUI64TextForm(t *testing.T) {
	want := EUI64{0x16, 0xea, 0x76, 0xf6, 0xab, 0x66, 0x3d, 0x80}
	for _, in := range []string{"16-ea-76-f6-ab-66-3d-80", "16-EA-76-F6-AB-66-3D-80", "16ea76f6ab663d80", "16:ea:76:f6:ab:66:3d:80"} {
		e, err := ParseEUI64(in)
		if err != nil || e != want {
			t.Errorf("ParseEUI64(%q) = %v, %v", in, e, err)
		}
	}
	if s := want.String(); s != "16-ea-76-f6-ab-66-3d-80" {
		t.Errorf("String %q", s)
	}
	if b, _ := want.AppendText([]byte("x/")); string(b) != "x/16-ea-76-f6-ab-66-3d-80" {
		t.Errorf("AppendText %q", b)
	}
	for _, bad := range []string{"", "16-ea-76-f6-ab-66-3d", "16-ea-76-f6-ab-66-3d-80-00", "16-ea-76-f6-ab-66-3d-8g", "-16ea76f6ab663d80", "1-6ea76f6ab663d80", "16ea76f6ab663d80-"} {
		if _, err := ParseEUI64(bad); err == nil {
			t.Errorf("ParseEUI64(%q) accepted", bad)
		}
	}
}

func FuzzEUI64Text(f *testing.F) {
	for _, s := range []string{"16-ea-76-f6-ab-66-3d-80", "16ea76f6ab663d80", "ff:ff:ff:ff:ff:ff:ff:ff", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEUI64(s)
		if err != nil {
			return
		}
		back, err := ParseEUI64(e.String())
		if err != nil || back != e {
			t.Fatalf("%q → %q → %v, %v", s, e.String(), back, err)
		}
	})
}

// A gateway upgraded with a backlog queued by the previous version (schema
// 2, rows with an HTTP path as target) delivers it unchanged: every row gets
// the AppEUI and DevEUI of its target, from which the path is derived again
// byte for byte, in the same order, with the same IDs; new rows continue
// after them.
func TestOutboxMigrationKeepsQueuedRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	raw, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	old := []struct{ app, kind, target, body string }{
		{"ff-ff-ff-ff-ff-ff-ff-ff", "up", "/api/v1/lorawan/16-ea-76-f6-ab-66-3d-80/00-00-00-00-00-00-00-01/up", `{"fcnt":1}`},
		{"ff-ff-ff-ff-ff-ff-ff-ff", "joined", "/api/v1/lorawan/16-ea-76-f6-ab-66-3d-80/00-00-00-00-00-00-00-02/joined", `{"deveui":"00-00-00-00-00-00-00-02"}`},
		{"8b-6c-f0-8e-ee-df-1b-b6", "moved", "/api/v1/lorawan/8b-6c-f0-8e-ee-df-1b-b6/a0-b1-c2-d3-e4-f5-06-17/moved", `{}`},
		{"ff-ff-ff-ff-ff-ff-ff-ff", "up", "/api/v1/lorawan/16-ea-76-f6-ab-66-3d-80/00-00-00-00-00-00-00-01/up", `{"fcnt":2}`},
	}
	stmts := []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}
	for i, m := range migrations[:2] {
		stmts = append(stmts, m, `INSERT INTO schema_version (version) VALUES (`+string(rune('1'+i))+`)`)
	}
	for _, q := range stmts {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, r := range old {
		if _, err := raw.ExecContext(ctx, `INSERT INTO outbox (application, kind, target, body, enqueued_at) VALUES (?, ?, ?, ?, 1)`,
			r.app, r.kind, r.target, []byte(r.body)); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db := openTest(t, path)
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	ob := newOutbox(t, db, Limits{MaxRows: 100, MaxBytes: 1 << 20})
	var got []Row
	for _, app := range []string{"ff-ff-ff-ff-ff-ff-ff-ff", "8b-6c-f0-8e-ee-df-1b-b6"} {
		rows, err := ob.Peek(ctx, app, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rows...)
	}
	order := []int{0, 1, 3, 2} // by application, then ID
	if len(got) != len(old) {
		t.Fatalf("%d rows after the migration, want %d", len(got), len(old))
	}
	for i, r := range got {
		w := old[order[i]]
		path := "/api/v1/lorawan/" + r.AppEUI.String() + "/" + r.DevEUI.String() + "/" + r.Kind
		if r.ID != int64(order[i]+1) || r.Application != w.app || r.Kind != w.kind || path != w.target || string(r.Body) != w.body {
			t.Errorf("row %d: %+v (path %s), want %+v", i, r, path, w)
		}
	}
	dev, _ := ParseEUI64("00-00-00-00-00-00-00-03")
	if _, err := ob.Append(ctx, []Row{{Application: "8b-6c-f0-8e-ee-df-1b-b6", Kind: "up", AppEUI: got[3].AppEUI, DevEUI: dev, Body: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	rows, err := ob.Peek(ctx, "8b-6c-f0-8e-ee-df-1b-b6", 3, 10)
	if err != nil || len(rows) != 1 || rows[0].ID != 5 || rows[0].DevEUI != dev || rows[0].AppEUI != got[3].AppEUI {
		t.Fatalf("a new row after the migration: %+v, %v", rows, err)
	}
}
