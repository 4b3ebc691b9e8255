package admin

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// A failing step is retried, each failure shown as the step's last error and
// the first one logged, until it succeeds; a stop ends it with the step's
// name.
func TestRetryStep(t *testing.T) {
	st := NewStartup()
	var logs testpeer.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	calls := 0
	v, err := RetryStep(context.Background(), st, log, "opening the database", func(context.Context) (int, error) {
		calls++
		if calls == 1 {
			if s := st.Snapshot(); s.Step != "opening the database" || s.Attempts != 0 {
				t.Errorf("before the first attempt: %+v", s)
			}
			return 0, errors.New("disk on fire")
		}
		if s := st.Snapshot(); s.Attempts != 1 || s.LastError != "disk on fire" {
			t.Errorf("after a failure: %+v", s)
		}
		return 42, nil
	})
	if err != nil || v != 42 || calls != 2 {
		t.Fatalf("got %d, %v after %d calls", v, err, calls)
	}
	if !strings.Contains(logs.String(), `msg="opening the database failed, retrying" attempt=1 err="disk on fire"`) {
		t.Errorf("log:\n%s", logs.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, err = RetryStep(ctx, st, log, "reading the gateway identity", func(context.Context) (int, error) {
		cancel()
		return 0, errors.New("no sysfs")
	})
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "reading the gateway identity: ") {
		t.Fatalf("stopped: %v", err)
	}
}
