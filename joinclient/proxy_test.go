package joinclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/brocaar/lorawan"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

type proxyEnv struct {
	url string
	rec *recorder
}

// startProxy serves a proxy on a free loopback port through Listen and Server.
func startProxy(t *testing.T, repo *jc.Repository, keks *jc.KEKStore, budget time.Duration, nsLabel string) proxyEnv {
	t.Helper()
	rec := newRecorder()
	p, err := jc.NewProxy(jc.ProxyConfig{
		Router: jc.NewRouter(repo, clientOpts()), KEKs: keks, NetID: katNetID, Budget: budget, NSKEKLabel: nsLabel, Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := jc.Listen(ctx, "127.0.0.1:0")
	jstest.RequirePeer(t, "loopback listener", err)
	srv := jc.NewServer(p)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return proxyEnv{url: "http://" + ln.Addr().String() + "/", rec: rec}
}

// nsJoinReq is the body the network server sends.
func nsJoinReq(t *testing.T, pv string, d jstest.Device, devNonce uint16) map[string]any {
	t.Helper()
	r := joinReq(t, d, devNonce)
	m := map[string]any{
		"ProtocolVersion": pv, "SenderID": "000013", "ReceiverID": jc.EUI64(d.JoinEUI).String(), "TransactionID": 77,
		"MessageType": "JoinReq", "MACVersion": string(r.MACVersion), "PHYPayload": r.PHYPayload.String(),
		"DevEUI": r.DevEUI.String(), "DevAddr": "26011234", "DLSettings": strings.ToLower(hexByte(byte(r.DLSettings))), "RxDelay": 1,
		"SenderToken": "ABCD",
	}
	if pv == "1.1" {
		m["SenderNSID"] = "0102030405060708"
	}
	return m
}

func hexByte(b byte) string {
	return strings.ToUpper(string("0123456789ABCDEF"[b>>4]) + string("0123456789ABCDEF"[b&15]))
}

// post sends body to the proxy as the network server would and decodes the answer.
func post(t *testing.T, url string, body any) (int, map[string]any, time.Duration) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	start := time.Now()
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, m, elapsed
}

func resultCode(m map[string]any) string {
	if r, ok := m["Result"].(map[string]any); ok {
		s, _ := r["ResultCode"].(string)
		return s
	}
	s, _ := m["ResultCode"].(string)
	return s
}

func plainKeyOf(t *testing.T, m map[string]any, field string) lorawan.AES128Key {
	t.Helper()
	env, ok := m[field].(map[string]any)
	if !ok || env["KEKLabel"] != "" {
		t.Fatalf("%s: not a plaintext envelope: %v", field, m[field])
	}
	var k lorawan.AES128Key
	if err := k.UnmarshalText([]byte(env["AESKey"].(string))); err != nil {
		t.Fatal(err)
	}
	return k
}

func phy(t *testing.T, m map[string]any) []byte {
	t.Helper()
	var h jc.HEXBytes
	if err := h.UnmarshalText([]byte(m["PHYPayload"].(string))); err != nil {
		t.Fatal(err)
	}
	return h
}

// The whole chain: network server → proxy → brocaar's Join Server → proxy →
// network server, the device verifying the join-accept, within the budget.
func TestProxyChainBrocaar(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{
		Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5, KEKs: map[string][]byte{"000013": katNSKEK},
	}))
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "brocaar", url: js.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}, components: []string{"ns"}})
	const budget = 3 * time.Second
	env := startProxy(t, repo, kekStore(t, map[string][]byte{"000013": katNSKEK}), budget, "")

	t.Run("BI1.0 network server, LoRaWAN 1.0.3 device", func(t *testing.T) {
		status, ans, elapsed := post(t, env.url, nsJoinReq(t, "1.0", katDevice, 7))
		if status != 200 || resultCode(ans) != "Success" || elapsed >= budget {
			t.Fatalf("status %d answer %v after %s", status, ans, elapsed)
		}
		if ans["PHYPayload"] != katJoinAccept || ans["ProtocolVersion"] != "1.0" || ans["MessageType"] != "JoinAns" ||
			ans["SenderID"] != "0011223300000001" || ans["ReceiverID"] != "000013" || ans["ReceiverToken"] != "ABCD" {
			t.Fatalf("answer %v", ans)
		}
		if _, has := ans["ReceiverNSID"]; has {
			t.Fatal("ReceiverNSID in a BI1.0 answer")
		}
		if _, has := ans["SessionKeyID"]; has {
			t.Fatal("a local SessionKeyID was sent to the network server")
		}
		sk, err := katDevice.VerifyJoinAccept(phy(t, ans), 7)
		if err != nil {
			t.Fatal(err)
		}
		nwk, app := plainKeyOf(t, ans, "NwkSKey"), plainKeyOf(t, ans, "AppSKey")
		if nwk != sk.FNwkSIntKey || app != sk.AppSKey || strings.ToUpper(nwk.String()) != katNwkSKey || strings.ToUpper(app.String()) != katAppSKey {
			t.Fatal("keys to the network server differ from the device's")
		}
		last := env.rec.next(t)
		if last.Result != "Success" || last.JoinServer != "brocaar" || last.DevEUI != jc.EUI64(katDevEUI) ||
			last.JoinEUI != jc.EUI64(katJoinEUI) || !last.SessionKeyIDLocal || !bytes.HasPrefix(last.SessionKeyID, []byte("ac-local:")) {
			t.Fatalf("attempt %+v", last)
		}
	})
	t.Run("BI1.1 network server, LoRaWAN 1.1 device", func(t *testing.T) {
		status, ans, _ := post(t, env.url, nsJoinReq(t, "1.1", device11, 3))
		env.rec.next(t)
		if status != 200 || resultCode(ans) != "Success" || ans["ProtocolVersion"] != "1.1" || ans["ReceiverNSID"] != "0102030405060708" {
			t.Fatalf("answer %v", ans)
		}
		sk, err := device11.VerifyJoinAccept(phy(t, ans), 3)
		if err != nil {
			t.Fatal(err)
		}
		if plainKeyOf(t, ans, "FNwkSIntKey") != sk.FNwkSIntKey || plainKeyOf(t, ans, "SNwkSIntKey") != sk.SNwkSIntKey ||
			plainKeyOf(t, ans, "NwkSEncKey") != sk.NwkSEncKey || plainKeyOf(t, ans, "AppSKey") != sk.AppSKey {
			t.Fatal("1.1 keys differ from the device's")
		}
		if _, has := ans["NwkSKey"]; has {
			t.Fatal("NwkSKey for a 1.1 device")
		}
	})
	t.Run("MICFailed and UnknownDevEUI pass through", func(t *testing.T) {
		d := katDevice
		d.NwkKey[0] ^= 1
		if _, ans, _ := post(t, env.url, nsJoinReq(t, "1.0", d, 9)); resultCode(ans) != "MICFailed" || env.rec.next(t).Result != "MICFailed" {
			t.Fatalf("answer %v", ans)
		}
		d = katDevice
		d.DevEUI[0] = 0x01
		if _, ans, _ := post(t, env.url, nsJoinReq(t, "1.0", d, 9)); resultCode(ans) != "UnknownDevEUI" || env.rec.next(t).Result != "UnknownDevEUI" {
			t.Fatalf("answer %v", ans)
		}
	})
}

