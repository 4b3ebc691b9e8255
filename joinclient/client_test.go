package joinclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/brocaar/lorawan"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// Against brocaar/lorawan's backend/joinserver handler (a real third-party
// implementation), over HTTP and over HTTPS with a required client certificate.
func TestBrocaarJoin(t *testing.T) {
	homeNetID := lorawan.NetID{0x00, 0x00, 0x13}
	handler := func(t *testing.T) *jstest.Peer {
		return jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{
			Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5,
			KEKs: map[string][]byte{"000013": katNSKEK}, HomeNetID: &homeNetID,
		}))
	}
	pki := jstest.NewPKI(t)
	transports := []struct {
		name  string
		start func(t *testing.T) (*jstest.Peer, jsSpec, jc.RepositoryOptions)
	}{
		{"http", func(t *testing.T) (*jstest.Peer, jsSpec, jc.RepositoryOptions) {
			p := handler(t)
			return p, jsSpec{name: "brocaar", url: p.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}}, jc.RepositoryOptions{}
		}},
		{"https client certificate from files", func(t *testing.T) (*jstest.Peer, jsSpec, jc.RepositoryOptions) {
			p := jstest.ServeTLS(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{
				Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5,
				KEKs: map[string][]byte{"000013": katNSKEK}, HomeNetID: &homeNetID,
			}), pki)
			return p, jsSpec{name: "brocaar", url: p.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}, pki: pki, clientCert: true}, jc.RepositoryOptions{}
		}},
		{"https key-vault default certificate", func(t *testing.T) (*jstest.Peer, jsSpec, jc.RepositoryOptions) {
			p := jstest.ServeTLS(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{
				Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5,
				KEKs: map[string][]byte{"000013": katNSKEK}, HomeNetID: &homeNetID,
			}), pki)
			return p, jsSpec{name: "brocaar", url: p.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}, pki: pki, keyVault: true},
				jc.RepositoryOptions{DefaultClientCertificate: defaultCert(t, pki)}
		}},
	}
	keks := kekStore(t, map[string][]byte{"000013": katNSKEK})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			peer, spec, ropts := tr.start(t)
			repo := testRepo(t, ropts, spec)
			c := jc.NewClient(repo.JoinServers[0], clientOpts())
			defer c.Close()
			ctx := context.Background()

			t.Run("LoRaWAN 1.0.3 device, known answer", func(t *testing.T) {
				req := joinReq(t, katDevice, 7)
				if got := req.PHYPayload.String(); got != katJoinRequest {
					t.Fatalf("join-request %s, want %s", got, katJoinRequest)
				}
				ans, err := c.JoinReq(ctx, jc.EUI64(katJoinEUI), req)
				if err != nil {
					t.Fatal(err)
				}
				if ans.PHYPayload.String() != katJoinAccept {
					t.Fatalf("join-accept %s, want %s", ans.PHYPayload, katJoinAccept)
				}
				if ans.NwkSKey.KEKLabel != "000013" || ans.AppSKey.KEKLabel != "" {
					t.Fatalf("envelopes %v %v", ans.NwkSKey, ans.AppSKey)
				}
				nwk, app := open(t, keks, ans.NwkSKey), open(t, keks, ans.AppSKey)
				if nwk.String() != "386284f9907d629776e2f0d6a54d0790" || app.String() != "bb53b962a31661c08fb2e98ca8de27eb" {
					t.Fatalf("keys %s %s", nwk, app)
				}
				sk, err := katDevice.VerifyJoinAccept(ans.PHYPayload, 7)
				if err != nil {
					t.Fatal(err)
				}
				if sk.FNwkSIntKey != nwk || sk.AppSKey != app {
					t.Fatal("device derived other session keys than the Join Server sent")
				}
			})
			t.Run("LoRaWAN 1.1 device", func(t *testing.T) {
				ans, err := c.JoinReq(ctx, jc.EUI64(katJoinEUI), joinReq(t, device11, 1))
				if err != nil {
					t.Fatal(err)
				}
				sk, err := device11.VerifyJoinAccept(ans.PHYPayload, 1)
				if err != nil {
					t.Fatal(err)
				}
				if open(t, keks, ans.FNwkSIntKey) != sk.FNwkSIntKey || open(t, keks, ans.SNwkSIntKey) != sk.SNwkSIntKey ||
					open(t, keks, ans.NwkSEncKey) != sk.NwkSEncKey || open(t, keks, ans.AppSKey) != sk.AppSKey {
					t.Fatal("1.1 session keys differ from the device's")
				}
			})
			t.Run("MICFailed for a wrong key", func(t *testing.T) {
				d := katDevice
				d.NwkKey[0] ^= 0xFF
				_, err := c.JoinReq(ctx, jc.EUI64(katJoinEUI), joinReq(t, d, 8))
				var re *jc.ResultError
				if !errors.Is(err, jc.ErrMICFailed) || !errors.As(err, &re) || re.Code != jc.ResultMICFailed || re.HTTPStatus != 200 {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("UnknownDevEUI sent with HTTP 400", func(t *testing.T) {
				d := katDevice
				d.DevEUI[7] = 0x99
				_, err := c.JoinReq(ctx, jc.EUI64(katJoinEUI), joinReq(t, d, 9))
				var re *jc.ResultError
				if !errors.Is(err, jc.ErrNotFound) || !errors.As(err, &re) || re.Code != jc.ResultUnknownDevEUI || re.HTTPStatus != 400 {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("HomeNSReq", func(t *testing.T) {
				ans, err := c.HomeNSReq(ctx, jc.EUI64(katJoinEUI), jc.EUI64(katDevEUI))
				if err != nil || ans.HNetID == nil || *ans.HNetID != katNetID {
					t.Fatalf("ans %+v, err %v", ans, err)
				}
			})
			t.Run("AppSKeyReq gets a bare Other with 400: a BI error", func(t *testing.T) {
				_, err := c.AppSKeyReq(ctx, jc.EUI64(katJoinEUI), jc.EUI64(katDevEUI), []byte{1, 2})
				var re *jc.ResultError
				if !errors.As(err, &re) || re.Code != jc.ResultOther || re.HTTPStatus != 400 || !errors.Is(err, jc.ErrOther) {
					t.Fatalf("err = %v", err)
				}
			})
			if spec.pki != nil {
				if n := peer.NewConns(); n != 1 {
					t.Errorf("%d connections for six requests, want 1 (connection reuse)", n)
				}
			}
		})
	}

	t.Run("https without client certificate is refused", func(t *testing.T) {
		p := jstest.ServeTLS(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}}), pki)
		repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "b", url: p.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}, pki: pki})
		_, err := jc.NewClient(repo.JoinServers[0], clientOpts()).JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
		if !errors.Is(err, jc.ErrTransport) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("BI1.1 request to a 1.0-only server: Success with header warnings", func(t *testing.T) {
		p := handler(t)
		repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "b", url: p.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}})
		c := jc.NewClient(repo.JoinServers[0], clientOpts())
		for i := range 2 {
			if _, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, uint16(20+i))); err != nil {
				t.Fatal(err)
			}
		}
		w := c.HeaderWarnings()
		if w["protocol_version"] != 2 || w["receiver_nsid"] != 2 {
			t.Fatalf("warnings %v", w)
		}
	})
	t.Run("HomeNSReq without home-NetID callback", func(t *testing.T) {
		p := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}}))
		repo := testRepo(t, jc.RepositoryOptions{}, jsSpec{name: "b", url: p.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}})
		_, err := jc.NewClient(repo.JoinServers[0], clientOpts()).HomeNSReq(context.Background(), jc.EUI64(katJoinEUI), jc.EUI64(katDevEUI))
		if !errors.Is(err, jc.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
}

