package testpeer

import (
	"io"
	"net/http"
	"testing"
)

// HTTPGet fetches url and returns the status code, the Content-Type and the
// body; any transport error fails the test.
func HTTPGet(t testing.TB, url string) (status int, contentType, body string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}
