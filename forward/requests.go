package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/lorawan-gateway/app-connect/config"
)

// LoraRunner runs lora-query with an argument vector and returns its output.
type LoraRunner interface {
	RunRaw(ctx context.Context, words ...string) ([]byte, error)
}

// LocalAPI calls the gateway's local mPower API and returns its raw answer.
type LocalAPI interface {
	Do(ctx context.Context, method, path string, body []byte) ([]byte, error)
}

// Request kinds, as their topic names say.
const (
	RequestAPI  = "api_req"
	RequestLora = "lora_req"
	RequestLog  = "log_req"
)

// Requests serves the cloud side's management requests so that nothing a
// remote party sends can do more than the operator allowed (conduit.md §9):
// no shell, allow-listed lora-query commands, files directly inside the log
// directory only, allow-listed local API calls, key material redacted,
// rate-limited, every refusal answered with the rid and logged once.
type Requests struct {
	Policy  config.RemoteRequests
	Enabled config.RequestOptions // mPower's requestOptions flags
	LNS     bool                  // lora_req is forced off without the LNS
	Lora    LoraRunner
	API     LocalAPI
	Log     *slog.Logger
	// MaxDownlink bounds `packet queue add` payloads.
	MaxDownlink int
	// Outcomes, when set, counts requests as "<kind> served" or "<kind> refused".
	Outcomes OutcomeCounter

	mu     sync.Mutex
	recent []time.Time // serve times within the last minute
}

// refusal is a request answered with an error.
type refusal struct {
	code int // api_res status code: 400 malformed, 403 refused, 500 failed
	msg  string
}

func (r *refusal) Error() string { return r.msg }

func malformed(format string, args ...any) error {
	return &refusal{400, fmt.Sprintf(format, args...)}
}
func refused(format string, args ...any) error { return &refusal{403, fmt.Sprintf(format, args...)} }
func failed(format string, args ...any) error  { return &refusal{500, fmt.Sprintf(format, args...)} }

// Handle answers one request of kind (api_req, lora_req, log_req); from is
// the requester's topic, for the log line of a refusal. The reply is always a
// JSON object carrying the request's rid (with its JSON type) when it had one.
func (q *Requests) Handle(ctx context.Context, kind, from string, payload []byte) []byte {
	rid, fields, err := decodeRequest(payload)
	var reply []byte
	if err == nil {
		err = q.allow(kind)
	}
	if err == nil {
		reply, err = q.serve(ctx, kind, fields, rid)
	}
	if err != nil {
		if q.Log != nil {
			q.Log.Warn("remote request refused", "kind", kind, "topic", from, "reason", err.Error())
		}
		q.count(kind, "refused")
		return errorReply(kind, err, rid)
	}
	q.count(kind, "served")
	return reply
}

func (q *Requests) count(kind, outcome string) {
	if q.Outcomes != nil {
		q.Outcomes.Add(kind + " " + outcome)
	}
}

// maxRequest bounds a request payload.
const maxRequest = 16 << 10

