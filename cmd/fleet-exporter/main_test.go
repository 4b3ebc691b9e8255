package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // part of the error; "" for none
	}{
		{[]string{"-broker", "tcp://b:1883"}, ""},
		{[]string{"-http-ingest", "-stale", "1m", "-expire", "2m"}, ""},
		{[]string{}, "nothing to listen to"},
		{[]string{"-http-ingest", "-stale", "10m", "-expire", "1m"}, "-expire at least -stale"},
		{[]string{"-http-ingest", "-max-gateways", "0"}, "at least 1"},
		{[]string{"-http-ingest", "extra"}, "unexpected argument"},
	}
	for _, tc := range tests {
		_, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	for _, bad := range [][]string{
		{"-broker", "ftp://b"},
		{"-broker", "tcp://b:1883", "-ca", "ca.pem"},
		{"-broker", "mqtts://b:8883", "-cert", "c.pem"},
	} {
		if code := runMain(context.Background(), append(bad, "-listen", "127.0.0.1:0"), io.Discard, io.Discard); code == 0 {
			t.Errorf("%v: exit 0", bad)
		}
	}
}

// TestNoGatewayDependencies: the exporter links the report package and
// nothing of the gateway (no SQLite, no forward, no lnsbridge).
func TestNoGatewayDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "sqlite") || (strings.HasPrefix(dep, "github.com/lorawan-gateway/app-connect/") &&
			dep != "github.com/lorawan-gateway/app-connect/statusreport" && dep != "github.com/lorawan-gateway/app-connect/cmd/fleet-exporter") {
			t.Errorf("fleet-exporter depends on %s", dep)
		}
	}
}

// -h and -version print on stdout with exit 0 (a pager or a script reads them there).
func TestHelpAndVersionOnStdout(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-version"}} {
		var out, errb bytes.Buffer
		if code := runMain(context.Background(), args, &out, &errb); code != 0 || out.Len() == 0 || errb.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
