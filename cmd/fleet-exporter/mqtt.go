package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Status topics (README "Status report"): API 1.1/1.1.1 and API 1.0.
var statusFilters = []string{"lorawan/+/status", "lorawan/+/+/status"}

// subscription is the broker side of the exporter.
type subscription struct {
	Broker   string // tcp://, ssl:// (mqtts://), ws://, wss://
	ClientID string
	Username string
	Password string
	Group    string // shared subscription group: $share/<group>/<filter>; "" subscribes plainly
	TLS      *tls.Config
	Fleet    *Fleet
	Log      *slog.Logger

	connected atomic.Bool
}

// filters are the subscribed filters, shared when a group is set.
func (s *subscription) filters() []string {
	out := make([]string, len(statusFilters))
	for i, f := range statusFilters {
		if s.Group != "" {
			f = "$share/" + s.Group + "/" + f
		}
		out[i] = f
	}
	return out
}

// gatewayOfTopic is the GW-UUID level of a status topic: lorawan/<GW>/status
// or lorawan/<APP>/<GW>/status.
func gatewayOfTopic(topic string) (string, bool) {
	p := strings.Split(topic, "/")
	switch {
	case len(p) == 3 && p[0] == "lorawan" && p[2] == "status":
		return p[1], true
	case len(p) == 4 && p[0] == "lorawan" && p[3] == "status":
		return p[2], true
	}
	return "", false
}

// Run connects (paho reconnects by itself) and subscribes on every
// connection; it returns when ctx ends.
func (s *subscription) Run(ctx context.Context) error {
	broker := s.Broker
	if rest, ok := strings.CutPrefix(broker, "mqtts://"); ok {
		broker = "ssl://" + rest
	} else if rest, ok := strings.CutPrefix(broker, "mqtt://"); ok {
		broker = "tcp://" + rest
	}
	o := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(s.ClientID).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.connected.Store(false)
			s.Log.Warn("broker connection lost; reconnecting", "broker", s.Broker, "err", err)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			m := map[string]byte{}
			for _, f := range s.filters() {
				m[f] = 1
			}
			tok := c.SubscribeMultiple(m, s.onMessage)
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				s.Log.Error("subscribe failed; no report arrives until the next connection", "filters", s.filters(), "err", tok.Error())
				return
			}
			s.connected.Store(true)
			s.Log.Info("subscribed", "broker", s.Broker, "filters", s.filters())
		})
	if s.Username != "" || s.Password != "" {
		o.SetUsername(s.Username).SetPassword(s.Password)
	}
	if s.TLS != nil {
		o.SetTLSConfig(s.TLS)
	}
	c := paho.NewClient(o)
	c.Connect() // retries in the background (SetConnectRetry)
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

func (s *subscription) onMessage(_ paho.Client, m paho.Message) {
	if len(m.Payload()) == 0 {
		return // a retained report being cleared
	}
	gw, ok := gatewayOfTopic(m.Topic())
	if !ok {
		return
	}
	accept := s.Fleet.Accept
	if m.Retained() {
		accept = func(_, gw string, body []byte) error { return s.Fleet.AcceptRetained(gw, body) }
	}
	if err := accept("mqtt", gw, m.Payload()); err != nil {
		s.Log.Debug("status report refused", "topic", m.Topic(), "reason", reasonOf(err), "err", err)
	}
}

// clientTLS builds the broker TLS configuration: the CA bundle (system pool
// when empty) and an optional client certificate.
func clientTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-cert and -key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