func TestProxyStrict(t *testing.T) {
	keks := map[string][]byte{
		"ns:000013:conduit": {0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		"as:conduit-1":      {0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		"nsproxy":           {0x30, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	}
	strict, peer := startStrict(t, jstest.StrictConfig{})
	asStrict, asPeer := startStrict(t, jstest.StrictConfig{})
	_ = asStrict
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid},
		jsSpec{name: "ns", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"ns"}},
		jsSpec{name: "as", url: asPeer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"as"}, extra: "paths:\n  app-s-key: 'as/appskey'\n"},
		jsSpec{name: "nsonly", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000001/64"}, components: []string{"ns"}},
	)
	const budget = 2 * time.Second
	env := startProxy(t, repo, kekStore(t, keks), budget, "")
	otherJoinEUI := katJoinEUI
	otherJoinEUI[3] = 0x34 // in neither ns nor as entries
	devOther := katDevice
	devOther.JoinEUI = otherJoinEUI
	devNoAS := katDevice // 0011223300000001/64 has an ns entry only... and the /32 as entry
	_ = devNoAS

	t.Run("wrapped keys with KEK labels reach the network server in plaintext", func(t *testing.T) {
		strict.Configure(func(c *jstest.StrictConfig) {
			*c = jstest.StrictConfig{Mode: jstest.KeysWrapped, KEKs: keks, NSKEKLabel: "ns:000013:conduit", ASKEKLabel: "as:conduit-1"}
		})
		_, ans, _ := post(t, env.url, nsJoinReq(t, "1.1", device11, 11))
		if resultCode(ans) != "Success" || env.rec.next(t).Result != "Success" {
			t.Fatalf("answer %v", ans)
		}
		sk, err := device11.VerifyJoinAccept(phy(t, ans), 11)
		if err != nil {
			t.Fatal(err)
		}
		if plainKeyOf(t, ans, "FNwkSIntKey") != sk.FNwkSIntKey || plainKeyOf(t, ans, "AppSKey") != sk.AppSKey {
			t.Fatal("keys differ")
		}
	})
	t.Run("SessionKeyID only: AppSKeyReq to the as Join Server", func(t *testing.T) {
		mode := jstest.StrictConfig{Mode: jstest.KeysSessionKeyID, KEKs: keks, NSKEKLabel: "ns:000013:conduit", ASKEKLabel: "as:conduit-1"}
		strict.Configure(func(c *jstest.StrictConfig) { *c = mode })
		// The as server must know the session: the ns server keeps it. Point
		// the as entry at the same strict server by sharing its sessions: use
		// a repository whose as entry is the ns server.
		repo2 := testRepo(t, jc.RepositoryOptions{NSID: nsid},
			jsSpec{name: "ns", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"ns"}},
			jsSpec{name: "as", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"as"}, extra: "paths:\n  app-s-key: 'as/appskey'\n"},
		)
		env2 := startProxy(t, repo2, kekStore(t, keks), budget, "")
		_, ans, _ := post(t, env2.url, nsJoinReq(t, "1.0", katDevice, 12))
		if resultCode(ans) != "Success" {
			t.Fatalf("answer %v", ans)
		}
		sk, err := katDevice.VerifyJoinAccept(phy(t, ans), 12)
		if err != nil {
			t.Fatal(err)
		}
		if plainKeyOf(t, ans, "AppSKey") != sk.AppSKey || plainKeyOf(t, ans, "NwkSKey") != sk.FNwkSIntKey {
			t.Fatal("keys differ")
		}
		if ans["SessionKeyID"] == nil {
			t.Fatal("the Join Server's SessionKeyID was not passed on")
		}
		reqs := strict.Requests()
		as := reqs[len(reqs)-1]
		if as.Path != "/as/appskey" || as.Body["MessageType"] != "AppSKeyReq" || as.Body["SenderID"] != asID || as.Body["SessionKeyID"] != ans["SessionKeyID"] {
			t.Fatalf("AppSKeyReq %s %v", as.Path, as.Body)
		}
		if _, has := as.Body["SenderNSID"]; has {
			t.Fatal("AppSKeyReq with SenderNSID")
		}
		if last := env2.rec.next(t); last.SessionKeyIDLocal || last.Result != "Success" {
			t.Fatalf("attempt %+v", last)
		}
	})
	t.Run("SessionKeyID only without an as entry fails", func(t *testing.T) {
		strict.Configure(func(c *jstest.StrictConfig) {
			*c = jstest.StrictConfig{Mode: jstest.KeysSessionKeyID, KEKs: keks, NSKEKLabel: "ns:000013:conduit", ASKEKLabel: "as:conduit-1"}
		})
		repo3 := testRepo(t, jc.RepositoryOptions{NSID: nsid},
			jsSpec{name: "ns", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"ns"}})
		env3 := startProxy(t, repo3, kekStore(t, keks), budget, "")
		_, ans, _ := post(t, env3.url, nsJoinReq(t, "1.0", katDevice, 13))
		if a := env3.rec.next(t); resultCode(ans) != "Other" || a.Result != "appskey_unavailable" {
			t.Fatalf("answer %v, attempt %+v", ans, a)
		}
	})
	t.Run("result codes in the network server's version", func(t *testing.T) {
		for _, tc := range []struct{ js, nsVersion, want string }{
			{"NoAction", "1.1", "NoAction"},
			{"NoAction", "1.0", "Other"},
			{"FrameReplayed", "1.0", "Other"},
			{"FrameReplayed", "1.1", "FrameReplayed"},
			{"MalformedMessage", "1.0", "MalformedRequest"},
			{"MalformedMessage", "1.1", "MalformedMessage"},
			{"UnknownReceiver", "1.1", "UnkownReceiver"},
			{"ActivationDisallowed", "1.0", "ActivationDisallowed"},
			{"SomethingNew", "1.1", "Other"},
		} {
			strict.Configure(func(c *jstest.StrictConfig) { *c = jstest.StrictConfig{Result: tc.js} })
			status, ans, _ := post(t, env.url, nsJoinReq(t, tc.nsVersion, katDevice, 14))
			if status != 200 || resultCode(ans) != tc.want || ans["ProtocolVersion"] != tc.nsVersion {
				t.Errorf("JS %s to NS %s: %d %v", tc.js, tc.nsVersion, status, ans)
			}
			if last := env.rec.next(t); last.Result != tc.js {
				t.Errorf("recorded %s, want %s", last.Result, tc.js)
			}
		}
	})
	t.Run("envelope faults fail the join without panics", func(t *testing.T) {
		for _, fault := range []string{"label16", "iv8", "len25", "corrupt"} {
			strict.Configure(func(c *jstest.StrictConfig) {
				*c = jstest.StrictConfig{Mode: jstest.KeysWrapped, KEKs: keks, NSKEKLabel: "ns:000013:conduit", EnvelopeFault: fault}
			})
			_, ans, _ := post(t, env.url, nsJoinReq(t, "1.0", katDevice, 15))
			if a := env.rec.next(t); resultCode(ans) != "Other" || a.Result != "kek" {
				t.Errorf("%s: %v / %s", fault, ans, a.Result)
			}
		}
		strict.Configure(func(c *jstest.StrictConfig) {
			*c = jstest.StrictConfig{Mode: jstest.KeysWrapped, KEKs: map[string][]byte{"unknown": keks["nsproxy"]}, NSKEKLabel: "unknown"}
		})
		_, ans, _ := post(t, env.url, nsJoinReq(t, "1.0", katDevice, 16))
		env.rec.next(t)
		desc := ans["Result"].(map[string]any)["Description"].(string)
		if resultCode(ans) != "Other" || !strings.Contains(desc, `no KEK for label "unknown"`) {
			t.Errorf("unknown label: %v", ans)
		}
	})
	t.Run("keys re-wrapped for the network server", func(t *testing.T) {
		strict.Configure(func(c *jstest.StrictConfig) { *c = jstest.StrictConfig{} })
		env4 := startProxy(t, repo, kekStore(t, keks), budget, "nsproxy")
		_, ans, _ := post(t, env4.url, nsJoinReq(t, "1.0", katDevice, 17))
		env, _ := ans["NwkSKey"].(map[string]any)
		if resultCode(ans) != "Success" || env["KEKLabel"] != "nsproxy" || len(env["AESKey"].(string)) != 48 {
			t.Fatalf("answer %v", ans)
		}
	})
	t.Run("HomeNSReq: HNSID only to a BI1.1 network server", func(t *testing.T) {
		strict.Configure(func(c *jstest.StrictConfig) { *c = jstest.StrictConfig{HNSID: "0A0B0C0D0E0F0102"} })
		// brocaar's handler has no home-NetID callback here: inject through a dedicated server.
		hn := lorawan.NetID{0, 0, 0x13}
		s := jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}, HomeNetID: &hn}), jstest.StrictConfig{HNSID: "0A0B0C0D0E0F0102"})
		p := jstest.Serve(t, s)
		r := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "home", url: p.URL, protocol: "BI1.1", prefixes: []string{"0000000000000000/0"}})
		e := startProxy(t, r, nil, budget, "")
		for _, pv := range []string{"1.0", "1.1"} {
			body := map[string]any{"ProtocolVersion": pv, "SenderID": "000013", "ReceiverID": "0011223300000001", "TransactionID": 5,
				"MessageType": "HomeNSReq", "DevEUI": "AABBCCDDEEFF0011"}
			if pv == "1.1" {
				body["SenderNSID"] = "0102030405060708"
			}
			_, ans, _ := post(t, e.url, body)
			_, hasHNSID := ans["HNSID"]
			if resultCode(ans) != "Success" || ans["HNetID"] != "000013" || ans["MessageType"] != "HomeNSAns" || hasHNSID != (pv == "1.1") {
				t.Errorf("%s: %v", pv, ans)
			}
		}
	})
	_ = devOther
}

