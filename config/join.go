package config

import (
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"time"
)

// Join is the `join:` section of app-connect.yml: join forwarding from the
// gateway's network server to remote Join Servers (package joinclient).
//
// The KEK file named by kek_file is a YAML document:
//
//	keks:
//	  - label: "000013"                            # non-empty, unique, case-sensitive
//	    key: "000102030405060708090A0B0C0D0E0F"    # exactly 32 hex digits
//
// Its content is parsed by joinclient.LoadKEKFile; keys are never logged.
type Join struct {
	// Enabled starts the loopback Backend Interfaces proxy. Off by default: the
	// network server's local join path is then the only one.
	Enabled bool `yaml:"enabled"`
	// ProxyListen is the proxy's address; loopback only.
	ProxyListen string `yaml:"listen"`
	// Budget is the whole-join time budget, from the network server's request
	// to its answer (500ms..10s).
	Budget time.Duration `yaml:"budget"`
	// NetID is the SenderID towards Join Servers (6 hex digits); empty = the
	// mPower loraNetwork NetID, filled in by the caller.
	NetID string `yaml:"net_id"`
	// NSID is the global NSID for BI1.1 Join Servers (16 hex digits); a Join
	// Server file's sender-ns-id overrides it.
	NSID string `yaml:"ns_id"`
	// ASID is the SenderID of AppSKeyReq; required when an `as` entry exists.
	ASID string `yaml:"as_id"`
	// InteropDir is the interop repository (The Things Stack format).
	InteropDir string `yaml:"interop_dir"`
	// KEKFile maps KEK labels to keys (format above); empty = no KEK.
	KEKFile string `yaml:"kek_file"`
	// ClientCertFile and ClientKeyFile are the gateway's default client
	// certificate (PEM), used by Join Server files with `tls.source: key-vault`.
	// They are set from client_tls by Resolve.
	ClientTLS      ClientTLS `yaml:"client_tls"`
	ClientCertFile string    `yaml:"-"`
	ClientKeyFile  string    `yaml:"-"`
	// ClaimingDir is the claiming repository of `app-connect claim` (claim.dir
	// takes precedence when both are set).
	ClaimingDir string `yaml:"claiming_dir"`
	// Guards against one bad Join Server: at most MaxInFlight joins through
	// the proxy, at most MaxInFlightPerJoinServer to any one Join Server; after
	// BreakerTimeouts consecutive timeouts of one Join Server its joins are
	// answered at once with the timeout result for BreakerCoolDown.
	MaxInFlight              int           `yaml:"max_in_flight"`
	MaxInFlightPerJoinServer int           `yaml:"max_in_flight_per_join_server"`
	BreakerTimeouts          int           `yaml:"breaker_timeouts"`
	BreakerCoolDown          time.Duration `yaml:"breaker_cool_down"`
}

// Join defaults and limits.
const (
	DefaultJoinBudget      = 3 * time.Second
	DefaultJoinProxyListen = "127.0.0.1:8651"
	MinJoinBudget          = 500 * time.Millisecond
	MaxJoinBudget          = 10 * time.Second
)

// DefaultJoin returns the join defaults: disabled, budget 3s, proxy on
// 127.0.0.1:8651, 32 joins in flight (16 per Join Server), breaker after 5
// consecutive timeouts for 30s.
func DefaultJoin() Join {
	return Join{
		ProxyListen:              DefaultJoinProxyListen,
		Budget:                   DefaultJoinBudget,
		MaxInFlight:              32,
		MaxInFlightPerJoinServer: 16,
		BreakerTimeouts:          5,
		BreakerCoolDown:          30 * time.Second,
	}
}

// Resolve returns j with its relative file and directory paths made relative
// to baseDir (the directory of app-connect.yml). Call it before Validate.
func (j Join) Resolve(baseDir string) Join {
	r := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	j.InteropDir = r(j.InteropDir)
	j.KEKFile = r(j.KEKFile)
	if j.ClientTLS.Certificate != "" || j.ClientTLS.Key != "" {
		j.ClientCertFile, j.ClientKeyFile = j.ClientTLS.Certificate, j.ClientTLS.Key
	}
	j.ClientCertFile = r(j.ClientCertFile)
	j.ClientKeyFile = r(j.ClientKeyFile)
	j.ClaimingDir = r(j.ClaimingDir)
	return j
}