// startStrict starts the project's strict BI 1.1 Join Server, wrapping
// brocaar's handler (without KEKs) for the cryptography.
func startStrict(t *testing.T, cfg jstest.StrictConfig) (*jstest.Strict, *jstest.Peer) {
	t.Helper()
	s := jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice, device11}, FirstJoinNonce: 5}), cfg)
	return s, jstest.Serve(t, s)
}

func TestStrictHeaders(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{})
	fileNSID := "1122334455667788"
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid},
		jsSpec{name: "own", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000001/64"}, extra: "sender-ns-id: '" + fileNSID + "'\n"},
		jsSpec{name: "global", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000002/64"}},
		jsSpec{name: "v10", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0011223300000003/64"}},
	)
	for i, tc := range []struct {
		js       *jc.JoinServer
		wantPV   string
		wantNSID string
	}{
		{repo.JoinServers[0], "1.1", fileNSID},
		{repo.JoinServers[1], "1.1", nsid.String()},
		{repo.JoinServers[2], "1.0", ""},
	} {
		t.Run(tc.js.Name, func(t *testing.T) {
			c := jc.NewClient(tc.js, clientOpts())
			ans, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, uint16(100+i)))
			if err != nil {
				t.Fatal(err)
			}
			reqs := strict.Requests()
			got := reqs[len(reqs)-1].Body
			nsidGot, has := got["SenderNSID"]
			if got["ProtocolVersion"] != tc.wantPV || (tc.wantNSID == "") == has || (has && nsidGot != tc.wantNSID) {
				t.Fatalf("request header %v", got)
			}
			if got["SenderID"] != "000013" || got["ReceiverID"] != "0011223300000001" || got["TransactionID"].(interface{ String() string }).String() == "0" {
				t.Fatalf("request ids %v", got)
			}
			if string(ans.ProtocolVersion) != tc.wantPV || ans.ReceiverNSID != tc.wantNSID || *ans.Lifetime != 0 {
				t.Fatalf("answer header %+v", ans.Header)
			}
			if w := c.HeaderWarnings(); len(w) != 0 {
				t.Fatalf("warnings %v against a correct server", w)
			}
		})
	}
}