// decodeRequest reads a request object; rid keeps its raw JSON (number or string).
func decodeRequest(payload []byte) (json.RawMessage, map[string]json.RawMessage, error) {
	p := bytes.TrimSpace(payload)
	if len(p) > maxRequest {
		return nil, nil, malformed("request larger than %d bytes", maxRequest)
	}
	if len(p) == 0 || p[0] != '{' {
		return nil, nil, malformed("request is not a JSON object")
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(p))
	if err := dec.Decode(&m); err != nil {
		return nil, nil, malformed("request is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, nil, malformed("trailing data after the request")
	}
	rid, ok := m["rid"]
	if ok {
		t := bytes.TrimSpace(rid)
		if len(t) == 0 || (t[0] != '"' && t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
			return nil, m, malformed("rid must be a number or a string")
		}
		rid = t
	}
	return rid, m, nil
}

func (q *Requests) allow(kind string) error {
	on := map[string]bool{RequestAPI: q.Enabled.API, RequestLora: q.Enabled.Lora && q.LNS, RequestLog: q.Enabled.Log}
	enabled, known := on[kind]
	if !known {
		return malformed("unknown request kind %q", kind)
	}
	if !enabled {
		if kind == RequestLora && q.Enabled.Lora && !q.LNS {
			return refused("lora requests need the LoRa network server, which is not running")
		}
		return refused("%s requests are not enabled on this gateway (mPower requestOptions)", strings.TrimSuffix(kind, "_req"))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	keep := q.recent[:0]
	for _, t := range q.recent {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	q.recent = keep
	limit := q.Policy.PerMinute
	if limit <= 0 {
		limit = 30
	}
	if len(q.recent) >= limit {
		return refused("rate limit: at most %d requests per minute", limit)
	}
	q.recent = append(q.recent, now)
	return nil
}

func (q *Requests) serve(ctx context.Context, kind string, f map[string]json.RawMessage, rid json.RawMessage) ([]byte, error) {
	timeout := q.Policy.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch kind {
	case RequestAPI:
		return q.serveAPI(ctx, f, rid)
	case RequestLora:
		return q.serveLora(ctx, f, rid)
	default:
		return q.serveLog(ctx, f, rid)
	}
}

func stringField(f map[string]json.RawMessage, key string, required bool) (string, bool, error) {
	v, ok := f[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		if required {
			return "", false, malformed("field %q missing", key)
		}
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, malformed("field %q is not a string", key)
	}
	return s, true, nil
}

// --- api_req ---------------------------------------------------------------

func (q *Requests) serveAPI(ctx context.Context, f map[string]json.RawMessage, rid json.RawMessage) ([]byte, error) {
	method, _, err := stringField(f, "method", true)
	if err != nil {
		return nil, err
	}
	path, _, err := stringField(f, "path", true)
	if err != nil {
		return nil, err
	}
	switch method {
	case "GET", "PUT", "POST", "DELETE", "PATCH":
	default:
		return nil, malformed("method %q not supported", method)
	}
	if err := checkAPIPath(path); err != nil {
		return nil, err
	}
	allowed := false
	for _, a := range q.Policy.APIAllow {
		m, prefix, _ := strings.Cut(a, " ")
		if m == method && strings.HasPrefix(path, prefix) {
			allowed = true
			break
		}
	}
	if !allowed {
		return nil, refused("%s %s is not allowed (remote_requests.api_allow)", method, path)
	}
	var body []byte
	if raw, ok := f["body"]; ok {
		t := bytes.TrimSpace(raw)
		switch {
		case len(t) == 0 || string(t) == "null":
		case t[0] == '"':
			var s string
			if json.Unmarshal(t, &s) != nil {
				return nil, malformed("body is not a valid string")
			}
			body = []byte(s)
		case t[0] == '{', t[0] == '-' || (t[0] >= '0' && t[0] <= '9'):
			body = t
		default:
			return nil, malformed("body must be a string, a number, an object or null")
		}
	}
	if q.API == nil {
		return nil, failed("request failed")
	}
	answer, err := q.API.Do(ctx, method, path, body)
	if err != nil {
		return nil, failed("request failed")
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	if dec.Decode(&obj) != nil {
		return nil, failed("request failed")
	}
	if !q.Policy.RevealKeys {
		redact(obj)
	}
	if rid != nil {
		obj["rid"] = rid
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, failed("request failed")
	}
	if len(out) > q.maxReply() {
		return nil, failed("reply of %d bytes exceeds the %d-byte limit", len(out), q.maxReply())
	}
	return out, nil
}

// checkAPIPath accepts only an absolute local path: no scheme, host, "..",
// "//", backslash, query or control characters.
func checkAPIPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return malformed("path must start with /")
	case strings.Contains(p, "//"), strings.Contains(p, ".."), strings.Contains(p, "\\"), strings.Contains(p, "://"):
		return refused("path %q is not a plain local path", p)
	case strings.ContainsAny(p, "?#@ %"):
		return refused("path %q has characters that are not allowed", p)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return refused("path has control characters")
		}
	}
	return nil
}

// --- lora_req --------------------------------------------------------------

// maxCommand bounds a lora_req command string.
const maxCommand = 4 << 10

// SplitCommand splits a command into words as a POSIX shell would, with no
// expansion at all: whitespace separates, '…' is literal, "…" takes \" and \\.
// Unbalanced quotes, control characters or more than 4 KiB are errors.
func SplitCommand(s string) ([]string, error) {
	if len(s) > maxCommand {
		return nil, malformed("command longer than %d bytes", maxCommand)
	}
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 && c != '\t' || c == 0x7f:
			return nil, malformed("command has control characters")
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, malformed("unbalanced ' in the command")
			}
			seg := s[i+1 : i+1+j]
			for _, r := range seg {
				if r < 0x20 || r == 0x7f {
					return nil, malformed("command has control characters")
				}
			}
			cur.WriteString(seg)
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				d := s[i]
				if d < 0x20 || d == 0x7f {
					return nil, malformed("command has control characters")
				}
				if d == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					cur.WriteByte(s[i+1])
					i++
					continue
				}
				if d == '"' {
					closed = true
					break
				}
				cur.WriteByte(d)
			}
			if !closed {
				return nil, malformed("unbalanced \" in the command")
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, malformed("empty command")
	}
	return words, nil
}

