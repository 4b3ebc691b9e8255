package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", "..", "joinclient", "testdata", "claiming", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yml", "lns:\n  broker: tcp://127.0.0.1:1883\n")
	bad := write("bad.yml", "lns:\n  brokr: tcp://127.0.0.1:1883\n")
	claimMissing := write("claim.yml", "claim:\n  dir: "+repo+"\n")
	tests := []struct {
		name       string
		args       []string
		code       int
		out, errTx string
	}{
		{"version", []string{"version"}, 0, "app-connect ", ""},
		{"check-config ok", []string{"check-config", "--config", good}, 0, "configuration OK", ""},
		{"check-config names file line key", []string{"check-config", "--config", bad}, 1, "", "bad.yml:2: lns.brokr: unknown key"},
		{"check-config missing file", []string{"check-config", "--config", filepath.Join(dir, "nope.yml")}, 1, "", "nope.yml"},
		{"check-config claiming repository problems", []string{"check-config", "--config", claimMissing}, 1, "", "tti/js.yml:3: tls.root-ca: cannot read"},
		{"selftest", []string{"selftest"}, 0, "selftest: sqlite", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
		{"stray argument", []string{"version", "extra"}, 2, "", "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.errTx) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
		})
	}
}
