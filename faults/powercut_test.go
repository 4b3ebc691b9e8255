//go:build faults

package faults

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// ext4's shutdown ioctl (EXT4_IOC_SHUTDOWN, _IOR('X', 125, __u32)) with
// EXT4_GOING_FLAGS_NOLOGFLUSH: the file system stops accepting writes at once
// and its journal is not flushed — xfstests' stand-in for a power cut.
const (
	ext4IocShutdown  = 0x8004587d
	ext4NoLogFlush   = 0x2
	powerCutImageMiB = 32
)

// blockDevice is an ext4 image on a loop device, mounted.
type blockDevice struct {
	t     *testing.T
	image string
	loop  string
	mnt   string
}

func newBlockDevice(t *testing.T) *blockDevice {
	t.Helper()
	needRoot(t, "a loop device")
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			testpeer.Missing(t, tool)
		}
	}
	dir := t.TempDir()
	b := &blockDevice{t: t, image: filepath.Join(dir, "flash.img"), mnt: filepath.Join(dir, "mnt")}
	if err := os.Truncate(b.image, powerCutImageMiB<<20); err != nil {
		f, _ := os.Create(b.image)
		f.Close()
		os.Truncate(b.image, powerCutImageMiB<<20)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", b.image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	os.MkdirAll(b.mnt, 0o755)
	b.attach()
	t.Cleanup(b.detach)
	return b
}

// attach sets up a loop device on the image and mounts it (ext4 replays its
// journal, as after a reboot).
func (b *blockDevice) attach() {
	b.t.Helper()
	out, err := exec.Command("losetup", "-f", "--show", b.image).CombinedOutput()
	if err != nil {
		notRun(b.t, err, "losetup: %v: %s", err, out)
	}
	b.loop = strings.TrimSpace(string(out))
	if err := syscall.Mount(b.loop, b.mnt, "ext4", 0, ""); err != nil {
		exec.Command("losetup", "-d", b.loop).Run()
		notRun(b.t, err, "mount ext4 on %s: %v", b.loop, err)
	}
}

func (b *blockDevice) detach() {
	if b.loop == "" {
		return
	}
	syscall.Unmount(b.mnt, 0)
	exec.Command("losetup", "-d", b.loop).Run()
	b.loop = ""
}

// cut makes the file system refuse every write from now on, its journal not
// flushed.
func (b *blockDevice) cut() {
	b.t.Helper()
	f, err := os.Open(b.mnt)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	flags := uint32(ext4NoLogFlush)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ext4IocShutdown, uintptr(unsafe.Pointer(&flags))); e != 0 {
		notRun(b.t, e, "ext4 shutdown ioctl: %v", e)
	}
}

// TestPowerCut runs the outbox on an ext4 loop device that stops accepting
// writes at a random moment of a stream (the remote down, so every
// acknowledged row is in the outbox), kills app-connect at once, remounts
// (journal replay) and restarts it: every row the broker was told about —
// acknowledged — is in the reopened database or still with the broker, and
// everything arrives. device-mapper's flakey/error targets are the better
// tool; this kernel has no device-mapper (see README "Reliability").
func TestPowerCut(t *testing.T) {
	bd := newBlockDevice(t)
	g := newGateway(t, gatewayOptions{devices: 20, dbDir: bd.mnt, broker: testpeer.MosquittoOptions{MaxQueued: ptr(0)}})
	g.remote.down.Store(true)
	g.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := g.publish(ctx, 150, 500) // 3,000 uplinks over 6 s
	at := time.Duration(1000+rand.IntN(4000)) * time.Millisecond
	time.Sleep(at)
	// Acknowledged to the broker, so durable: at least this many rows (every
	// event of this run is an uplink with a row). Stored would count rows
	// committed whose shared sync had not ended yet.
	stored := g.statusDoc().Intake.Acknowledged
	bd.cut()
	g.kill()
	st := l.wait(t)
	bd.detach()
	bd.attach()

	db, err := sql.Open("sqlite3", "file:"+g.db)
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	var check string
	errRows := db.QueryRow("SELECT COUNT(*) FROM outbox").Scan(&rows)
	errCheck := db.QueryRow("PRAGMA integrity_check").Scan(&check)
	db.Close()
	if errRows != nil || errCheck != nil || check != "ok" {
		t.Fatalf("reopened database: rows %v, integrity %q %v", errRows, check, errCheck)
	}
	if uint64(rows) < stored {
		t.Fatalf("%d rows in the reopened database, %d were acknowledged before the cut", rows, stored)
	}

	g.remote.down.Store(false)
	restarted := time.Now()
	g.start()
	lastUp := g.settle(3*time.Minute, 30*time.Second)
	o := g.measure(st, 0)
	o.recovery = lastUp.Sub(restarted)
	o.note = "cut " + at.String() + " into the stream; " + itoa(rows) + " rows in the reopened database (at least " + itoa(int(stored)) + " acknowledged before the cut), integrity ok"
	result(t, o)
	if o.lost != 0 {
		t.Fatalf("lost %d uplinks after the power cut", o.lost)
	}
}