var pageRE = regexp.MustCompile(`^[0-9]{1,6}$`)

// CheckLoraCommand matches words against the allow-list (the longest entry
// that is a word prefix) and checks what may follow it.
func (q *Requests) CheckLoraCommand(words []string) error {
	for _, w := range words {
		if w == "file" {
			return refused("the word \"file\" is never allowed")
		}
	}
	best := -1
	for _, entry := range q.Policy.LoraAllow {
		ew := strings.Fields(entry)
		if len(ew) <= len(words) && len(ew) > best && equalWords(ew, words[:len(ew)]) {
			best = len(ew)
		}
	}
	if best < 0 {
		return refused("command %q is not allowed (remote_requests.lora_allow)", strings.Join(words, " "))
	}
	head, rest := strings.Join(words[:best], " "), words[best:]
	switch head {
	case "appnet get":
		if len(rest) != 1 {
			return malformed("appnet get takes one EUI")
		}
		if _, err := config.NormalizeEUI(rest[0]); err != nil {
			return malformed("appnet get: %v", err)
		}
		return nil
	case "packet queue add":
		if len(rest) != 1 {
			return malformed("packet queue add takes one JSON object (quote it)")
		}
		maxDL := q.MaxDownlink
		if maxDL <= 0 {
			maxDL = MaxDownlinkPayload
		}
		if _, err := ValidateDownlink([]byte(rest[0]), "", false, maxDL); err != nil {
			return malformed("packet queue add: %v", err)
		}
		var m map[string]any
		if json.Unmarshal([]byte(rest[0]), &m) != nil || m["deveui"] == nil {
			return malformed("packet queue add: the object needs a deveui")
		}
		return nil
	}
	switch {
	case len(rest) == 0:
		return nil
	case len(rest) == 2 && rest[0] == "page" && pageRE.MatchString(rest[1]):
		return nil
	}
	return refused("only \"page <n>\" may follow %q", head)
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (q *Requests) serveLora(ctx context.Context, f map[string]json.RawMessage, rid json.RawMessage) ([]byte, error) {
	cmd, _, err := stringField(f, "command", true)
	if err != nil {
		return nil, err
	}
	words, err := SplitCommand(cmd)
	if err != nil {
		return nil, err
	}
	if err := q.CheckLoraCommand(words); err != nil {
		return nil, err
	}
	if q.Lora == nil {
		return nil, failed("lora-query is not available")
	}
	out, err := q.Lora.RunRaw(ctx, words...)
	if err != nil {
		return nil, failed("lora-query failed: %v", err)
	}
	var result any
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if dec.Decode(&result) == nil && !dec.More() {
		if !q.Policy.RevealKeys {
			redact(result)
		}
	} else {
		s := string(out)
		if !q.Policy.RevealKeys {
			s = hexRun.ReplaceAllString(s, "REDACTED")
		}
		result = s
	}
	return q.resultReply(result, rid, false)
}

// --- log_req ---------------------------------------------------------------

const (
	maxLogLines  = 10000
	maxFilterLen = 256
	maxTailBytes = 16 << 20 // never read more than this of a log file
)

// serveLog answers a log_req within ctx's deadline (remote_requests.timeout):
// it reads at most maxTailBytes from the end of the file and encodes the reply
// once, with as many of the newest lines as fit.
func (q *Requests) serveLog(ctx context.Context, f map[string]json.RawMessage, rid json.RawMessage) ([]byte, error) {
	file, _, err := stringField(f, "file", true)
	if err != nil {
		return nil, err
	}
	lines := 100
	if v, ok := f["lines"]; ok && string(bytes.TrimSpace(v)) != "null" {
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if d.Decode(&n) != nil {
			return nil, malformed("lines must be a number")
		}
		i, err := strconv.Atoi(n.String())
		if err != nil || i < 1 || i > maxLogLines {
			return nil, malformed("lines must be an integer 1..%d", maxLogLines)
		}
		lines = i
	}
	var re *regexp.Regexp
	if filter, ok, err := stringField(f, "filter", false); err != nil {
		return nil, err
	} else if ok && filter != "" {
		if len(filter) > maxFilterLen {
			return nil, malformed("filter longer than %d characters", maxFilterLen)
		}
		if re, err = regexp.Compile("(?i)" + filter); err != nil {
			return nil, malformed("filter is not a valid regular expression: %v", err)
		}
	}
	got, err := ReadLogTail(ctx, q.Policy.LogRoot, file, lines)
	if err != nil {
		return nil, err
	}
	if re != nil {
		kept := got[:0]
		for i, l := range got {
			if i%1024 == 0 && ctx.Err() != nil {
				return nil, errLogTimeout
			}
			if re.MatchString(l) {
				kept = append(kept, l)
			}
		}
		got = kept
	}
	// Over the cap, the oldest lines go first: count from the newest line how
	// many fit once JSON-encoded (each line's own encoding, linear in the
	// input), then encode the reply once; the estimate is exact, the loop
	// only guards it.
	room := q.maxReply() - len(`{"result":"","rid":}`) - len(rid)
	keep := 0
	for i := len(got) - 1; i >= 0; i-- {
		b, _ := json.Marshal(got[i] + "\n")
		if room -= len(b) - 2; room < 0 {
			break
		}
		keep++
	}
	got = got[len(got)-keep:]
	for {
		text := ""
		if len(got) > 0 {
			text = strings.Join(got, "\n") + "\n"
		}
		reply, err := q.resultReply(text, rid, true)
		if err == nil || len(got) == 0 {
			return reply, err
		}
		got = got[1:]
	}
}

// errLogTimeout answers a log_req that ran out of time (remote_requests.timeout).
var errLogTimeout = failed("log request took longer than the request timeout")

// ReadLogTail returns the last n lines of a regular file directly inside
// root. file is "<name>" or "<root>/<name>" (also "/var/log/<name>"); no other
// directory, no "..", no symlink. Only the end of the file is read.
// It gives up with an error when ctx ends.
func ReadLogTail(ctx context.Context, root, file string, n int) ([]string, error) {
	name := file
	for _, prefix := range []string{strings.TrimRight(root, "/") + "/", "/var/log/"} {
		if strings.HasPrefix(name, prefix) {
			name = strings.TrimPrefix(name, prefix)
			break
		}
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return nil, refused("file %q is not a file directly inside the log directory", file)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return nil, refused("file name has control characters")
		}
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, failed("log directory unavailable")
	}
	path := filepath.Join(realRoot, name)
	if filepath.Dir(path) != realRoot {
		return nil, refused("file %q is not directly inside the log directory", file)
	}
	st, err := os.Lstat(path)
	if err != nil {
		return nil, refused("file %q not found in the log directory", name)
	}
	if !st.Mode().IsRegular() {
		return nil, refused("file %q is not a regular file", name)
	}
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, refused("file %q cannot be opened", name)
	}
	defer fd.Close()
	return tailLines(ctx, fd, n)
}

