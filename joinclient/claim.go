package joinclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// OwnerToken is a device's claim authentication code. It never reaches a log,
// an error or the output: String shows only its last two characters (none
// when it is shorter than six).
type OwnerToken string

// String masks the token: "…1D".
func (t OwnerToken) String() string {
	if len(t) < 6 {
		return "…"
	}
	return "…" + string(t[len(t)-2:])
}

// GoString masks the token from %#v.
func (t OwnerToken) GoString() string { return t.String() }

// MarshalText masks the token, so that encoding a struct holding it cannot leak it.
func (t OwnerToken) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Reveal returns the token itself, for the claim request.
func (t OwnerToken) Reveal() string { return string(t) }

// ClaimOp is a TTJS v2 claiming operation.
type ClaimOp string

// Claiming operations.
const (
	OpClaim        ClaimOp = "claim"
	OpStatus       ClaimOp = "status"
	OpUnclaim      ClaimOp = "unclaim"
	OpBatchUnclaim ClaimOp = "batch-unclaim"
)

// Claim client limits.
const (
	MaxClaimBody        = 64 << 10 // largest claim server answer read
	DefaultClaimTimeout = 10 * time.Second
)

// Kinds of claiming failure, matched with errors.Is against a *ClaimError.
var (
	// ErrClaimDenied: 403, the device is claimed already or the owner token is wrong.
	ErrClaimDenied = errors.New("already claimed or wrong owner token")
	// ErrClaimNotFound: 404, the device is not provisioned (claim) or not claimed (status, unclaim).
	ErrClaimNotFound = errors.New("not found")
	// ErrClaimUnauthenticated: 401 or a TLS handshake refused, the client certificate was not accepted.
	ErrClaimUnauthenticated = errors.New("client certificate refused")
	// ErrClaimBadRequest: 400, the claim server refused the request.
	ErrClaimBadRequest = errors.New("bad request")
	// ErrClaimServer: 5xx or any other unexpected answer.
	ErrClaimServer = errors.New("claim server error")
	// ErrClaimTimeout: no answer within the deadline.
	ErrClaimTimeout = errors.New("timeout")
	// ErrClaimTransport: the claim server could not be reached.
	ErrClaimTransport = errors.New("claim server unreachable")
	// ErrNoClaimServer: the JoinEUI matches no prefix of the claiming repository.
	ErrNoClaimServer = errors.New("no claiming Join Server for JoinEUI")
	// ErrClaimInput: the request was refused before sending (empty owner token).
	ErrClaimInput = errors.New("invalid claim input")
)

// ClaimError is a failed claiming operation. It never holds the owner token.
type ClaimError struct {
	Server  string // claim server name; empty for ErrNoClaimServer
	Op      ClaimOp
	DevEUI  EUI64
	Kind    error // one of the ErrClaim* values or ErrNoClaimServer
	Status  int   // HTTP status, 0 when none
	Message string
	Err     error // cause, may be nil

	body []byte // batch answer holding per-device errors
}

