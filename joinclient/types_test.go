package joinclient

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEUI64Text(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"0011223300000001", "0011223300000001", false},
		{"aabbccddeeff0011", "AABBCCDDEEFF0011", false},
		{"0xAABBCCDDEEFF0011", "AABBCCDDEEFF0011", false},
		{"0XaabbCCDDEEFF0011", "AABBCCDDEEFF0011", false},
		{"", "", true},
		{"00112233", "", true},
		{"001122330000000G", "", true},
		{"001122330000000100", "", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e, err := ParseEUI64(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && e.String() != tc.want {
				t.Fatalf("got %s, want %s", e, tc.want)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	for _, tc := range []struct {
		in      string
		match   string
		matches bool
		wantErr string
	}{
		{"EC656E0000000000/24", "EC656EFFFFFFFFFF", true, ""},
		{"EC656E0000000000/24", "EC656FFFFFFFFFFF", false, ""},
		{"0000000000000000/0", "FFFFFFFFFFFFFFFF", true, ""},
		{"70B3D57ED0000000/64", "70B3D57ED0000000", true, ""},
		{"70B3D57ED0000000/64", "70B3D57ED0000001", false, ""},
		{"11AA000000000000/16", "11AA123456789ABC", true, ""},
		{"11AA000000000000/65", "", false, "beyond 64"},
		{"11AA000000000000/100", "", false, "1 or 2 decimal"},
		{"11AA000000000000", "", false, "<16 hex digits>/<bits>"},
		{"11AA00000000000/16", "", false, "exactly 16"},
		{"11AA000000000000/-1", "", false, "decimal"},
		{"11AA000000000000/ 1", "", false, "decimal"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePrefix(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tc.in {
				t.Fatalf("round trip %s != %s", p, tc.in)
			}
			e, _ := ParseEUI64(tc.match)
			if p.Matches(e) != tc.matches {
				t.Fatalf("Matches(%s) = %v", e, !tc.matches)
			}
		})
	}
}

func TestHexAndDLSettings(t *testing.T) {
	var m struct {
		P HEXBytes   `json:"P"`
		D DLSettings `json:"D"`
		O HEXBytes   `json:"O,omitempty"`
	}
	if err := json.Unmarshal([]byte(`{"P":"0xabCD","D":"0x80","O":""}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.P.String() != "ABCD" || !m.D.OptNeg() || m.O != nil {
		t.Fatalf("got %+v", m)
	}
	b, _ := json.Marshal(m)
	if string(b) != `{"P":"ABCD","D":"80"}` {
		t.Fatalf("marshal = %s", b)
	}
}

func TestTransactionIDLenient(t *testing.T) {
	for in, want := range map[string]TransactionID{
		`2864434397`:     {Value: 2864434397},
		`"42"`:           {Value: 42},
		`"not a number"`: {Invalid: true},
		`-1`:             {Invalid: true},
		`1.5`:            {Invalid: true},
		`4294967296`:     {Invalid: true},
		`null`:           {},
	} {
		var got TransactionID
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func TestMessagesEncodeAsSpecExample(t *testing.T) {
	// §2.4: the BI 1.1 JoinReq as app-connect sends it.
	nsid, _ := ParseEUI64("70B3D5FFFE000001")
	req := JoinReq{
		Header: Header{ProtocolVersion: BI11, SenderID: "000013", ReceiverID: "0011223300000001",
			TransactionID: TransactionID{Value: 2864434397}, MessageType: MsgJoinReq, SenderNSID: nsid.String()},
		MACVersion: "1.0.3",
		PHYPayload: mustHex("0001000000332211001100FFEEDDCCBBAA0700AF926245"),
		DevEUI:     mustEUI("AABBCCDDEEFF0011"),
		DevAddr:    DevAddr{0x26, 0x01, 0x12, 0x34},
		DLSettings: 0,
		RxDelay:    1,
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ProtocolVersion":"1.1","SenderID":"000013","ReceiverID":"0011223300000001","TransactionID":2864434397,` +
		`"MessageType":"JoinReq","SenderNSID":"70B3D5FFFE000001","MACVersion":"1.0.3",` +
		`"PHYPayload":"0001000000332211001100FFEEDDCCBBAA0700AF926245","DevEUI":"AABBCCDDEEFF0011",` +
		`"DevAddr":"26011234","DLSettings":"00","RxDelay":1}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back JoinReq
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	// HomeNSAns: HNSID omitted when absent, empty string decodes as absent.
	var h HomeNSAns
	if err := json.Unmarshal([]byte(`{"Result":{"ResultCode":"Success"},"HNetID":"000013","HNSID":""}`), &h); err != nil || h.HNSID.Set {
		t.Fatalf("HNSID: %+v %v", h, err)
	}
	b, _ = json.Marshal(h)
	if strings.Contains(string(b), "HNSID") {
		t.Fatalf("absent HNSID written: %s", b)
	}
}

func TestNormalizeMACVersion(t *testing.T) {
	for in, want := range map[string]string{"1.0.0": "1.0", "1.1.0": "1.1", "1.0.3": "1.0.3", "1.1": "1.1", "1.2": "", "": ""} {
		got, err := NormalizeMACVersion(in)
		if string(got) != want || (err != nil) != (want == "") {
			t.Errorf("%q: got %q, %v", in, got, err)
		}
	}
}

func mustHex(s string) HEXBytes {
	var h HEXBytes
	if err := h.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return h
}

func mustEUI(s string) EUI64 {
	e, err := ParseEUI64(s)
	if err != nil {
		panic(err)
	}
	return e
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