// tailLines reads backwards in chunks until it has n complete lines, the
// start of the file or maxTailBytes. The chunks are kept in a list and joined
// once (no prepending), newlines are counted per chunk; ctx bounds the time.
func tailLines(ctx context.Context, f *os.File, n int) ([]string, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, failed("log file unreadable")
	}
	const chunk = 64 << 10
	var chunks [][]byte // newest first
	var total int64
	newlines := 0
	off := st.Size()
	floor := max(off-maxTailBytes, 0) // never read before this offset
	for off > floor && newlines <= n {
		if ctx.Err() != nil {
			return nil, errLogTimeout
		}
		step := min(int64(chunk), off-floor)
		off -= step
		part := make([]byte, step)
		if _, err := f.ReadAt(part, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, failed("log file unreadable")
		}
		newlines += bytes.Count(part, []byte{'\n'})
		chunks = append(chunks, part)
		total += step
	}
	buf := make([]byte, 0, total)
	for i := len(chunks) - 1; i >= 0; i-- {
		buf = append(buf, chunks[i]...)
	}
	text := strings.TrimSuffix(string(buf), "\n")
	if text == "" {
		return nil, nil
	}
	all := strings.Split(text, "\n")
	if off > 0 && len(all) > 0 {
		all = all[1:] // a partial first line
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all, nil
}

