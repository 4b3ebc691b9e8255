package lnsbridge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMPowerGet(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
		want    string
	}{
		{"success", 200, string(fixtureNoT("defaultApp-http-v1_0.json")), "", `"apiVersion":"1.0"`},
		{"fail envelope", 400, string(fixtureNoT("error.json")), "400 Invalid request", ""},
		{"not json", 502, "<html>bad gateway</html>", "not an mPower envelope", ""},
		{"success without result", 200, `{"code":200,"status":"success"}`, "without a result", ""},
		{"status missing", 200, `{"code":200,"result":{}}`, `status ""`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != PathDefaultApp {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			m := NewMPower(srv.URL+"/", time.Second, slog.New(slog.DiscardHandler))
			res, err := m.Get(context.Background(), PathDefaultApp)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(string(res), tc.want) {
				t.Fatalf("res %s err %v", res, err)
			}
		})
	}
	var ae *APIError
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(fixtureNoT("error.json"))
	}))
	defer srv.Close()
	_, err := NewMPower(srv.URL, time.Second, nil).Get(context.Background(), PathLoraNetwork)
	if !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("err %v is not an APIError", err)
	}
}

func TestMPowerGetRetryWaitsForBoot(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(503)
			w.Write([]byte(`{"code":503,"error":"starting","status":"fail"}`))
			return
		}
		w.Write(fixtureNoT("loraNetwork.json"))
	}))
	defer srv.Close()
	m := NewMPower(srv.URL, time.Second, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.GetRetry(ctx, PathLoraNetwork)
	if err != nil || !strings.Contains(string(res), `"netID":"000013"`) || calls.Load() != 3 {
		t.Fatalf("res %.40s err %v calls %d", res, err, calls.Load())
	}
	// Cancelled while the API keeps failing: returns the context error.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	dead := NewMPower("http://127.0.0.1:1", 100*time.Millisecond, slog.New(slog.DiscardHandler))
	if _, err := dead.GetRetry(ctx2, PathLoraNetwork); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// fixtureNoT reads an mPower API fixture from its one copy, config's testdata.
func fixtureNoT(name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "config", "testdata", name))
	if err != nil {
		panic(err)
	}
	return b
}
