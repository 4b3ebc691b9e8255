package config

import (
	"os"
	"path/filepath"
	"time"
)

// Claim is the `claim:` section of app-connect.yml: device claiming on Join
// Servers speaking the TTJS v2 API (package joinclient, `app-connect claim`).
// The home NetID, NSID and AS-ID of a claim come from the join section
// (join.net_id, join.ns_id, join.as_id), and `tls.source: key-vault` in a
// claim server file uses join.client_tls.certificate and join.client_tls.key.
type Claim struct {
	// Dir is the claiming repository (The Things Stack device-claiming
	// format: config.yml and one file per claim server); empty = no claiming.
	Dir string `yaml:"dir"`
	// Timeout bounds each claim server request.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is the number of devices handled at the same time.
	Concurrency int `yaml:"concurrency"`
}

// Claim defaults and limits.
const (
	DefaultClaimTimeout     = 10 * time.Second
	DefaultClaimConcurrency = 4
	MaxClaimConcurrency     = 16
	MaxClaimTimeout         = 2 * time.Minute
)

// DefaultClaim returns the claim defaults: no repository, 10s per request,
// four devices at a time.
func DefaultClaim() Claim {
	return Claim{Timeout: DefaultClaimTimeout, Concurrency: DefaultClaimConcurrency}
}

// Resolve returns c with a relative Dir made relative to baseDir (the
// directory of app-connect.yml). Call it before Validate.
func (c Claim) Resolve(baseDir string) Claim {
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		c.Dir = filepath.Join(baseDir, c.Dir)
	}
	return c
}

// Validate checks the claim settings. It only checks that the repository
// directory holds a config.yml; its content is checked by joinclient.
func (c Claim) Validate() []FieldError {
	var errs []FieldError
	if c.Timeout <= 0 || c.Timeout > MaxClaimTimeout {
		errs = append(errs, fieldErr("claim.timeout", "must be between 0 and %s, got %s", MaxClaimTimeout, c.Timeout))
	}
	if c.Concurrency < 1 || c.Concurrency > MaxClaimConcurrency {
		errs = append(errs, fieldErr("claim.concurrency", "must be 1..%d, got %d", MaxClaimConcurrency, c.Concurrency))
	}
	if c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err != nil {
			errs = append(errs, fieldErr("claim.dir", "%v", err))
		} else if !fi.IsDir() {
			errs = append(errs, fieldErr("claim.dir", "%s is not a directory", c.Dir))
		} else if _, err := os.Stat(filepath.Join(c.Dir, "config.yml")); err != nil {
			errs = append(errs, fieldErr("claim.dir", "no config.yml: %v", err))
		}
	}
	return errs
}
