// Command fakeapp is a throwaway stand-in for app-connect, only to exercise scripts/e2e before
// the real program exists: `fakeapp run --config FILE` reads lns.broker and mpower.api, asks
// mPower for the default application's URL and posts every LNS uplink and join there, in order,
// retrying until 2xx. No outbox: it loses what is in flight when killed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("fakeapp", flag.ExitOnError)
	cfgFile := fs.String("config", "", "YAML file")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	_ = fs.Parse(args)
	var cfg struct {
		LNS    struct{ Broker string }
		MPower struct{ API string }
	}
	b, err := os.ReadFile(*cfgFile)
	if err == nil {
		err = yaml.Unmarshal(b, &cfg)
	}
	if err != nil {
		log.Error("config", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var url string
	for url == "" {
		resp, err := http.Get(cfg.MPower.API + "/api/loraNetwork/defaultApp")
		if err == nil {
			var env struct {
				Result struct{ URL string } `json:"result"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			url = env.Result.URL
		}
		if url == "" {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	base := url + "/api/v1/lorawan/"
	post := func(path string, body []byte) {
		for ctx.Err() == nil {
			resp, err := http.Post(base+path, "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 || resp.StatusCode/100 == 4 {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	opts := paho.NewClientOptions().AddBroker(cfg.LNS.Broker).SetClientID("fakeapp").SetCleanSession(false).SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.SubscribeMultiple(map[string]byte{"lora/+/+/up": 1, "lora/+/joined": 1}, func(_ paho.Client, m paho.Message) {
			parts := strings.Split(m.Topic(), "/")
			if parts[len(parts)-1] == "joined" {
				post("ff-ff-ff-ff-ff-ff-ff-ff/"+parts[1]+"/joined", m.Payload())
				return
			}
			post(strings.Join(parts[1:], "/"), m.Payload())
		})
	})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		log.Error("connect", "err", tok.Error())
		os.Exit(1)
	}
	post(fmt.Sprintf("%s/%s/init", "ff-ff-ff-ff-ff-ff-ff-ff", "029998E06156CDD44523264B523115C1"), []byte(`{"gateways_euis":[]}`))
	<-ctx.Done()
	c.Disconnect(250)
	resp, err := http.Post(base+"ff-ff-ff-ff-ff-ff-ff-ff/029998E06156CDD44523264B523115C1/close", "application/json", nil)
	if err == nil {
		resp.Body.Close()
	}
}
