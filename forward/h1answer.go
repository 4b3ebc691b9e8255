package forward

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The answer side of h1Client: what a remote API answers a request, read
// straight from the connection's buffer. net/http's ReadResponse built a
// Response, a header map of canonicalised keys and a body reader chain for
// each answer (a sixth of the HTTP lane's CPU in a profile of the ARMv5
// binary under qemu at 20/s); only the status, the body and whether the
// connection can be reused matter here. It is as strict as net/http where
// that decides what the body is (a Content-Length, equal when repeated, or
// chunked; malformed chunks are errors) and reads no further than the
// answer.

const (
	h1MaxLine   = 64 << 10 // one status or header line
	h1MaxHeader = 1 << 20  // all of an answer's header lines
)

var errH1Malformed = errors.New("malformed HTTP answer")

// h1Answer is one answer as readAnswer found it.
type h1Answer struct {
	status int
	// body is up to maxReply bytes of the body.
	body []byte
	// keep: the answer ended within the drain allowance and neither side
	// closes the connection: it may carry the next request.
	keep bool
}

// readAnswer reads the answer to a request (not HEAD) from br, skipping
// informational answers (1xx but 101). An error reading the body returns
// the status with it.
func readAnswer(br *bufio.Reader) (h1Answer, error) {
	for {
		a, framing, err := readHead(br)
		if err != nil {
			return h1Answer{}, err
		}
		if a.status >= 200 || a.status == 101 {
			return readBody(br, a, framing)
		}
	}
}

// framing is how an answer's body is delimited.
type framing struct {
	chunked bool
	length  int64 // -1: none given (the body ends with the connection)
	none    bool  // no body at all (1xx, 204, 304)
	close   bool  // the server closes the connection after this answer
}

// readHead reads the status line and the header lines.
func readHead(br *bufio.Reader) (h1Answer, framing, error) {
	var a h1Answer
	f := framing{length: -1}
	budget := h1MaxHeader
	line, err := h1Line(br, &budget)
	if err != nil {
		return a, f, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[7] < '0' || line[7] > '9' || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') || line[9] < '1' || line[9] > '9' || !isDigit(line[10]) || !isDigit(line[11]) {
		return a, f, fmt.Errorf("%w: status line %q", errH1Malformed, clip(line))
	}
	http10 := line[7] == '0'
	a.status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	keepAlive := false // HTTP/1.0: the server keeps the connection only when it says so
	// The lines are read in place, so what is kept of them is parsed at once.
	cl := int64(-1)
	var te, folding bool // a Transfer-Encoding seen; the previous header delimits the body
	for {
		line, err := h1Line(br, &budget)
		if err != nil {
			return a, f, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// An obsolete folded line continues the previous header: harmless
			// for headers read only by others, malformed for the framing ones.
			if folding {
				return a, f, fmt.Errorf("%w: folded header line %q", errH1Malformed, clip(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			return a, f, fmt.Errorf("%w: header line %q", errH1Malformed, clip(line))
		}
		value = bytes.Trim(value, " \t")
		folding = false
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, ok := decimal(value)
			if !ok || cl >= 0 && n != cl {
				return a, f, fmt.Errorf("%w: Content-Length %q", errH1Malformed, clip(value))
			}
			cl, folding = n, true
		case asciiEqualFold(name, "Transfer-Encoding"):
			if te {
				return a, f, fmt.Errorf("%w: two Transfer-Encoding headers", errH1Malformed)
			}
			// HTTP/1.0 has no transfer codings: net/http ignores the header there too.
			if !http10 && !asciiEqualFold(value, "chunked") {
				return a, f, fmt.Errorf("%w: unsupported Transfer-Encoding %q", errH1Malformed, clip(value))
			}
			te, folding = true, true
		case asciiEqualFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				f.close = f.close || asciiEqualFold(tok, "close")
				keepAlive = keepAlive || asciiEqualFold(tok, "keep-alive")
			}
		}
	}
	if http10 && !keepAlive {
		f.close = true
	}
	switch {
	case a.status < 200 || a.status == 204 || a.status == 304:
		f.none = true
	case te && !http10:
		f.chunked = true // a Content-Length beside it is ignored (RFC 9112 §6.3)
	default:
		f.length = cl
	}
	return a, f, nil
}

// readBody reads the body as f delimits it: up to maxReply bytes kept, up to
// h1Drain more read past so the connection can be reused.
func readBody(br *bufio.Reader, a h1Answer, f framing) (h1Answer, error) {
	var ended bool
	var err error
	switch {
	case f.none:
		ended = true
	case f.chunked:
		a.body, ended, err = readChunked(br)
	case f.length >= 0:
		a.body, ended, err = readLength(br, f.length)
	default:
		// Until the connection ends: what is kept, then the rest up to the
		// drain allowance; the connection is not reused either way.
		if a.body, err = appendUntilEOF(br, nil, maxReply); err == nil {
			_, err = appendUntilEOF(br, nil, 0)
		}
		f.close = true
	}
	if err != nil {
		return h1Answer{status: a.status}, fmt.Errorf("body: %w", err)
	}
	a.keep = ended && !f.close && a.status != 101
	return a, nil
}

// readLength reads a body of n bytes: up to maxReply of them kept; ended
// when the rest fitted in the drain allowance and was read.
func readLength(br *bufio.Reader, n int64) ([]byte, bool, error) {
	keep := min(n, maxReply)
	body, err := appendN(br, nil, keep)
	if err != nil {
		return nil, false, err
	}
	if rest := n - keep; rest > 0 {
		if rest > h1Drain {
			return body, false, nil
		}
		if _, err := br.Discard(int(rest)); err != nil {
			return nil, false, unexpected(err)
		}
	}
	return body, true, nil
}

// appendN appends n bytes read from br to body, growing it only as they
// arrive (a hostile length allocates nothing ahead of its bytes).
func appendN(br *bufio.Reader, body []byte, n int64) ([]byte, error) {
	for n > 0 {
		if _, err := br.Peek(1); err != nil {
			return nil, unexpected(err)
		}
		chunk, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		body = append(body, chunk...)
		br.Discard(len(chunk))
		n -= int64(len(chunk))
	}
	return body, nil
}

// appendUntilEOF appends what br gives until it ends, keeping up to max
// bytes in body; past them it reads up to h1Drain more, discarded, and stops.
func appendUntilEOF(br *bufio.Reader, body []byte, max int) ([]byte, error) {
	drained := 0
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return body, nil
			}
			return nil, err
		}
		if room := max - len(body); room > 0 {
			chunk, _ := br.Peek(min(br.Buffered(), room))
			body = append(body, chunk...)
			br.Discard(len(chunk))
			continue
		}
		if drained >= h1Drain {
			return body, nil
		}
		n, _ := br.Discard(min(br.Buffered(), h1Drain-drained))
		drained += n
	}
}

