package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

// h1For builds the client of a test server's URL.
func h1For(t *testing.T, rawURL string) *HTTPTransport {
	t.Helper()
	ep, err := config.ParseEndpoint(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHTTPTransport(ep, config.AppOptions{}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.client.closeIdle)
	return h
}

// connCounter counts the connections a test server accepted.
func connCounter(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

// The request bytes are what net/http wrote for the same request (without
// its Accept-Encoding: gzip, which this client does not ask for): a cloud API
// sees no difference.
func TestH1WritesWhatNetHTTPWrote(t *testing.T) {
	for _, tc := range []struct {
		method, prefix, path, body string
	}{
		{"POST", "", "/api/v1/lorawan/00-11-22-33-44-55-66-77/00-80-00-00-a0-00-0f-4d/up", `{"data":"AQI="}`},
		{"POST", "/some prefix/v2", "/api/v1/lorawan/x/y/close", ""},
		{"GET", "/p", "/api/v1/lorawan/x/down", `["00-11-22-33-44-55-66-77"]`},
		{"GET", "", "/api/v1/lorawan/x/down", ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			c, err := newH1Client("http", "cloud.example.com:8080", tc.prefix, nil, 1)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			w := bufio.NewWriter(&got)
			c.writeRequest(w, tc.method, tc.path, []byte(tc.body))
			w.Flush()

			req, err := http.NewRequest(tc.method, "http://cloud.example.com:8080"+c.prefix+tc.path, bytes.NewReader([]byte(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/plain")
			var want bytes.Buffer
			if err := req.Write(&want); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("request bytes:\n%q\nnet/http:\n%q", got.String(), want.String())
			}
		})
	}
}

// Sequential requests of a lane share one keep-alive connection.
func TestH1KeepsOneConnectionAlive(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"n":1}` || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "text/plain" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		got.Add(1)
		w.Write([]byte(`{"ok":true}`))
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()
	h := h1For(t, srv.URL+"/prefix")
	for i := 0; i < 20; i++ {
		reply, err := h.Post(context.Background(), "/api/v1/lorawan/a/b/up", []byte(`{"n":1}`), 0)
		if err != nil || string(reply) != `{"ok":true}` {
			t.Fatalf("post %d: %q, %v", i, reply, err)
		}
	}
	if got.Load() != 20 || conns.Load() != 1 {
		t.Errorf("server got %d requests on %d connections, want 20 on 1", got.Load(), conns.Load())
	}
}

// A server that closes its keep-alive connections after each answer without
// saying so: the next request finds the kept connection closed and is sent
// again on a new one, instead of failing (and waiting for a retry).
func TestH1ResendsWhatAClosedIdleConnectionLost(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	addr := rawServer(t, func(c net.Conn) {
		defer c.Close()
		if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			b, _ := io.ReadAll(req.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	h := h1For(t, "http://"+addr)
	for i := 0; i < 5; i++ {
		if _, err := h.Post(context.Background(), "/api/v1/lorawan/a/b/up", []byte{'0' + byte(i)}, 0); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(bodies, "") != "01234" {
		t.Errorf("server got %q, want every body once in order", bodies)
	}
}

// rawServer hands each connection accepted on a loopback port to serve, one
// at a time; those serve leaves open are closed when the test ends. It
// returns the server's address.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			serve(c)
		}
	}()
	return ln.Addr().String()
}

// Informational answers (1xx) come before the real one and are skipped.
func TestH1SkipsInformationalAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte(`[{"deveui":"00-11-22-33-44-55-66-77","data":"AQ=="}]`))
	}))
	defer srv.Close()
	reply, err := h1For(t, srv.URL).Post(context.Background(), "/api/v1/lorawan/a/b/up", []byte(`{}`), 0)
	if err != nil || !strings.Contains(string(reply), "deveui") {
		t.Fatalf("reply %q, %v", reply, err)
	}
}

// Answers that cannot leave the connection reusable close it: a body past
// the reply bound and the drain allowance, "Connection: close". Chunked and
// sized bodies read to their end keep it.
func TestH1ReusesOnlyConnectionsWhoseAnswerEnded(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxReply+h1Drain+1)
	for _, tc := range []struct {
		name      string
		h         http.HandlerFunc
		wantReply int
		wantConns int32
	}{
		{"sized", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }, 2, 1},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`[`))
			w.(http.Flusher).Flush()
			w.Write([]byte(`]`))
		}, 2, 1},
		{"connection close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{}`))
		}, 2, 3},
		{"past the bound", func(w http.ResponseWriter, r *http.Request) { w.Write(big) }, maxReply, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(tc.h)
			conns := connCounter(srv)
			srv.Start()
			defer srv.Close()
			h := h1For(t, srv.URL)
			for i := 0; i < 3; i++ {
				reply, err := h.Post(context.Background(), "/x", []byte(`{}`), 0)
				if err != nil || len(reply) != tc.wantReply {
					t.Fatalf("post %d: %d bytes, %v", i, len(reply), err)
				}
			}
			if conns.Load() != tc.wantConns {
				t.Errorf("%d connections for 3 requests, want %d", conns.Load(), tc.wantConns)
			}
		})
	}
}

// "Connection: close" is obeyed even when the server leaves the connection
// open: the next request goes on a new connection, not into one nobody reads.
func TestH1ObeysConnectionClose(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { // never closed by the server while the test runs
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	h := h1For(t, "http://"+addr)
	for i := 0; i < 3; i++ {
		if _, err := h.Post(context.Background(), "/x", []byte(`{}`), 5*time.Second); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
}

// A redirect is not followed (net/http turned a redirected POST into a GET
// without its body): it is a status like any other non-2xx.
func TestH1DoesNotFollowRedirects(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	_, err := h1For(t, srv.URL).Post(context.Background(), "/api/v1/lorawan/a/b/up", []byte(`{}`), 0)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusFound || se.Permanent() {
		t.Fatalf("err %v, want a retryable HTTP 302", err)
	}
	if gets.Load() != 0 {
		t.Errorf("the redirect was followed")
	}
}

// Ending the context ends a request waiting for its answer, well before its
// timeout.
func TestH1ContextEndsAWaitingRequest(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	h := h1For(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := h.Post(ctx, "/x", []byte(`{}`), 20*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// The timeout bounds a request whose server never answers.
func TestH1TimeoutEndsARequest(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	_, err := h1For(t, srv.URL).Post(context.Background(), "/x", []byte(`{}`), 50*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v, want a timeout", err)
	}
}

// h1AnswerSeeds start the fuzzing of answers.
var h1AnswerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
	"HTTP/1.1 500 Oops\r\nContent-Length: 99\r\n\r\nshort",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nuntil close",
	"garbage\r\n\r\n",
	"",
}

// FuzzH1Answer feeds a hostile server's answer to the client: it never
// panics, and a status is returned only with a parsed status line.
func FuzzH1Answer(f *testing.F) {
	for _, s := range h1AnswerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		c, err := newH1Client("http", "fuzz:80", "", nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		c.dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				go io.Copy(io.Discard, server)
				server.Write(answer)
			}()
			return client, nil
		}
		status, reply, err := c.do(context.Background(), "POST", "/x", []byte(`{}`), 2*time.Second)
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("status %d without an error", status)
		}
		if len(reply) > maxReply {
			t.Fatalf("reply of %d bytes", len(reply))
		}
		c.closeIdle()
	})
}
