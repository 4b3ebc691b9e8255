package joins

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brocaar/lorawan"
	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// joinEnv is Start running against one Join Server, with a real SQLite file.
type joinEnv struct {
	proxyURL string
	db       *cache.DB
	dbPath   string
	proxy    *Proxy
	logs     *testpeer.LogBuffer
	counts   *admin.JoinCounts
}

// writeInterop writes an interop repository routing every JoinEUI to jsURL.
func writeInterop(t *testing.T, jsURL string) string {
	t.Helper()
	return jstest.WriteInterop(t, jsURL, "0000000000000000/0", "BI1.0", "")
}

// freeLoopbackAddr is a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
}

// openDB opens a real SQLite file, closed at the end of the test.
func openDB(t *testing.T, path string) *cache.DB {
	t.Helper()
	db, err := cache.Open(context.Background(), path, cache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// networkServer is the simulated network server of fleet's devices devs.
func networkServer(t *testing.T, fleet *sim.Fleet, devs []jstest.Device) *sim.NetworkServer {
	t.Helper()
	ns, err := sim.NewNetworkServer(fleet, devs, sim.NetworkServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func startJoinEnv(t *testing.T, jsURL string, budget time.Duration) *joinEnv {
	t.Helper()
	return startJoinEnvIn(t, writeInterop(t, jsURL), budget)
}

// startJoinEnvIn is startJoinEnv on the interop repository in dir.
func startJoinEnvIn(t *testing.T, interopDir string, budget time.Duration) *joinEnv {
	t.Helper()
	env := &joinEnv{dbPath: filepath.Join(t.TempDir(), "app-connect.db"), logs: &testpeer.LogBuffer{}, counts: admin.NewJoinCounts()}
	env.db = openDB(t, env.dbPath)
	j := config.DefaultJoin()
	j.Enabled, j.NetID, j.Budget = true, "000013", budget
	j.InteropDir = interopDir
	if errs := j.Validate(); len(errs) > 0 {
		t.Fatalf("join settings: %v", errs)
	}
	log := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for attempt := 0; ; attempt++ { // the free port may be taken between the check and the listen
		j.ProxyListen = freeLoopbackAddr(t)
		p, err := Start(context.Background(), j, Options{Store: env.db, Counts: env.counts, Log: log, UserAgent: "app-connect/test"})
		if err == nil {
			env.proxy = p
			env.proxyURL = "http://" + j.ProxyListen + "/"
			break
		}
		if attempt == 2 {
			t.Fatalf("Start: %v", err)
		}
	}
	t.Cleanup(func() { env.proxy.Stop(context.Background()) }) // before db.Close (cleanups run last first)
	return env
}

// The whole chain: the simulated network server sends a real join-request through
// Start's proxy to brocaar/lorawan's Join Server handler, verifies the join-accept with
// the device's keys, and the attempt is in the SQLite file, without any key.
func TestJoinProxyEndToEnd(t *testing.T) {
	fleet := sim.NewFleet(2, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 1)
	devs := sim.JoinDevices(fleet, 1, false)
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: devs[:1], FirstJoinNonce: 3}))
	const budget = 3 * time.Second
	env := startJoinEnv(t, js.URL, budget)

	ns := networkServer(t, fleet, devs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	sess, err := ns.Join(ctx, env.proxyURL, 0)
	if err != nil {
		t.Fatalf("join through the proxy: %v", err)
	}
	if elapsed := time.Since(start); elapsed >= budget {
		t.Fatalf("join took %s, budget %s", elapsed, budget)
	}
	if sess.Keys.JoinNonce != 3 {
		t.Fatalf("JoinNonce %d", sess.Keys.JoinNonce)
	}
	if _, _, _, err := ns.Uplink(0); err != nil {
		t.Fatalf("uplink with the session keys: %v", err)
	}
	// Device 1 is unknown to the Join Server: its code reaches the network server and the cache.
	var je *sim.JoinError
	if _, err := ns.Join(ctx, env.proxyURL, 1); !errors.As(err, &je) || je.ResultCode != "UnknownDevEUI" {
		t.Fatalf("unknown device: %v", err)
	}

	env.proxy.Stop(ctx) // waits for the recordings
	got, err := env.db.JoinAttempts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d attempts recorded: %+v", len(got), got)
	}
	want := func(a cache.JoinAttempt, dev int, result string) {
		t.Helper()
		d := devs[dev]
		if a.MessageType != "JoinReq" || a.DevEUI != strings.ToUpper(d.DevEUI.String()) || a.JoinEUI != strings.ToUpper(d.JoinEUI.String()) ||
			a.JoinServer != "remote/js" || a.Result != result || a.Latency < 0 || a.Latency >= budget || time.Since(a.Time) > time.Minute {
			t.Errorf("attempt %+v, want device %s result %s", a, d.DevEUI, result)
		}
	}
	want(got[1], 0, "Success")
	want(got[0], 1, "UnknownDevEUI")
	// The same attempts are counted for /metrics.
	if c := env.counts.Snapshot(); len(c) != 2 || c[0] != (admin.JoinCount{JoinServer: "remote/js", Result: "Success", Count: 1}) ||
		c[1] != (admin.JoinCount{JoinServer: "remote/js", Result: "UnknownDevEUI", Count: 1}) {
		t.Errorf("join counters %+v", c)
	}
	if !got[1].SessionKeyIDLocal || len(got[1].SessionKeyID) == 0 {
		t.Errorf("success without a session key id: %+v", got[1])
	}

	// No key in the database file (nor its WAL), as bytes or as hex; none in the logs.
	env.db.Close()
	var stored []byte
	for _, sfx := range []string{"", "-wal"} {
		b, err := os.ReadFile(env.dbPath + sfx)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		stored = append(stored, b...)
	}
	logs := env.logs.String()
	for name, k := range map[string][16]byte{"NwkKey": devs[0].NwkKey, "NwkSKey": sess.Keys.FNwkSIntKey, "AppSKey": sess.Keys.AppSKey} {
		for _, form := range [][]byte{k[:], []byte(fmt.Sprintf("%x", k)), []byte(fmt.Sprintf("%X", k))} {
			if bytes.Contains(stored, form) {
				t.Errorf("%s found in the database", name)
			}
			if strings.Contains(logs, string(form)) {
				t.Errorf("%s found in the logs", name)
			}
		}
	}
	if !strings.Contains(logs, "join proxy listening") || !strings.Contains(logs, "result=Success") {
		t.Errorf("logs:\n%s", logs)
	}
}

// A Join Server that never answers: the network server gets an error answer before the
// budget ends, and the attempt is recorded as a timeout.
func TestJoinHangingJoinServer(t *testing.T) {
	fleet := sim.NewFleet(1, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 2)
	devs := sim.JoinDevices(fleet, 2, false)
	hang := jstest.Serve(t, jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: devs}), jstest.StrictConfig{Block: true}))
	const budget = 600 * time.Millisecond
	env := startJoinEnv(t, hang.URL, budget)
	ns := networkServer(t, fleet, devs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := ns.Join(ctx, env.proxyURL, 0)
	elapsed := time.Since(start)
	var je *sim.JoinError
	if !errors.As(err, &je) || je.ResultCode != "Other" {
		t.Fatalf("join: %v", err)
	}
	if elapsed >= budget {
		t.Fatalf("answered after %s, budget %s", elapsed, budget)
	}
	env.proxy.Stop(ctx)
	got, err := env.db.JoinAttempts(ctx, 0)
	if err != nil || len(got) != 1 || got[0].Result != "timeout" || got[0].JoinServer != "remote/js" {
		t.Fatalf("attempts %+v: %v", got, err)
	}
}

