//go:build faults

package faults

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

func ptr[T any](v T) *T { return &v }

// TestFlashFull: the database on a 6 MiB file system, the remote down, rows
// queued, then another program fills the file system. app-connect stops
// acknowledging (the broker, queue unlimited, keeps the messages), says so in
// /status, AppInfo and the log once, and when the remote comes back — the
// file system still full — deletes the delivered rows, reuses their space and
// takes the broker's messages again: nothing lost, the database intact.
func TestFlashFull(t *testing.T) {
	flash := mountTmpfs(t, 6<<20)
	g := newGateway(t, gatewayOptions{devices: 20, dbDir: flash, broker: testpeer.MosquittoOptions{MaxQueued: ptr(0)}})
	g.remote.down.Store(true)
	g.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// 200 uplinks queue in the outbox while the remote is down.
	l := g.publish(ctx, 10, 500)
	l.wait(t)
	for deadline := time.Now().Add(time.Minute); ; {
		if rows, _ := g.statusDoc().queueRows(); rows >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows not queued: %+v\n%s", g.statusDoc(), g.logs.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Something else fills the flash.
	filler := fill(t, filepath.Join(flash, "other-program.log"))
	l = g.publish(ctx, 50, 500) // 1,000 more: refused, kept by the broker
	l.wait(t)
	full := time.Now()
	for g.statusDoc().Storage.State != "full" {
		if time.Since(full) > time.Minute {
			t.Fatalf("storage never reported full: %+v\n%s", g.statusDoc().Storage, g.logs.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // retries go on: still one log line
	st := g.statusDoc()
	if n := strings.Count(g.logs.String(), "database file system full"); n != 1 {
		t.Errorf("full logged %d times, want once:\n%s", n, g.logs.Tail(40))
	}
	if n := strings.Count(g.logs.String(), "outbox commit failed"); n > 1 {
		t.Errorf("commit failure logged %d times, want at most once", n)
	}
	if st.Intake.Stored >= st.Local.EventsReceived {
		t.Errorf("everything received was stored (%d of %d) on a full file system", st.Intake.Stored, st.Local.EventsReceived)
	}
	g.waitAppInfo("storage full", 15*time.Second)

	// The remote comes back; the other program's file stays.
	var fs syscall.Statfs_t
	syscall.Statfs(flash, &fs)
	freeAtRecovery := int64(fs.Bavail) * int64(fs.Bsize)
	back := time.Now()
	g.remote.down.Store(false)
	lastUp := g.settle(5*time.Minute, 60*time.Second)
	o := g.measure(l.stats, g.statusDoc().Intake.Stored)
	o.published = 60 * 20
	o.recovery = lastUp.Sub(back)
	st = g.statusDoc()
	rows, dropped := st.queueRows()
	o.dropped = dropped
	o.note = "filler " + human(filler) + ", free at recovery " + human(freeAtRecovery) + ", state after: " + st.Storage.State
	result(t, o)
	if o.lost != 0 || rows != 0 {
		t.Fatalf("lost %d, %d rows still queued; storage %+v\n%s", o.lost, rows, st.Storage, g.logs.Tail(40))
	}
	if !strings.Contains(g.logs.String(), "database accepting new rows again") {
		t.Errorf("no recovery log line")
	}
	g.stop()
	checkIntegrity(t, g.db)
}

// TestFlashOutboxAlone: default settings, the database alone on a 4 MiB file
// system, the remote down and 20,000 uplinks: the caps follow statfs, the
// oldest rows are dropped and counted, and the file system never fills.
func TestFlashOutboxAlone(t *testing.T) {
	flash := mountTmpfs(t, 4<<20)
	g := newGateway(t, gatewayOptions{devices: 100, dbDir: flash, broker: testpeer.MosquittoOptions{MaxQueued: ptr(0)}})
	g.remote.down.Store(true)
	g.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l := g.publish(ctx, 200, 2000)
	st := l.wait(t)
	var minFree int64 = 1 << 62
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var fs syscall.Statfs_t
		syscall.Statfs(flash, &fs)
		minFree = min(minFree, int64(fs.Bavail)*int64(fs.Bsize))
		d := g.statusDoc()
		if d.Local.EventsReceived >= uint64(st.Uplinks+st.Joined) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("intake stalled: %+v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d := g.statusDoc()
	rows, dropped := d.queueRows()
	result(t, outcome{published: st.Uplinks, dropped: dropped,
		note: "remote down throughout: " + itoa(rows) + " rows kept, lowest free space " + human(minFree) + " of 4 MiB, cap " + human(d.Storage.CapBytes) + ", storage " + d.Storage.State})
	if d.Storage.State == "full" || minFree < 256<<10 {
		t.Fatalf("the outbox alone filled the file system: %+v, lowest free %d", d.Storage, minFree)
	}
	if dropped == 0 {
		t.Fatalf("nothing dropped: the file-system cap did not apply (%+v)", d.Storage)
	}
	g.stop()
	checkIntegrity(t, g.db)
}

func (g *gateway) waitAppInfo(want string, timeout time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(g.appInfo(), want) {
		if time.Now().After(deadline) {
			g.t.Errorf("AppInfo %q lacks %q", g.appInfo(), want)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
