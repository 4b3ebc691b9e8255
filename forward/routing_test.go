package forward

import (
	"context"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

// The default app's filter (conduit.md §5.2): under API 1.0 with its own EUI
// it takes its AppEUI only; under API ≥ 1.1, or with the catch-all EUI, it
// takes every device's events, whatever the EUI it was given.
func TestDefaultAppFilterOff(t *testing.T) {
	const own, other = "16-ea-76-f6-ab-66-3d-80", "00-00-00-00-00-00-00-09"
	slow := config.Delivery{RetryMin: time.Hour, RetryMax: time.Hour}
	for _, tc := range []struct {
		api, eui   string
		takesOther bool
	}{
		{config.API10, own, false},
		{config.API10, config.CatchAll, true},
		{config.API11, own, true},
		{"1.1.1", own, true},
	} {
		t.Run(tc.api+" "+tc.eui, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := runManager(ctx, t, newOutbox(t), nil, testLogger(t, nil))
			defer m.Stop(context.Background())
			m.Apply(ctx, Desired{Default: &AppSettings{EUI: tc.eui, Name: "default", Source: "default", APIVersion: tc.api,
				URL: "http://127.0.0.1:1/d", Delivery: slow}})
			def := m.Router().Route(Message{AppEUI: tc.eui})
			if def == nil {
				t.Fatal("the default app does not take its own EUI")
			}
			if got := m.Router().Route(Message{AppEUI: other}); (got == def) != tc.takesOther || (got != nil && got != def) {
				t.Fatalf("an uplink of AppEUI %s routed somewhere: %v, to the default app: %v; want the default app: %v", other, got != nil, got == def, tc.takesOther)
			}
		})
	}
}
