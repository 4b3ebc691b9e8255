package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// Devices of the bulk fixture (../../joinclient/testdata/claiming/bulk-claim.csv).
const (
	claimPump1   = "0004A30B001C0530"
	claimPump2   = "0004A30B001C0531"
	claimTracker = "0016C001F1234567"
)

var claimTokens = []string{"6A5F2C9B1D", "7B6E3D0C2E", "A1B2C3D4E5F6A7B8", "WRONGTOKEN99"}

// claimEnv is two TTJS test servers (one per JoinEUI range), a claiming
// repository in memory pointing at them and an app-connect.yml with the join
// identity.
type claimEnv struct {
	tti, mchp *jstest.TTJS
	cmd       claimCommand
	cfgPath   string
}

func newClaimEnv(t *testing.T) *claimEnv {
	t.Helper()
	pki := jstest.NewPKI(t)
	e := &claimEnv{tti: jstest.NewTTJS(t, pki), mchp: jstest.NewTTJS(t, pki)}
	e.tti.AddDevice(claimPump1, claimTokens[0])
	e.tti.AddDevice(claimPump2, claimTokens[1])
	e.mchp.AddDevice(claimTracker, claimTokens[2])
	cert, key := pki.Issue(t, "gateway-1")
	tlsBlock := "tls:\n  source: file\n  root-ca: ../ca.pem\n  certificate: ../gw.pem\n  key: ../gw.key\n"
	m := fstest.MapFS{
		"mem/claiming/config.yml": {Data: []byte("join-servers:\n" +
			"  - file: ./tti/js.yml\n    type: ttjsv2\n    join-euis: ['EC656E0000000000/24']\n" +
			"  - file: ./microchip/js.yml\n    type: ttjsv2\n    join-euis: ['0016C00000000000/24']\n")},
		"mem/claiming/tti/js.yml":       {Data: []byte("url: " + e.tti.URL + "\n" + tlsBlock)},
		"mem/claiming/microchip/js.yml": {Data: []byte("url: " + e.mchp.URL + "\n" + tlsBlock)},
		"mem/claiming/ca.pem":           {Data: pki.CAPEM},
		"mem/claiming/gw.pem":           {Data: cert},
		"mem/claiming/gw.key":           {Data: key},
	}
	e.cmd.readFile = func(name string) ([]byte, error) { return fs.ReadFile(m, filepath.ToSlash(filepath.Clean(name))) }
	e.cfgPath = filepath.Join(t.TempDir(), "app-connect.yml")
	cfg := "join:\n  net_id: \"000013\"\n  ns_id: \"70B3D5FFFE000001\"\n  as_id: conduit-1.example.com\n"
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs the command with stdin and returns exit status, stdout and stderr,
// failing the test if an owner token shows up in either.
func (e *claimEnv) run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := e.cmd
	cmd.stdin = strings.NewReader(stdin)
	args = append([]string{args[0], "--config", e.cfgPath, "--claiming-dir", "mem/claiming"}, args[1:]...)
	code := cmd.run(context.Background(), args, &out, &errb)
	for _, tok := range claimTokens {
		if strings.Contains(out.String()+errb.String(), tok) {
			t.Errorf("owner token %s…%s in output:\n%s\n%s", tok[:2], tok[len(tok)-2:], out.String(), errb.String())
		}
	}
	return code, out.String(), errb.String()
}