func TestProxyIntake(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}}))
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "b", url: js.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}})
	env := startProxy(t, repo, nil, time.Second, "")
	mutate := func(pv string, f func(m map[string]any)) map[string]any {
		m := nsJoinReq(t, pv, katDevice, 30)
		f(m)
		return m
	}
	for _, tc := range []struct {
		name     string
		body     any
		status   int
		code     string
		recorded string
	}{
		{"no route: UnkownReceiver", mutate("1.0", func(m map[string]any) {
			d := katDevice
			d.JoinEUI[0] = 0x77
			m["PHYPayload"] = jc.HEXBytes(d.JoinRequest(30)).String()
			m["ReceiverID"] = "7711223300000001"
		}), 200, "UnkownReceiver", "no_route"},
		{"ReceiverID differs from the frame", mutate("1.0", func(m map[string]any) { m["ReceiverID"] = "0011223300000002" }), 200, "MalformedRequest", "malformed_request"},
		{"DevEUI differs from the frame (1.1 spelling)", mutate("1.1", func(m map[string]any) { m["DevEUI"] = "AABBCCDDEEFF0012" }), 200, "MalformedMessage", "malformed_request"},
		{"bad MACVersion", mutate("1.0", func(m map[string]any) { m["MACVersion"] = "1.2" }), 200, "MalformedRequest", "malformed_request"},
		{"MACVersion 1.0.0 normalised", mutate("1.0", func(m map[string]any) { m["MACVersion"] = "1.0.0" }), 200, "Success", "Success"},
		{"not a join-request frame", mutate("1.0", func(m map[string]any) { m["PHYPayload"] = "20A33CF11372C2B08D68A6B41FF9127299" }), 200, "MalformedRequest", "malformed_request"},
		{"unsupported message type", mutate("1.0", func(m map[string]any) { m["MessageType"] = "AppSKeyReq" }), 200, "MalformedRequest", "malformed_request"},
		{"unsupported protocol version", mutate("2.0", func(map[string]any) {}), 200, "InvalidProtocolVersion", "InvalidProtocolVersion"},
		{"unreadable body", []byte("not json"), 400, "MalformedRequest", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ans, _ := post(t, env.url, tc.body)
			if status != tc.status || resultCode(ans) != tc.code {
				t.Fatalf("status %d answer %v", status, ans)
			}
			if tc.recorded == "" {
				return // never recorded: no header to record
			}
			if a := env.rec.next(t); a.Result != tc.recorded {
				t.Fatalf("attempt %+v", a)
			}
			if tc.status == 200 && (ans["TransactionID"] != float64(77) || ans["MessageType"] == nil) {
				t.Fatalf("answer header %v", ans)
			}
		})
	}
	resp, err := http.Get(env.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// A Join Server that never answers: the proxy answers the network server
// before the deadline.
func TestProxyHangingJoinServer(t *testing.T) {
	_, peer := startStrict(t, jstest.StrictConfig{Block: true})
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "hang", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}})
	const budget = 600 * time.Millisecond
	env := startProxy(t, repo, nil, budget, "")
	status, ans, elapsed := post(t, env.url, nsJoinReq(t, "1.0", katDevice, 40))
	if status != 200 || resultCode(ans) != "Other" {
		t.Fatalf("status %d answer %v", status, ans)
	}
	if elapsed >= budget {
		t.Fatalf("answered after %s, budget %s", elapsed, budget)
	}
	if a := env.rec.next(t); a.Result != "timeout" || a.JoinServer != "hang" {
		t.Fatalf("attempt %+v", a)
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8651", "192.0.2.1:8651", ":8651"} {
		if ln, err := jc.Listen(context.Background(), addr); err == nil {
			ln.Close()
			t.Errorf("%s accepted", addr)
		}
	}
}

