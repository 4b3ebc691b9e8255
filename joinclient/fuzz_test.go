package joinclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func FuzzLoadRepository(f *testing.F) {
	for _, dir := range []string{"testdata/interop", "testdata/interop-keyvault"} {
		cfg, err := os.ReadFile(dir + "/config.yml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(cfg), "fqdn: 'js.example'\nprotocol: 'BI1.0'\n")
	}
	for _, js := range []string{"testdata/interop/tti/ns-js.yml", "testdata/interop/tti/as-js.yml", "testdata/interop/fallback/js.yml", "testdata/interop-keyvault/tti/js.yml"} {
		b, err := os.ReadFile(js)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("join-servers:\n  - file: './js.yml'\n    join-euis: ['11AA000000000000/16']\n", string(b))
	}
	f.Add("join-servers:\n  - file: js.yml\n    components: [ns]\n    join-euis: ['0000000000000000/0']\n", "scheme: http\nfqdn: a\nport: 1\nprotocol: BI1.1\nsender-ns-id: '1122334455667788'\nheaders:\n  X: y\npaths:\n  join: /a\n")
	f.Add("&a [*a]", "x: &b\n  y: *b\n")
	f.Fuzz(func(t *testing.T, cfg, js string) {
		read := memFS(map[string]string{"r/config.yml": cfg, "r/js.yml": js, "r/tti/ns-js.yml": js, "r/tti/as-js.yml": js,
			"r/semtech/js.yml": js, "r/fallback/js.yml": js, "r/tti/js.yml": js})
		repo, err := LoadRepository("r", RepositoryOptions{ReadFile: read, NSID: SomeEUI64(EUI64{1})})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "r/") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, e := range repo.Entries {
			if e.JoinServer == nil || len(e.Components) == 0 || e.Prefix.Length > 64 {
				t.Fatalf("bad entry %+v", e)
			}
		}
		var buf bytes.Buffer
		if err := WriteRoutingTable(&buf, repo); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`{"ProtocolVersion":"1.1","SenderID":"0011223300000001","ReceiverID":"000013","TransactionID":2864434397,
 "MessageType":"JoinAns","ReceiverNSID":"70B3D5FFFE000001","Result":{"ResultCode":"Success"},
 "PHYPayload":"20A33CF11372C2B08D68A6B41FF9127299","Lifetime":0,
 "NwkSKey":{"KEKLabel":"000013","AESKey":"93C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B079"},
 "AppSKey":{"KEKLabel":"","AESKey":"BB53B962A31661C08FB2E98CA8DE27EB"}}`), 200, uint8(0))
	f.Add([]byte(`{"ResultCode":"Other","Description":"invalid MessageType: AppSKeyReq"}`), 400, uint8(1))
	f.Add([]byte(`{"Result":{"ResultCode":"Success"},"HNetID":"000013","HNSID":""}`), 200, uint8(2))
	f.Add([]byte(`{"Result":{"ResultCode":"Success"},"DevEUI":"AABBCCDDEEFF0011","AppSKey":{"KEKLabel":"","AESKey":"00"}}`), 200, uint8(1))
	f.Add([]byte(`{"Result":{"ResultCode":"UnknownDevEUI"},"TransactionID":"x","DevEUI":7}`), 400, uint8(0))
	f.Add([]byte(`not json`), 503, uint8(0))
	js := &JoinServer{Name: "fuzz", Scheme: "http", FQDN: "127.0.0.1", Port: 1, Protocol: ProtocolBI11}
	c := NewClient(js, ClientOptions{NetID: NetID{0, 0, 0x13}, ASID: "as"})
	f.Fuzz(func(t *testing.T, body []byte, status int, kind uint8) {
		info := requestInfo{joinEUI: EUI64{0, 0x11, 0x22, 0x33, 0, 0, 0, 1}, receiverID: "000013", version: BI11}
		var ans answer
		switch kind % 3 {
		case 0:
			info.msgType, info.macVersion = MsgJoinReq, "1.0.3"
			ans = &JoinAns{}
		case 1:
			info.msgType = MsgAppSKeyReq
			ans = &AppSKeyAns{}
		case 2:
			info.msgType = MsgHomeNSReq
			ans = &HomeNSAns{}
		}
		err := c.decode(info, status, body, ans)
		if err != nil {
			_ = ResultOf(err)
			return
		}
		// A Success result is always complete.
		if ans.result().ResultCode != ResultSuccess {
			t.Fatalf("nil error with %s", ans.result().ResultCode)
		}
		if err := ans.complete(info); err != nil {
			t.Fatalf("incomplete Success accepted: %v", err)
		}
	})
}

