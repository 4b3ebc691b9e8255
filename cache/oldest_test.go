package cache

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestOldestQueued(t *testing.T) {
	ctx := context.Background()
	ob := newOutbox(t, openTest(t, filepath.Join(t.TempDir(), "q.db")), Limits{MaxRows: 100, MaxBytes: 1 << 20})
	if _, ok, err := ob.OldestQueued(ctx, "a"); ok || err != nil {
		t.Fatalf("empty outbox: %v %v", ok, err)
	}
	first := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rows := rowsFor("a", 0, 3)
	for i := range rows {
		rows[i].EnqueuedAt = first.Add(time.Duration(i) * time.Minute)
	}
	if _, err := ob.Append(ctx, rows); err != nil {
		t.Fatal(err)
	}
	at, ok, err := ob.OldestQueued(ctx, "a")
	if err != nil || !ok || !at.Equal(first) {
		t.Fatalf("oldest = %v %v %v, want %v", at, ok, err, first)
	}
	head, err := ob.Peek(ctx, "a", 0, 1)
	if err != nil || len(head) != 1 {
		t.Fatal(head, err)
	}
	ob.Delete(head)
	if err := ob.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if at, _, _ := ob.OldestQueued(ctx, "a"); !at.Equal(first.Add(time.Minute)) {
		t.Fatalf("after deleting the head: %v", at)
	}
	if _, ok, _ := ob.OldestQueued(ctx, "b"); ok {
		t.Fatal("another application's rows counted")
	}
}