func TestProxyRejoinBrocaar(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{device11}}))
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "brocaar", url: js.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}})
	env := startProxy(t, repo, nil, 3*time.Second, "")
	for _, typ := range []int{0, 1} {
		t.Run(fmt.Sprintf("type %d", typ), func(t *testing.T) {
			frame := device11.RejoinRequest(typ, lorawan.NetID{0, 0, 0x13}, uint16(typ+1))
			body := map[string]any{"ProtocolVersion": "1.1", "SenderID": "000013", "ReceiverID": "0011223300000001", "TransactionID": 9,
				"MessageType": "RejoinReq", "SenderNSID": "0102030405060708", "MACVersion": "1.1.0", "PHYPayload": jc.HEXBytes(frame).String(),
				"DevEUI": jc.EUI64(device11.DevEUI).String(), "DevAddr": "26011234", "DLSettings": "80", "RxDelay": 1}
			_, ans, _ := post(t, env.url, body)
			if resultCode(ans) != "Success" || ans["MessageType"] != "RejoinAns" {
				t.Fatalf("answer %v", ans)
			}
			if err := device11.VerifyRejoinAccept(phy(t, ans), typ, uint16(typ+1)); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"FNwkSIntKey", "SNwkSIntKey", "NwkSEncKey", "AppSKey"} {
				plainKeyOf(t, ans, k)
			}
			if a := env.rec.next(t); a.Result != "Success" || a.MessageType != jc.MsgRejoinReq {
				t.Fatalf("attempt %+v", a)
			}
		})
	}
}

