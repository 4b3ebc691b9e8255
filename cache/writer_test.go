package cache

import (
	"context"
	"testing"
)

// writerExec runs q on the writer's connection (per-connection settings
// and temporary triggers the outbox's transactions must see).
func (o *Outbox) writerExec(t testing.TB, q string) {
	t.Helper()
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.w.conn == nil {
		if err := o.w.open(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.w.conn.ExecContext(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