// --- replies ---------------------------------------------------------------

func (q *Requests) maxReply() int {
	if q.Policy.MaxReply > 0 {
		return q.Policy.MaxReply
	}
	return 128 << 10
}

// resultReply is {"rid":…,"result":…}; over the cap it is an error (or, for
// logs, the caller retries with fewer lines).
func (q *Requests) resultReply(result any, rid json.RawMessage, isLog bool) ([]byte, error) {
	m := map[string]any{"result": result}
	if rid != nil {
		m["rid"] = rid
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, failed("reply not encodable")
	}
	if len(out) > q.maxReply() {
		return nil, failed("reply of %d bytes exceeds the %d-byte limit", len(out), q.maxReply())
	}
	return out, nil
}

func errorReply(kind string, err error, rid json.RawMessage) []byte {
	var r *refusal
	if !errors.As(err, &r) {
		r = &refusal{500, err.Error()}
	}
	var m map[string]any
	if kind == RequestAPI {
		m = map[string]any{"code": r.code, "error": r.msg, "status": "fail"}
	} else {
		m = map[string]any{"result": "command rejected: " + r.msg, "error": r.msg}
	}
	if rid != nil {
		m["rid"] = rid
	}
	out, _ := json.Marshal(m)
	return out
}

// --- redaction -------------------------------------------------------------

var hexRun = regexp.MustCompile(`(?i)\b[0-9a-f]{32}\b`)

// redact replaces, at any depth, the value of every key whose lowercased name
// ends in "key" or is password or passphrase.
func redact(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			lk := strings.ToLower(k)
			if strings.HasSuffix(lk, "key") || lk == "password" || lk == "passphrase" {
				x[k] = "REDACTED"
				continue
			}
			redact(val)
		}
	case []any:
		for _, e := range x {
			redact(e)
		}
	}
}
