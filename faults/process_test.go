//go:build faults

package faults

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// TestBrokerRestart restarts the local Mosquitto in the middle of a stream,
// without and with persistence: every message app-connect acknowledged is
// delivered; what the broker itself lost (its in-memory queue, publications
// in flight) is counted apart.
func TestBrokerRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(dir string) []string
	}{
		{"no-persistence", func(string) []string { return nil }},
		{"persistence", func(dir string) []string {
			return []string{"persistence true", "persistence_location " + dir + "/", "autosave_interval 1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, gatewayOptions{devices: 50, broker: testpeer.MosquittoOptions{MaxQueued: ptr(0), Extra: tc.extra(t.TempDir())}})
			g.sink.SetDelay(2 * time.Millisecond) // a backlog in the broker and the outbox at the restart
			g.start()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			l := g.publish(ctx, 60, 500) // 3,000 uplinks over 6 s
			time.Sleep(3 * time.Second)
			g.broker.Restart()
			restarted := time.Now()
			st := l.wait(t)
			g.waitLog("local broker connected", 2, time.Minute)
			lastUp := g.settle(3*time.Minute, 30*time.Second)
			d := g.statusDoc()
			o := g.measure(st, d.Intake.Stored)
			o.recovery = lastUp.Sub(restarted)
			result(t, o)
			if o.appLost != 0 {
				t.Fatalf("app-connect lost %d rows it had stored (stored %d, sink %+v)", o.appLost, d.Intake.Stored, g.sink.Stats())
			}
			if rows, _ := d.queueRows(); rows != 0 {
				t.Fatalf("%d rows still queued", rows)
			}
		})
	}
}

// freezeFor is how long the frozen-process case stops app-connect:
// FAULTS_FREEZE (default 20s; the form is 60s).
func freezeFor(t *testing.T) time.Duration {
	if v := os.Getenv("FAULTS_FREEZE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FAULTS_FREEZE: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// TestFrozenProcess stops app-connect with SIGSTOP under load (100
// uplinks/s into a broker with Mosquitto's default 1,000-message queue), then
// SIGCONT: the broker's queue limit decides what survives the freeze;
// app-connect recovers its connections and loses nothing it acknowledged.
func TestFrozenProcess(t *testing.T) {
	freeze := freezeFor(t)
	g := newGateway(t, gatewayOptions{devices: 20})
	g.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	perDevice := int((freeze + 10*time.Second).Seconds() * 100 / 20)
	l := g.publish(ctx, perDevice, 100)
	time.Sleep(3 * time.Second)
	before := g.statusDoc()
	g.proc.Process.Signal(syscall.SIGSTOP)
	time.Sleep(freeze)
	g.proc.Process.Signal(syscall.SIGCONT)
	resumed := time.Now()
	st := l.wait(t)
	lastUp := g.settle(3*time.Minute, 20*time.Second)
	if !g.running() {
		t.Fatalf("app-connect exited after SIGCONT:\n%s", g.logs.Tail(30))
	}
	d := g.statusDoc()
	o := g.measure(st, d.Intake.Stored)
	o.recovery = lastUp.Sub(resumed)
	o.note = "frozen " + freeze.String() + " at 100 uplinks/s, broker max_queued_messages 1000; stored before the freeze " + itoa(int(before.Intake.Stored))
	result(t, o)
	if o.appLost != 0 {
		t.Fatalf("app-connect lost %d rows it had stored", o.appLost)
	}
	// Messages published after the resume all arrive: the connections recovered.
	if miss := g.sink.Missing(g.fleet.Expected()); miss > int(freeze.Seconds()*100) {
		t.Fatalf("%d missing: more than the freeze's worth of messages", miss)
	}
	if strings.Contains(g.logs.String(), "panic") {
		t.Fatalf("panic in the log")
	}
}

// TestDatabaseVanishes deletes, truncates, replaces the database or takes
// its permissions away while app-connect runs: clear errors (one line), no
// crash loop, a working database (fresh where needed) after a restart too,
// uplinks flowing again, nothing lost.
func TestDatabaseVanishes(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, p string) {
			for _, f := range []string{p, p + "-wal", p + "-shm"} {
				os.Remove(f)
			}
		}},
		{"truncated", func(t *testing.T, p string) { os.Truncate(p, 0); os.Truncate(p+"-wal", 0) }},
		{"permissions", func(t *testing.T, p string) { // no harm to an open file, nor to root at the restart
			for _, f := range []string{p, p + "-wal", p + "-shm"} {
				os.Chmod(f, 0)
			}
		}},
		{"replaced-by-garbage", func(t *testing.T, p string) {
			os.WriteFile(p+".new", []byte(strings.Repeat("not a database ", 500)), 0o600)
			os.Rename(p+".new", p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, gatewayOptions{devices: 10})
			g.remote.down.Store(true) // rows wait in the outbox when the harm comes
			g.start()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			g.publish(ctx, 10, 200).wait(t)
			for rows, _ := g.statusDoc().queueRows(); rows < 100; rows, _ = g.statusDoc().queueRows() {
				time.Sleep(50 * time.Millisecond)
			}
			queued, _ := g.statusDoc().queueRows()
			tc.harm(t, g.db)
			harmed := time.Now()
			l := g.publish(ctx, 10, 200) // more while the file is gone
			l.wait(t)
			g.remote.down.Store(false)
			// Running on: the rows already queued are delivered from the open file.
			time.Sleep(5 * time.Second)
			alive := g.running()
			// And a restart on the harmed path gets a working database.
			g.stop()
			g.start()
			l2 := g.publish(ctx, 5, 200)
			st := l2.wait(t)
			lastUp := g.settle(2*time.Minute, 20*time.Second)
			d := g.statusDoc()
			o := g.measure(st, d.Intake.Stored)
			o.published = 25 * 10
			o.recovery = lastUp.Sub(harmed)
			aside, _ := filepath.Glob(g.db + ".*-2*")
			o.note = "queued at the harm " + itoa(queued) + ", alive after " + map[bool]string{true: "yes", false: "NO"}[alive] +
				", files moved aside " + itoa(len(aside)) + ", noticed while running: " + map[bool]string{true: "yes", false: "no"}[strings.Contains(g.logs.String(), "while running")]
			result(t, o)
			for _, line := range strings.Split(g.logs.String(), "\n") {
				if strings.Contains(line, "level=ERROR") && strings.Contains(line, "database") {
					t.Logf("log: %s", line)
				}
			}
			if !alive {
				t.Fatalf("app-connect exited after the database was %s:\n%s", tc.name, g.logs.Tail(30))
			}
			if !g.running() {
				t.Fatalf("app-connect not running after the restart:\n%s", g.logs.Tail(30))
			}
			if tc.name != "truncated" && o.lost != 0 {
				t.Fatalf("lost %d uplinks with the database %s:\n%s", o.lost, tc.name, g.logs.Tail(40))
			}
			// Once, while running; a truncation SQLite rewrote over before the
			// check saw it is found by the next start's check instead.
			n := strings.Count(g.logs.String(), "while running")
			atStart := strings.Count(g.logs.String(), "database unusable, moved aside")
			switch {
			case tc.name == "permissions":
				if n != 0 || atStart != 0 {
					t.Errorf("permissions taken for a vanished database:\n%s", g.logs.Tail(40))
				}
			case n > 1 || (n == 0 && (tc.name != "truncated" || atStart != 1)):
				t.Errorf("the harm logged %d times while running and %d at the start:\n%s", n, atStart, g.logs.Tail(40))
			}
		})
	}
}