func TestJoinDisabled(t *testing.T) {
	j := config.DefaultJoin()
	addr := freeLoopbackAddr(t)
	j.ProxyListen = addr
	p, err := Start(context.Background(), j, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats() != nil {
		t.Error("disabled join forwarding has proxy stats")
	}
	p.Stop(context.Background())
	ln, err := net.Listen("tcp", addr) // nothing took the port
	if err != nil {
		t.Fatalf("disabled join forwarding listens: %v", err)
	}
	ln.Close()
}

func TestJoinStartErrors(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{}))
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	base := config.DefaultJoin()
	base.Enabled, base.NetID, base.InteropDir = true, "000013", writeInterop(t, js.URL)
	for _, tc := range []struct {
		name  string
		edit  func(*config.Join)
		store Store
		want  string
	}{
		{"no NetID", func(j *config.Join) { j.NetID = "" }, db, "no NetID"},
		{"no database", func(*config.Join) {}, nil, "no database"},
		{"non-loopback listen address", func(j *config.Join) { j.ProxyListen = "0.0.0.0:0" }, db, "loopback"},
		{"missing interop repository", func(j *config.Join) { j.InteropDir = filepath.Join(t.TempDir(), "none") }, db, "config.yml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := base
			tc.edit(&j)
			p, err := Start(context.Background(), j, Options{Store: tc.store, Log: slog.New(slog.DiscardHandler)})
			if err == nil {
				p.Stop(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestJoinNetID(t *testing.T) {
	j := config.DefaultJoin()
	if id, err := NetID(j, "000013"); err != nil || id != "000013" {
		t.Fatalf("from mPower: %q, %v", id, err)
	}
	j.NetID = "00002A"
	if id, err := NetID(j, "000013"); err != nil || id != "00002A" {
		t.Fatalf("from the YAML: %q, %v", id, err)
	}
	j.NetID = ""
	if _, err := NetID(j, ""); err == nil {
		t.Fatal("no NetID anywhere accepted")
	}
}

func TestJoinNetIDFromMPower(t *testing.T) {
	mp := sim.NewMPower()
	mp.SetLoraNetwork(sim.LoraNetwork("00-80-00-00-d0-00-01-ff", "127.0.0.1", 1883))
	srv := httptest.NewServer(mp)
	defer srv.Close()
	client := lnsbridge.NewMPower(srv.URL, 5*time.Second, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	j := config.DefaultJoin()
	if id, err := NetIDFromMPower(ctx, client, j); err != nil || id != "000013" {
		t.Fatalf("from mPower: %q, %v", id, err)
	}
	j.NetID = "00002A"
	if id, err := NetIDFromMPower(ctx, lnsbridge.NewMPower("http://127.0.0.1:1", time.Second, nil), j); err != nil || id != "00002A" {
		t.Fatalf("from the YAML (mPower not asked): %q, %v", id, err)
	}
	j.NetID = ""
	if _, err := NetIDFromMPower(ctx, lnsbridge.NewMPower("http://127.0.0.1:1", time.Second, nil), j); err == nil {
		t.Fatal("unreachable mPower accepted")
	}
}

// check-config prints the routing table of the fixture repository.
func TestJoinCheckConfig(t *testing.T) {
	j := config.DefaultJoin()
	j.InteropDir = filepath.Join("..", "..", "joinclient", "testdata", "interop") // the one copy of the fixture
	j.ASID = "conduit-1.example.com"
	var out bytes.Buffer
	if err := CheckConfig(j, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"join forwarding: disabled",
		"net_id from mPower loraNetwork lora.netID",
		"4 Join Servers, 4 routes",
		"PREFIX",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// One line per route, most specific first, the catch-all last.
	rows := [][]string{
		{"EC656E0000000000/24", "tti/ns-js", "ns", "BI1.1", "https://join.cloud.thethings.industries"},
		{"EC656E0000000000/24", "tti/as-js", "as", "BI1.1", "https://join.cloud.thethings.industries"},
		{"0016C00000000000/24", "semtech/js", "as,ns", "BI1.0", "https://js.loracloud.com:7009/api/v1/rens/rens-1::2/lbi_joinreq"},
		{"0000000000000000/0", "fallback/js", "as,ns", "BI1.0", "http://127.0.0.1:8652"},
	}
	lines := strings.Split(strings.TrimSpace(text[strings.Index(text, "PREFIX"):]), "\n")[1:]
	if len(lines) != len(rows) {
		t.Fatalf("%d routes printed, want %d:\n%s", len(lines), len(rows), text)
	}
	for _, row := range rows {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) == 5 && f[0] == row[0] && f[1] == row[1] && f[2] == row[2] && f[3] == row[3] && strings.HasPrefix(f[4], row[4]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no route %v in:\n%s", row, text)
		}
	}
	if f := strings.Fields(lines[len(lines)-1]); f[0] != "0000000000000000/0" {
		t.Errorf("catch-all not last:\n%s", text)
	}

	j.Enabled, j.NetID = true, "000013"
	out.Reset()
	if err := CheckConfig(j, &out); err != nil || !strings.Contains(out.String(), "enabled, proxy on 127.0.0.1:8651") ||
		!strings.Contains(out.String(), "net_id 000013") {
		t.Fatalf("enabled: %v\n%s", err, out.String())
	}

	// Errors name the problem; no interop repository is nothing to check.
	for _, tc := range []struct {
		name string
		edit func(*config.Join)
		want string
	}{
		{"as entries without as_id", func(c *config.Join) { c.ASID = "" }, "join.as_id is required"},
		{"missing repository", func(c *config.Join) { c.InteropDir = filepath.Join(t.TempDir(), "none") }, "config.yml"},
		{"enabled without a repository", func(c *config.Join) { c.InteropDir = "" }, "join.interop_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := j
			tc.edit(&c)
			err := CheckConfig(c, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
	j.Enabled, j.InteropDir = false, ""
	out.Reset()
	if err := CheckConfig(j, &out); err != nil || out.Len() != 0 {
		t.Fatalf("no repository: %v %q", err, out.String())
	}
}

// postBI sends one BI request as the network server does and decodes the answer.
func postBI(t *testing.T, url string, body map[string]any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func biResult(m map[string]any) string {
	r, _ := m["Result"].(map[string]any)
	s, _ := r["ResultCode"].(string)
	return s
}

// RejoinReq (types 0, 1 and 2) and HomeNSReq through the whole program:
// Start's proxy, routed by a real prefix to the paths of the Join Server
// file, each attempt in the SQLite file; the breaker and header-warning state
// reach /status and /metrics.
func TestJoinRejoinAndHomeNSEndToEnd(t *testing.T) {
	fleet := sim.NewFleet(1, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 3)
	dev := sim.JoinDevices(fleet, 3, true)[0]
	home := lorawan.NetID{0, 0, 0x42}
	strict := jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{dev}, HomeNetID: &home}), jstest.StrictConfig{})
	js := jstest.Serve(t, strict)
	joinEUI := strings.ToUpper(dev.JoinEUI.String())
	dir := jstest.WriteInterop(t, js.URL, joinEUI[:8]+"00000000/32", "BI1.1",
		"sender-ns-id: '70B3D5FFFE000001'\npaths:\n  rejoin: 'bi/rejoin'\n  home-ns: 'bi/home-ns'\n")
	env := startJoinEnvIn(t, dir, 3*time.Second)

	devEUI := strings.ToUpper(dev.DevEUI.String())
	for typ := range 3 {
		frame := dev.RejoinRequest(typ, lorawan.NetID{0, 0, 0x13}, uint16(typ+1))
		ans := postBI(t, env.proxyURL, map[string]any{"ProtocolVersion": "1.0", "SenderID": "000013", "ReceiverID": joinEUI,
			"TransactionID": 21, "MessageType": "RejoinReq", "MACVersion": "1.1", "PHYPayload": fmt.Sprintf("%X", frame),
			"DevEUI": devEUI, "DevAddr": "26011234", "DLSettings": "80", "RxDelay": 1})
		if biResult(ans) != "Success" || ans["MessageType"] != "RejoinAns" {
			t.Fatalf("RejoinReq type %d: %v", typ, ans)
		}
		accept, err := hex.DecodeString(ans["PHYPayload"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if err := dev.VerifyRejoinAccept(accept, typ, uint16(typ+1)); err != nil {
			t.Fatalf("RejoinReq type %d: %v", typ, err)
		}
	}
	ans := postBI(t, env.proxyURL, map[string]any{"ProtocolVersion": "1.0", "SenderID": "000013", "ReceiverID": joinEUI,
		"TransactionID": 22, "MessageType": "HomeNSReq", "DevEUI": devEUI})
	if biResult(ans) != "Success" || ans["HNetID"] != "000042" {
		t.Fatalf("HomeNSReq: %v", ans)
	}
	for _, r := range strict.Requests() {
		if want := map[string]string{"RejoinReq": "/bi/rejoin", "HomeNSReq": "/bi/home-ns"}[fmt.Sprint(r.Body["MessageType"])]; r.Path != want {
			t.Errorf("%v sent to %s, want %s", r.Body["MessageType"], r.Path, want)
		}
	}

	// /status and /metrics show the proxy's per-Join-Server state while it runs.
	st := admin.NewState("test", nil)
	st.Attach(admin.NewSources(admin.Parts{JoinProxy: env.proxy}))
	doc := st.Status()
	if doc.JoinProxy == nil || len(doc.JoinProxy.JoinServers) != 1 || doc.JoinProxy.JoinServers[0].Breaker != "closed" ||
		doc.JoinProxy.JoinServers[0].JoinServer != "remote/js" {
		t.Fatalf("/status join_proxy: %+v", doc.JoinProxy)
	}
	var metrics bytes.Buffer
	if err := admin.WriteMetrics(&metrics, doc, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`appconnect_join_server_breaker_open{js="remote/js"} 0`, `appconnect_join_server_in_flight{js="remote/js"} 0`,
		"appconnect_join_records_dropped_total 0", "# TYPE appconnect_join_header_warnings_total counter"} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	ctx := context.Background()
	env.proxy.Stop(ctx) // records what is queued
	got, err := env.db.JoinAttempts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range got {
		if a.Result != "Success" || a.DevEUI != devEUI || a.JoinServer != "remote/js" {
			t.Errorf("attempt %+v", a)
		}
		kinds = append(kinds, a.MessageType)
	}
	slices.Sort(kinds)
	if want := []string{"HomeNSReq", "RejoinReq", "RejoinReq", "RejoinReq"}; !slices.Equal(kinds, want) {
		t.Fatalf("recorded %q, want %q", kinds, want)
	}
}

// A hanging Join Server opens its breaker; /metrics and `status` say so.
func TestJoinBreakerInStatusAndMetrics(t *testing.T) {
	fleet := sim.NewFleet(1, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 4)
	devs := sim.JoinDevices(fleet, 4, false)
	hang := jstest.Serve(t, jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: devs}), jstest.StrictConfig{Block: true}))
	dir := writeInterop(t, hang.URL)
	logs := &testpeer.LogBuffer{}
	db := openDB(t, filepath.Join(t.TempDir(), "app-connect.db"))
	j := config.DefaultJoin()
	j.Enabled, j.NetID, j.Budget, j.InteropDir = true, "000013", 500*time.Millisecond, dir
	j.BreakerTimeouts, j.BreakerCoolDown = 1, time.Hour
	j.ProxyListen = freeLoopbackAddr(t)
	p, err := Start(context.Background(), j, Options{Store: db, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	ns := networkServer(t, fleet, devs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 { // the first times out and opens the breaker; the second is answered at once
		var je *sim.JoinError
		if _, err := ns.Join(ctx, "http://"+j.ProxyListen+"/", 0); !errors.As(err, &je) || je.ResultCode != "Other" {
			t.Fatalf("join: %v", err)
		}
	}
	st := admin.NewState("test", nil)
	st.Attach(admin.NewSources(admin.Parts{JoinProxy: p}))
	doc := st.Status()
	var metrics, text bytes.Buffer
	if err := admin.WriteMetrics(&metrics, doc, nil); err != nil {
		t.Fatal(err)
	}
	admin.WriteText(&text, doc)
	for _, want := range []string{`appconnect_join_server_breaker_open{js="remote/js"} 1`, `appconnect_join_server_breaker_opened_total{js="remote/js"} 1`,
		`appconnect_join_server_short_circuited_total{js="remote/js"} 1`} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if want := "join server remote/js: breaker open (1 consecutive timeouts, opened 1 times, 1 answered at once), 0 refused busy, 0 answer-header warnings"; !strings.Contains(text.String(), want) {
		t.Errorf("status text lacks %q:\n%s", want, text.String())
	}
	if n := strings.Count(logs.String(), "circuit open"); n != 1 {
		t.Errorf("breaker opening logged %d times:\n%s", n, logs.String())
	}
}