func (e *ClaimError) Error() string {
	var b strings.Builder
	b.WriteString("joinclient: ")
	if e.Server != "" {
		b.WriteString("claim server " + e.Server + ": ")
	}
	fmt.Fprintf(&b, "%s %s: %s", e.Op, e.DevEUI, e.Kind)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes the kind and the cause.
func (e *ClaimError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ClaimIdentity is the home network written into a claim.
type ClaimIdentity struct {
	HomeNetID NetID
	HomeNSID  OptEUI64 // sent when set
	ASID      string   // required
}

// ClaimData is the claim of a device as answered by status.
type ClaimData struct {
	HomeNetID NetID    `json:"homeNetID"`
	HomeNSID  OptEUI64 `json:"homeNSID,omitzero"`
	Locked    bool     `json:"locked"`
}

// claimRequest is the TTJS v2 ClaimRequest as app-connect sends it
// (never regenerateOwnerToken or kek).
type claimRequest struct {
	OwnerToken string   `json:"ownerToken"`
	HomeNetID  NetID    `json:"homeNetID"`
	HomeNSID   OptEUI64 `json:"homeNSID,omitzero"`
	ASID       string   `json:"asID"`
	Lock       bool     `json:"lock"`
}

// ClaimClientOptions are the settings of a ClaimClient.
type ClaimClientOptions struct {
	Identity  ClaimIdentity
	Timeout   time.Duration // per request; 0 = DefaultClaimTimeout
	UserAgent string        // default "app-connect"
	Logger    *slog.Logger  // nil discards
}

// ClaimClient speaks the TTJS v2 claiming API to one claim server. It is safe
// for concurrent use.
type ClaimClient struct {
	srv   *ClaimServer
	opts  ClaimClientOptions
	http  *http.Client
	trans *http.Transport
	log   *slog.Logger
}

// NewClaimClient builds the client of a claim server loaded by LoadClaimRepository.
func NewClaimClient(srv *ClaimServer, opts ClaimClientOptions) *ClaimClient {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultClaimTimeout
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "app-connect"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// HTTP/1.1: the server's TLS 1.3 alert for a refused client certificate
	// then reaches the caller; HTTP/2 reports it as an unreachable server.
	tr, hc := directHTTP(srv.TLSConfig, false, 8)
	return &ClaimClient{
		srv:   srv,
		opts:  opts,
		trans: tr,
		http:  hc,
		log:   opts.Logger.With("js", srv.Name),
	}
}

// Server returns the claim server of the client.
func (c *ClaimClient) Server() *ClaimServer { return c.srv }

// Identity returns the home network the client claims with.
func (c *ClaimClient) Identity() ClaimIdentity { return c.opts.Identity }

// Close releases idle connections.
func (c *ClaimClient) Close() { c.trans.CloseIdleConnections() }

func (c *ClaimClient) claimURL(devEUI EUI64) string {
	return c.srv.URL + "/api/v2/devices/" + devEUI.String() + "/claim"
}

// Claim claims devEUI with its owner token, setting the home network of the
// client's identity and locking the device.
func (c *ClaimClient) Claim(ctx context.Context, devEUI EUI64, token OwnerToken) error {
	if token == "" {
		return &ClaimError{Server: c.srv.Name, Op: OpClaim, DevEUI: devEUI, Kind: ErrClaimInput, Message: "empty owner token"}
	}
	if c.opts.Identity.ASID == "" {
		return &ClaimError{Server: c.srv.Name, Op: OpClaim, DevEUI: devEUI, Kind: ErrClaimInput, Message: "no AS-ID (join.as_id) configured"}
	}
	body, err := json.Marshal(claimRequest{
		OwnerToken: token.Reveal(),
		HomeNetID:  c.opts.Identity.HomeNetID,
		HomeNSID:   c.opts.Identity.HomeNSID,
		ASID:       c.opts.Identity.ASID,
		Lock:       true,
	})
	if err != nil {
		return &ClaimError{Server: c.srv.Name, Op: OpClaim, DevEUI: devEUI, Kind: ErrClaimInput, Err: err}
	}
	_, err = c.do(ctx, OpClaim, devEUI, http.MethodPut, c.claimURL(devEUI), body, token)
	return err
}

// Status returns the claim of devEUI; ErrClaimNotFound when it is not claimed.
func (c *ClaimClient) Status(ctx context.Context, devEUI EUI64) (*ClaimData, error) {
	b, err := c.do(ctx, OpStatus, devEUI, http.MethodGet, c.claimURL(devEUI), nil, "")
	if err != nil {
		return nil, err
	}
	var d ClaimData
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, &ClaimError{Server: c.srv.Name, Op: OpStatus, DevEUI: devEUI, Kind: ErrClaimServer, Status: http.StatusOK,
			Err: fmt.Errorf("undecodable claim data: %w", err)}
	}
	return &d, nil
}

// Unclaim releases the claim of devEUI.
func (c *ClaimClient) Unclaim(ctx context.Context, devEUI EUI64) error {
	_, err := c.do(ctx, OpUnclaim, devEUI, http.MethodDelete, c.claimURL(devEUI), nil, "")
	return err
}

// BatchUnclaim releases the claims of devEUIs (devices of one JoinEUI) in one
// request. It returns the per-device failures the server reported (devices
// absent from the map were unclaimed) or an error for the whole batch.
func (c *ClaimClient) BatchUnclaim(ctx context.Context, devEUIs []EUI64) (map[EUI64]*ClaimError, error) {
	if len(devEUIs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(devEUIs))
	for i, d := range devEUIs {
		ids[i] = d.String()
	}
	u := c.srv.URL + "/api/v2/devices/" + strings.Join(ids, ",") + "/claims"
	_, err := c.do(ctx, OpBatchUnclaim, devEUIs[0], http.MethodDelete, u, nil, "")
	var ce *ClaimError
	if err == nil || !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Message != "" {
		return nil, err
	}
	perDevice, derr := decodeBatchErrors(ce.body)
	if derr != nil {
		return nil, err
	}
	out := make(map[EUI64]*ClaimError, len(perDevice))
	for eui, msg := range perDevice {
		out[eui] = &ClaimError{Server: c.srv.Name, Op: OpUnclaim, DevEUI: eui, Kind: ErrClaimBadRequest,
			Status: http.StatusBadRequest, Message: msg}
	}
	return out, nil
}

// DecodeBatchErrors decodes a TTJS v2 batch answer of per-device errors,
// {"<DevEUI>":{"message":…},…}.
func decodeBatchErrors(body []byte) (map[EUI64]string, error) {
	var raw map[string]struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, errors.New("no per-device errors")
	}
	out := make(map[EUI64]string, len(raw))
	for k, v := range raw {
		if len(k) != 16 {
			return nil, fmt.Errorf("key %q is not a DevEUI", truncate(k, 20))
		}
		e, err := ParseEUI64(k)
		if err != nil {
			return nil, fmt.Errorf("key %q is not a DevEUI", truncate(k, 20))
		}
		out[e] = cleanMessage(v.Message, "")
	}
	return out, nil
}