func (e *claimEnv) claimed(t *testing.T, s *jstest.TTJS, dev string) bool {
	t.Helper()
	d, ok := s.Device(dev)
	return ok && d.Claimed
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../joinclient/testdata/claiming", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bulkWithBadLine is the bulk fixture with a DevEUI of 15 digits on line 3.
func bulkWithBadLine(t *testing.T) string {
	lines := strings.SplitAfter(readFixture(t, "bulk-claim.csv"), "\n")
	bad := "0004A30B001C053,EC656E0000000001,BADBAD77,broken\n"
	return strings.Join(append(lines[:2:2], append([]string{bad}, lines[2:]...)...), "")
}

func TestClaimBulkFileOneBadLineClaimsTheRest(t *testing.T) {
	e := newClaimEnv(t)
	code, out, errOut := e.run(t, bulkWithBadLine(t), "claim", "--verbose", "--csv", "-")
	if code != 2 {
		t.Errorf("exit %d, want 2 (input error)", code)
	}
	if !strings.Contains(errOut, "input error: stdin:3: dev_eui: want 16 hex digits, got 15") {
		t.Errorf("stderr does not report line 3:\n%s", errOut)
	}
	want := `DEV EUI           JOIN EUI          JOIN SERVER   ACTION  RESULT  DETAIL
0004A30B001C0530  EC656E0000000001  tti/js        claim   ok      claimed and locked, home NetID 000013
0004A30B001C0531  EC656E0000000001  tti/js        claim   ok      claimed and locked, home NetID 000013
0016C001F1234567  0016C001F0000001  microchip/js  claim   ok      claimed and locked, home NetID 000013
claim: 3 device(s): 3 ok, 1 input error(s)
`
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	for _, d := range []struct {
		s   *jstest.TTJS
		dev string
	}{{e.tti, claimPump1}, {e.tti, claimPump2}, {e.mchp, claimTracker}} {
		if !e.claimed(t, d.s, d.dev) {
			t.Errorf("%s not claimed", d.dev)
		}
	}
	if d, _ := e.tti.Device(claimPump1); d.ASID != "conduit-1.example.com" || d.HomeNSID != "70B3D5FFFE000001" {
		t.Errorf("claim identity %+v", d)
	}
}

func TestClaimAllOrNothingClaimsNone(t *testing.T) {
	e := newClaimEnv(t)
	code, out, errOut := e.run(t, bulkWithBadLine(t), "claim", "--csv", "-", "--all-or-nothing")
	if code != 2 || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "stdin:3: dev_eui") || !strings.Contains(errOut, "nothing done (--all-or-nothing)") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if n := len(e.tti.Requests()) + len(e.mchp.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestClaimFromQRStringsAndStatusAndUnclaim(t *testing.T) {
	e := newClaimEnv(t)
	valid := strings.Split(readFixture(t, "tr005-valid.txt"), "\n")
	qr1, qr2 := valid[1], valid[2] // pump-01 (tti) and tracker-07 (microchip)
	code, out, errOut := e.run(t, "", "claim", qr1, "--timeout", "5s", qr2)
	// One progress line per device on stderr, in the order they finish.
	progress := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 0 || len(progress) != 2 || !strings.HasPrefix(progress[0], "1/2 ") || !strings.HasPrefix(progress[1], "2/2 ") ||
		!strings.Contains(errOut, " "+claimPump1+" ok\n") || !strings.Contains(errOut, " "+claimTracker+" ok\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.HasSuffix(out, "claim: 2 device(s): 2 ok\n") || !e.claimed(t, e.tti, claimPump1) || !e.claimed(t, e.mchp, claimTracker) {
		t.Errorf("stdout:\n%s", out)
	}

	code, out, _ = e.run(t, "", "status", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001")
	if code != 0 || !strings.Contains(out, "status  claimed  home NetID 000013, NSID 70B3D5FFFE000001, locked") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, _ = e.run(t, "", "unclaim", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001")
	if code != 0 || !strings.Contains(out, "unclaim  ok      unclaimed") || e.claimed(t, e.tti, claimPump1) {
		t.Errorf("unclaim: exit %d\n%s", code, out)
	}
	code, out, _ = e.run(t, "", "status", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001")
	if code != 1 || !strings.Contains(out, "not-claimed  device not claimed") {
		t.Errorf("status after unclaim: exit %d\n%s", code, out)
	}
}

func TestClaimOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(*claimEnv)
		args   []string
		code   int
		result string
		detail string
	}{
		{"wrong owner token", nil,
			[]string{"--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", "WRONGTOKEN99"},
			1, "denied", "already claimed or wrong owner token: claim failed with given owner token"},
		{"device not provisioned", nil,
			[]string{"--dev-eui", "0004A30B001C05FF", "--join-eui", "EC656E0000000001", "--owner-token", "ABCDEF"},
			1, "not-provisioned", "device not provisioned on this Join Server"},
		{"no claim server for the JoinEUI", nil,
			[]string{"--dev-eui", claimPump1, "--join-eui", "70B3D57ED0000000", "--owner-token", "ABCDEF"},
			1, "no-js", "no claiming Join Server for JoinEUI"},
		{"server error", func(e *claimEnv) { e.tti.SetFault(500) },
			[]string{"--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", "6A5F2C9B1D"},
			1, "server-error", "HTTP 500: internal error"},
		{"server hangs", func(e *claimEnv) { e.tti.SetHang(true) },
			[]string{"--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", "6A5F2C9B1D", "--timeout", "200ms"},
			1, "timeout", "no answer within 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newClaimEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			code, out, errOut := e.run(t, "", append([]string{"claim", "--output", "json"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s\n%s", code, tc.code, out, errOut)
			}
			var doc struct {
				Results []claimRow
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Results) != 1 {
				t.Fatalf("json %v:\n%s", err, out)
			}
			if r := doc.Results[0]; r.Result != tc.result || r.Detail != tc.detail || r.OK {
				t.Errorf("row %+v, want %s / %s", r, tc.result, tc.detail)
			}
		})
	}
}

