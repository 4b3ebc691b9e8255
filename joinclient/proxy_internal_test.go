package joinclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// parseFrame reads the identifiers of join-request and rejoin-request frames
// through lorawan.PHYPayload and names what is wrong with anything else.
func TestParseFrame(t *testing.T) {
	joinEUI := EUI64{0x00, 0x11, 0x22, 0x33, 0x00, 0x00, 0x00, 0x01}
	devEUI := EUI64{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, 0x11}
	const (
		joinRequest = "0001000000332211001100FFEEDDCCBBAA0700AF926245"
		// MHDR C0, type 0/2: NetID 000013 (LE 130000), DevEUI LE, RJcount0, MIC.
		rejoin0 = "C000130000" + "1100FFEEDDCCBBAA" + "0100" + "01020304"
		rejoin2 = "C002130000" + "1100FFEEDDCCBBAA" + "0100" + "01020304"
		// type 1: JoinEUI LE, DevEUI LE, RJcount1, MIC.
		rejoin1 = "C001" + "0100000033221100" + "1100FFEEDDCCBBAA" + "0100" + "01020304"
	)
	for _, tc := range []struct {
		name    string
		m       MessageType
		frame   string
		want    frameIDs
		wantErr string
	}{
		{"join-request", MsgJoinReq, joinRequest, frameIDs{devEUI: devEUI, joinEUI: joinEUI, hasJoinEUI: true}, ""},
		{"rejoin type 0", MsgRejoinReq, rejoin0, frameIDs{devEUI: devEUI, netID: NetID{0, 0, 0x13}, hasNetID: true}, ""},
		{"rejoin type 1", MsgRejoinReq, rejoin1, frameIDs{devEUI: devEUI, joinEUI: joinEUI, hasJoinEUI: true}, ""},
		{"rejoin type 2", MsgRejoinReq, rejoin2, frameIDs{devEUI: devEUI, netID: NetID{0, 0, 0x13}, hasNetID: true}, ""},
		{"join-accept as JoinReq", MsgJoinReq, "20A33CF11372C2B08D68A6B41FF9127299", frameIDs{},
			"PHYPayload is a JoinAccept frame (major 0), not a join-request (MHDR 0x20)"},
		{"rejoin-request as JoinReq", MsgJoinReq, rejoin0, frameIDs{},
			"PHYPayload is a RejoinRequest frame (major 0), not a join-request (MHDR 0xC0)"},
		{"join-request as RejoinReq", MsgRejoinReq, joinRequest, frameIDs{},
			"PHYPayload is a JoinRequest frame (major 0), not a rejoin-request (MHDR 0x00)"},
		{"major 1", MsgJoinReq, "01" + joinRequest[2:], frameIDs{},
			"PHYPayload is a JoinRequest frame (major 1), not a join-request (MHDR 0x01)"},
		{"RFU bits set", MsgJoinReq, "10" + joinRequest[2:], frameIDs{},
			"PHYPayload's MHDR 0x10 has RFU bits set"},
		{"short join-request", MsgJoinReq, joinRequest[:44], frameIDs{},
			"PHYPayload is not a join-request frame: 18 bytes of data are expected"},
		{"rejoin type 3", MsgRejoinReq, "C003130000" + "1100FFEEDDCCBBAA" + "0100" + "01020304", frameIDs{},
			"PHYPayload is not a rejoin-request frame: invalid RejoinType 3"},
		{"rejoin type 1 of type 0's length", MsgRejoinReq, "C001" + rejoin0[4:], frameIDs{},
			"PHYPayload is not a rejoin-request frame: 19 bytes of data are expected"},
		{"four bytes", MsgJoinReq, "00010203", frameIDs{},
			"PHYPayload is not a join-request frame: at least 5 bytes needed to decode PHYPayload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFrame(tc.m, mustHex(tc.frame))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
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

// FuzzParseFrame: any bytes either fail with a message or yield the
// identifiers found at their on-air positions (little-endian).
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		"0001000000332211001100FFEEDDCCBBAA0700AF926245",
		"C000130000" + "1100FFEEDDCCBBAA" + "0100" + "01020304",
		"C001" + "0100000033221100" + "1100FFEEDDCCBBAA" + "0100" + "01020304",
		"C002130000" + "1100FFEEDDCCBBAA" + "0100" + "01020304",
		"20A33CF11372C2B08D68A6B41FF9127299",
	} {
		f.Add(true, []byte(mustHex(s)))
		f.Add(false, []byte(mustHex(s)))
	}
	le := func(b []byte) EUI64 {
		var e EUI64
		for i := range e {
			e[i] = b[7-i]
		}
		return e
	}
	f.Fuzz(func(t *testing.T, join bool, phy []byte) {
		m := MsgRejoinReq
		if join {
			m = MsgJoinReq
		}
		got, err := parseFrame(m, phy)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		switch {
		case join && (len(phy) != 23 || phy[0] != 0x00 || got.devEUI != le(phy[9:17]) || got.joinEUI != le(phy[1:9])):
			t.Fatalf("join-request %X parsed as %+v", phy, got)
		case !join && phy[1] == 1 && (len(phy) != 24 || got.devEUI != le(phy[10:18]) || got.joinEUI != le(phy[2:10])):
			t.Fatalf("rejoin type 1 %X parsed as %+v", phy, got)
		case !join && phy[1] != 1 && (len(phy) != 19 || got.devEUI != le(phy[5:13]) || got.netID != (NetID{phy[4], phy[3], phy[2]})):
			t.Fatalf("rejoin type %d %X parsed as %+v", phy[1], phy, got)
		}
	})
}
