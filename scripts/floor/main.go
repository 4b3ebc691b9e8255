// Command floor is the bench's reference point, not a product: the least a Go
// program built on the same libraries as app-connect (paho.mqtt.golang,
// net/http) can do per uplink. It subscribes to the local broker's uplinks
// with QoS 1 and manual acknowledgement, POSTs each one to the default
// application's URL (API 1.0 path) and acknowledges it after the answer. It
// stores nothing, keeps no order across failures and retries nothing, so it
// loses messages on any error: its CPU per uplink is a floor for app-connect's,
// which adds the durable outbox, routing and everything else.
//
// With APPCONNECT_FLOOR=raw it is the raw floor (raw.go): the same relay in
// one goroutine with its own packet loop and request writing, no client
// library machinery.
//
// It is started by `make bench` (scripts/e2e, part "floor") the way
// app-connect is: `floor run --config <app-connect.yml>`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 || args[0] != "run" || args[1] != "--config" {
		return fmt.Errorf("usage: floor run --config app-connect.yml")
	}
	raw, err := os.ReadFile(args[2])
	if err != nil {
		return err
	}
	var cfg struct {
		LNS    struct{ Broker string }
		MPower struct{ API string }
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", args[2], err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	url, err := defaultAppURL(ctx, cfg.MPower.API)
	if err != nil {
		return err
	}
	if os.Getenv("APPCONNECT_FLOOR") == "raw" {
		return runRaw(ctx, cfg.LNS.Broker, url) // raw.go
	}
	client := &http.Client{Timeout: 30 * time.Second}
	opts := mqtt.NewClientOptions().AddBroker(cfg.LNS.Broker).SetClientID("app-connect-bench-floor").
		SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(true)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		return fmt.Errorf("broker %s: %w", cfg.LNS.Broker, t.Error())
	}
	defer c.Disconnect(250)
	handler := func(_ mqtt.Client, m mqtt.Message) {
		// lora/<AppEUI>/<DevEUI>/up
		p := strings.Split(m.Topic(), "/")
		if len(p) != 4 {
			return
		}
		resp, err := client.Post(url+"/api/v1/lorawan/"+p[1]+"/"+p[2]+"/up", "application/json", bytes.NewReader(m.Payload()))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		m.Ack()
	}
	if t := c.Subscribe("lora/+/+/up", 1, handler); t.Wait() && t.Error() != nil {
		return fmt.Errorf("subscribe: %w", t.Error())
	}
	<-ctx.Done()
	return nil
}

// defaultAppURL reads the default application's URL from mPower's API.
func defaultAppURL(ctx context.Context, api string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(api, "/")+"/api/loraNetwork/defaultApp", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var env struct {
		Result struct {
			URL string `json:"url"`
		} `json:"result"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&env); err != nil {
		return "", fmt.Errorf("mPower defaultApp: %w", err)
	}
	if env.Result.URL == "" {
		return "", fmt.Errorf("mPower defaultApp has no URL")
	}
	return strings.TrimSuffix(env.Result.URL, "/"), nil
}
