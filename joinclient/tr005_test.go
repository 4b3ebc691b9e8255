package joinclient_test

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// fixtureLines returns the non-comment, non-blank lines of a testdata file.
func fixtureLines(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustEUI(t testing.TB, s string) jc.EUI64 {
	t.Helper()
	e, err := jc.ParseEUI64(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestParseQRValidFixtures(t *testing.T) {
	want := map[string]jc.DeviceQR{
		"LW:D0:EC656E0000000001:0004A30B001C0530:00AB1234:O6A5F2C9B1D:SSN12345": {
			Format: jc.QRFormatTR005, JoinEUI: mustEUI(t, "EC656E0000000001"), DevEUI: mustEUI(t, "0004A30B001C0530"),
			VendorID: 0x00AB, VendorProfileID: 0x1234, OwnerToken: "6A5F2C9B1D", SerialNumber: "SN12345"},
		"LW:D0:0016C001F0000001:0016C001F1234567:0001000A:OA1B2C3D4E5F6A7B8": {
			Format: jc.QRFormatTR005, JoinEUI: mustEUI(t, "0016C001F0000001"), DevEUI: mustEUI(t, "0016C001F1234567"),
			VendorID: 0x0001, VendorProfileID: 0x000A, OwnerToken: "A1B2C3D4E5F6A7B8"},
		"LW:D0:70B3D57ED0000000:70B3D57ED005E1A2:00000001:SABC-42:O0123456789ABCDEF:Pvendor-data": {
			Format: jc.QRFormatTR005, JoinEUI: mustEUI(t, "70B3D57ED0000000"), DevEUI: mustEUI(t, "70B3D57ED005E1A2"),
			VendorID: 0, VendorProfileID: 1, OwnerToken: "0123456789ABCDEF", SerialNumber: "ABC-42", Proprietary: "vendor-data"},
		"URN:DEV:LW:EC656E0000000001_0004A30B001C0532_00AB1234_V9F8E7D6C_SSN555": {
			Format: jc.QRFormatTR005Draft3, JoinEUI: mustEUI(t, "EC656E0000000001"), DevEUI: mustEUI(t, "0004A30B001C0532"),
			VendorID: 0x00AB, VendorProfileID: 0x1234, OwnerToken: "9F8E7D6C", SerialNumber: "SN555"},
		"URN:LW:DP:EC656E0000000001:0004A30B001C0533:00AB1234:%V1234ABCD%SSN777": {
			Format: jc.QRFormatTR005Draft2, JoinEUI: mustEUI(t, "EC656E0000000001"), DevEUI: mustEUI(t, "0004A30B001C0533"),
			VendorID: 0x00AB, VendorProfileID: 0x1234, OwnerToken: "1234ABCD", SerialNumber: "SN777"},
	}
	lines := fixtureLines(t, "testdata/claiming/tr005-valid.txt")
	if len(lines) != len(want) {
		t.Fatalf("fixture has %d lines, test expects %d", len(lines), len(want))
	}
	for _, line := range lines {
		t.Run(line, func(t *testing.T) {
			w, ok := want[line]
			if !ok {
				t.Fatalf("no expectation for fixture line")
			}
			got, err := jc.ParseQR(line)
			if err != nil {
				t.Fatal(err)
			}
			if *got != w {
				t.Errorf("got  %#v\nwant %#v", *got, w)
			}
		})
	}
}

func TestParseQRInvalidFixturesNameTheField(t *testing.T) {
	field := map[string]string{
		"LW:D0:EC656E0000000001:0004A30B001C0530":                "ProfileID",
		"LW:D0:EC656E00000000:0004A30B001C0530:00AB1234":         "JoinEUI",
		"LW:D0:EC656E0000000001:0004A30B001C0530:00AB12":         "ProfileID",
		"LW:D1:EC656E0000000001:0004A30B001C0530:00AB1234:O1234": "schema ID",
		"XX:D0:EC656E0000000001:0004A30B001C0530:00AB1234":       "preface",
		"LW:D0:EC656E000000000G:0004A30B001C0530:00AB1234:O1234": "JoinEUI",
	}
	lines := fixtureLines(t, "testdata/claiming/tr005-invalid.txt")
	if len(lines) != len(field) {
		t.Fatalf("fixture has %d lines, test expects %d", len(lines), len(field))
	}
	for _, line := range lines {
		t.Run(line, func(t *testing.T) {
			f, ok := field[line]
			if !ok {
				t.Fatal("no expectation for fixture line")
			}
			_, err := jc.ParseQR(line)
			var qe *jc.QRError
			if !errors.As(err, &qe) || !errors.Is(err, jc.ErrQR) {
				t.Fatalf("want *QRError, got %v", err)
			}
			if qe.Field != f || !strings.Contains(err.Error(), f) {
				t.Errorf("error %q names field %q, want %q", err, qe.Field, f)
			}
		})
	}
}

func TestParseQRSpecExamplesAndRules(t *testing.T) {
	joinEUI, devEUI := mustEUI(t, "0011223300000001"), mustEUI(t, "AABBCCDDEEFF0011")
	for _, tc := range []struct {
		name, in string
		want     jc.DeviceQR
	}{
		{"final example of §9.1", "LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:O6A5F2C:SSN12345",
			jc.DeviceQR{Format: jc.QRFormatTR005, OwnerToken: "6A5F2C", SerialNumber: "SN12345"}},
		{"draft 3 example of §9.2", "URN:DEV:LW:0011223300000001_AABBCCDDEEFF0011_00AB1234_V6A5F2C_SSN12345",
			jc.DeviceQR{Format: jc.QRFormatTR005Draft3, OwnerToken: "6A5F2C", SerialNumber: "SN12345"}},
		{"draft 2 example of §9.2", "URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%V6A5F2C%SSN12345",
			jc.DeviceQR{Format: jc.QRFormatTR005Draft2, OwnerToken: "6A5F2C", SerialNumber: "SN12345"}},
		{"lowercase hex, white space, checksum, any order, unknown and empty extensions",
			"  LW:D0:0011223300000001:aabbccddeeff0011:00ab1234:SSN1::Xfoo:C1A2B:O6A5F2C \n",
			jc.DeviceQR{Format: jc.QRFormatTR005, OwnerToken: "6A5F2C", SerialNumber: "SN1", Checksum: "1A2B"}},
		{"later duplicate tag wins", "LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:OAAAA:O6A5F2C",
			jc.DeviceQR{Format: jc.QRFormatTR005, OwnerToken: "6A5F2C"}},
		{"draft 2 escaped percent", "URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%PA%25B%V6A5F2C",
			jc.DeviceQR{Format: jc.QRFormatTR005Draft2, OwnerToken: "6A5F2C", Proprietary: "A%B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jc.ParseQR(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.JoinEUI, tc.want.DevEUI, tc.want.VendorID, tc.want.VendorProfileID = joinEUI, devEUI, 0x00AB, 0x1234
			if *got != tc.want {
				t.Errorf("got  %#v\nwant %#v", *got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in, field string }{
		{"empty", "", "preface"},
		{"0x prefix", "LW:D0:0x11223300000001:AABBCCDDEEFF0011:00AB1234", "JoinEUI"},
		{"DevEUI too long", "LW:D0:0011223300000001:AABBCCDDEEFF001122:00AB1234", "DevEUI"},
		{"missing DevEUI", "LW:D0:0011223300000001", "DevEUI"},
		{"control character in token", "LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:O6A\x015F", "owner token"},
		{"draft 3 lowercase value", "URN:DEV:LW:0011223300000001_AABBCCDDEEFF0011_00AB1234_Vabc", "owner token"},
		{"draft 3 missing ProfileID", "URN:DEV:LW:0011223300000001_AABBCCDDEEFF0011", "ProfileID"},
		{"draft 2 bad character", "URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%Sab", "serial number"},
		{"draft 2 without percent", "URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:V12", "extensions"},
		{"draft 2 extra segment", "URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%V1:%S2", "extensions"},
		{"too long", "LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:P" + strings.Repeat("A", 1024), "length"},
		{"invalid UTF-8", "LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:P\xff", "encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jc.ParseQR(tc.in)
			var qe *jc.QRError
			if !errors.As(err, &qe) || qe.Field != tc.field {
				t.Fatalf("want error on field %q, got %v", tc.field, err)
			}
		})
	}
}

func TestQRErrorsNeverHoldTheOwnerToken(t *testing.T) {
	const token = "SECRETTOKEN77"
	for _, in := range []string{
		"LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:O" + token + "\x02",
		"URN:DEV:LW:0011223300000001_AABBCCDDEEFF0011_00AB1234_V" + token + "x",
		"URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%V" + token + "x",
	} {
		_, err := jc.ParseQR(in)
		if err == nil || strings.Contains(err.Error(), token) {
			t.Errorf("error %v for %q", err, in)
		}
	}
	q, err := jc.ParseQR("LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:O" + token)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{q.OwnerToken.String(), q.OwnerToken.GoString()} {
		if s != "…77" {
			t.Errorf("masked token %q, want …77", s)
		}
	}
}

func FuzzParseQR(f *testing.F) {
	for _, name := range []string{"testdata/claiming/tr005-valid.txt", "testdata/claiming/tr005-invalid.txt"} {
		for _, l := range fixtureLines(f, name) {
			f.Add(l)
		}
	}
	f.Add("LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:O6A5F2C:SSN12345")
	f.Add("URN:DEV:LW:0011223300000001_AABBCCDDEEFF0011_00AB1234_V6A5F2C_SSN12345")
	f.Add("URN:LW:DP:0011223300000001:AABBCCDDEEFF0011:00AB1234:%V6A5F2C%SSN12345%P%25%25")
	f.Add("LW:D0:0011223300000001:AABBCCDDEEFF0011:00AB1234:C:O:S:P::")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := jc.ParseQR(s)
		if err != nil {
			var qe *jc.QRError
			if !errors.As(err, &qe) || qe.Field == "" {
				t.Fatalf("error without field: %v", err)
			}
			return
		}
		// Round trip through the final format.
		enc := q.Encode()
		q2, err := jc.ParseQR(enc)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", enc, err)
		}
		want := *q
		want.Format = jc.QRFormatTR005
		if want.Checksum != "" && q.Format != jc.QRFormatTR005 {
			t.Fatalf("draft with checksum")
		}
		if *q2 != want {
			t.Fatalf("round trip of %q via %q: got %#v want %#v", s, enc, *q2, want)
		}
	})
}