func TestProxyBusy(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{Block: true})
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "hang", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}})
	rec := newRecorder()
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, clientOpts()), NetID: katNetID, Budget: time.Second, Recorder: rec, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	first := make(chan map[string]any, 1)
	go func() {
		b, _ := json.Marshal(nsJoinReq(t, "1.0", katDevice, 50))
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(b))
		if err != nil {
			first <- nil
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		first <- m
	}()
	for len(strict.Requests()) == 0 { // the first join is now in flight at the Join Server
		time.Sleep(time.Millisecond)
	}
	_, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.0", katDevice, 51))
	if resultCode(ans) != "Other" || rec.next(t).Result != "busy" {
		t.Fatalf("second join: %v", ans)
	}
	if m := <-first; resultCode(m) != "Other" || rec.next(t).Result != "timeout" {
		t.Fatalf("first join: %v", m)
	}
}

// postWith is post through a given client (kept-alive connections).
func postWith(t *testing.T, c *http.Client, url string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// One Join Server that never answers keeps at most its own bound of the
// proxy's slots: joins routed to a healthy Join Server are still served.
func TestProxyBulkheadIsolatesHangingJoinServer(t *testing.T) {
	strict, hang := startStrict(t, jstest.StrictConfig{Block: true})
	healthy := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}, FirstJoinNonce: 5}))
	hangDevice := katDevice
	hangDevice.JoinEUI = lorawan.EUI64{0x00, 0x11, 0x22, 0x33, 0x00, 0x00, 0x00, 0x02}
	repo := testRepo(t, jc.RepositoryOptions{},
		jsSpec{name: "hang", url: hang.URL, protocol: "BI1.0", prefixes: []string{"0011223300000002/64"}},
		jsSpec{name: "healthy", url: healthy.URL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}})
	opts := clientOpts()
	opts.MaxInFlight = 1
	rec := newRecorder()
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, opts), NetID: katNetID, Budget: 2 * time.Second, Recorder: rec, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	first := make(chan map[string]any, 1)
	go func() {
		b, _ := json.Marshal(nsJoinReq(t, "1.0", hangDevice, 60))
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(b))
		if err != nil {
			first <- nil
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		first <- m
	}()
	for len(strict.Requests()) == 0 { // the first join holds the hanging Join Server's only slot
		time.Sleep(time.Millisecond)
	}
	// A second join to the hanging Join Server is refused by its own bound,
	// without waiting and without keeping a global slot.
	if _, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.0", hangDevice, 61)); resultCode(ans) != "Other" {
		t.Fatalf("second join to the hanging Join Server: %v", ans)
	}
	if a := rec.next(t); a.Result != "busy" || a.JoinServer != "hang" {
		t.Fatalf("attempt %+v", a)
	}
	// The healthy Join Server still gets a slot of the global two.
	if _, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.0", katDevice, 7)); resultCode(ans) != "Success" {
		t.Fatalf("join to the healthy Join Server: %v", ans)
	}
	if a := rec.next(t); a.Result != "Success" || a.JoinServer != "healthy" {
		t.Fatalf("attempt %+v", a)
	}
	st := p.Stats()
	if st.MaxInFlight != 2 || len(st.JoinServers) != 2 || st.JoinServers[0].JoinServer != "hang" ||
		st.JoinServers[0].InFlight != 1 || st.JoinServers[0].MaxInFlight != 1 || st.JoinServers[0].Busy != 1 || st.Busy != 0 {
		t.Fatalf("stats %+v", st)
	}
	if m := <-first; resultCode(m) != "Other" {
		t.Fatalf("first join: %v", m)
	}
}