// cleanMessage bounds a server message, removes control characters and, as a
// guard against a server echoing it, the owner token.
func cleanMessage(s string, token OwnerToken) string {
	if token != "" {
		s = strings.ReplaceAll(s, string(token), token.String())
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), 200)
}

// do sends one request and maps the answer to nil (2xx) or a *ClaimError.
func (c *ClaimClient) do(ctx context.Context, op ClaimOp, devEUI EUI64, method, url string, body []byte, token OwnerToken) ([]byte, error) {
	fail := func(kind error, status int, msg string, err error) *ClaimError {
		return &ClaimError{Server: c.srv.Name, Op: op, DevEUI: devEUI, Kind: kind, Status: status, Message: msg, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fail(ErrClaimInput, 0, "", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		kind, cause := classifyTransport(ctx, err)
		c.log.Warn("claim request failed", "op", string(op), "deveui", devEUI.String(), "outcome", kind.Error(), "err", cause)
		return nil, fail(kind, 0, "", cause)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxClaimBody+1))
	if err != nil {
		kind, cause := classifyTransport(ctx, err)
		return nil, fail(kind, resp.StatusCode, "", cause)
	}
	c.log.Debug("claim request", "op", string(op), "deveui", devEUI.String(), "status", resp.StatusCode,
		"latency", time.Since(start).Round(time.Millisecond))
	if len(data) > MaxClaimBody {
		return nil, fail(ErrClaimServer, resp.StatusCode, "answer larger than 64 KiB", nil)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return data, nil
	}
	msg := errorMessage(data, token)
	var kind error
	switch resp.StatusCode {
	case http.StatusBadRequest:
		kind = ErrClaimBadRequest
	case http.StatusUnauthorized:
		kind = ErrClaimUnauthenticated
	case http.StatusForbidden:
		kind = ErrClaimDenied
	case http.StatusNotFound:
		kind = ErrClaimNotFound
	default:
		kind = ErrClaimServer
	}
	e := fail(kind, resp.StatusCode, msg, nil)
	if op == OpBatchUnclaim && kind == ErrClaimBadRequest && msg == "" {
		e.body = data
	}
	return nil, e
}

// errorMessage extracts {"message": …} from an error answer.
func errorMessage(data []byte, token OwnerToken) string {
	var e struct {
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	s, ok := jsonString(e.Message)
	if !ok {
		return ""
	}
	return cleanMessage(s, token)
}

// classifyTransport maps a failed exchange to timeout, refused credentials
// (a TLS alert from the server) or unreachable.
func classifyTransport(ctx context.Context, err error) (error, error) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return ErrClaimTimeout, context.DeadlineExceeded
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return ErrClaimUnauthenticated, err
	}
	// Before Go exported tls.AlertError, and for TLS 1.3 post-handshake alerts.
	if strings.Contains(err.Error(), "remote error: tls:") {
		return ErrClaimUnauthenticated, err
	}
	return ErrClaimTransport, err
}