// Validate checks the join settings. It reads only the files it is pointed at
// (the KEK file's readability, the default client certificate and key, the
// interop directory's config.yml); the content of the interop repository and of
// the KEK file is checked by joinclient.
func (j Join) Validate() []FieldError {
	var errs []FieldError
	if err := CheckLoopback(j.ProxyListen); err != nil {
		errs = append(errs, FieldError{Key: "join.listen", Err: err})
	}
	if j.Budget < MinJoinBudget || j.Budget > MaxJoinBudget {
		errs = append(errs, fieldErr("join.budget", "must be between %s and %s, got %s", MinJoinBudget, MaxJoinBudget, j.Budget))
	}
	if j.NetID != "" && !isHex(j.NetID, 3) {
		errs = append(errs, fieldErr("join.net_id", "must be 6 hex digits, got %q", j.NetID))
	}
	if j.NSID != "" && !isHex(j.NSID, 8) {
		errs = append(errs, fieldErr("join.ns_id", "must be an EUI-64 of 16 hex digits, got %q", j.NSID))
	}
	if j.MaxInFlight < 1 || j.MaxInFlight > 1024 {
		errs = append(errs, fieldErr("join.max_in_flight", "must be 1..1024, got %d", j.MaxInFlight))
	} else if j.MaxInFlightPerJoinServer < 1 || j.MaxInFlightPerJoinServer > j.MaxInFlight {
		errs = append(errs, fieldErr("join.max_in_flight_per_join_server", "must be 1..join.max_in_flight (%d), got %d", j.MaxInFlight, j.MaxInFlightPerJoinServer))
	}
	if j.BreakerTimeouts < 1 {
		errs = append(errs, fieldErr("join.breaker_timeouts", "must be at least 1, got %d", j.BreakerTimeouts))
	}
	if j.BreakerCoolDown < time.Second || j.BreakerCoolDown > time.Hour {
		errs = append(errs, fieldErr("join.breaker_cool_down", "must be between 1s and 1h, got %s", j.BreakerCoolDown))
	}
	if len(j.ASID) > 255 {
		errs = append(errs, fieldErr("join.as_id", "must be at most 255 characters"))
	}
	if j.Enabled && j.InteropDir == "" {
		errs = append(errs, fieldErr("join.interop_dir", "must be set when join.enabled is true"))
	}
	if j.InteropDir != "" {
		if fi, err := os.Stat(j.InteropDir); err != nil {
			errs = append(errs, fieldErr("join.interop_dir", "%v", err))
		} else if !fi.IsDir() {
			errs = append(errs, fieldErr("join.interop_dir", "%s is not a directory", j.InteropDir))
		} else if _, err := os.Stat(filepath.Join(j.InteropDir, "config.yml")); err != nil {
			errs = append(errs, fieldErr("join.interop_dir", "no config.yml: %v", err))
		}
	}
	if j.KEKFile != "" {
		if f, err := os.Open(j.KEKFile); err != nil {
			errs = append(errs, fieldErr("join.kek_file", "%v", err))
		} else {
			f.Close()
		}
	}
	switch {
	case j.ClientCertFile == "" && j.ClientKeyFile == "":
	case j.ClientCertFile == "":
		errs = append(errs, fieldErr("join.client_tls.certificate", "must be set together with join.client_tls.key"))
	case j.ClientKeyFile == "":
		errs = append(errs, fieldErr("join.client_tls.key", "must be set together with join.client_tls.certificate"))
	default:
		if _, err := tls.LoadX509KeyPair(j.ClientCertFile, j.ClientKeyFile); err != nil {
			errs = append(errs, fieldErr("join.client_tls.certificate", "certificate %s with key %s: %v", j.ClientCertFile, j.ClientKeyFile, err))
		}
	}
	return errs
}

func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ClientTLS names the gateway's default client certificate and key (PEM files).
type ClientTLS struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
}
