package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

type reqEnv struct {
	q       *Requests
	marker  string
	logRoot string
	calls   func() [][]string
	api     []string // method path of every local API call
}

// newReqEnv: the simulator's lora-query stand-in, the simulator's mPower API,
// a log directory with a regular file, a subdirectory, a symlink pointing
// outside and a large file; a marker file hostile input must leave untouched.
func newReqEnv(t *testing.T) *reqEnv {
	t.Helper()
	e := &reqEnv{}
	dir := t.TempDir()
	bin := testpeer.GoBuild(t, "../cmd/conduit-sim")
	sessions, _ := os.ReadFile("../lnsbridge/testdata/session-list.json")
	var sess []json.RawMessage
	json.Unmarshal(sessions, &sess)
	lq, err := sim.InstallLoraQuery(filepath.Join(dir, "lq"), bin, sim.LoraQueryState{Sessions: sess, Devices: 9,
		Gateways: []json.RawMessage{json.RawMessage(`{"gweui":"00-80-00-00-d0-00-01-ff"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	e.calls = func() [][]string { c, _ := lq.Calls(); return c }
	e.marker = filepath.Join(dir, "marker")
	os.WriteFile(e.marker, []byte("untouched"), 0o600)
	e.logRoot = filepath.Join(dir, "log")
	os.MkdirAll(filepath.Join(e.logRoot, "sub"), 0o755)
	var msgs strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&msgs, "line %d lora-network-server event\n", i)
		if i%3 == 0 {
			fmt.Fprintf(&msgs, "line %d other thing\n", i)
		}
	}
	os.WriteFile(filepath.Join(e.logRoot, "messages"), []byte(msgs.String()), 0o644)
	os.WriteFile(filepath.Join(e.logRoot, "sub", "inner.log"), []byte("inner\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("outside\n"), 0o600)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(e.logRoot, "link.log"))
	big, _ := os.Create(filepath.Join(e.logRoot, "big.log"))
	big.Truncate(200 << 20) // sparse 200 MB of NULs, then a last line
	big.WriteAt([]byte("\nthe last line\n"), 200<<20)
	big.Close()

	mp := sim.NewMPower()
	mp.SetResult("/api/system", json.RawMessage(`{"firmware":"7.0.1","apikey":"FIXTURESECRETKEY"}`))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.api = append(e.api, r.Method+" "+r.URL.Path)
		mp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	policy := config.DefaultRemoteRequests()
	policy.LogRoot = e.logRoot
	policy.PerMinute = 1000
	e.q = &Requests{
		Policy:  policy,
		Enabled: config.RequestOptions{API: true, Lora: true, Log: true},
		LNS:     true,
		Lora:    lnsbridge.LoraQuery{Path: lq.Path()},
		API:     lnsbridge.NewMPower(srv.URL, 0, nil),
	}
	return e
}

func reply(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply %s is not JSON: %v", b, err)
	}
	return m
}

func TestRequestsServeAllowedKinds(t *testing.T) {
	e := newReqEnv(t)
	ctx := context.Background()
	tests := []struct {
		kind, payload string
		check         func(t *testing.T, m map[string]any, raw string)
	}{
		{RequestLora, `{"command":"device count","rid":1}`, func(t *testing.T, m map[string]any, raw string) {
			if raw != `{"result":{"count":9},"rid":1}` {
				t.Fatalf("%s", raw)
			}
		}},
		{RequestLora, `{"command":"session list json","rid":"abc"}`, func(t *testing.T, m map[string]any, raw string) {
			if m["rid"] != "abc" || strings.Contains(raw, "2b7e151628aed2a6abf7158809cf4f3c") || !strings.Contains(raw, `"app_senc_key":"REDACTED"`) {
				t.Fatalf("keys not redacted or rid lost: %.300s", raw)
			}
		}},
		{RequestLora, `{"command":"packet queue add '{\"deveui\":\"00-80-00-ff-00-00-00-03\",\"data\":\"QA==\"}'","rid":4}`, func(t *testing.T, m map[string]any, raw string) {
			if raw != `{"result":{"id":470,"status":"success"},"rid":4}` {
				t.Fatalf("%s", raw)
			}
		}},
		{RequestLora, `{"command":"help"}`, func(t *testing.T, m map[string]any, raw string) {
			if _, isStr := m["result"].(string); !isStr || m["rid"] != nil {
				t.Fatalf("raw output not a string, or a rid invented: %s", raw)
			}
		}},
		{RequestLog, `{"file":"/var/log/messages","lines":5,"filter":"OTHER","rid":7}`, func(t *testing.T, m map[string]any, raw string) {
			// tail first (the last 5 lines), then filter, as the original
			if m["result"] != "line 297 other thing\nline 300 other thing\n" || m["rid"] != float64(7) {
				t.Fatalf("%s", raw)
			}
		}},
		{RequestLog, `{"file":"messages"}`, func(t *testing.T, m map[string]any, raw string) {
			if s, _ := m["result"].(string); strings.Count(s, "\n") != 100 || !strings.HasSuffix(s, "line 300 other thing\n") {
				t.Fatalf("default 100 lines: %q", s)
			}
		}},
		{RequestLog, `{"file":"big.log","lines":1}`, func(t *testing.T, m map[string]any, raw string) {
			if m["result"] != "the last line\n" {
				t.Fatalf("%s", raw)
			}
		}},
		{RequestAPI, `{"method":"GET","path":"/api/system","body":"","rid":5}`, func(t *testing.T, m map[string]any, raw string) {
			res, _ := m["result"].(map[string]any)
			if m["rid"] != float64(5) || m["code"] != float64(200) || res["firmware"] != "7.0.1" || res["apikey"] != "REDACTED" {
				t.Fatalf("%s", raw)
			}
		}},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d %s", i, tc.kind), func(t *testing.T) {
			raw := e.q.Handle(ctx, tc.kind, "lorawan/x/"+tc.kind, []byte(tc.payload))
			tc.check(t, reply(t, raw), string(raw))
		})
	}
}

// Hostile inputs: each is refused with an error reply carrying the rid, runs
// nothing it should not, and leaves the marker file alone.
func TestRequestsRefuseHostileInputs(t *testing.T) {
	e := newReqEnv(t)
	ctx := context.Background()
	lora := func(cmd string) string {
		b, _ := json.Marshal(map[string]any{"command": cmd, "rid": 9})
		return string(b)
	}
	hostile := []struct{ kind, payload string }{
		{RequestLora, lora("device list json; touch " + e.marker)},
		{RequestLora, lora("device list json && reboot")},
		{RequestLora, lora("$(reboot)")},
		{RequestLora, lora("device list json `reboot`")},
		{RequestLora, lora("device list json | sh")},
		{RequestLora, lora("device list json\nreboot")},
		{RequestLora, lora("device list json\x00reboot")},
		{RequestLora, lora("device list json > " + e.marker)},
		{RequestLora, lora("session list json file " + e.marker)},
		{RequestLora, lora("device list json page 1; rm -rf /")},
		{RequestLora, lora("device list json page x")},
		{RequestLora, lora("appnet get $(reboot)")},
		{RequestLora, lora("appnet get 00-11-00-11-00-11-00-11 extra")},
		{RequestLora, lora("packet queue add '{\"deveui\":\"00-11-00-11-00-11-00-11\",\"data\":\"###\"}'")},
		{RequestLora, lora("packet queue add '{\"data\":\"QA==\"}'")},
		{RequestLora, lora("packet queue delete 1")},
		{RequestLora, lora("device delete 00-11-00-11-00-11-00-11")},
		{RequestLora, lora("'unbalanced")},
		{RequestLora, lora(strings.Repeat("a ", 3000))},
		{RequestLora, `{"command":5,"rid":9}`},
		{RequestLora, `{"rid":9}`},
		{RequestLog, `{"file":"../../etc/shadow","rid":9}`},
		{RequestLog, `{"file":"/var/log/../config/x","rid":9}`},
		{RequestLog, `{"file":"link.log","rid":9}`},
		{RequestLog, `{"file":"sub/inner.log","rid":9}`},
		{RequestLog, `{"file":"sub","rid":9}`},
		{RequestLog, `{"file":"/etc/passwd","rid":9}`},
		{RequestLog, `{"file":"messages","lines":"10; rm -rf /","rid":9}`},
		{RequestLog, `{"file":"messages","lines":-1,"rid":9}`},
		{RequestLog, `{"file":"messages","lines":1e9,"rid":9}`},
		{RequestLog, `{"file":"messages","filter":"(a+)+$` + strings.Repeat("x", 300) + `","rid":9}`},
		{RequestLog, `{"file":"messages","filter":"(unclosed","rid":9}`},
		{RequestAPI, `{"method":"DELETE","path":"/api/customApps/1","rid":9}`},
		{RequestAPI, `{"method":"GET","path":"/etc/passwd","rid":9}`},
		{RequestAPI, `{"method":"GET","path":"http://evil.example/api/x","rid":9}`},
		{RequestAPI, `{"method":"GET","path":"//evil.example/api/x","rid":9}`},
		{RequestAPI, `{"method":"GET","path":"/api/../command/restart","rid":9}`},
		{RequestAPI, `{"method":"POST","path":"/api/command/restart","rid":9}`},
		{RequestAPI, `{"method":"GET","path":"/api/system","body":[1],"rid":9}`},
		{RequestAPI, `{"method":"TRACE","path":"/api/system","rid":9}`},
		{RequestAPI, `{"path":"/api/system","rid":9}`},
		{RequestAPI, `not json`},
		{RequestAPI, `[1,2]`},
	}
	if len(hostile) < 30 {
		t.Fatalf("only %d hostile inputs", len(hostile))
	}
	for i, h := range hostile {
		t.Run(fmt.Sprintf("%02d %s", i, h.kind), func(t *testing.T) {
			before := len(e.calls())
			apiBefore := len(e.api)
			raw := e.q.Handle(ctx, h.kind, "lorawan/x/"+h.kind, []byte(h.payload))
			m := reply(t, raw)
			if m["error"] == nil || m["error"] == "" {
				t.Fatalf("accepted: %s → %s", h.payload, raw)
			}
			if json.Valid([]byte(h.payload)) && strings.Contains(h.payload, `"rid":9`) && m["rid"] != float64(9) {
				t.Fatalf("rid not echoed: %s", raw)
			}
			if h.kind == RequestAPI && (m["status"] != "fail" || m["code"] == nil) {
				t.Fatalf("api error shape: %s", raw)
			}
			if h.kind != RequestAPI && !strings.HasPrefix(fmt.Sprint(m["result"]), "command rejected: ") {
				t.Fatalf("lora/log error shape: %s", raw)
			}
			if len(e.calls()) != before || len(e.api) != apiBefore {
				t.Fatalf("a refused request reached lora-query or mPower: %s", h.payload)
			}
			if b, _ := os.ReadFile(e.marker); string(b) != "untouched" {
				t.Fatal("marker file changed")
			}
			if strings.Contains(string(raw), "outside") || strings.Contains(string(raw), "root:") {
				t.Fatalf("leaked: %s", raw)
			}
		})
	}
}

func TestRequestsFlagsOffAndRateLimit(t *testing.T) {
	e := newReqEnv(t)
	ctx := context.Background()
	e.q.Enabled = config.RequestOptions{}
	for _, kind := range []string{RequestAPI, RequestLora, RequestLog} {
		raw := string(e.q.Handle(ctx, kind, "t", []byte(`{"command":"device count","file":"messages","method":"GET","path":"/api/system","rid":1}`)))
		if !strings.Contains(raw, "not enabled") || strings.Contains(raw, "count") && strings.Contains(raw, `"result":{`) {
			t.Fatalf("%s with its flag off: %s", kind, raw)
		}
	}
	e.q.Enabled = config.RequestOptions{Lora: true}
	e.q.LNS = false
	if raw := string(e.q.Handle(ctx, RequestLora, "t", []byte(`{"command":"device count"}`))); !strings.Contains(raw, "network server") {
		t.Fatalf("lora without LNS: %s", raw)
	}
	e.q.LNS = true
	e.q.Policy.PerMinute = 2
	var last string
	for i := 0; i < 3; i++ {
		last = string(e.q.Handle(ctx, RequestLora, "t", []byte(`{"command":"device count"}`)))
	}
	if !strings.Contains(last, "rate limit") {
		t.Fatalf("third request within a minute: %s", last)
	}
}

// Each lora_req allow-list rule on its own: every refused case breaks exactly
// one rule and would pass every other, so loosening that rule lets it through;
// the accepted cases keep the rules from being tightened past the protocol.
func TestLoraAllowListRules(t *testing.T) {
	const dev = "00-11-00-11-00-11-00-11"
	dl := `'{"deveui":"` + dev + `","data":"QAE=","port":2}'`
	policy := config.DefaultRemoteRequests()
	// An entry the configuration check would refuse, to isolate the "file" rule.
	policy.LoraAllow = append(policy.LoraAllow, "session list json file")
	q := &Requests{Policy: policy}
	tests := []struct {
		rule, cmd string
		want      string // "" accepted, else a piece of the refusal
	}{
		{"listing alone", "device list json", ""},
		{"listing with page", "device list json page 12", ""},
		{"page of six digits", "device list json page 999999", ""},
		{"longest entry wins", "packet queue list json page 2", ""},
		{"longest entry wins over packet queue", "packet queue add " + dl, ""},
		{"appnet get one EUI", "appnet get " + dev, ""},
		{"plain command", "device count", ""},

		{"nothing but page after a listing", "device list json page 1 extra", `only "page <n>"`},
		{"page twice", "device list json page 1 page 2", `only "page <n>"`},
		{"page needs its number", "device list json page", `only "page <n>"`},
		{"a number needs page", "device list json 1", `only "page <n>"`},
		{"the word is page", "device list json pages 1", `only "page <n>"`},
		{"page number digits only", "device list json page 1x", `only "page <n>"`},
		{"page number not negative", "device list json page -1", `only "page <n>"`},
		{"page number at most six digits", "device list json page 1234567", `only "page <n>"`},
		{"nothing after a plain command", "device count extra", `only "page <n>"`},
		{"whole words, not string prefixes", "device counts", "not allowed"},
		{"whole words at the end too", "help me", `only "page <n>"`},
		{"unlisted command", "device delete " + dev, "not allowed"},
		{"file never allowed, even when listed", "session list json file", `"file" is never allowed`},
		{"appnet get takes an EUI", "appnet get", "one EUI"},
		{"appnet get takes one EUI only", "appnet get " + dev + " " + dev, "one EUI"},
		{"appnet get takes a valid EUI", "appnet get 00-11", "appnet get:"},
		{"packet queue add takes one object", "packet queue add " + dl + " " + dl, "one JSON object"},
		{"packet queue add takes an object", "packet queue add", "one JSON object"},
		{"packet queue add validates the downlink", `packet queue add '{"deveui":"` + dev + `","data":"QAE=","port":300}'`, "packet queue add:"},
		{"packet queue add needs a deveui", `packet queue add '{"data":"QAE=","port":2}'`, "no deveui"},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			words, err := SplitCommand(tc.cmd)
			if err != nil {
				t.Fatalf("SplitCommand(%q): %v", tc.cmd, err)
			}
			err = q.CheckLoraCommand(words)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%q refused: %v", tc.cmd, err)
			case tc.want != "" && err == nil:
				t.Fatalf("%q accepted; the rule %q must refuse it", tc.cmd, tc.rule)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("%q refused for another reason: %v (want %q)", tc.cmd, err, tc.want)
			}
		})
	}
}

// A log_req whose lines span more than the 16 MiB read cap: the reader stops
// at the cap (it returns only lines from the file's last 16 MiB), the reply
// holds the newest lines that fit the reply limit and no more, and a request
// whose deadline has passed is answered with an error instead of reading on.
func TestLogTailBoundedBySizeAndTime(t *testing.T) {
	const readCap = 16 << 20 // remote_requests' documented read cap
	root := t.TempDir()
	const lineLen, nLines = 2048, 10000 // 20 MB of lines: more than the cap
	var b strings.Builder
	pad := strings.Repeat("x", lineLen-len("line 000000 ")-1)
	for i := range nLines {
		fmt.Fprintf(&b, "line %06d %s\n", i, pad)
	}
	if b.Len() <= readCap {
		t.Fatalf("test file of %d bytes does not exceed the cap", b.Len())
	}
	if err := os.WriteFile(filepath.Join(root, "huge.log"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	contiguousNewest := func(t *testing.T, lines []string) {
		t.Helper()
		for i, l := range lines {
			want := fmt.Sprintf("line %06d ", nLines-len(lines)+i)
			if !strings.HasPrefix(l, want) || len(l) != lineLen-1 {
				t.Fatalf("line %d of %d is %.20q…, want %q…", i, len(lines), l, want)
			}
		}
	}
	ctx := context.Background()

	lines, err := ReadLogTail(ctx, root, "huge.log", nLines)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lines) * lineLen; n > readCap || len(lines) == 0 {
		t.Fatalf("%d lines (%d bytes) returned: the read cap is %d bytes", len(lines), n, readCap)
	}
	if want := readCap/lineLen - 1; len(lines) < want {
		t.Fatalf("%d lines returned, want the %d whole lines within the cap", len(lines), want)
	}
	contiguousNewest(t, lines)

	policy := config.DefaultRemoteRequests()
	policy.LogRoot = root
	q := &Requests{Policy: policy, Enabled: config.RequestOptions{Log: true}}
	raw := q.Handle(ctx, RequestLog, "lorawan/x/log_req", []byte(fmt.Sprintf(`{"file":"huge.log","lines":%d,"rid":7}`, nLines)))
	if len(raw) > q.maxReply() {
		t.Fatalf("reply of %d bytes exceeds the %d-byte limit", len(raw), q.maxReply())
	}
	m := reply(t, raw)
	text, _ := m["result"].(string)
	if m["error"] != nil || m["rid"] != float64(7) || !strings.HasSuffix(text, "\n") {
		t.Fatalf("reply %.300s", raw)
	}
	got := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	contiguousNewest(t, got)
	if len(raw)+lineLen <= q.maxReply() {
		t.Fatalf("reply of %d lines (%d bytes) leaves room for another line under %d bytes", len(got), len(raw), q.maxReply())
	}

	// The deadline: a request whose context has ended reads nothing more.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ReadLogTail(done, root, "huge.log", nLines); err == nil {
		t.Fatal("ReadLogTail went on after its context ended")
	}
	raw = q.Handle(done, RequestLog, "lorawan/x/log_req", []byte(`{"file":"huge.log","lines":10,"rid":8}`))
	if m := reply(t, raw); m["error"] == nil || !strings.Contains(fmt.Sprint(m["error"]), "timeout") || m["rid"] != float64(8) {
		t.Fatalf("a log_req past its deadline answered %s", raw)
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"device list json page 0", []string{"device", "list", "json", "page", "0"}, false},
		{`packet queue add '{"a": "b c"}'`, []string{"packet", "queue", "add", `{"a": "b c"}`}, false},
		{`a "b \"c\" \\ d" e`, []string{"a", `b "c" \ d`, "e"}, false},
		{`a'b'c`, []string{"abc"}, false},
		{"  a\tb  ", []string{"a", "b"}, false},
		{`$(x) ; | &`, []string{"$(x)", ";", "|", "&"}, false}, // words, never expanded or interpreted
		{`'open`, nil, true},
		{`"open`, nil, true},
		{"a\nb", nil, true},
		{"a\x00b", nil, true},
		{"", nil, true},
	}
	for _, tc := range tests {
		got, err := SplitCommand(tc.in)
		if (err != nil) != tc.err || fmt.Sprint(got) != fmt.Sprint(tc.want) && !tc.err {
			t.Errorf("SplitCommand(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"device list json", `packet queue add '{"x":1}'`, `a "b\"c"`, "$(reboot)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitCommand(s)
		if err != nil {
			return
		}
		for _, w := range words {
			if strings.ContainsAny(w, "\n\r\x00") {
				t.Fatalf("control character in word %q", w)
			}
		}
	})
}

func FuzzRequestDecode(f *testing.F) {
	f.Add([]byte(`{"command":"device count","rid":1}`))
	f.Add([]byte(`{"method":"GET","path":"/api/x","body":null,"rid":"a"}`))
	f.Add([]byte(`{"file":"messages","lines":5,"filter":"x"}`))
	q := &Requests{Policy: config.DefaultRemoteRequests(), Enabled: config.RequestOptions{API: true, Lora: true, Log: true}, LNS: true}
	q.Policy.LogRoot = f.TempDir()
	q.Policy.PerMinute = 1 << 30
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, kind := range []string{RequestAPI, RequestLora, RequestLog} {
			out := q.Handle(context.Background(), kind, "t", payload)
			if !json.Valid(out) {
				t.Fatalf("reply is not JSON: %s", out)
			}
		}
	})
}

// No non-test code of the project starts a shell or builds a command from a
// concatenated string.
func TestNoShellInProductCode(t *testing.T) {
	root := ".."
	shell := regexp.MustCompile(`"(/bin/)?(ba|da|z)?sh"\s*,\s*"-c"`)
	concat := regexp.MustCompile(`exec\.Command(Context)?\([^)]*\+`)
	var checked int
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() && (info.Name() == ".git" || info.Name() == "testdata" || info.Name() == "build") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		checked++
		if shell.Match(b) || strings.Contains(string(b), `"sh -c`) || strings.Contains(string(b), `"bash -c`) {
			t.Errorf("%s starts a shell", p)
		}
		if concat.Match(b) {
			t.Errorf("%s builds a command from a concatenated string", p)
		}
		return nil
	})
	if err != nil || checked < 20 {
		t.Fatalf("walked %d files: %v", checked, err)
	}
}
