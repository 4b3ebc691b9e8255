package main

import (
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
)

// writeInterop writes an interop repository routing every JoinEUI to jsURL.
func writeInterop(t *testing.T, jsURL string) string {
	t.Helper()
	return jstest.WriteInterop(t, jsURL, "0000000000000000/0", "BI1.0", "")
}

// freeLoopbackAddr is a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	jstest.RequirePeer(t, "loopback listener", err)
	defer ln.Close()
	return ln.Addr().String()
}

// The product links the root lorawan package (frames, NetID, DevAddr) and
// none of its backend packages, which pull Redis, logrus and OpenTelemetry.
func TestProductLinksLorawanWithoutBackend(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/brocaar/lorawan") {
		t.Error("github.com/brocaar/lorawan is not linked")
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/brocaar/lorawan/backend", "github.com/go-redis", "github.com/redis", "github.com/sirupsen/logrus", "go.opentelemetry.io", "testing", "net/http/httptest"} {
			if d == banned || strings.HasPrefix(d, banned+"/") {
				t.Errorf("the product links %s", d)
			}
		}
	}
}

// The simulator plays the Join Server with brocaar's handler but links no
// test package: what it shares with the tests is internal/loradev, not
// internal/jstest.
func TestSimulatorLinksNoTestPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../conduit-sim").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d == "testing" || d == "net/http/httptest" || strings.HasSuffix(d, "/internal/jstest") {
			t.Errorf("cmd/conduit-sim links %s", d)
		}
	}
}
