package forward

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedConn is the socket under a bufferedConn: it counts the system
// calls the wrapper makes, records what is written, and can hold the next
// write until released.
type scriptedConn struct {
	net.Conn // nil: only what is overridden is called

	in *bytes.Reader // what Read returns

	mu       sync.Mutex
	reads    int
	writes   [][]byte
	hold     chan struct{} // non-nil: the next Write waits for it to be closed
	holding  chan struct{} // closed when a Write is waiting on hold
	writeErr error
	closed   bool
	closedAt int // len(writes) when Close was called
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.in.Read(p)
}

func (c *scriptedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	hold, holding := c.hold, c.holding
	c.hold = nil
	c.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

func (c *scriptedConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.closedAt = true, len(c.writes)
	}
	return nil
}

func (c *scriptedConn) written() (calls int, all string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, w := range c.writes {
		b.Write(w)
	}
	return len(c.writes), b.String()
}

// holdNext makes the next Write wait; the returned channel is closed once it does.
func (c *scriptedConn) holdNext() (release func(), waiting <-chan struct{}) {
	hold, holding := make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	c.hold, c.holding = hold, holding
	c.mu.Unlock()
	return func() { close(hold) }, holding
}

// Packets written while the socket is busy go out together, in order, with
// one system call; everything arrives.
func TestBufferedConnGroupsWrites(t *testing.T) {
	sc := &scriptedConn{in: bytes.NewReader(nil)}
	release, waiting := sc.holdNext()
	c := newBufferedConn(sc)
	defer c.Close()
	firstErr := make(chan error, 1)
	go func() { _, err := c.Write([]byte("first.")); firstErr <- err }() // isolated: written by its caller
	<-waiting                                                            // the first write is in the socket's write
	var want strings.Builder
	want.WriteString("first.")
	for i := range 100 {
		p := []byte(strings.Repeat(string(rune('a'+i%26)), i%7+1) + ".")
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	release()
	if err := <-firstErr; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		calls, all := sc.written()
		if all == want.String() {
			if calls != 2 {
				t.Fatalf("%d system calls for 101 packets, want 2 (the one in progress, then the 100 queued meanwhile)", calls)
			}
			return
		}
		if time.Now().After(deadline) || len(all) > len(want.String()) {
			t.Fatalf("written %q\nwant    %q", all, want.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// An isolated packet is written by its caller before Write returns: no
// hand-off to the flusher goroutine at a steady rate.
func TestBufferedConnWritesAnIsolatedPacketAtOnce(t *testing.T) {
	sc := &scriptedConn{in: bytes.NewReader(nil)}
	c := newBufferedConn(sc)
	defer c.Close()
	for i, p := range []string{"one.", "two."} {
		if i > 0 {
			time.Sleep(2 * connBusy) // apart: each is isolated
		}
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		if calls, all := sc.written(); calls != i+1 || !strings.HasSuffix(all, p) {
			t.Fatalf("after Write(%q) returned: %d system calls, written %q; want it written by the call", p, calls, all)
		}
	}
}

// paho reads a packet a byte at a time: the reads come from one buffer fill.
func TestBufferedConnBuffersReads(t *testing.T) {
	data := []byte{0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02, 0x40, 0x02, 0x00, 0x03} // three PUBACKs
	sc := &scriptedConn{in: bytes.NewReader(data)}
	c := newBufferedConn(sc)
	defer c.Close()
	var got []byte
	b := make([]byte, 1)
	for range data {
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		got = append(got, b[0])
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %x, want %x", got, data)
	}
	if sc.reads != 1 {
		t.Fatalf("%d reads from the socket for %d one-byte reads, want 1", sc.reads, len(data))
	}
}

// Close writes what is queued (paho's DISCONNECT) before closing the socket.
func TestBufferedConnCloseFlushes(t *testing.T) {
	sc := &scriptedConn{in: bytes.NewReader(nil)}
	release, waiting := sc.holdNext()
	c := newBufferedConn(sc)
	go c.Write([]byte("publish.")) // isolated: written by its caller, held in the socket
	<-waiting
	c.Write([]byte("disconnect.")) // queued behind it
	closed := make(chan struct{})
	go func() { defer close(closed); c.Close() }()
	release()
	<-closed
	calls, all := sc.written()
	if all != "publish.disconnect." || sc.closedAt != calls {
		t.Fatalf("written %q, socket closed after %d of %d writes", all, sc.closedAt, calls)
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

// A failed socket write closes the connection (paho's reader then reports it
// lost) and fails every later write; a writer waiting for room is released.
func TestBufferedConnWriteErrorClosesAndFails(t *testing.T) {
	sc := &scriptedConn{in: bytes.NewReader(nil), writeErr: errors.New("broken pipe")}
	release, waiting := sc.holdNext()
	c := newBufferedConn(sc)
	defer c.Close()
	firstErr := make(chan error, 1)
	go func() { _, err := c.Write([]byte("x")); firstErr <- err }() // isolated: written by its caller, held
	<-waiting
	big := make([]byte, connWritePending)
	if _, err := c.Write(big); err != nil { // queued: the queue was empty
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { _, err := c.Write([]byte("more")); blocked <- err }()
	select {
	case err := <-blocked:
		t.Fatalf("a write past the queue's limit returned (%v) before the queue was flushed", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-firstErr; err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("the write held in the socket: %v, want the socket's error", err)
	}
	if err := <-blocked; err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("waiting write: %v, want the socket's error", err)
	}
	if _, err := c.Write([]byte("later")); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("later write: %v, want the socket's error", err)
	}
	sc.mu.Lock()
	closed := sc.closed
	sc.mu.Unlock()
	if !closed {
		t.Fatal("the socket was not closed after the failed write")
	}
}
