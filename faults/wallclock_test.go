//go:build faults

package faults

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The clock-jump case sets the machine's wall clock (CLOCK_REALTIME), which
// every process on it shares. The rule, everywhere below: the true time is
// the wall time read before the first jump plus the monotonic time elapsed
// since (CLOCK_MONOTONIC is never set), and the wall clock is put back to it
// by every way out of the test — restore, t.Cleanup, a deferred recover, a
// watchdog timer bounding each jump, and a guardian process that outlives a
// test binary killed or panicking on its timeout.

// clockGuardianEnv makes the test binary the clock guardian (TestMain).
const clockGuardianEnv = "FAULTS_CLOCK_GUARDIAN"

// maxJumped bounds how long the wall clock stays jumped: the watchdog puts it
// back after that, whatever the test is doing.
const maxJumped = 75 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(clockGuardianEnv) == "1" {
		os.Exit(clockGuardian())
	}
	os.Exit(m.Run())
}

// setWall sets CLOCK_REALTIME (needs CAP_SYS_TIME; EPERM without it). The
// syscall package has no clock_settime of its own on Linux.
func setWall(t time.Time) error {
	const clockRealtime = 0
	ts := syscall.NsecToTimespec(t.UnixNano())
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_SETTIME, clockRealtime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return e
	}
	return nil
}

// clockGuardian runs in a child process for the length of the clock tests:
// when its standard input ends (the test binary closed it, or died), it puts
// the wall clock back to the time it read at its start plus the monotonic
// time elapsed, if the two differ by more than a second.
func clockGuardian() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	start := time.Now()
	fmt.Println("ready") // the test jumps the clock only after this: start is the true time
	io.Copy(io.Discard, os.Stdin)
	truth := start.Round(0).Add(time.Since(start))
	off := time.Now().Round(0).Sub(truth)
	if off.Abs() <= time.Second {
		return 0
	}
	err := setWall(start.Round(0).Add(time.Since(start)))
	fmt.Fprintf(os.Stderr, "clock guardian: the test process ended with the wall clock %v off; restored: %v\n", off, err)
	if err != nil {
		return 1
	}
	return 0
}

// wallClock jumps the machine's wall clock and puts it back.
type wallClock struct {
	t     *testing.T
	start time.Time // time.Now() while the clock was right: wall and monotonic readings

	mu       sync.Mutex
	jumped   time.Duration // the offset set now; 0 when right
	since    time.Time     // when it was set
	longest  time.Duration // the longest jumped period
	watchdog *time.Timer
	guardIn  io.WriteCloser
	guard    *exec.Cmd
	guardErr *syncBuffer
	guardEnd chan struct{}
}

// newWallClock checks that the clock can be set (a zero jump) and starts the
// guardian; the case is skipped as NOT RUN where setting the clock is not
// allowed.
func newWallClock(t *testing.T) *wallClock {
	t.Helper()
	c := &wallClock{t: t, start: time.Now(), guardErr: &syncBuffer{}}
	if err := setWall(c.truth()); err != nil {
		if errors.Is(err, syscall.EPERM) {
			notRun(t, err, "setting the system clock (clock_settime CLOCK_REALTIME): %v; needs CAP_SYS_TIME", err)
		}
		t.Fatalf("clock_settime: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.guard = exec.Command(exe)
	c.guard.Env = append(os.Environ(), clockGuardianEnv+"=1")
	c.guard.Stderr = c.guardErr
	out, err := c.guard.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.guard.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not stopped with the terminal's foreground group
	if c.guardIn, err = c.guard.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.guard.Start(); err != nil {
		t.Fatal(err)
	}
	c.guardEnd = make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		io.Copy(c.guardErr, out)
		c.guard.Wait()
		close(c.guardEnd)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			c.guardIn.Close()
			t.Fatalf("the clock guardian did not start: %q %s", line, c.guardErr.String())
		}
	case <-time.After(30 * time.Second):
		c.guard.Process.Kill()
		t.Fatalf("the clock guardian did not start within 30 s")
	}
	t.Cleanup(func() {
		c.restore()
		c.guardIn.Close()
		select {
		case <-c.guardEnd:
		case <-time.After(10 * time.Second):
			c.guard.Process.Kill()
			t.Errorf("the clock guardian did not end")
		}
		if off := c.offset(); off.Abs() > 100*time.Millisecond {
			t.Errorf("the wall clock is %v off the true time at the end", off)
		}
	})
	return c
}

// truth is the true time: the wall time at the start plus the monotonic time since.
func (c *wallClock) truth() time.Time { return c.start.Round(0).Add(time.Since(c.start)) }

// offset is how far the wall clock is from the true time.
func (c *wallClock) offset() time.Duration { return time.Now().Round(0).Sub(c.truth()) }

// jump sets the wall clock d away from the true time, for at most maxJumped.
func (c *wallClock) jump(d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := setWall(c.truth().Add(d)); err != nil {
		c.t.Fatalf("clock_settime: %v", err)
	}
	if c.jumped == 0 {
		c.since = time.Now()
	}
	c.jumped = d
	if c.watchdog != nil {
		c.watchdog.Stop()
	}
	c.watchdog = time.AfterFunc(maxJumped, func() { c.restore() })
}

// restore puts the wall clock back to the true time and returns how long it
// was jumped; safe to call at any moment, from any goroutine, more than once.
func (c *wallClock) restore() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watchdog != nil {
		c.watchdog.Stop()
		c.watchdog = nil
	}
	if c.jumped == 0 && c.offset().Abs() < time.Second {
		return 0
	}
	var err error
	for range 3 {
		if err = setWall(c.truth()); err == nil {
			break
		}
	}
	if err != nil {
		c.t.Errorf("clock_settime: restoring the wall clock: %v", err) // Errorf: safe from the watchdog's goroutine
	}
	var d time.Duration
	if c.jumped != 0 {
		d = time.Since(c.since)
		c.longest = max(c.longest, d)
	}
	c.jumped = 0
	return d
}

// restoreOnPanic is deferred by the clock tests: a panic puts the clock back
// before it unwinds further (t.Cleanup runs too late for a panic that ends
// the test binary).
func (c *wallClock) restoreOnPanic() {
	if r := recover(); r != nil {
		c.restore()
		panic(r)
	}
	c.restore()
}

// selfCheck jumps +5 s and back, and fails the test unless both landed
// within 50 ms: the restore works before anything jumps by hours.
func (c *wallClock) selfCheck() {
	c.t.Helper()
	if off := c.offset(); off.Abs() > 50*time.Millisecond {
		c.t.Fatalf("the wall clock is %v off the true time before any jump", off)
	}
	c.jump(5 * time.Second)
	off := c.offset()
	c.restore()
	if (off - 5*time.Second).Abs() > 50*time.Millisecond {
		c.t.Fatalf("after a +5 s jump the wall clock was %v off, want 5s", off)
	}
	if off := c.offset(); off.Abs() > 50*time.Millisecond {
		c.t.Fatalf("after the restore the wall clock is %v off", off)
	}
}