// After BreakerTimeouts consecutive timeouts the Join Server's requests are
// answered at once with the timeout result and never reach it.
func TestProxyBreakerAnswersAtOnce(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{Block: true})
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "hang", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}})
	opts := clientOpts()
	opts.BreakerTimeouts, opts.BreakerCoolDown = 2, time.Hour
	rec := newRecorder()
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, opts), NetID: katNetID, Budget: 400 * time.Millisecond, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	for i := range 2 {
		if _, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.0", katDevice, uint16(70+i))); resultCode(ans) != "Other" {
			t.Fatalf("join %d: %v", i, ans)
		}
		if a := rec.next(t); a.Result != "timeout" {
			t.Fatalf("join %d: %+v", i, a)
		}
	}
	sent := len(strict.Requests())
	for i := range 3 {
		_, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.0", katDevice, uint16(80+i)))
		if resultCode(ans) != "Other" || !strings.Contains(ans["Result"].(map[string]any)["Description"].(string), "circuit open") {
			t.Fatalf("join with the breaker open: %v", ans)
		}
		if a := rec.next(t); a.Result != "timeout" || a.JoinServer != "hang" {
			t.Fatalf("attempt %+v", a)
		}
	}
	if n := len(strict.Requests()); n != sent {
		t.Fatalf("%d requests reached the Join Server while its breaker was open", n-sent)
	}
	st := p.Stats().JoinServers[0]
	if st.Breaker != jc.BreakerOpen || st.BreakerOpened != 1 || st.ShortCircuited != 3 || st.ConsecutiveTimeouts != 2 {
		t.Fatalf("state %+v", st)
	}
}

// blockingRecorder stores nothing until released.
type blockingRecorder struct {
	entered chan struct{}
	release chan struct{}
}

func (r *blockingRecorder) RecordJoinAttempt(ctx context.Context, _ jc.Attempt) error {
	r.entered <- struct{}{}
	<-r.release
	return nil
}

// Recording never holds the network server's connection: with a store that
// does not return, kept-alive joins are answered, and what does not fit the
// queue is dropped and counted.
func TestProxyRecordingDoesNotHoldTheConnection(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}, FirstJoinNonce: 5}))
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "brocaar", url: js.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}})
	rec := &blockingRecorder{entered: make(chan struct{}, 10), release: make(chan struct{})}
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, clientOpts()), NetID: katNetID, Recorder: rec, RecordQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	if ans := postWith(t, c, srv.URL, nsJoinReq(t, "1.0", katDevice, 90)); resultCode(ans) != "Success" {
		t.Fatalf("join 1: %v", ans)
	}
	<-rec.entered // the recorder holds the first attempt
	for i := range 2 {
		if ans := postWith(t, c, srv.URL, nsJoinReq(t, "1.0", katDevice, uint16(91+i))); resultCode(ans) != "Success" {
			t.Fatalf("join %d: %v", i+2, ans)
		}
	}
	for p.Stats().RecordDropped != 1 { // the third attempt finds the queue (one slot) full
		time.Sleep(time.Millisecond)
	}
	close(rec.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.RecordDropped != 1 || st.RecordQueued != 0 || len(rec.entered) != 1 {
		t.Fatalf("stats %+v, %d recorded after the first", st, len(rec.entered))
	}
}

// Header-warning counts of each Join Server are exported (spec §7.6).
func TestProxyStatsHeaderWarnings(t *testing.T) {
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}, FirstJoinNonce: 5}))
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "brocaar", url: js.URL, protocol: "BI1.1", prefixes: []string{"0000000000000000/0"}})
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, clientOpts()), NetID: katNetID})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	for i := range 2 {
		if _, ans, _ := post(t, srv.URL, nsJoinReq(t, "1.1", katDevice, uint16(100+i))); resultCode(ans) != "Success" {
			t.Fatalf("join: %v", ans)
		}
	}
	// brocaar answers a BI1.1 request in "1.0" without ReceiverNSID.
	w := p.Stats().JoinServers[0].HeaderWarnings
	if w["protocol_version"] != 2 || w["receiver_nsid"] != 2 {
		t.Fatalf("header warnings %v", w)
	}
}

type nopRecorder struct{}

func (nopRecorder) RecordJoinAttempt(context.Context, jc.Attempt) error { return nil }

