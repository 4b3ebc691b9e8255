package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"
)

// syncBuffer is a bytes.Buffer safe for the simulator's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// forwarder is the smallest possible stand-in for app-connect: it reads the configuration the
// simulator wrote, asks mPower for the default application's URL and posts every LNS event there.
func forwarder(t *testing.T, cfgFile string) {
	t.Helper()
	var cfg struct {
		LNS     struct{ Broker string }
		MPower  struct{ API string }
		Gateway struct {
			SysfsRoot string `yaml:"sysfs_root"`
		}
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if uuid, err := os.ReadFile(filepath.Join(cfg.Gateway.SysfsRoot, "uuid")); err != nil || len(uuid) != 33 {
		t.Fatalf("uuid file %q: %v", uuid, err)
	}
	resp, err := http.Get(cfg.MPower.API + "/api/loraNetwork/defaultApp")
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Result struct {
			Enabled bool   `json:"enabled"`
			URL     string `json:"url"`
		} `json:"result"`
	}
	err = json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if err != nil || !env.Result.Enabled || env.Result.URL == "" {
		t.Fatalf("defaultApp %+v: %v", env, err)
	}
	base := env.Result.URL + "/api/v1/lorawan/"
	c := paho.NewClient(paho.NewClientOptions().AddBroker(cfg.LNS.Broker).SetClientID("test-forwarder").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", cfg.LNS.Broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	handler := func(_ paho.Client, m paho.Message) {
		parts := strings.Split(m.Topic(), "/")
		path := strings.Join(parts[1:], "/")
		if parts[len(parts)-1] == "joined" {
			path = "ff-ff-ff-ff-ff-ff-ff-ff/" + parts[1] + "/joined"
		}
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(m.Payload()))
		if err != nil {
			t.Errorf("post %s: %v", path, err)
			return
		}
		resp.Body.Close()
	}
	tok := c.SubscribeMultiple(map[string]byte{"lora/+/+/up": 1, "lora/+/joined": 1}, handler)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
}

func TestSimulatorEndToEndWithAStandInForwarder(t *testing.T) {
	dir := t.TempDir()
	cfgFile, reportFile := filepath.Join(dir, "app-connect.yml"), filepath.Join(dir, "report.json")
	args := []string{
		"-mqtt-listen", "127.0.0.1:0", "-mpower-listen", "127.0.0.1:0", "-sink-listen", "127.0.0.1:0",
		"-sysfs", filepath.Join(dir, "mts-io"), "-devices", "5", "-uplinks", "40", "-rate", "0",
		"-probe", "10s", "-wait", "10s", "-report-every", "50ms",
		"-json", reportFile, "-write-config", cfgFile, "-admin-listen", "127.0.0.1:0",
	}
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(args, &stdout, &stderr) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(cfgFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no configuration written; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	forwarder(t, cfgFile)

	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("simulator did not finish")
	}
	if want := "sent 200, delivered 200, duplicates 0, missing 0\n"; !strings.HasSuffix(stdout.String(), want) {
		t.Errorf("stdout does not end with %q:\n%s", want, stdout.String())
	}
	b, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Sent != 200 || r.Delivered != 200 || r.Missing != 0 || r.JoinedSent != 5 || !r.PublishFinished || r.LastDelivery.Before(r.FirstPublish) {
		t.Errorf("report %s", b)
	}
	cfg, _ := os.ReadFile(cfgFile)
	for _, key := range []string{"lns:", "broker: tcp://127.0.0.1:", "mpower:", "api: http://127.0.0.1:", "sysfs_root: " + filepath.Join(dir, "mts-io"), "database:", "listen: 127.0.0.1:"} {
		if !strings.Contains(string(cfg), key) {
			t.Errorf("configuration lacks %q:\n%s", key, cfg)
		}
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"-devices", "0"}, exitUsage},
		{[]string{"-rate", "-1"}, exitUsage},
		{[]string{"-nope"}, exitUsage},
		{[]string{"extra"}, exitUsage},
		{[]string{"-h"}, exitOK},
		{[]string{"-mqtt-listen", "127.0.0.1:0", "-mpower-listen", "127.0.0.1:0", "-sink-listen", "", "-uuid", "short"}, exitFailed},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			var out, errOut syncBuffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut.String())
			}
		})
	}
}