func TestClaimDryRunShowsRoutes(t *testing.T) {
	e := newClaimEnv(t)
	// A dry run needs no certificate file: the repository's are missing here.
	read := e.cmd.readFile
	e.cmd.readFile = func(name string) ([]byte, error) {
		if strings.HasSuffix(name, ".pem") || strings.HasSuffix(name, ".key") {
			return nil, fs.ErrNotExist
		}
		return read(name)
	}
	csv := readFixture(t, "bulk-claim.csv") + "0004A30B001C0599,70B3D57ED0000000,ABCDEF12,lost\n"
	code, out, _ := e.run(t, csv, "claim", "--dry-run", "--csv", "-")
	if code != 1 {
		t.Errorf("exit %d, want 1 (a device has no claim server)", code)
	}
	for _, want := range []string{
		"0004A30B001C0530  EC656E0000000001  tti/js        claim   dry-run  prefix EC656E0000000000/24, " + e.tti.URL + ", owner token …1D",
		"0016C001F1234567  0016C001F0000001  microchip/js  claim   dry-run  prefix 0016C00000000000/24, " + e.mchp.URL + ", owner token …B8",
		"0004A30B001C0599  70B3D57ED0000000  -             claim   no-js    no claiming Join Server for JoinEUI",
		"claim (dry run): 4 device(s): 3 dry-run, 1 no-js",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if n := len(e.tti.Requests()) + len(e.mchp.Requests()); n != 0 {
		t.Errorf("%d requests sent by a dry run", n)
	}
}

func TestClaimInputAndUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no devices", "", []string{"claim"}, "no devices"},
		{"dev-eui without join-eui", "", []string{"claim", "--dev-eui", claimPump1}, "--dev-eui and --join-eui go together"},
		{"bad output", "", []string{"status", "--output", "xml", "--dev-eui", claimPump1, "--join-eui", claimPump1}, "--output must be table or json"},
		{"invalid QR string", "", []string{"claim", "LW:D0:EC656E00000000:0004A30B001C0530:00AB1234"},
			"input error: argument 1: tr005: JoinEUI: want 16 hex digits, got 14"},
		{"QR string without owner token", "", []string{"claim", "LW:D0:EC656E0000000001:0004A30B001C0530:00AB1234"},
			"input error: argument 1: owner token: missing for DevEUI 0004A30B001C0530: needed to claim"},
		{"QR file with a bad line", "# comment\n\nXX:D0:EC656E0000000001:0004A30B001C0530:00AB1234\n", []string{"status", "--qr-file", "-"},
			"input error: stdin:3: tr005: preface"},
		{"duplicate device", "", []string{"status", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001",
			"LW:D0:EC656E0000000001:0004A30B001C0530:00AB1234"}, "flags: DevEUI 0004A30B001C0530 given again (first at argument 1)"},
		{"CSV without header", "0004A30B001C0530,EC656E0000000001,AAAA\n", []string{"claim", "--csv", "-"}, "stdin:1: header row must name"},
		{"both inputs on stdin", "", []string{"claim", "--csv", "-", "--qr-file", "-"}, "cannot both read stdin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newClaimEnv(t)
			code, _, errOut := e.run(t, tc.stdin, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant it to contain %q", code, errOut, tc.want)
			}
		})
	}
}

func TestClaimConfigurationErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	noAS := filepath.Join(dir, "no-as.yml")
	if err := os.WriteFile(noAS, []byte("join:\n  net_id: \"000013\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("join:\n  net_id: \"0013\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	qr := "LW:D0:EC656E0000000001:0004A30B001C0530:00AB1234:O6A5F2C9B1D"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"invalid app-connect.yml", []string{"--config", bad, qr}, "join.net_id"},
		{"no claiming repository", []string{"--config", noAS, qr}, "no claiming repository: set claim.dir"},
		{"unreadable claiming repository", []string{"--config", noAS, "--claiming-dir", filepath.Join(dir, "nope"), qr}, "nope/config.yml: cannot read"},
		{"no home NetID", []string{"--claiming-dir", dir, qr}, "no home NetID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runClaim(ctx, append([]string{"claim"}, tc.args...), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant %q", code, errb.String(), tc.want)
			}
			if strings.Contains(out.String()+errb.String(), "6A5F2C9B1D") {
				t.Error("owner token in output")
			}
		})
	}
	t.Run("no AS-ID", func(t *testing.T) {
		e := newClaimEnv(t)
		e.cfgPath = noAS
		code, _, errOut := e.run(t, "", "claim", qr)
		if code != 2 || !strings.Contains(errOut, "no AS-ID") {
			t.Errorf("exit %d\n%s", code, errOut)
		}
	})
	t.Run("help", func(t *testing.T) {
		var out, errb bytes.Buffer
		if code := runClaim(ctx, []string{"--help"}, &out, &errb); code != 0 || errb.Len() != 0 || !strings.Contains(out.String(), "prefer\n--csv -") ||
			!strings.Contains(out.String(), "  --all-or-nothing\n") || strings.Contains(out.String(), "  -all-or-nothing") {
			t.Errorf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	})
}

// Without join.net_id or --net-id, claims carry the gateway's own NetID from
// mPower (loraNetwork lora.netID), as the join proxy does.
func TestClaimHomeNetIDFromMPower(t *testing.T) {
	e := newClaimEnv(t)
	mp := sim.NewMPower()
	mp.SetLoraNetwork(sim.LoraNetwork("00-80-00-00-d0-00-01-ff", "127.0.0.1", 1883)) // netID 000013
	srv := httptest.NewServer(mp)
	defer srv.Close()
	cfg := "mpower:\n  api: " + srv.URL + "\njoin:\n  ns_id: \"70B3D5FFFE000001\"\n  as_id: conduit-1.example.com\n"
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.run(t, "", "claim", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", claimTokens[0])
	if code != 0 || !strings.Contains(out, "home NetID 000013") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if d, _ := e.tti.Device(claimPump1); d.HomeNetID != "000013" {
		t.Fatalf("claimed with home NetID %q", d.HomeNetID)
	}
	// mPower not answering: the clear error names both ways to set it.
	srv.Close()
	e2 := newClaimEnv(t)
	if err := os.WriteFile(e2.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = e2.run(t, "", "claim", "--dev-eui", claimPump1, "--join-eui", "EC656E0000000001", "--owner-token", claimTokens[0])
	if code != 2 || !strings.Contains(errOut, "no home NetID") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