// BenchmarkProxyAddedLatency measures what the proxy adds to a join: the same
// JoinReq is sent directly to brocaar's Join Server and through the proxy,
// alternately in blocks within one run (so both see the same machine load).
// It reports p50/p99 of both, the difference, and the process CPU per join of
// each path (their difference is the proxy's own CPU per join). make bench
// runs it; it asserts nothing.
func BenchmarkProxyAddedLatency(b *testing.B) {
	js := jstest.Serve(b, jstest.NewBrocaar(b, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}, KEKs: map[string][]byte{"000013": katNSKEK}}))
	repo := benchRepo(b, js.URL)
	p, err := jc.NewProxy(jc.ProxyConfig{Router: jc.NewRouter(repo, clientOpts()), KEKs: kekStoreB(b), NetID: katNetID, Recorder: nopRecorder{}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := jc.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := jc.NewServer(p)
	go func() { _ = srv.Serve(context.Background(), ln) }()
	defer func() { _ = srv.Shutdown(context.Background()); _ = p.Close(context.Background()) }()
	proxyURL := "http://" + ln.Addr().String() + "/"

	body := func(devNonce uint16) []byte {
		bb, _ := json.Marshal(nsJoinReqB(b, devNonce))
		return bb
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	one := func(url string, bb []byte) time.Duration {
		start := time.Now()
		resp, err := c.Post(url, "application/json", bytes.NewReader(bb))
		if err != nil {
			b.Fatal(err)
		}
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil || resultCode(m) != "Success" {
			b.Fatalf("%s: %v %v", url, err, m)
		}
		return time.Since(start)
	}
	bodies := [2][]byte{body(7), body(7)}
	urls := [2]string{js.URL, proxyURL}
	one(urls[0], bodies[0]) // warm the connections
	one(urls[1], bodies[1])
	const block = 50
	lat := [2][]time.Duration{}
	var cpu [2]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i += block {
		n := min(block, b.N-i)
		for path := range 2 {
			before := processCPU(b)
			for range n {
				lat[path] = append(lat[path], one(urls[path], bodies[path]))
			}
			cpu[path] += processCPU(b) - before
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, q float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds())
	}
	b.ReportMetric(pct(lat[0], 0.50), "direct-p50-µs")
	b.ReportMetric(pct(lat[0], 0.99), "direct-p99-µs")
	b.ReportMetric(pct(lat[1], 0.50), "proxied-p50-µs")
	b.ReportMetric(pct(lat[1], 0.99), "proxied-p99-µs")
	b.ReportMetric(pct(lat[1], 0.50)-pct(lat[0], 0.50), "added-p50-µs")
	b.ReportMetric(pct(lat[1], 0.99)-pct(lat[0], 0.99), "added-p99-µs")
	b.ReportMetric(float64(cpu[0].Microseconds())/float64(b.N), "direct-cpu-µs/join")
	b.ReportMetric(float64(cpu[1].Microseconds())/float64(b.N), "proxied-cpu-µs/join")
	b.ReportMetric(float64((cpu[1]-cpu[0]).Microseconds())/float64(b.N), "added-cpu-µs/join")
	b.ReportMetric(0, "ns/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchRepo(b *testing.B, jsURL string) *jc.Repository {
	u, _ := url.Parse(jsURL)
	m := fstest.MapFS{
		"r/config.yml": {Data: []byte("join-servers:\n  - file: './js.yml'\n    join-euis: ['0000000000000000/0']\n    components: ['ns']\n")},
		"r/js.yml":     {Data: []byte(fmt.Sprintf("scheme: http\nfqdn: '%s'\nport: %s\nprotocol: BI1.0\n", u.Hostname(), u.Port()))},
	}
	repo, err := jc.LoadRepository("r", jc.RepositoryOptions{ReadFile: func(name string) ([]byte, error) { return fs.ReadFile(m, name) }})
	if err != nil {
		b.Fatal(err)
	}
	return repo
}

func kekStoreB(b *testing.B) *jc.KEKStore {
	s, err := jc.NewKEKStore(map[string][]byte{"000013": katNSKEK})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// nsJoinReqB is the KAT JoinReq as the network server sends it (BI 1.0).
func nsJoinReqB(_ *testing.B, devNonce uint16) map[string]any {
	return map[string]any{
		"ProtocolVersion": "1.0", "SenderID": "000013", "ReceiverID": jc.EUI64(katJoinEUI).String(), "TransactionID": 77,
		"MessageType": "JoinReq", "MACVersion": "1.0.3", "PHYPayload": jc.HEXBytes(katDevice.JoinRequest(devNonce)).String(),
		"DevEUI": jc.EUI64(katDevEUI).String(), "DevAddr": "26011234", "DLSettings": "00", "RxDelay": 1,
	}
}

// IDs in the answer header echo the request as sent (lowercase in, lowercase
// out), while byte fields are written in uppercase (spec §2.2).
func TestProxyAnswerEchoesIDsAndWritesBytesUppercase(t *testing.T) {
	dev := katDevice
	dev.JoinEUI = lorawan.EUI64{0x70, 0xB3, 0xD5, 0x7E, 0xD0, 0x00, 0x00, 0x0A}
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{dev}, FirstJoinNonce: 5}))
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "brocaar", url: js.URL, protocol: "BI1.0", prefixes: []string{"70B3D57ED0000000/40"}})
	env := startProxy(t, repo, nil, 3*time.Second, "")
	for _, tc := range []struct{ name, mt string }{{"success", "JoinReq"}, {"error answer", "JoinReq-bad-devnonce"}} {
		t.Run(tc.name, func(t *testing.T) {
			req := nsJoinReq(t, "1.1", dev, 120)
			req["ReceiverID"] = "70b3d57ed000000a"
			req["SenderID"] = "00001a"
			req["SenderNSID"] = "70b3d5fffe0000ab"
			req["SenderToken"] = "0xabcdef"
			req["DLSettings"] = "0x00"
			if tc.mt != "JoinReq" {
				req["DevEUI"] = "aabbccddeeff0012" // differs from the frame: refused before forwarding
			}
			_, ans, _ := post(t, env.url, req)
			if ans["SenderID"] != "70b3d57ed000000a" || ans["ReceiverID"] != "00001a" || ans["ReceiverNSID"] != "70b3d5fffe0000ab" {
				t.Fatalf("IDs not echoed as sent: %v", ans)
			}
			if ans["ReceiverToken"] != "ABCDEF" {
				t.Fatalf("ReceiverToken %v, want ABCDEF", ans["ReceiverToken"])
			}
			if tc.mt == "JoinReq" {
				if resultCode(ans) != "Success" {
					t.Fatalf("answer %v", ans)
				}
				for _, f := range []string{"PHYPayload"} {
					if s := ans[f].(string); s != strings.ToUpper(s) {
						t.Fatalf("%s not uppercase: %s", f, s)
					}
				}
				for _, k := range []string{"NwkSKey", "AppSKey"} {
					if s := ans[k].(map[string]any)["AESKey"].(string); s != strings.ToUpper(s) {
						t.Fatalf("%s not uppercase: %s", k, s)
					}
				}
			} else if resultCode(ans) != "MalformedMessage" {
				t.Fatalf("answer %v", ans)
			}
		})
	}
}

