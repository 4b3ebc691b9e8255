package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// mPower's Default App with an API version this build does not speak is
// still the default application: app-connect starts, /status shows it
// misconfigured with the reason naming apiVersion, every event is queued
// (none unrouted, none delivered); once the version is fixed in mPower the
// poll rebuilds it and every queued uplink is delivered, in order, exactly
// once. The same for a defaultApp document whose other fields cannot be
// decoded while its enabled flag can.
func TestInvalidDefaultAppSettingsQueueUntilFixed(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		extra        map[string]any
		version      string
	}{
		{"unsupported apiVersion", `apiVersion: "9.9" not supported`, nil, "9.9"},
		{"undecodable field", `defaultApp: json: cannot unmarshal`, map[string]any{"encodeHex": "yes"}, "1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 3)
			h.cfg.Admin.Listen = freeLoopbackAddr(t)
			h.cfg.MPower.PollInterval = time.Second
			srv := httptest.NewServer(h.sink)
			t.Cleanup(srv.Close)
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", tc.version, config.CatchAll, tc.extra))
			h.start()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ps := h.publish(ctx, 10)
			want := ps.Joined + ps.Uplinks

			base := "http://" + h.cfg.Admin.Listen
			st := waitFor(t, 30*time.Second, "every event queued under the misconfigured default app", func() (admin.Status, bool) {
				_, _, body := testpeer.HTTPGet(t, base+"/status")
				var st admin.Status
				if err := json.Unmarshal([]byte(body), &st); err != nil {
					t.Fatalf("/status: %v\n%s", err, body)
				}
				return st, len(st.Applications) == 1 && st.Applications[0].QueueRows >= want
			})
			a := st.Applications[0]
			if a.State != "misconfigured" || !strings.Contains(a.LastError, tc.reason) || a.EUI != config.CatchAll {
				t.Fatalf("application %+v, want misconfigured under the catch-all with %q", a, tc.reason)
			}
			if st.Intake.Unrouted != 0 || a.EventsDropped != 0 {
				t.Fatalf("events lost: intake %+v application %+v", st.Intake, a)
			}
			if s := h.sink.Stats(); s.Unique != 0 {
				t.Fatalf("delivered while misconfigured: %+v", s)
			}

			// Fixed in mPower: the next poll rebuilds the default app on the same queue.
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", "1.1.1", config.CatchAll, nil))
			h.waitAll(time.Minute)
			h.checkOrder(false)
			if s := h.sink.Stats(); s.Duplicates != 0 || s.Unique != ps.Uplinks {
				t.Fatalf("sink %+v, want %d unique", s, ps.Uplinks)
			}
			_, _, body := testpeer.HTTPGet(t, base+"/status")
			var after admin.Status
			if err := json.Unmarshal([]byte(body), &after); err != nil || len(after.Applications) != 1 || after.Applications[0].State != "up" {
				t.Fatalf("/status after the fix: %v\n%s", err, body)
			}

			// Broken again while running: the poll makes it misconfigured
			// (not "keeping the current one"), events queue, a fix delivers them.
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", tc.version, config.CatchAll, tc.extra))
			waitFor(t, 30*time.Second, "the live change to misconfigured", func() (string, bool) {
				_, _, body := testpeer.HTTPGet(t, base+"/status")
				var st admin.Status
				json.Unmarshal([]byte(body), &st)
				return body, len(st.Applications) == 1 && st.Applications[0].State == "misconfigured" &&
					strings.Contains(st.Applications[0].LastError, tc.reason)
			})
			more := h.publish(ctx, 5)
			waitFor(t, 30*time.Second, "the new uplinks queued", func() (string, bool) {
				_, _, body := testpeer.HTTPGet(t, base+"/status")
				var st admin.Status
				json.Unmarshal([]byte(body), &st)
				return body, len(st.Applications) == 1 && st.Applications[0].QueueRows >= more.Uplinks
			})
			if s := h.sink.Stats(); s.Unique != ps.Uplinks {
				t.Fatalf("delivered while misconfigured again: %+v", s)
			}
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", "1.1", config.CatchAll, nil))
			h.waitAll(time.Minute)
			h.checkOrder(false)
			if s := h.sink.Stats(); s.Duplicates != 0 || s.Unique != ps.Uplinks+more.Uplinks {
				t.Fatalf("sink %+v, want %d unique", s, ps.Uplinks+more.Uplinks)
			}
		})
	}
}

// A defaultApp document whose enabled flag cannot be read says nothing about
// where events go: app-connect does not connect to the local broker (so it
// acknowledges and drops nothing), /status shows the step and the reason, and
// it reads mPower again until the document can be used.
func TestUnreadableDefaultAppWaitsForMPower(t *testing.T) {
	h := newHarness(t, 2)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	srv := httptest.NewServer(h.sink)
	t.Cleanup(srv.Close)
	h.mpower.SetDefaultApp(json.RawMessage(`{"enabled":"yes","apiVersion":"1.1.1","url":"` + srv.URL + `/tenant"}`))
	go func() {
		base := "http://" + h.cfg.Admin.Listen
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			resp, err := httpGetQuiet(base + "/status")
			if err != nil {
				continue
			}
			var st admin.Status
			if json.Unmarshal(resp, &st) != nil || st.Startup.Step != "reading mPower's Default App settings" ||
				!strings.Contains(st.Startup.LastError, "enabled") {
				continue
			}
			if st.Local.Connected || strings.Contains(h.logs.String(), "local broker connected") {
				t.Errorf("connected to the local broker before defaultApp could be read")
			}
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", "1.1.1", config.CatchAll, nil))
			return
		}
		t.Errorf("/status never showed the defaultApp step with its error")
	}()
	h.start() // returns once subscribed: after the fix
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 5)
	h.waitAll(time.Minute)
	h.checkOrder(false)
}

func httpGetQuiet(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// mPower not answering the Default App settings and none cached from an
// earlier run: nothing says where events go, so app-connect waits for
// mPower, with the step in /status, without connecting to the local broker
// (it acknowledges, hence drops, nothing); once mPower answers it forwards.
func TestNoDefaultAppAnswerNorCacheWaitsUnconnected(t *testing.T) {
	h := newHarness(t, 2)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	srv := httptest.NewServer(h.sink)
	t.Cleanup(srv.Close)
	h.mpower.SetDefaultApp(nil) // 404 until set
	go func() {
		base := "http://" + h.cfg.Admin.Listen
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			resp, err := httpGetQuiet(base + "/status")
			if err != nil {
				continue
			}
			var st admin.Status
			if json.Unmarshal(resp, &st) != nil || st.Startup.Step != "reading mPower's Default App settings" || st.Startup.LastError == "" {
				continue
			}
			if st.Local.Connected || strings.Contains(h.logs.String(), "local broker connected") {
				t.Errorf("connected to the local broker before defaultApp was read")
			}
			h.mpower.SetDefaultApp(sim.DefaultAppWith(srv.URL+"/tenant", "1.1.1", config.CatchAll, nil))
			return
		}
		t.Errorf("/status never showed the defaultApp step with its error")
	}()
	h.start() // returns once subscribed: after mPower answered
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 5)
	h.waitAll(time.Minute)
	h.checkOrder(false)
}