// ClaimDevice is one device to claim, check or unclaim.
type ClaimDevice struct {
	DevEUI     EUI64
	JoinEUI    EUI64
	OwnerToken OwnerToken // needed only to claim
	Name       string     // optional label from the input
	Source     string     // where it was read: "devices.csv:3", "argument 1"
}

// InputError is a bad input line or argument. It never holds an owner token.
type InputError struct {
	Source string // "devices.csv:3", "argument 2"
	Field  string // column or QR field; may be empty
	Err    error
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return e.Source + ": " + e.Err.Error()
	}
	return e.Source + ": " + e.Field + ": " + e.Err.Error()
}

func (e *InputError) Unwrap() error { return e.Err }

// MaxClaimCSVLines bounds a bulk file.
const MaxClaimCSVLines = 100_000

// ReadClaimCSV reads a bulk file: a header row naming the columns dev_eui,
// join_eui and owner_token (case-insensitive, any order; other columns such as
// name are kept as Name or ignored), then one device per row; blank lines are
// skipped. needToken makes owner_token required (claim). Bad rows are returned
// as InputErrors naming their line, the others as devices; err is set when
// the file as a whole is unusable (no header, a required column missing, a
// read error).
func ReadClaimCSV(r io.Reader, name string, needToken bool) (devs []ClaimDevice, bad []*InputError, err error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%s: empty file: a header row dev_eui,join_eui,owner_token is required", name)
		}
		return nil, nil, fmt.Errorf("%s: %w", name, csvErr(err))
	}
	col := map[string]int{"dev_eui": -1, "join_eui": -1, "owner_token": -1, "name": -1}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if j, ok := col[h]; ok {
			if j >= 0 {
				return nil, nil, fmt.Errorf("%s:1: column %s appears twice", name, h)
			}
			col[h] = i
		}
	}
	for _, c := range []string{"dev_eui", "join_eui", "owner_token"} {
		if col[c] < 0 && (c != "owner_token" || needToken) {
			return nil, nil, fmt.Errorf("%s:1: header row must name the columns dev_eui, join_eui and owner_token; %s is missing", name, c)
		}
	}
	for n := 0; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return devs, bad, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, &InputError{Source: fmt.Sprintf("%s:%d", name, pe.Line), Err: csvErr(err)})
				continue
			}
			return devs, bad, fmt.Errorf("%s: %w", name, err)
		}
		if n >= MaxClaimCSVLines {
			return devs, bad, fmt.Errorf("%s: more than %d devices", name, MaxClaimCSVLines)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		line, _ := cr.FieldPos(0)
		src := fmt.Sprintf("%s:%d", name, line)
		d, ierr := csvDevice(rec, col, src, needToken)
		if ierr != nil {
			bad = append(bad, ierr)
			continue
		}
		devs = append(devs, d)
	}
}

// csvErr keeps the position and kind of a CSV syntax error but not the line's
// content, which may hold an owner token.
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("column %d: %w", pe.Column, pe.Err)
	}
	return err
}

func csvDevice(rec []string, col map[string]int, src string, needToken bool) (ClaimDevice, *InputError) {
	get := func(c string) string {
		if i := col[c]; i >= 0 && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	d := ClaimDevice{Source: src, Name: get("name")}
	for _, f := range []struct {
		col string
		dst *EUI64
	}{{"dev_eui", &d.DevEUI}, {"join_eui", &d.JoinEUI}} {
		v := get(f.col)
		if v == "" {
			return d, &InputError{Source: src, Field: f.col, Err: errors.New("missing")}
		}
		if err := qrHex(f.col, f.dst[:], v); err != nil {
			var qe *QRError
			errors.As(err, &qe)
			return d, &InputError{Source: src, Field: f.col, Err: qe.Err}
		}
	}
	tok := get("owner_token")
	switch {
	case tok == "" && needToken:
		return d, &InputError{Source: src, Field: "owner_token", Err: errors.New("missing")}
	case hasControl(tok):
		return d, &InputError{Source: src, Field: "owner_token", Err: errors.New("contains a control character")}
	case len(tok) > 256:
		return d, &InputError{Source: src, Field: "owner_token", Err: errors.New("longer than 256 characters")}
	}
	d.OwnerToken = OwnerToken(tok)
	if hasControl(d.Name) || !utf8.ValidString(d.Name) {
		return d, &InputError{Source: src, Field: "name", Err: errors.New("contains a control character or invalid UTF-8")}
	}
	d.Name = truncate(d.Name, 64)
	return d, nil
}