func FuzzKeyEnvelope(f *testing.F) {
	f.Add("000013", []byte{0x93, 0xC9, 0xC3, 0x18, 0xB1, 0xB0, 0x16, 0x26, 0x8D, 0x1F, 0xFC, 0x71, 0xA0, 0x49, 0x6B, 0xA3, 0x94, 0xBC, 0x56, 0xA8, 0xB9, 0xA0, 0xB0, 0x79})
	f.Add("", []byte{0xBB, 0x53, 0xB9, 0x62, 0xA3, 0x16, 0x61, 0xC0, 0x8F, 0xB2, 0xE9, 0x8C, 0xA8, 0xDE, 0x27, 0xEB})
	f.Add("000013", []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6})
	f.Add("unknown", []byte{1, 2, 3})
	f.Add("000013", []byte{})
	store, err := NewKEKStore(map[string][]byte{"000013": make([]byte, 16)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, label string, key []byte) {
		// Through JSON, as envelopes arrive.
		b, _ := json.Marshal(KeyEnvelope{KEKLabel: label, AESKey: key})
		var env KeyEnvelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := store.Open(&env); err == nil && label != "" && label != "000013" {
			t.Fatal("unknown label opened")
		}
		if out, err := Unwrap(make([]byte, 16), key); err == nil && len(out) != len(key)-8 {
			t.Fatalf("unwrap length %d from %d", len(out), len(key))
		}
	})
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{"11AA000000000000/16", "0000000000000000/0", "70B3D57ED0000000/64", "AABBCCDDEEFF0011", "0xaabbccddeeff0011", "000013", "26011234"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePrefix(s); err == nil {
			q, err := ParsePrefix(p.String())
			if err != nil || q != p {
				t.Fatalf("prefix round trip %q → %s", s, p)
			}
		}
		if e, err := ParseEUI64(s); err == nil {
			if q, err := ParseEUI64(e.String()); err != nil || q != e {
				t.Fatalf("EUI round trip %q", s)
			}
		}
		if n, err := ParseNetID(s); err == nil {
			if q, err := ParseNetID(n.String()); err != nil || q != n {
				t.Fatalf("NetID round trip %q", s)
			}
		}
		var a DevAddr
		if a.UnmarshalText([]byte(s)) == nil {
			var q DevAddr
			if q.UnmarshalText([]byte(a.String())) != nil || q != a {
				t.Fatalf("DevAddr round trip %q", s)
			}
		}
		_, _ = ParseKEKFile("keks.yml", []byte(s))
	})
}

// FuzzProxyRequest feeds arbitrary network-server bodies to the proxy (no
// route exists, so nothing leaves the process).
func FuzzProxyRequest(f *testing.F) {
	f.Add([]byte(`{"ProtocolVersion":"1.1","SenderID":"000013","ReceiverID":"0011223300000001","TransactionID":2864434397,
 "MessageType":"JoinReq","SenderNSID":"70B3D5FFFE000001","MACVersion":"1.0.3",
 "PHYPayload":"0001000000332211001100FFEEDDCCBBAA0700AF926245","DevEUI":"AABBCCDDEEFF0011",
 "DevAddr":"26011234","DLSettings":"00","RxDelay":1}`))
	f.Add([]byte(`{"ProtocolVersion":"1.0","MessageType":"RejoinReq","ReceiverID":"0011223300000001","MACVersion":"1.1","PHYPayload":"C001010203AABBCCDDEEFF0011001122","DevEUI":"1100FFEEDDCCBBAA"}`))
	f.Add([]byte(`{"ProtocolVersion":"1.0","MessageType":"HomeNSReq","ReceiverID":"0011223300000001","DevEUI":"AABBCCDDEEFF0011"}`))
	f.Add([]byte(`[]`))
	p, err := NewProxy(ProxyConfig{Router: NewRouter(&Repository{}, ClientOptions{})})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
		switch w.Code {
		case 200, 400, 413:
		default:
			t.Fatalf("status %d", w.Code)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil && w.Code != 413 {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		if w.Code == 200 && resultOf(m) == "Success" {
			t.Fatal("Success without any Join Server")
		}
	})
}

func resultOf(m map[string]any) string {
	r, _ := m["Result"].(map[string]any)
	s, _ := r["ResultCode"].(string)
	return s
}
