package forward

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/backoff"
)

// StatusError is a non-2xx answer of the remote HTTP API.
type StatusError struct {
	Method string
	Path   string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.Status)
}

// Permanent reports whether retrying cannot help: the project's one rule,
// backoff.PermanentStatus (any 4xx but 408 and 429).
func (e *StatusError) Permanent() bool { return backoff.PermanentStatus(e.Status) }

// IsPermanent reports whether err is a delivery failure that must not be retried.
func IsPermanent(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Permanent()
}

// maxReply bounds what is read of a remote answer.
const maxReply = 1 << 20

// HTTPTransport speaks the original program's HTTP(S) protocol (conduit.md §6).
type HTTPTransport struct {
	client  *h1Client    // h1.go: keep-alive connections, one per lane
	timeout atomic.Int64 // time.Duration: init's answer sets it while status reports may be posting
}

// NewHTTPTransport builds the transport for an http:// or https:// endpoint.
func NewHTTPTransport(ep config.Endpoint, opts config.AppOptions, timeout time.Duration) (*HTTPTransport, error) {
	var tc *tls.Config
	if ep.Scheme == "https" {
		var err error
		if tc, err = TLSConfig(ep.Host, opts); err != nil {
			return nil, fmt.Errorf("forward: %s: %w", ep.BaseURL(), err)
		}
	}
	c, err := newH1Client(ep.Scheme, ep.Address(), ep.Path, tc, DefaultHTTPLanes)
	if err != nil {
		return nil, fmt.Errorf("forward: %s: %w", ep.BaseURL(), err)
	}
	h := &HTTPTransport{client: c}
	h.timeout.Store(int64(timeout))
	return h, nil
}

// keepAlive sets how many idle connections are kept (one per lane).
func (h *HTTPTransport) keepAlive(n int) { h.client.setMaxIdle(n) }

// Post sends body to path; a non-2xx status is a *StatusError. The reply body
// (up to 1 MiB) is returned for 2xx answers.
func (h *HTTPTransport) Post(ctx context.Context, path string, body []byte, timeout time.Duration) ([]byte, error) {
	return h.do(ctx, http.MethodPost, path, body, timeout)
}

func (h *HTTPTransport) do(ctx context.Context, method, path string, body []byte, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = time.Duration(h.timeout.Load())
	}
	status, reply, err := h.client.do(ctx, method, path, body, timeout)
	if status != 0 && (status < 200 || status > 299) {
		return nil, &StatusError{Method: method, Path: path, Status: status}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return reply, nil
}

// Init posts the gateway EUIs and returns the answer.
func (h *HTTPTransport) Init(ctx context.Context, path string, gatewayEUIs []string) ([]byte, error) {
	if gatewayEUIs == nil {
		gatewayEUIs = []string{}
	}
	body, _ := json.Marshal(map[string][]string{"gateways_euis": gatewayEUIs})
	return h.Post(ctx, path, body, 0)
}

// Close posts the close notice with a 5 s timeout.
func (h *HTTPTransport) Close(ctx context.Context, path string) error {
	_, err := h.Post(ctx, path, nil, 5*time.Second)
	h.client.closeIdle()
	return err
}

// httpPaths builds the paths of one application (relative to its URL prefix).
type httpPaths struct{ app, gw string }

func (p httpPaths) init() string  { return "/api/v1/lorawan/" + p.app + "/" + p.gw + "/init" }
func (p httpPaths) close() string { return "/api/v1/lorawan/" + p.app + "/" + p.gw + "/close" }

// rowPath is the path a row is posted to: /api/v1/lorawan/<AppEUI>/<DevEUI>/<kind>
// (the device's AppEUI and DevEUI in their dashed lowercase form).
func rowPath(r cache.Row) string {
	const prefix = "/api/v1/lorawan/"
	var b strings.Builder
	b.Grow(len(prefix) + 2*23 + 2 + len(r.Kind))
	var buf [23]byte
	b.WriteString(prefix)
	b.Write(appendEUI(buf[:0], r.AppEUI))
	b.WriteByte('/')
	b.Write(appendEUI(buf[:0], r.DevEUI))
	b.WriteByte('/')
	b.WriteString(r.Kind)
	return b.String()
}

// appendEUI appends an EUI's text form (cache.EUI64.AppendText) to b.
func appendEUI(b []byte, e cache.EUI64) []byte {
	b, _ = e.AppendText(b)
	return b
}
func batchPath(app string) string { return "/api/v1/lorawan/" + app + "/up" }
func downPath(app string) string  { return "/api/v1/lorawan/" + app + "/down" }

func sortStrings(s []string) { sort.Strings(s) }
