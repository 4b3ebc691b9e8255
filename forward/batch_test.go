package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// A backlog of uplinks and joined events over HTTP: uplinks waiting together
// go in batches, a joined event never does (it is posted alone, to its own
// path), and the remote side sees every row once, in outbox order.
func TestHTTPBatchesHoldUplinksOnly(t *testing.T) {
	const app = "00-00-00-00-00-00-00-0c"
	var mu sync.Mutex
	var posts []string // "path body"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.HasSuffix(r.URL.Path, "/init") || strings.HasSuffix(r.URL.Path, "/close") || r.Method == http.MethodGet {
			w.Write([]byte(`{}`))
			return
		}
		mu.Lock()
		posts = append(posts, r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	ob := newOutbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kinds := []string{"joined", "up", "up", "joined", "up", "up", "up", "joined"}
	var rows []cache.Row
	for i, k := range kinds {
		dev := fmt.Sprintf("00-00-00-00-00-00-00-%02x", i)
		body := fmt.Sprintf(`{"deveui":%q,"seq":%d}`, dev, i)
		if k == "up" {
			body = fmt.Sprintf(`{"deveui":%q,"fcnt":%d,"seq":%d}`, dev, i, i)
		}
		rows = append(rows, testRow(app, k, app, dev, body))
	}
	if _, err := ob.Append(ctx, rows); err != nil { // all waiting before delivery starts
		t.Fatal(err)
	}
	a, err := NewApplication(AppSettings{EUI: app, Name: "default", Source: "default", APIVersion: config.API10, URL: srv.URL,
		Delivery: config.Delivery{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, HTTPTimeout: 10 * time.Second,
			HTTPLanes: 1}}, // one lane: rows of different devices keep the outbox order (lanes keep it per device only)
		tIdentity, ob, nil, nil, nil, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for a.Counters.Forwarded.Load() < uint64(len(kinds)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	var seqs []int
	batches := 0
	for _, p := range posts {
		path, body, _ := strings.Cut(p, " ")
		var elems []map[string]any
		if path == batchPath(app) {
			batches++
			if err := json.Unmarshal([]byte(body), &elems); err != nil || len(elems) < 2 {
				t.Fatalf("batch %s: %v", body, err)
			}
			for _, e := range elems {
				if e["fcnt"] == nil {
					t.Fatalf("a joined event went into a batch: %s", body)
				}
			}
		} else {
			var one map[string]any
			if err := json.Unmarshal([]byte(body), &one); err != nil {
				t.Fatal(err)
			}
			if (one["fcnt"] == nil) != strings.HasSuffix(path, "/joined") {
				t.Fatalf("posted %s to %s", body, path)
			}
			elems = []map[string]any{one}
		}
		for _, e := range elems {
			seqs = append(seqs, int(e["seq"].(float64)))
		}
	}
	if fmt.Sprint(seqs) != "[0 1 2 3 4 5 6 7]" {
		t.Fatalf("remote saw rows %v, want each once in outbox order; posts:\n%s", seqs, strings.Join(posts, "\n"))
	}
	if batches != 2 {
		t.Fatalf("%d batch posts, want 2: the uplinks 1-2 and 4-6", batches)
	}
}
