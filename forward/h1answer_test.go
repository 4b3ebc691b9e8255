package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// netHTTPAnswer is how h1Client read answers before h1answer.go, with
// net/http's ReadResponse: the reference readAnswer is compared with. It
// returns how many bytes of raw the answer took.
func netHTTPAnswer(raw []byte) (a h1Answer, used int, err error) {
	src := bytes.NewReader(raw)
	br := bufio.NewReaderSize(src, h1ReadBuffer)
	var resp *http.Response
	for {
		if resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodPost}); err != nil {
			return h1Answer{}, 0, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return h1Answer{status: resp.StatusCode}, 0, err
	}
	_, derr := io.CopyN(io.Discard, resp.Body, h1Drain)
	ended := errors.Is(derr, io.EOF)
	if len(body) == 0 {
		body = nil
	}
	return h1Answer{status: resp.StatusCode, body: body, keep: ended && !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols},
		len(raw) - src.Len() - br.Buffered(), nil
}

// leanAnswer is readAnswer on raw, with how many bytes it took.
func leanAnswer(raw []byte) (h1Answer, int, error) {
	src := bytes.NewReader(raw)
	br := bufio.NewReaderSize(src, h1ReadBuffer)
	a, err := readAnswer(br)
	return a, len(raw) - src.Len() - br.Buffered(), err
}

// sameAnswer reports how a and b differ ("" when they do not); used counts
// only for a kept connection, where the next answer starts right after.
func sameAnswer(a h1Answer, aUsed int, b h1Answer, bUsed int) string {
	switch {
	case a.status != b.status:
		return fmt.Sprintf("status %d, want %d", a.status, b.status)
	case !bytes.Equal(a.body, b.body):
		return fmt.Sprintf("body %q, want %q", clip(a.body), clip(b.body))
	case a.keep != b.keep:
		return fmt.Sprintf("keep %v, want %v", a.keep, b.keep)
	case a.keep && aUsed != bUsed:
		return fmt.Sprintf("took %d bytes, want %d", aUsed, bUsed)
	}
	return ""
}

// TestH1AnswersAsNetHTTPReadThem: what remote APIs answer, read as net/http
// read it: status, body, whether the connection can carry the next request,
// and where the next answer starts.
func TestH1AnswersAsNetHTTPReadThem(t *testing.T) {
	big := strings.Repeat("x", maxReply+10)
	for name, raw := range map[string]string{
		"empty array":               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
		"no reason phrase":          "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n{}",
		"bare LF lines":             "HTTP/1.1 200 OK\nContent-Length: 2\n\n[]",
		"no body":                   "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"not modified":              "HTTP/1.1 304 Not Modified\r\n\r\n",
		"lower-case headers":        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: Keep-Alive\r\n\r\nabc",
		"same length twice":         "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"chunked":                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
		"chunked, length ignored":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 99\r\n\r\n1;ext=1\r\n[\r\n1 \r\n]\r\n0\r\nX-Trailer: t\r\n\r\n",
		"chunked, long":             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big),
		"connection close":          "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]",
		"close among tokens":        "HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 2\r\n\r\n[]",
		"until the end":             "HTTP/1.1 200 OK\r\n\r\nall of it",
		"HTTP/1.0":                  "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n[]",
		"HTTP/1.0 keep-alive":       "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n[]",
		"HTTP/1.0 chunked header":   "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
		"informational first":       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"switching protocols":       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"server error":              "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy",
		"redirect":                  "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
		"body past the reply bound": "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big,
		"body past the drain":       "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(maxReply+h1Drain+1) + "\r\n\r\n" + big,
		"long header line":          "HTTP/1.1 200 OK\r\nSet-Cookie: " + strings.Repeat("c", 10000) + "\r\nContent-Length: 2\r\n\r\n[]",
		"folded other header":       "HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 2\r\n\r\n[]",
		"next answer follows":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]HTTP/1.1 500 Oops\r\n\r\n",
		"short body":                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
	} {
		t.Run(name, func(t *testing.T) {
			want, wantUsed, werr := netHTTPAnswer([]byte(raw))
			got, gotUsed, err := leanAnswer([]byte(raw))
			if (err != nil) != (werr != nil) {
				t.Fatalf("error %v, net/http's %v", err, werr)
			}
			if err != nil && got.status != want.status {
				t.Fatalf("status %d with the error, want %d", got.status, want.status)
			}
			if d := sameAnswer(got, gotUsed, want, wantUsed); err == nil && d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestH1RefusesMalformedFraming: answers whose body cannot be delimited for
// sure are errors, never a guess (the request is retried on a new connection).
func TestH1RefusesMalformedFraming(t *testing.T) {
	for name, raw := range map[string]string{
		"two lengths":            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 1\r\n\r\n[]",
		"signed length":          "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n[]",
		"length list":            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n[]",
		"gzip coding":            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"two codings":            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"folded length":          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 3\r\n\r\n[]",
		"bad chunk size":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"huge chunk size":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"chunk without CRLF":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]xx0\r\n\r\n",
		"cut in the headers":     "HTTP/1.1 200 OK\r\nContent-Len",
		"cut in a chunk":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"header without colon":   "HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\n[]",
		"space before the colon": "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n[]",
		"not HTTP":               "garbage\r\n\r\n",
		"HTTP/2 status line":     "HTTP/2 200\r\n\r\n",
		"short status":           "HTTP/1.1 20\r\n\r\n",
		"header flood":           "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 1100) + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			if a, _, err := leanAnswer([]byte(raw)); err == nil {
				t.Fatalf("no error: %+v", a)
			}
		})
	}
}

// FuzzH1AnswerAsNetHTTP: on any answer both readers take, readAnswer agrees
// with net/http on the status, the body, the connection's reuse and where
// the next answer starts.
func FuzzH1AnswerAsNetHTTP(f *testing.F) {
	for _, s := range h1AnswerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, gotUsed, err := leanAnswer(raw)
		if len(got.body) > maxReply {
			t.Fatalf("body of %d bytes", len(got.body))
		}
		if err == nil && (got.status < 100 || got.status > 999) {
			t.Fatalf("status %d without an error", got.status)
		}
		want, wantUsed, werr := netHTTPAnswer(raw)
		if err != nil || werr != nil {
			return // stricter or laxer than net/http on malformed answers: both are safe
		}
		if d := sameAnswer(got, gotUsed, want, wantUsed); d != "" {
			t.Fatalf("%q: %s", raw, d)
		}
	})
}

// BenchmarkH1Answer reads a typical answer to an uplink (what net/http's
// server writes for "[]"), with readAnswer and with net/http's reader.
func BenchmarkH1Answer(b *testing.B) {
	raw := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 30 Nov 2026 02:00:00 GMT\r\nContent-Length: 2\r\n\r\n[]")
	for _, r := range []struct {
		name string
		read func([]byte) (h1Answer, int, error)
	}{{"lean", leanAnswer}, {"net-http", netHTTPAnswer}} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if a, _, err := r.read(raw); err != nil || a.status != 200 {
					b.Fatal(a, err)
				}
			}
		})
	}
}
