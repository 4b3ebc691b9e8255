package testpeer

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// GoBuild builds the main package in dir (relative to the test's package)
// into the test's temporary directory and returns the binary's path.
func GoBuild(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(abs)) // the command's own name (app-connect, conduit-sim)
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}
