package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// h1Client is the HTTP/1.1 client of one remote API: the original program's
// protocol (conduit.md §6) on keep-alive connections, one per lane, each
// request written and its answer read by the calling goroutine.
//
// net/http's client hands every request to two goroutines of the connection
// (its writer and its reader) and back through channels, with a context, a
// timer and a dozen allocations on the way: on the ARMv5 binary under qemu
// that was about half of the floor's CPU per uplink (a relay with net/http
// 2.20 ms, the same relay writing its requests itself 1.08 ms, 20/s). The
// request side here is a request line and four headers; the answer side
// reads the status, the body (Content-Length or chunked) and whether the
// connection stays open, and nothing else (h1answer.go).
//
// What it does not do, on purpose: follow redirects (net/http turns a
// redirected POST into a GET without its body, a silent loss; a 3xx is
// retried like a 5xx and named in the log), ask for gzip, or use a proxy (a
// gateway talks to its cloud directly, as before).
type h1Client struct {
	addr   string      // host:port, dialled and sent as the Host header
	prefix string      // the escaped path prefix of the application's URL
	tls    *tls.Config // nil: plain HTTP
	dial   func(ctx context.Context, network, address string) (net.Conn, error)

	mu      sync.Mutex
	idle    []*h1Conn // most recently used last
	maxIdle int
}

// h1Conn is one keep-alive connection.
type h1Conn struct {
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // when it was put back
}

const (
	h1IdleTimeout      = 90 * time.Second // an idle connection older than this is closed, not reused
	h1HandshakeTimeout = 15 * time.Second
	h1Drain            = 64 << 10 // read past the reply so the connection can be reused
	h1ReadBuffer       = 4 << 10
	h1WriteBuffer      = 4 << 10
)

// newH1Client builds the client of an http:// or https:// endpoint; tc (from
// TLSConfig, which names the server) is required for https and unused for http.
func newH1Client(scheme, address, pathPrefix string, tc *tls.Config, maxIdle int) (*h1Client, error) {
	prefix := (&url.URL{Path: pathPrefix}).EscapedPath()
	c := &h1Client{addr: address, prefix: prefix, maxIdle: maxIdle, dial: (&net.Dialer{}).DialContext}
	switch {
	case scheme == "http":
	case scheme == "https" && tc != nil:
		c.tls = tc
	case scheme == "https":
		return nil, fmt.Errorf("https without a TLS configuration")
	default:
		return nil, fmt.Errorf("scheme %q: want http or https", scheme)
	}
	return c, nil
}

// setMaxIdle sets how many idle connections are kept (one per lane).
func (c *h1Client) setMaxIdle(n int) {
	c.mu.Lock()
	c.maxIdle = max(n, 1)
	c.mu.Unlock()
}

// closeIdle closes every idle connection.
func (c *h1Client) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, k := range idle {
		k.nc.Close()
	}
}

// do sends one request and returns the status and up to maxReply bytes of
// the answer's body (the status also when reading the body failed). It ends
// by timeout at the latest, or when ctx ends.
func (c *h1Client) do(ctx context.Context, method, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for attempt := 0; ; attempt++ {
		k, reused, err := c.get(ctx, deadline)
		if err != nil {
			return 0, nil, err
		}
		status, reply, keep, answered, err := c.exchange(ctx, k, method, path, body, deadline)
		if err == nil && keep {
			c.put(k)
		} else {
			k.nc.Close()
		}
		// A kept connection the server closed while it was idle: the request
		// got no answer at all, so it goes once more on a new connection (a
		// duplicate at worst, as with any retry).
		if err != nil && reused && !answered && attempt == 0 && ctx.Err() == nil && closedByPeer(err) {
			continue
		}
		return status, reply, err
	}
}

// get takes the most recently used idle connection, or dials one.
func (c *h1Client) get(ctx context.Context, deadline time.Time) (*h1Conn, bool, error) {
	now := time.Now()
	c.mu.Lock()
	for len(c.idle) > 0 {
		n := len(c.idle) - 1
		k := c.idle[n]
		c.idle[n] = nil
		c.idle = c.idle[:n]
		if now.Sub(k.idle) < h1IdleTimeout {
			c.mu.Unlock()
			return k, true, nil
		}
		k.nc.Close()
	}
	c.mu.Unlock()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := c.dial(dctx, "tcp", c.addr)
	if err != nil {
		return nil, false, err
	}
	if c.tls != nil {
		hctx, cancel := context.WithTimeout(dctx, h1HandshakeTimeout)
		defer cancel()
		tc := tls.Client(nc, c.tls)
		if err := tc.HandshakeContext(hctx); err != nil {
			nc.Close()
			return nil, false, fmt.Errorf("TLS handshake with %s: %w", c.addr, err)
		}
		nc = tc
	}
	return &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, h1ReadBuffer), bw: bufio.NewWriterSize(nc, h1WriteBuffer)}, false, nil
}

// put keeps a connection for the next request, or closes it when enough are kept.
func (c *h1Client) put(k *h1Conn) {
	k.idle = time.Now()
	c.mu.Lock()
	if len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, k)
		k = nil
	}
	c.mu.Unlock()
	if k != nil {
		k.nc.Close()
	}
}

// exchange writes one request on k and reads its answer. keep says whether k
// may carry the next request, answered whether any byte of an answer came.
func (c *h1Client) exchange(ctx context.Context, k *h1Conn, method, path string, body []byte, deadline time.Time) (status int, reply []byte, keep, answered bool, err error) {
	if err := k.nc.SetDeadline(deadline); err != nil {
		return 0, nil, false, false, err
	}
	// Ending ctx unblocks the reads and writes below at once.
	stop := context.AfterFunc(ctx, func() { k.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			status, reply, keep = 0, nil, false
			err = ctx.Err()
		}
	}()
	c.writeRequest(k.bw, method, path, body)
	if err := k.bw.Flush(); err != nil {
		return 0, nil, false, false, err
	}
	if _, err := k.br.Peek(1); err != nil {
		return 0, nil, false, false, err
	}
	a, err := readAnswer(k.br)
	if err != nil {
		return a.status, nil, false, true, fmt.Errorf("reading the answer: %w", err)
	}
	return a.status, a.body, a.keep, true, nil
}

// writeRequest writes what net/http wrote for these requests, in its order:
// the request line, Host, User-Agent, Content-Length (always for a POST, as
// net/http does, and for a body), then Accept and Content-Type (conduit.md §6).
func (c *h1Client) writeRequest(w *bufio.Writer, method, path string, body []byte) {
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(c.prefix)
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.addr)
	w.WriteString("\r\nUser-Agent: Go-http-client/1.1\r\n")
	if len(body) > 0 || method == http.MethodPost {
		var n [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("Accept: text/plain\r\nContent-Type: application/json\r\n\r\n")
	w.Write(body)
}

// closedByPeer reports the errors of a connection its server closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