// readChunked reads a chunked body: up to maxReply bytes of data kept; ended
// when the last chunk and the trailer were read within the drain allowance.
func readChunked(br *bufio.Reader) ([]byte, bool, error) {
	var body []byte
	drained := int64(0)
	for {
		budget := h1MaxLine
		line, err := h1Line(br, &budget)
		if err != nil {
			return nil, false, err
		}
		size, ok := chunkSize(line)
		if !ok {
			return nil, false, fmt.Errorf("%w: chunk size line %q", errH1Malformed, clip(line))
		}
		if size == 0 {
			break
		}
		keep := min(size, int64(maxReply-len(body)))
		if body, err = appendN(br, body, keep); err != nil {
			return nil, false, err
		}
		if rest := size - keep; rest > 0 {
			if drained += rest; drained > h1Drain {
				return body, false, nil
			}
			if _, err := br.Discard(int(rest)); err != nil {
				return nil, false, unexpected(err)
			}
		}
		var crlf [2]byte
		if _, err := io.ReadFull(br, crlf[:]); err != nil {
			return nil, false, unexpected(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return nil, false, fmt.Errorf("%w: chunk not followed by CRLF", errH1Malformed)
		}
	}
	// The trailer: header lines up to an empty one.
	budget := h1MaxHeader
	for {
		line, err := h1Line(br, &budget)
		if err != nil {
			return nil, false, err
		}
		if len(line) == 0 {
			return body, true, nil
		}
	}
}

// chunkSize parses a chunk size line: hexadecimal digits, optionally
// followed by extensions after ';' (ignored) and whitespace.
func chunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 { // 15 hex digits: no int64 overflow
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// h1Line reads one line without its CRLF (or LF), charging budget; the slice
// is valid until the next read of br.
func h1Line(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Longer than the buffer: gather it (rare: a long cookie or policy header).
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) <= h1MaxLine {
			line, err = br.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, unexpected(err)
	}
	if *budget -= len(line); len(line) > h1MaxLine || *budget < 0 {
		return nil, fmt.Errorf("%w: header longer than %d bytes", errH1Malformed, min(h1MaxLine, h1MaxHeader))
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	return line, nil
}

// unexpected turns an EOF in the middle of an answer into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decimal parses a non-negative decimal number of at most 18 digits.
func decimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isToken reports whether b is an HTTP token (a header name).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// clip shortens what a log line quotes of an answer.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