func TestStrictResultCodes(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{})
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "js", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}})
	c := jc.NewClient(repo.JoinServers[0], clientOpts())
	for _, tc := range []struct {
		code string
		kind error
	}{
		{"NoAction", jc.ErrOther},
		{"FrameReplayed", jc.ErrOther},
		{"MalformedMessage", jc.ErrMalformed},
		{"UnknownReceiver", jc.ErrUnknownReceiver},
		{"UnkownReceiver", jc.ErrUnknownReceiver},
		{"ActivationDisallowed", jc.ErrActivationDisallowed},
		{"UnknownDevEUI", jc.ErrNotFound},
		{"JoinReqFailed", jc.ErrOther},
		{"SomethingNew", jc.ErrOther},
	} {
		t.Run(tc.code, func(t *testing.T) {
			strict.Configure(func(c *jstest.StrictConfig) { c.Result, c.Description = tc.code, "injected" })
			_, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
			var re *jc.ResultError
			if !errors.As(err, &re) || string(re.Code) != tc.code || re.HTTPStatus != 200 || re.Description != "injected" || !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v", err)
			}
			if jc.ResultOf(err) != tc.code {
				t.Fatalf("recorded %s", jc.ResultOf(err))
			}
		})
	}
	big := []byte(`{"x":"` + strings.Repeat("a", jc.MaxAnswerSize) + `"}`)
	for _, tc := range []struct {
		name     string
		cfg      jstest.StrictConfig
		kind     error
		recorded string
	}{
		{"503 without body", jstest.StrictConfig{Status: 503}, jc.ErrHTTPStatus, "http_503"},
		{"400 without body", jstest.StrictConfig{Status: 400}, jc.ErrHTTPStatus, "http_400"},
		{"2xx non-JSON body", jstest.StrictConfig{Body: []byte("<html>ok</html>")}, jc.ErrMalformedAnswer, "malformed_answer"},
		{"2xx JSON without Result", jstest.StrictConfig{Body: []byte(`{"hello":1}`)}, jc.ErrMalformedAnswer, "malformed_answer"},
		{"body over 64 KiB", jstest.StrictConfig{Body: big}, jc.ErrMalformedAnswer, "malformed_answer"},
		{"Success without keys", jstest.StrictConfig{Body: []byte(`{"Result":{"ResultCode":"Success"},"PHYPayload":"20A33CF11372C2B08D68A6B41FF9127299"}`)}, jc.ErrIncomplete, "incomplete"},
		{"Success with a bad hex field", jstest.StrictConfig{Body: []byte(`{"Result":{"ResultCode":"Success"},"PHYPayload":"zz"}`)}, jc.ErrMalformedAnswer, "malformed_answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			strict.Configure(func(c *jstest.StrictConfig) { *c = tc.cfg })
			_, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
			var e *jc.Error
			if !errors.Is(err, tc.kind) || !errors.As(err, &e) || jc.ResultOf(err) != tc.recorded {
				t.Fatalf("err = %v (recorded %s)", err, jc.ResultOf(err))
			}
			if tc.name == "503 without body" && !e.Temporary() {
				t.Fatal("503 not temporary")
			}
		})
	}
	for _, fault := range []string{"transaction_id", "transaction_id_string", "message_type", "protocol_version", "receiver_nsid"} {
		t.Run("header fault "+fault+" only warns", func(t *testing.T) {
			strict.Configure(func(c *jstest.StrictConfig) { *c = jstest.StrictConfig{HeaderFault: fault} })
			c := jc.NewClient(repo.JoinServers[0], clientOpts())
			if _, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1)); err != nil {
				t.Fatal(err)
			}
			w := c.HeaderWarnings()
			want := strings.TrimSuffix(fault, "_string")
			if len(w) != 1 || w[want] != 1 {
				t.Fatalf("warnings %v, want one %s", w, want)
			}
		})
	}
}

