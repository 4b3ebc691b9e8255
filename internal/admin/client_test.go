package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// `status --watch` redraws the view until interrupted, also while the
// program is not (yet) answering.
func TestStatusWatch(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
	st := NewState("v9", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testpeer.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- PrintStatus(ctx, addr, PrintOptions{Watch: true, Every: 20 * time.Millisecond}, &out, &errb)
	}()
	waitFor(t, 10*time.Second, "a screen saying nothing answers", func() bool {
		return strings.Contains(out.String(), "is app-connect running?")
	})
	srv, err := Serve(ctx, addr, Handler(st, "", discard), discard)
	if err != nil {
		t.Fatal(err)
	}
	st.Startup.Step("opening the database")
	waitFor(t, 10*time.Second, "a redraw with the status", func() bool {
		return strings.Count(out.String(), "\x1b[H\x1b[2J") >= 3 && strings.Contains(out.String(), "start-up: opening the database")
	})
	cancel()
	if code := <-done; code != 0 || errb.String() != "" {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	srv.Wait()
}

// One read prints the text or the JSON document; nothing answering or no
// address is exit code 1 with the reason on stderr.
func TestPrintStatusOnce(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
	ctx := context.Background()
	var out, errb bytes.Buffer
	if code := PrintStatus(ctx, addr, PrintOptions{}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "is app-connect running?") {
		t.Fatalf("nothing answering: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := PrintStatus(ctx, "", PrintOptions{}, &out, &errb); code != 1 ||
		errb.String() != "app-connect status: admin.listen is empty in the configuration; no status endpoint\n" {
		t.Fatalf("no address: exit %d: %s", code, errb.String())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := Serve(sctx, addr, Handler(hostileState(t), "", discard), discard)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	defer cancel()
	waitFor(t, 10*time.Second, "the endpoint", func() bool {
		_, err := Fetch(ctx, addr)
		return err == nil
	})
	errb.Reset()
	if code := PrintStatus(ctx, addr, PrintOptions{}, &out, &errb); code != 0 || !strings.Contains(out.String(), "local broker: connected, events received 210") {
		t.Fatalf("text: exit %d: %s\n%s", code, errb.String(), out.String())
	}
	out.Reset()
	var d Status
	if code := PrintStatus(ctx, addr, PrintOptions{JSON: true}, &out, &errb); code != 0 {
		t.Fatalf("json: exit %d: %s", code, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || len(d.Applications) != 2 || d.Applications[0].EventsForwarded != 209 {
		t.Fatalf("json %v:\n%s", err, out.String())
	}
}
