package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/internal/logging"
	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// TestNoSecretInTheLogs runs a full flow at debug level through the
// production logger (file destination) with fixture secrets everywhere they
// can be configured: mPower's default-app password, username, client key
// (apikey) and URL credentials, the local broker's password, the session keys
// of a join through the Join Server proxy and the owner tokens of a claim run.
// None of them may appear in the log file (nor the claim output), in any form.
func TestNoSecretInTheLogs(t *testing.T) {
	const (
		mpPassword = "mp-Passw0rd-7f3a91"
		mpUser     = "mp-user-c0ffee42"
		apiKey     = "-----BEGIN PRIVATE KEY-----\nMIIEvFIXTURESECRETKEYb4d5e6\n-----END PRIVATE KEY-----\n"
		urlPass    = "url-pw-9a8b7c6d"
		lnsPass    = "lns-pw-5e4d3c2b"
	)
	h := newHarness(t, 3)
	sinkSrv := httptest.NewServer(h.sink)
	t.Cleanup(sinkSrv.Close)
	u, _ := url.Parse(sinkSrv.URL)
	u.User = url.UserPassword("tenant", urlPass)
	var app map[string]any
	if err := json.Unmarshal(sim.DefaultApp(u.String()+"/tenant"), &app); err != nil {
		t.Fatal(err)
	}
	opts := app["options"].(map[string]any)
	opts["password"], opts["username"], opts["apikey"] = mpPassword, mpUser, apiKey
	raw, _ := json.Marshal(app)
	h.mpower.SetDefaultApp(raw)
	h.cfg.LNS.Username, h.cfg.LNS.Password = "app-connect", lnsPass

	// Join forwarding to brocaar/lorawan's Join Server.
	devs := sim.JoinDevices(h.fleet, 1, false)
	js := jstest.Serve(t, jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: devs[:1]}))
	h.cfg.Join.Enabled, h.cfg.Join.NetID = true, "000013"
	h.cfg.Join.InteropDir = writeInterop(t, js.URL)
	h.cfg.Join.ProxyListen = freeLoopbackAddr(t)
	h.cfg.Admin.Listen = freeLoopbackAddr(t)
	h.cfg.StatusReport = config.StatusReport{Enabled: true, Interval: time.Second, Applications: []string{config.StatusReportAll}}

	logFile := filepath.Join(h.dir, "app-connect.log")
	lc := config.DefaultLog()
	lc.Level, lc.Destination, lc.File, lc.MaxBytes = "debug", config.LogFile, logFile, 64<<20
	h.cfg.Log = lc // the YAML's level wins over mPower's defaultApp.log.level
	log, err := logging.New(lc, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, h.cfg, log.Logger) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("run did not stop")
		}
		log.Close()
	}
	t.Cleanup(stop)
	waitFor(t, 30*time.Second, "local broker connection", func() (struct{}, bool) {
		return struct{}{}, strings.Contains(readFileString(logFile), "local broker connected")
	})

	pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
	defer pcancel()
	h.sink.FailFor(500*time.Millisecond, 503) // retries log at debug level
	h.publish(pctx, 10)
	h.waitAll(time.Minute)
	ns, err := sim.NewNetworkServer(h.fleet, devs, sim.NetworkServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ns.Join(pctx, "http://"+h.cfg.Join.ProxyListen+"/", 0)
	if err != nil {
		t.Fatalf("join: %v\n%s", err, readFileString(logFile))
	}
	if _, err := admin.Fetch(pctx, h.cfg.Admin.Listen); err != nil {
		t.Fatal(err)
	}
	// Two status reports after the flow: one carries its last error and counters.
	from := h.sink.Stats().Status
	waitFor(t, 30*time.Second, "two status reports", func() (struct{}, bool) { return struct{}{}, h.sink.Stats().Status >= from+2 })
	stop()
	var reports string
	for _, r := range h.sink.Recorded() {
		if strings.HasSuffix(r.Path, "/status") {
			reports += string(r.Body) + "\n"
		}
	}
	if !strings.Contains(reports, `"type":"status"`) {
		t.Fatal("no status report recorded")
	}

	// The claim command with owner tokens (its own output is what it "logs").
	e := newClaimEnv(t)
	_, claimOut, claimErr := e.run(t, readFixture(t, "bulk-claim.csv"), "--csv", "-")

	logs := readFileString(logFile)
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "result=Success") || !strings.Contains(logs, "application ready") {
		t.Fatalf("the flow did not run at debug level:\n%s", logs)
	}
	corpus := logs + claimOut + claimErr + reports
	secrets := map[string]string{
		"mPower password": mpPassword, "mPower username": mpUser, "client key": "FIXTURESECRETKEY",
		"URL password": urlPass, "broker password": lnsPass,
	}
	for i, tok := range claimTokens {
		secrets[fmt.Sprintf("owner token %d", i)] = tok
	}
	for name, k := range map[string][16]byte{
		"NwkKey": devs[0].NwkKey, "AppKey": devs[0].AppKey, "AppSKey": sess.Keys.AppSKey,
		"FNwkSIntKey": sess.Keys.FNwkSIntKey, "SNwkSIntKey": sess.Keys.SNwkSIntKey, "NwkSEncKey": sess.Keys.NwkSEncKey,
	} {
		if k == ([16]byte{}) {
			continue
		}
		secrets[name+" (hex)"] = fmt.Sprintf("%x", k)
		secrets[name+" (HEX)"] = fmt.Sprintf("%X", k)
		secrets[name+" (base64)"] = base64.StdEncoding.EncodeToString(k[:])
		secrets[name+" (raw)"] = string(k[:])
	}
	for name, s := range secrets {
		if strings.Contains(corpus, s) {
			t.Errorf("%s found in the logs or the status reports", name)
		}
	}
}
