package joinclient

import "testing"

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
