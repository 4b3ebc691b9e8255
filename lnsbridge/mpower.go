package lnsbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/backoff"
)

// MPower is a client of the gateway's local mPower REST API.
type MPower struct {
	base   string
	client *http.Client
	log    *slog.Logger
}

// NewMPower returns a client for the API at base (http://127.0.0.1 on a gateway).
func NewMPower(base string, timeout time.Duration, log *slog.Logger) *MPower {
	if log == nil {
		log = slog.Default()
	}
	return &MPower{
		base:   strings.TrimRight(base, "/"),
		client: &http.Client{Timeout: timeout},
		log:    log,
	}
}

// APIError is a {"status":"fail"} answer.
type APIError struct {
	Path    string
	Code    int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("mpower: GET %s: %d %s", e.Path, e.Code, e.Message)
}

type envelope struct {
	Code   int             `json:"code"`
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// maxAPIBody bounds an mPower answer (loraNetwork is a few KiB).
const maxAPIBody = 4 << 20

// Get fetches path and returns the envelope's result, read only when the status is "success".
func (m *MPower) Get(ctx context.Context, path string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("mpower: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mpower: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return nil, fmt.Errorf("mpower: GET %s: reading answer: %w", path, err)
	}
	if len(body) > maxAPIBody {
		return nil, fmt.Errorf("mpower: GET %s: answer larger than %d bytes", path, maxAPIBody)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("mpower: GET %s: HTTP %d, answer is not an mPower envelope: %w", path, resp.StatusCode, err)
	}
	if env.Status != "success" {
		code := env.Code
		if code == 0 {
			code = resp.StatusCode
		}
		msg := env.Error
		if msg == "" {
			msg = fmt.Sprintf("status %q", env.Status)
		}
		return nil, &APIError{Path: path, Code: code, Message: msg}
	}
	if len(bytes.TrimSpace(env.Result)) == 0 {
		return nil, fmt.Errorf("mpower: GET %s: success without a result", path)
	}
	return env.Result, nil
}

// Paths of the mPower API.
const (
	PathLoraNetwork     = "/api/loraNetwork"
	PathDefaultApp      = "/api/loraNetwork/defaultApp"
	PathAccessoryCards  = "/api/system/accessoryCards"
	bootBackoffStart    = 500 * time.Millisecond
	bootBackoffCeiling  = 30 * time.Second
	bootLogEveryAttempt = 5
)

// GetRetry calls Get until it succeeds or ctx ends, with exponential backoff
// and jitter, logging every few failures (mPower answers late during boot).
func (m *MPower) GetRetry(ctx context.Context, path string) (json.RawMessage, error) {
	b := backoff.New(bootBackoffStart, bootBackoffCeiling)
	for attempt := 1; ; attempt++ {
		res, err := m.Get(ctx, path)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		if attempt == 1 || attempt%bootLogEveryAttempt == 0 {
			m.log.Warn("mPower API not answering yet, retrying", "path", path, "attempt", attempt, "err", err)
		}
		if !b.Sleep(ctx) {
			return nil, errors.Join(ctx.Err(), err)
		}
	}
}

// Do sends one request to the local API (remote api_req) and returns the raw
// answer body whatever its status; the caller checks it.
func (m *MPower) Do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("mpower: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mpower: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return nil, fmt.Errorf("mpower: %s %s: reading answer: %w", method, path, err)
	}
	if len(b) > maxAPIBody {
		return nil, fmt.Errorf("mpower: %s %s: answer larger than %d bytes", method, path, maxAPIBody)
	}
	return b, nil
}
