package config

import (
	"regexp"
	"strings"
	"time"
)

// RemoteRequests is the policy for the cloud side's management requests
// (api_req, lora_req, log_req). Each kind also needs its mPower
// requestOptions flag; this section narrows what an enabled kind may do.
type RemoteRequests struct {
	// LoraAllow lists the lora-query command prefixes a lora_req may run
	// (compared word by word).
	LoraAllow []string `yaml:"lora_allow"`
	// APIAllow lists "METHOD /path/prefix/" entries an api_req must match.
	APIAllow []string `yaml:"api_allow"`
	// RevealKeys leaves key and password fields in replies (off: "REDACTED").
	RevealKeys bool `yaml:"reveal_keys"`
	// LogRoot is the only directory log_req reads from.
	LogRoot string `yaml:"log_root"`
	// MaxReply caps a reply, bytes (the Azure direct-method limit by default).
	MaxReply int `yaml:"max_reply"`
	// PerMinute bounds how many requests are served per minute; more are refused.
	PerMinute int `yaml:"per_minute"`
	// Timeout bounds one request (lora-query run, mPower call).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultRemoteRequests: read-only listings, counts and statistics plus
// `packet queue add`; GET under /api/; keys redacted; 128 KiB; 30 per minute.
func DefaultRemoteRequests() RemoteRequests {
	return RemoteRequests{
		LoraAllow: []string{
			"help", "device count", "device list json", "session count", "session list json",
			"gateways list json", "appnet list json", "appnet get", "packet queue", "packet queue list json",
			"packet queue add",
		},
		APIAllow:  []string{"GET /api/"},
		LogRoot:   "/var/log",
		MaxReply:  128 << 10,
		PerMinute: 30,
		Timeout:   10 * time.Second,
	}
}

var apiAllowRE = regexp.MustCompile(`^(GET|PUT|POST|DELETE|PATCH) /api/[A-Za-z0-9_./-]*$`)

// Validate checks the policy.
func (r RemoteRequests) Validate() []FieldError {
	var errs []FieldError
	for i, c := range r.LoraAllow {
		words := strings.Fields(c)
		if len(words) == 0 || strings.Join(words, " ") != c {
			errs = append(errs, fieldErr("remote_requests.lora_allow", "entry %d %q: words separated by single spaces", i, c))
		}
		for _, w := range words {
			if w == "file" {
				errs = append(errs, fieldErr("remote_requests.lora_allow", "entry %d %q: the word file is never allowed", i, c))
			}
		}
	}
	for i, a := range r.APIAllow {
		if !apiAllowRE.MatchString(a) || strings.Contains(a, "..") || strings.Contains(a, "//") {
			errs = append(errs, fieldErr("remote_requests.api_allow", "entry %d %q: want \"METHOD /api/prefix\"", i, a))
		}
	}
	if r.LogRoot == "" || !strings.HasPrefix(r.LogRoot, "/") {
		errs = append(errs, fieldErr("remote_requests.log_root", "must be an absolute directory, got %q", r.LogRoot))
	}
	if r.MaxReply < 1024 || r.MaxReply > 16<<20 {
		errs = append(errs, fieldErr("remote_requests.max_reply", "must be 1024..16777216, got %d", r.MaxReply))
	}
	if r.PerMinute < 1 {
		errs = append(errs, fieldErr("remote_requests.per_minute", "must be at least 1, got %d", r.PerMinute))
	}
	if r.Timeout <= 0 {
		errs = append(errs, fieldErr("remote_requests.timeout", "must be positive, got %s", r.Timeout))
	}
	return errs
}