// A TransactionID that is not a number is a malformed request, answered as
// such and never forwarded.
func TestProxyRefusesNonNumericTransactionID(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{})
	repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "strict", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0000000000000000/0"}})
	env := startProxy(t, repo, nil, 3*time.Second, "")
	for _, tc := range []struct {
		pv, want string
		txID     any
	}{
		{"1.0", "MalformedRequest", "abc"},
		{"1.1", "MalformedMessage", "12x"},
		{"1.0", "MalformedRequest", -1},
		{"1.0", "MalformedRequest", 4294967296},
		{"1.0", "MalformedRequest", true},
	} {
		req := nsJoinReq(t, tc.pv, katDevice, 130)
		req["TransactionID"] = tc.txID
		status, ans, _ := post(t, env.url, req)
		if status != 200 || resultCode(ans) != tc.want || !strings.Contains(ans["Result"].(map[string]any)["Description"].(string), "TransactionID") {
			t.Errorf("TransactionID %v: status %d answer %v", tc.txID, status, ans)
		}
		if a := env.rec.next(t); a.Result != "malformed_request" {
			t.Errorf("TransactionID %v: recorded %+v", tc.txID, a)
		}
	}
	if n := len(strict.Requests()); n != 0 {
		t.Fatalf("%d malformed requests forwarded", n)
	}
}

// JoinReq, RejoinReq of every type and HomeNSReq are routed by a real prefix
// (the more specific one beats a catch-all) to the paths the Join Server file
// sets for each message type.
func TestProxyRoutesEveryTypeByPrefixToItsPath(t *testing.T) {
	hn := lorawan.NetID{0, 0, 0x42}
	strict := jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5, HomeNetID: &hn}), jstest.StrictConfig{})
	peer := jstest.Serve(t, strict)
	decoy, decoyPeer := startStrict(t, jstest.StrictConfig{})
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid},
		jsSpec{name: "specific", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}, components: []string{"ns"},
			extra: "paths:\n  join: 'bi/join'\n  rejoin: '/bi/rejoin'\n  home-ns: 'bi/home-ns'\n"},
		jsSpec{name: "catchall", url: decoyPeer.URL, protocol: "BI1.1", prefixes: []string{"0000000000000000/0"}, components: []string{"ns"}})
	env := startProxy(t, repo, nil, 3*time.Second, "")

	joinBody := nsJoinReq(t, "1.1", katDevice, 140)
	_, ans, _ := post(t, env.url, joinBody)
	if resultCode(ans) != "Success" || ans["MessageType"] != "JoinAns" {
		t.Fatalf("JoinReq: %v", ans)
	}
	for typ := range 3 {
		frame := device11.RejoinRequest(typ, lorawan.NetID{0, 0, 0x13}, uint16(10+typ))
		body := map[string]any{"ProtocolVersion": "1.1", "SenderID": "000013", "ReceiverID": "0011223300000001", "TransactionID": 9,
			"MessageType": "RejoinReq", "SenderNSID": "0102030405060708", "MACVersion": "1.1", "PHYPayload": jc.HEXBytes(frame).String(),
			"DevEUI": jc.EUI64(device11.DevEUI).String(), "DevAddr": "26011234", "DLSettings": "80", "RxDelay": 1}
		_, ans, _ := post(t, env.url, body)
		if resultCode(ans) != "Success" || ans["MessageType"] != "RejoinAns" {
			t.Fatalf("RejoinReq type %d: %v", typ, ans)
		}
		if err := device11.VerifyRejoinAccept(phy(t, ans), typ, uint16(10+typ)); err != nil {
			t.Fatalf("RejoinReq type %d: %v", typ, err)
		}
	}
	_, ans, _ = post(t, env.url, map[string]any{"ProtocolVersion": "1.1", "SenderID": "000013", "ReceiverID": "0011223300000001",
		"TransactionID": 11, "MessageType": "HomeNSReq", "SenderNSID": "0102030405060708", "DevEUI": "AABBCCDDEEFF0011"})
	if resultCode(ans) != "Success" || ans["HNetID"] != "000042" {
		t.Fatalf("HomeNSReq: %v", ans)
	}
	var got []string
	for _, r := range strict.Requests() {
		got = append(got, fmt.Sprintf("%s %s", r.Body["MessageType"], r.Path))
	}
	want := []string{"JoinReq /bi/join", "RejoinReq /bi/rejoin", "RejoinReq /bi/rejoin", "RejoinReq /bi/rejoin", "HomeNSReq /bi/home-ns"}
	if !slices.Equal(got, want) {
		t.Fatalf("requests at the specific Join Server:\n got %q\nwant %q", got, want)
	}
	if n := len(decoy.Requests()); n != 0 {
		t.Fatalf("%d requests went to the catch-all Join Server", n)
	}
	for i, want := range []jc.MessageType{jc.MsgJoinReq, jc.MsgRejoinReq, jc.MsgRejoinReq, jc.MsgRejoinReq, jc.MsgHomeNSReq} {
		if a := env.rec.next(t); a.Result != "Success" || a.MessageType != want || a.JoinServer != "specific" {
			t.Fatalf("attempt %d: %+v", i, a)
		}
	}
}
