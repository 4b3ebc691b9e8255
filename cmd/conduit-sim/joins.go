package main

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/sim"
)

// The join roles (issue 6): -js-listen serves a remote Join Server with the simulated
// devices' keys; -join-proxy makes the simulated network server join every device through
// app-connect's loopback Backend Interfaces proxy before publishing. Both derive the device
// keys from -seed, so a simulator serving the Join Server and another one joining agree.

// joinAllParallel is how many joins the network server has in flight.
const joinAllParallel = 8

// checkJoinFlags validates -join-proxy.
func checkJoinFlags(o options) error {
	if o.joinProxy == "" {
		return nil
	}
	u, err := url.Parse(o.joinProxy)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-join-proxy must be an http(s) URL, got %q", o.joinProxy)
	}
	return nil
}

// startJoinServer serves the Join Server role on -js-listen.
func (s *simulator) startJoinServer() error {
	if s.o.jsListen == "" {
		return nil
	}
	js, err := sim.NewJoinServer(sim.JoinDevices(s.fleet, s.o.seed, false), sim.JoinServerOptions{})
	if err != nil {
		return err
	}
	addr, err := s.serve("join-server", s.o.jsListen, js)
	if err != nil {
		return err
	}
	s.log.Info("Join Server listening (brocaar/lorawan handler, BI1.0, plaintext keys)", "url", "http://"+addr)
	return nil
}

// joinAll joins every device through -join-proxy, verifying each join-accept with the
// device's keys; publishing starts only when all joined.
func (s *simulator) joinAll(ctx context.Context) error {
	if s.o.joinProxy == "" {
		return nil
	}
	ns, err := sim.NewNetworkServer(s.fleet, sim.JoinDevices(s.fleet, s.o.seed, false), sim.NetworkServerOptions{Logger: s.log})
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := ns.JoinAll(ctx, s.o.joinProxy, joinAllParallel)
	if err != nil {
		return fmt.Errorf("%d of %d devices joined through %s: %w", n, s.fleet.Len(), s.o.joinProxy, err)
	}
	fmt.Fprintf(s.out, "joined %d devices through %s in %s\n", n, s.o.joinProxy, time.Since(start).Round(time.Millisecond))
	s.source = ns // uplinks now go through the session keys the join produced
	return nil
}
