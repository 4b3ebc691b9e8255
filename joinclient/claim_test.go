package joinclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

var claimIdentity = jc.ClaimIdentity{HomeNetID: jc.NetID{0, 0, 0x13}, HomeNSID: nsid, ASID: asID}

// claimRepoFor builds an in-memory claiming repository with one claim server
// at url for every JoinEUI; cn names the client certificate, issued by pki
// (nil: a client certificate from a foreign CA).
func claimRepoFor(t *testing.T, serverPKI, clientPKI *jstest.PKI, url string) *jc.ClaimRepository {
	t.Helper()
	c, k := clientPKI.Issue(t, "gateway-1")
	files := map[string][]byte{
		"c/config.yml": []byte("join-servers:\n  - file: ttjs.yml\n    type: ttjsv2\n    join-euis: ['0000000000000000/0']\n"),
		"c/ttjs.yml":   []byte("url: " + url + "/\ntls:\n  source: file\n  root-ca: ca.pem\n  certificate: c.pem\n  key: k.pem\n"),
		"c/ca.pem":     serverPKI.CAPEM,
		"c/c.pem":      c,
		"c/k.pem":      k,
	}
	repo, err := jc.LoadClaimRepository("c", jc.ClaimRepositoryOptions{ReadFile: claimFS(files, false)})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// claimSetup starts a TTJS server and returns it with a client holding a
// valid client certificate, logging at debug level into logs.
func claimSetup(t *testing.T, timeout time.Duration) (*jstest.TTJS, *jc.ClaimClient, *bytes.Buffer) {
	t.Helper()
	pki := jstest.NewPKI(t)
	ttjs := jstest.NewTTJS(t, pki)
	repo := claimRepoFor(t, pki, pki, ttjs.URL)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cl := jc.NewClaimClient(repo.Servers[0], jc.ClaimClientOptions{Identity: claimIdentity, Timeout: timeout, Logger: log})
	t.Cleanup(cl.Close)
	return ttjs, cl, &logs
}

const (
	devA   = "0004A30B001C0530"
	devB   = "0004A30B001C0531"
	tokenA = "6A5F2C9B1D"
	tokenB = "7B6E3D0C2E"
)

func wantKind(t *testing.T, err, kind error, status int) *jc.ClaimError {
	t.Helper()
	var ce *jc.ClaimError
	if !errors.As(err, &ce) || !errors.Is(err, kind) {
		t.Fatalf("want %v, got %v", kind, err)
	}
	if ce.Status != status {
		t.Errorf("status %d, want %d", ce.Status, status)
	}
	return ce
}

func TestClaimStatusUnclaim(t *testing.T) {
	ttjs, cl, logs := claimSetup(t, 0)
	ttjs.AddDevice(devA, tokenA)
	ctx := context.Background()
	eui := mustEUI(t, devA)

	if _, err := cl.Status(ctx, eui); err != nil {
		wantKind(t, err, jc.ErrClaimNotFound, 404)
	} else {
		t.Fatal("status of an unclaimed device succeeded")
	}
	if err := cl.Claim(ctx, eui, tokenA); err != nil {
		t.Fatal(err)
	}
	d, _ := ttjs.Device(devA)
	if !d.Claimed || d.ClaimedBy != "gateway-1" || d.HomeNetID != "000013" || d.HomeNSID != "70B3D5FFFE000001" || d.ASID != asID || !d.Locked {
		t.Errorf("device after claim: %+v", d)
	}
	reqs := ttjs.Requests()
	put := reqs[len(reqs)-1]
	if put.Method != "PUT" || put.Path != "/api/v2/devices/0004A30B001C0530/claim" || put.ContentType != "application/json" || put.Authorization != "" {
		t.Errorf("claim request %+v", put)
	}
	wantBody := `{"ownerToken":"6A5F2C9B1D","homeNetID":"000013","homeNSID":"70B3D5FFFE000001","asID":"conduit-1.example.com","lock":true}`
	if string(put.Body) != wantBody {
		t.Errorf("body %s\nwant %s", put.Body, wantBody)
	}
	got, err := cl.Status(ctx, eui)
	if err != nil {
		t.Fatal(err)
	}
	if *got != (jc.ClaimData{HomeNetID: jc.NetID{0, 0, 0x13}, HomeNSID: nsid, Locked: true}) {
		t.Errorf("status %+v", got)
	}
	if err := cl.Unclaim(ctx, eui); err != nil {
		t.Fatal(err)
	}
	if d, _ := ttjs.Device(devA); d.Claimed {
		t.Error("still claimed after unclaim")
	}
	wantKind(t, cl.Unclaim(ctx, eui), jc.ErrClaimNotFound, 404)
	if strings.Contains(logs.String(), tokenA) {
		t.Errorf("owner token in logs:\n%s", logs)
	}
}

func TestClaimFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*jstest.TTJS)
		token   jc.OwnerToken
		kind    error
		status  int
		message string
	}{
		{"wrong owner token", func(s *jstest.TTJS) { s.AddDevice(devA, tokenA) }, "WRONGTOKEN99", jc.ErrClaimDenied, 403, jstest.TTJSWrongToken},
		{"claimed by another network", func(s *jstest.TTJS) { s.AddDevice(devA, tokenA); s.ClaimAs(devA, "other-gw") }, tokenA,
			jc.ErrClaimDenied, 403, jstest.TTJSWrongToken},
		{"device not provisioned", func(*jstest.TTJS) {}, tokenA, jc.ErrClaimNotFound, 404, "device not provisioned"},
		{"server error", func(s *jstest.TTJS) { s.SetFault(503) }, tokenA, jc.ErrClaimServer, 503, "internal error"},
		{"bad request", func(s *jstest.TTJS) { s.SetFault(400) }, tokenA, jc.ErrClaimBadRequest, 400, "internal error"},
		{"empty owner token refused before sending", func(*jstest.TTJS) {}, "", jc.ErrClaimInput, 0, "empty owner token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttjs, cl, logs := claimSetup(t, 0)
			tc.setup(ttjs)
			err := cl.Claim(context.Background(), mustEUI(t, devA), tc.token)
			ce := wantKind(t, err, tc.kind, tc.status)
			if ce.Message != tc.message {
				t.Errorf("message %q, want %q", ce.Message, tc.message)
			}
			if tc.token != "" && strings.Contains(err.Error()+logs.String(), string(tc.token)) {
				t.Errorf("owner token leaked: %v\n%s", err, logs)
			}
			if tc.kind == jc.ErrClaimInput && len(ttjs.Requests()) != 0 {
				t.Error("request sent")
			}
		})
	}
}