func TestStrictTransportSettings(t *testing.T) {
	strict, peer := startStrict(t, jstest.StrictConfig{})
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{
		name: "semtech", url: peer.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"},
		extra: "paths:\n  join: 'api/v1/rens/rens-1::2/lbi_joinreq'\n  app-s-key: '/as/key'\n" +
			"basic-auth:\n  username: 'user'\n  password: 'pass'\n" +
			"headers:\n  User-Agent: 'custom-agent'\n  Authorization: 'Bearer overridden'\n  X-Gateway: 'conduit-test'\n",
	})
	c := jc.NewClient(repo.JoinServers[0], clientOpts())
	if _, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1)); err != nil {
		t.Fatal(err)
	}
	_, _ = c.AppSKeyReq(context.Background(), jc.EUI64(katJoinEUI), jc.EUI64(katDevEUI), []byte{1})
	reqs := strict.Requests()
	r := reqs[0]
	if r.Path != "/api/v1/rens/rens-1::2/lbi_joinreq" {
		t.Errorf("path %q", r.Path)
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "custom-agent" || r.Header.Get("X-Gateway") != "conduit-test" {
		t.Errorf("headers %v", r.Header)
	}
	if r.Header.Get("Authorization") != "Basic dXNlcjpwYXNz" {
		t.Errorf("basic auth must override a custom Authorization, got %q", r.Header.Get("Authorization"))
	}
	as := reqs[1]
	if as.Path != "/as/key" || as.Body["SenderID"] != asID || as.Body["MessageType"] != "AppSKeyReq" {
		t.Errorf("AppSKeyReq %s %v", as.Path, as.Body)
	}
	if _, has := as.Body["SenderNSID"]; has {
		t.Error("AppSKeyReq carries SenderNSID")
	}
}
