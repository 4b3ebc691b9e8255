package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestForwarderSwitchesHandlers(t *testing.T) {
	var early, late bytes.Buffer
	f := NewForwarder(slog.NewTextHandler(&early, nil))
	log := slog.New(f)
	withApp := log.With("app", "x").WithGroup("g")
	log.Info("before")
	f.Set(slog.NewTextHandler(&late, nil))
	log.Info("after")
	withApp.Info("derived", "k", 1)
	if !strings.Contains(early.String(), "msg=before") || strings.Contains(early.String(), "after") {
		t.Fatalf("early: %q", early.String())
	}
	if !strings.Contains(late.String(), "msg=after") || !strings.Contains(late.String(), "msg=derived app=x g.k=1") {
		t.Fatalf("late: %q", late.String())
	}
}