func TestClaimCredentials(t *testing.T) {
	ctx := context.Background()
	t.Run("missing client certificate: 401", func(t *testing.T) {
		pki := jstest.NewPKI(t)
		ttjs := jstest.NewTTJS(t, pki)
		ttjs.AddDevice(devA, tokenA)
		repo := claimRepoFor(t, pki, pki, ttjs.URL)
		srv := *repo.Servers[0]
		srv.TLSConfig = srv.TLSConfig.Clone()
		srv.TLSConfig.Certificates = nil
		cl := jc.NewClaimClient(&srv, jc.ClaimClientOptions{Identity: claimIdentity})
		defer cl.Close()
		wantKind(t, cl.Claim(ctx, mustEUI(t, devA), tokenA), jc.ErrClaimUnauthenticated, 401)
		if d, _ := ttjs.Device(devA); d.Claimed {
			t.Error("claimed without certificate")
		}
	})
	t.Run("client certificate of a foreign CA: handshake refused", func(t *testing.T) {
		pki := jstest.NewPKI(t)
		ttjs := jstest.NewTTJS(t, pki)
		ttjs.AddDevice(devA, tokenA)
		repo := claimRepoFor(t, pki, jstest.NewPKI(t), ttjs.URL)
		cl := jc.NewClaimClient(repo.Servers[0], jc.ClaimClientOptions{Identity: claimIdentity})
		defer cl.Close()
		wantKind(t, cl.Claim(ctx, mustEUI(t, devA), tokenA), jc.ErrClaimUnauthenticated, 0)
	})
	t.Run("server certificate not trusted", func(t *testing.T) {
		pki := jstest.NewPKI(t)
		ttjs := jstest.NewTTJS(t, pki)
		repo := claimRepoFor(t, jstest.NewPKI(t), pki, ttjs.URL)
		cl := jc.NewClaimClient(repo.Servers[0], jc.ClaimClientOptions{Identity: claimIdentity})
		defer cl.Close()
		wantKind(t, cl.Claim(ctx, mustEUI(t, devA), tokenA), jc.ErrClaimTransport, 0)
	})
}

