package forward

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/internal/tcpopt"
)

// Limits of the buffered connection to the remote broker.
const (
	connReadBuffer   = 4 << 10  // bytes read from the socket at once
	connWritePending = 64 << 10 // bytes a writer may queue before it waits for the flush
	connCloseFlush   = 2 * time.Second
	connBusy         = time.Millisecond // a flush this soon after the last one waits for the writers ready
)

// dialBuffered opens the connection to the remote broker for paho (plain TCP
// or TLS, as paho would) and wraps it in a bufferedConn. ok is false when
// paho's own dialer must be used: a WebSocket URL or a proxy configured in
// the environment (paho honours ALL_PROXY).
func dialBuffered(brokerURL string) (fn paho.OpenConnectionFunc, ok bool) {
	u, err := url.Parse(brokerURL)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl") || os.Getenv("ALL_PROXY") != "" || os.Getenv("all_proxy") != "" {
		return nil, false
	}
	return func(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
		d := o.Dialer
		if d == nil {
			d = &net.Dialer{Timeout: o.ConnectTimeout}
		}
		var c net.Conn
		var err error
		if uri.Scheme == "ssl" {
			c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
		} else {
			c, err = d.Dial("tcp", uri.Host)
		}
		if err != nil {
			return nil, err
		}
		return newBufferedConn(c), nil
	}, true
}

// bufferedConn is the connection under paho with its reads buffered (and
// acknowledged at once: internal/tcpopt; a broker without TCP_NODELAY, such
// as Mosquitto by default, otherwise holds the PUBACK of a row back until the
// previous PUBACK's TCP acknowledgement, up to the kernel's 40 ms delayed-ACK
// timer, while the transport waits for it) and its writes grouped. paho reads a packet a few bytes at a time (three read
// system calls for a PUBACK) and writes every packet with a system call of
// its own; under a burst that is most of the transport's CPU. Reads come from
// a buffer. An isolated packet (nothing queued, no write in progress, none in
// the last connBusy) is written at once by its caller; under load a write is
// queued and a flusher goroutine writes everything queued with one system
// call, after letting the goroutines that are ready to write do so. (Handing
// every packet to the flusher cost the steady rate its latency tail: p99 35–50
// ms at 50 uplinks/s against 7–15 ms written directly.) Nothing changes for delivery: a row is acknowledged only by
// its PUBACK, read from the socket. A failed flush closes the connection (paho
// then reports it lost) and fails every later write.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	space   *sync.Cond // the queue was flushed (or failed)
	pending []byte     // queued, not yet written
	spare   []byte     // the last flushed buffer, reused
	err     error      // the first write error; then every Write fails
	writing bool       // a write to the socket is in progress (a caller's or the flusher's)
	last    time.Time  // when the last write to the socket ended

	kick    chan struct{} // something was queued
	stop    chan struct{} // Close: flush what is queued and end
	flushed chan struct{} // the flusher ended
	once    sync.Once
}

func newBufferedConn(c net.Conn) *bufferedConn {
	b := &bufferedConn{Conn: c, r: bufio.NewReaderSize(tcpopt.NewQuickAckReader(c), connReadBuffer),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), flushed: make(chan struct{})}
	b.space = sync.NewCond(&b.mu)
	go b.flusher()
	return b
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Write writes an isolated packet at once; otherwise it queues p for the
// flusher, waiting while the queue is full.
func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err == nil && !b.writing && len(b.pending) == 0 && time.Since(b.last) >= connBusy {
		b.writing = true
		b.mu.Unlock()
		n, err := b.Conn.Write(p)
		b.mu.Lock()
		b.writing, b.last = false, time.Now()
		if err != nil && b.err == nil {
			b.err = err
		}
		queued := len(b.pending) > 0
		b.space.Broadcast()
		b.mu.Unlock()
		if err != nil {
			b.Conn.Close() // paho's reader sees it: the connection is lost
			return n, err
		}
		if queued { // written by others meanwhile: the flusher takes them
			b.kickFlusher()
		}
		return n, nil
	}
	for b.err == nil && len(b.pending) >= connWritePending {
		b.space.Wait()
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	b.kickFlusher()
	return len(p), nil
}

func (b *bufferedConn) kickFlusher() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *bufferedConn) flusher() {
	defer close(b.flushed)
	for {
		select {
		case <-b.kick:
		case <-b.stop:
			b.flush()
			return
		}
		// Under load (the last flush just ended) the goroutines ready to
		// write, the publisher and paho's writer, run first and queue theirs:
		// one system call for all of it. An isolated packet goes at once.
		b.mu.Lock()
		busy := time.Since(b.last) < connBusy
		b.mu.Unlock()
		if busy {
			runtime.Gosched()
		}
		if !b.flush() {
			return
		}
	}
}

// flush writes what is queued; false once a write failed.
func (b *bufferedConn) flush() bool {
	b.mu.Lock()
	for b.writing { // a caller's direct write goes first
		b.space.Wait()
	}
	if b.err != nil { // that write failed: the connection is closed
		b.pending = b.pending[:0]
		b.space.Broadcast()
		b.mu.Unlock()
		return false
	}
	out := b.pending
	b.pending = b.spare[:0]
	b.writing = len(out) > 0
	b.mu.Unlock()
	var err error
	if len(out) > 0 {
		_, err = b.Conn.Write(out)
	}
	b.mu.Lock()
	if len(out) > 0 {
		b.writing, b.last = false, time.Now()
	}
	b.spare = out[:0]
	if err != nil && b.err == nil {
		b.err = err
	}
	failed := b.err != nil
	b.space.Broadcast()
	b.mu.Unlock()
	if err != nil {
		b.Conn.Close() // paho's reader sees it: the connection is lost
	}
	return !failed
}

// Close writes what is queued (within connCloseFlush: paho's DISCONNECT is
// among it), then closes the connection.
func (b *bufferedConn) Close() error {
	b.once.Do(func() {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(connCloseFlush))
		close(b.stop)
		<-b.flushed
		b.mu.Lock()
		if b.err == nil {
			b.err = net.ErrClosed
		}
		b.space.Broadcast()
		b.mu.Unlock()
	})
	err := b.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
