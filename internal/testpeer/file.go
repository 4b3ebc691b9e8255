package testpeer

import (
	"os"
	"path/filepath"
	"testing"
)

// TempFile writes content to a file called name in a fresh temporary
// directory (removed when the test ends) and returns its path.
func TempFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