func TestClaimServerHangsTimesOut(t *testing.T) {
	ttjs, cl, _ := claimSetup(t, 200*time.Millisecond)
	ttjs.AddDevice(devA, tokenA)
	ttjs.SetHang(true)
	ce := wantKind(t, cl.Claim(context.Background(), mustEUI(t, devA), tokenA), jc.ErrClaimTimeout, 0)
	if !errors.Is(ce, context.DeadlineExceeded) {
		t.Errorf("cause %v", ce.Err)
	}
}

func TestBatchUnclaim(t *testing.T) {
	ttjs, cl, _ := claimSetup(t, 0)
	ctx := context.Background()
	a, b, c := mustEUI(t, devA), mustEUI(t, devB), mustEUI(t, "0004A30B001C0532")
	ttjs.AddDevice(devA, tokenA)
	ttjs.AddDevice(devB, tokenB)
	for _, d := range []struct {
		eui jc.EUI64
		tok jc.OwnerToken
	}{{a, tokenA}, {b, tokenB}} {
		if err := cl.Claim(ctx, d.eui, d.tok); err != nil {
			t.Fatal(err)
		}
	}
	failed, err := cl.BatchUnclaim(ctx, []jc.EUI64{a, b})
	if err != nil || len(failed) != 0 {
		t.Fatalf("batch: %v %v", failed, err)
	}
	if reqs := ttjs.Requests(); reqs[len(reqs)-1].Path != "/api/v2/devices/0004A30B001C0530,0004A30B001C0531/claims" {
		t.Errorf("path %s", reqs[len(reqs)-1].Path)
	}
	if err := cl.Claim(ctx, a, tokenA); err != nil {
		t.Fatal(err)
	}
	failed, err = cl.BatchUnclaim(ctx, []jc.EUI64{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[b] == nil || failed[c] == nil || failed[a] != nil {
		t.Fatalf("per-device errors %v", failed)
	}
	if failed[b].Message != "device not claimed" || !errors.Is(failed[b], jc.ErrClaimBadRequest) {
		t.Errorf("b: %v", failed[b])
	}
	if d, _ := ttjs.Device(devA); d.Claimed {
		t.Error("a still claimed")
	}
}

func TestReadClaimCSV(t *testing.T) {
	f, err := os.Open("testdata/claiming/bulk-claim.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	devs, bad, err := jc.ReadClaimCSV(f, "bulk-claim.csv", true)
	if err != nil || len(bad) != 0 {
		t.Fatalf("%v %v", bad, err)
	}
	want := []jc.ClaimDevice{
		{DevEUI: mustEUI(t, "0004A30B001C0530"), JoinEUI: mustEUI(t, "EC656E0000000001"), OwnerToken: "6A5F2C9B1D", Name: "pump-01", Source: "bulk-claim.csv:2"},
		{DevEUI: mustEUI(t, "0004A30B001C0531"), JoinEUI: mustEUI(t, "EC656E0000000001"), OwnerToken: "7B6E3D0C2E", Name: "pump-02", Source: "bulk-claim.csv:3"},
		{DevEUI: mustEUI(t, "0016C001F1234567"), JoinEUI: mustEUI(t, "0016C001F0000001"), OwnerToken: "A1B2C3D4E5F6A7B8", Name: "tracker-07", Source: "bulk-claim.csv:4"},
	}
	if fmt.Sprint(devs) != fmt.Sprint(want) || len(devs) != 3 || devs[2].OwnerToken != want[2].OwnerToken {
		t.Errorf("got %v", devs)
	}

	in := "Owner_Token, DEV_EUI ,join_eui,extra\n" +
		"AAAA11,0004A30B001C0530,EC656E0000000001,x\n" +
		"\n" +
		"SECRET42,0004A30B001C053,EC656E0000000001,x\n" + // line 4: DevEUI 15 digits
		",0004A30B001C0531,EC656E0000000001\n" + // line 5: no token
		"BBBB22,0004A30B001C0532,EC656E000000000Z\n" + // line 6: JoinEUI not hex
		"\"bad\"quote,0004A30B001C0533,EC656E0000000001\n" + // line 7: CSV syntax
		"CCCC33,0004A30B001C0534,EC656E0000000001\n"
	devs, bad, err = jc.ReadClaimCSV(strings.NewReader(in), "in.csv", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Source != "in.csv:2" || devs[1].Source != "in.csv:8" || devs[1].OwnerToken != "CCCC33" {
		t.Errorf("devices %v", devs)
	}
	var msgs []string
	for _, b := range bad {
		msgs = append(msgs, b.Error())
	}
	wantMsgs := []string{
		"in.csv:4: dev_eui: want 16 hex digits, got 15",
		"in.csv:5: owner_token: missing",
		`in.csv:6: join_eui: not hex: "EC656E000000000Z"`,
		`in.csv:7: column 5: extraneous or missing " in quoted-field`,
	}
	if strings.Join(msgs, "\n") != strings.Join(wantMsgs, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(wantMsgs, "\n"))
	}
	if strings.Contains(strings.Join(msgs, ""), "SECRET42") {
		t.Error("owner token in an input error")
	}

	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "x.csv: empty file: a header row dev_eui,join_eui,owner_token is required"},
		{"no header", "0004A30B001C0530,EC656E0000000001,AAAA\n", "x.csv:1: header row must name the columns dev_eui, join_eui and owner_token; dev_eui is missing"},
		{"no token column to claim", "dev_eui,join_eui\n", "owner_token is missing"},
		{"duplicate column", "dev_eui,join_eui,owner_token,DEV_EUI\n", "x.csv:1: column dev_eui appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := jc.ReadClaimCSV(strings.NewReader(tc.in), "x.csv", true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if devs, _, err := jc.ReadClaimCSV(strings.NewReader("dev_eui,join_eui\n0004A30B001C0530,EC656E0000000001\n"), "x.csv", false); err != nil || len(devs) != 1 {
		t.Errorf("status input without tokens: %v %v", devs, err)
	}
}

func FuzzReadClaimCSV(f *testing.F) {
	b, err := os.ReadFile("testdata/claiming/bulk-claim.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b), true)
	f.Add("owner_token,dev_eui,join_eui\n\"a,b\",0004A30B001C0530,EC656E0000000001\n\n,,\n", false)
	f.Add("\ufeffDEV_EUI;join_eui\n\"", true)
	f.Fuzz(func(t *testing.T, in string, needToken bool) {
		devs, bad, err := jc.ReadClaimCSV(strings.NewReader(in), "f.csv", needToken)
		if err != nil && !strings.HasPrefix(err.Error(), "f.csv") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for _, e := range bad {
			if !strings.HasPrefix(e.Source, "f.csv:") {
				t.Fatalf("input error without line: %v", e)
			}
		}
		for _, d := range devs {
			if needToken && d.OwnerToken == "" {
				t.Fatalf("device without token: %+v", d)
			}
			if !strings.HasPrefix(d.Source, "f.csv:") {
				t.Fatalf("device without line: %+v", d)
			}
		}
	})
}
