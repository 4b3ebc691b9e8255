// Command fleet-exporter is the cloud side of app-connect's status reports:
// it takes the reports of a fleet of gateways from an MQTT broker (plain or
// TLS with a client certificate, optionally as a shared-subscription group so
// several replicas split a fleet) and/or as HTTP POSTs, and serves them as
// Prometheus metrics labelled by gateway (and application), with the time
// each gateway was last heard from. Memory is bounded by -max-gateways and
// -max-apps; gateways silent for -stale are marked down, for -expire forgotten.
//
// It has no database and keeps nothing across restarts: retained MQTT
// reports refill it at once.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lorawan-gateway/app-connect/statusreport"
)

// version is stamped at build time like app-connect's.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	listen       string
	ingest       bool
	broker       string
	clientID     string
	username     string
	group        string
	ca, cert     string
	key          string
	serverName   string
	stale        time.Duration
	expire       time.Duration
	maxGateways  int
	maxApps      int
	logLevel     string
	printVersion bool
	now          func() time.Time // tests: a fake clock for staleness
}

// parseFlags reads the command line; usage goes to out (stdout for -h, as
// app-connect does: `fleet-exporter -h | less` works), errors to the caller.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fleet-exporter", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.listen, "listen", ":9750", "address serving /metrics (and the status POSTs with -http-ingest)")
	fs.BoolVar(&o.ingest, "http-ingest", false, "accept POST …/api/v1/lorawan/<APP>/<GW-UUID>/status on -listen")
	fs.StringVar(&o.broker, "broker", "", "MQTT broker URL (tcp://, mqtt://, ssl://, mqtts://, ws://, wss://); empty: no MQTT")
	fs.StringVar(&o.clientID, "client-id", "", "MQTT client id (default fleet-exporter-<hostname>-<pid>)")
	fs.StringVar(&o.username, "username", "", "MQTT username; the password is read from $FLEET_EXPORTER_MQTT_PASSWORD")
	fs.StringVar(&o.group, "share-group", "", "shared subscription group: subscribe $share/<group>/lorawan/… so replicas split the fleet")
	fs.StringVar(&o.ca, "ca", "", "PEM CA bundle for the broker (default: system roots)")
	fs.StringVar(&o.cert, "cert", "", "PEM client certificate for the broker")
	fs.StringVar(&o.key, "key", "", "PEM client key for the broker")
	fs.StringVar(&o.serverName, "tls-server-name", "", "name to verify in the broker's certificate (default: the URL's host)")
	fs.DurationVar(&o.stale, "stale", 5*time.Minute, "a gateway silent this long is marked down (appconnect_fleet_gateway_up 0)")
	fs.DurationVar(&o.expire, "expire", 24*time.Hour, "a gateway silent this long is forgotten")
	fs.IntVar(&o.maxGateways, "max-gateways", 20000, "gateways held at most; new ones beyond are refused and counted")
	fs.IntVar(&o.maxApps, "max-apps", 16, "applications per gateway exported at most")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.stale <= 0 || o.expire < o.stale:
		return o, fmt.Errorf("-stale must be positive and -expire at least -stale (got %s, %s)", o.stale, o.expire)
	case o.maxGateways < 1 || o.maxApps < 1:
		return o, errors.New("-max-gateways and -max-apps must be at least 1")
	case o.broker == "" && !o.ingest && !o.printVersion:
		return o, errors.New("nothing to listen to: give -broker, -http-ingest or both")
	}
	return o, nil
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usageOut := stderr
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			usageOut = stdout
		}
	}
	o, err := parseFlags(args, usageOut)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "fleet-exporter:", err)
		return 2
	}
	if o.printVersion {
		fmt.Fprintln(stdout, "fleet-exporter", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "fleet-exporter: -log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, o, os.Getenv("FLEET_EXPORTER_MQTT_PASSWORD"), log, nil); err != nil {
		log.Error("fleet-exporter stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs until ctx ends. ready, when set, receives the listener's address.
func serve(ctx context.Context, o options, password string, log *slog.Logger, ready chan<- string) error {
	fleet := &Fleet{MaxGateways: o.maxGateways, MaxApps: o.maxApps, Stale: o.stale, Expire: o.expire, Now: o.now}
	var sub *subscription
	if o.broker != "" {
		u, err := url.Parse(o.broker)
		if err != nil || u.Host == "" {
			return fmt.Errorf("-broker %q: not a URL with a host", o.broker)
		}
		sub = &subscription{Broker: o.broker, ClientID: o.clientID, Username: o.username, Password: password, Group: o.group, Fleet: fleet, Log: log}
		if sub.ClientID == "" {
			host, _ := os.Hostname()
			sub.ClientID = fmt.Sprintf("fleet-exporter-%s-%d", host, os.Getpid())
		}
		switch u.Scheme {
		case "ssl", "mqtts", "wss", "tls":
			sn := o.serverName
			if sn == "" {
				sn = u.Hostname()
			}
			if sub.TLS, err = clientTLS(o.ca, o.cert, o.key, sn); err != nil {
				return err
			}
		case "tcp", "mqtt", "ws":
			if o.cert != "" || o.ca != "" {
				return fmt.Errorf("-broker %s is not TLS: -ca/-cert/-key need ssl://, mqtts:// or wss://", o.broker)
			}
		default:
			return fmt.Errorf("-broker %q: scheme %q not supported", o.broker, u.Scheme)
		}
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	srv := &http.Server{Handler: handler(fleet, o.ingest, sub, log), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("fleet-exporter serving", "listen", l.Addr().String(), "http_ingest", o.ingest, "broker", o.broker, "share_group", o.group,
		"max_gateways", o.maxGateways, "stale", o.stale, "expire", o.expire)
	if ready != nil {
		ready <- l.Addr().String()
	}
	if sub != nil {
		go sub.Run(ctx)
	}
	sweep := time.NewTicker(min(o.stale/2, time.Minute))
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		case err := <-errc:
			return fmt.Errorf("http server: %w", err)
		case <-sweep.C:
			fleet.Sweep()
		}
	}
}

// handler serves /metrics, /healthz and, with ingest, the status POSTs.
func handler(fleet *Fleet, ingest bool, sub *subscription, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s := fleet.snapshot()
		if err := writeMetrics(w, s); err != nil {
			log.Debug("metrics not written", "err", err)
			return
		}
		if sub != nil {
			e := expoTo(w)
			e.header("appconnect_fleet_mqtt_connected", "gauge", "1 while subscribed to the broker.")
			e.sample("appconnect_fleet_mqtt_connected", b2f(sub.connected.Load()))
			e.w.Flush()
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	if ingest {
		// {prefix} is whatever the gateways' URL carries: match on the tail.
		mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
			gw, ok := gatewayOfPath(r.URL.Path)
			if !ok {
				http.Error(w, "not a status path (…/api/v1/lorawan/<APP>/<GW-UUID>/status)", http.StatusNotFound)
				return
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, statusreport.MaxSize+1))
			if err != nil {
				http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
				return
			}
			err = fleet.Accept("http", gw, body)
			switch reasonOf(err) {
			case "":
				w.WriteHeader(http.StatusNoContent)
			case refusedCapacity:
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
			case refusedOld:
				http.Error(w, err.Error(), http.StatusConflict)
			default:
				log.Debug("status report refused", "path", r.URL.Path, "err", err)
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		})
	}
	return mux
}

func expoTo(w io.Writer) expo { return expo{w: bufio.NewWriter(w)} }

// gatewayOfPath reads …/api/v1/lorawan/<APP>/<GW-UUID>/status.
func gatewayOfPath(p string) (string, bool) {
	const tail = "/status"
	rest, ok := strings.CutSuffix(p, tail)
	if !ok {
		return "", false
	}
	// rest = …/api/v1/lorawan/<APP>/<GW>
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	n := len(parts)
	if n < 5 || parts[n-5] != "api" || parts[n-4] != "v1" || parts[n-3] != "lorawan" {
		return "", false
	}
	return parts[n-1], true
}
