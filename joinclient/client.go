package joinclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// MaxAnswerSize is the largest BI answer body read (a larger one is a malformed answer).
const MaxAnswerSize = 64 << 10

// ClientOptions are the sender identities and settings shared by every client.
type ClientOptions struct {
	NetID     NetID  // SenderID of NS messages
	ASID      string // SenderID of AppSKeyReq
	UserAgent string // default "app-connect"
	Logger    *slog.Logger

	// MaxInFlight bounds the requests in flight to one Join Server (the
	// bulkhead inside the proxy's global bound); default DefaultMaxInFlightPerJS.
	MaxInFlight int
	// BreakerTimeouts is the number of consecutive timeouts of one Join Server
	// that opens its circuit breaker; default DefaultBreakerTimeouts.
	BreakerTimeouts int
	// BreakerCoolDown is how long an open breaker answers at once before the
	// next request probes the Join Server again; default DefaultBreakerCoolDown.
	BreakerCoolDown time.Duration
}

// Client talks to one Join Server. It keeps its connections alive between
// requests and is safe for concurrent use.
type Client struct {
	js    *JoinServer
	opts  ClientOptions
	http  *http.Client
	trans *http.Transport
	log   *slog.Logger
	guard *guard

	mu       sync.Mutex
	warnings map[string]uint64 // header-warning kind → count
}

// NewClient builds the client of a Join Server loaded by LoadRepository.
func NewClient(js *JoinServer, opts ClientOptions) *Client {
	if opts.UserAgent == "" {
		opts.UserAgent = "app-connect"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tr, hc := directHTTP(js.TLSConfig, true, 16)
	return &Client{
		js:       js,
		opts:     opts,
		trans:    tr,
		http:     hc,
		log:      opts.Logger.With("js", js.Name),
		guard:    newGuard(js.Name, opts, opts.Logger),
		warnings: map[string]uint64{},
	}
}

// State returns the bulkhead, circuit-breaker and header-warning state of the
// client's Join Server.
func (c *Client) State() JoinServerState {
	s := c.guard.state()
	s.HeaderWarnings = c.HeaderWarnings()
	return s
}

// JoinServer returns the Join Server of the client.
func (c *Client) JoinServer() *JoinServer { return c.js }

// Close releases idle connections.
func (c *Client) Close() { c.trans.CloseIdleConnections() }

// HeaderWarnings returns how often each kind of answer-header mismatch was seen.
func (c *Client) HeaderWarnings() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.warnings))
	for k, v := range c.warnings {
		out[k] = v
	}
	return out
}

// requestInfo is what the answer is checked against.
type requestInfo struct {
	msgType      MessageType
	version      ProtocolVersion
	joinEUI      EUI64
	txID         uint32
	receiverID   string // expected answer ReceiverID: NetID or AS-ID
	nsid         OptEUI64
	macVersion   MACVersion
	devEUI       EUI64
	sessionKeyID []byte
}

func (c *Client) nsHeader(joinEUI EUI64, m MessageType) (Header, requestInfo) {
	info := requestInfo{
		msgType:    m,
		version:    c.js.Protocol.Version(),
		joinEUI:    joinEUI,
		txID:       newTransactionID(),
		receiverID: c.opts.NetID.String(),
		nsid:       c.js.NSID(),
	}
	h := Header{
		ProtocolVersion: info.version,
		SenderID:        info.receiverID,
		ReceiverID:      joinEUI.String(),
		TransactionID:   TransactionID{Value: info.txID},
		MessageType:     m,
		SenderNSID:      info.nsid.String(),
	}
	return h, info
}

// newTransactionID returns a random non-zero uint32.
func newTransactionID() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// JoinReq sends a JoinReq for joinEUI. The header of req is replaced
// (protocol version, NetID, NSID, fresh TransactionID). A non-Success answer
// returns the answer and a *ResultError; other failures an *Error.
func (c *Client) JoinReq(ctx context.Context, joinEUI EUI64, req JoinReq) (*JoinAns, error) {
	var info requestInfo
	req.Header, info = c.nsHeader(joinEUI, MsgJoinReq)
	info.macVersion, info.devEUI = req.MACVersion, req.DevEUI
	ans := &JoinAns{}
	return ans, c.exchange(ctx, info, req, ans)
}

// RejoinReq sends a RejoinReq for joinEUI (see JoinReq).
func (c *Client) RejoinReq(ctx context.Context, joinEUI EUI64, req RejoinReq) (*RejoinAns, error) {
	var info requestInfo
	req.Header, info = c.nsHeader(joinEUI, MsgRejoinReq)
	info.macVersion, info.devEUI = req.MACVersion, req.DevEUI
	ans := &RejoinAns{}
	return ans, c.exchange(ctx, info, req, ans)
}

// HomeNSReq asks the home NetID of devEUI.
func (c *Client) HomeNSReq(ctx context.Context, joinEUI, devEUI EUI64) (*HomeNSAns, error) {
	var info requestInfo
	req := HomeNSReq{DevEUI: devEUI}
	req.Header, info = c.nsHeader(joinEUI, MsgHomeNSReq)
	info.devEUI = devEUI
	ans := &HomeNSAns{}
	return ans, c.exchange(ctx, info, req, ans)
}

// AppSKeyReq fetches the AppSKey of a session; SenderID is the AS-ID and no
// NSID is sent, in either protocol version.
func (c *Client) AppSKeyReq(ctx context.Context, joinEUI, devEUI EUI64, sessionKeyID []byte) (*AppSKeyAns, error) {
	info := requestInfo{
		msgType:      MsgAppSKeyReq,
		version:      c.js.Protocol.Version(),
		joinEUI:      joinEUI,
		txID:         newTransactionID(),
		receiverID:   c.opts.ASID,
		devEUI:       devEUI,
		sessionKeyID: sessionKeyID,
	}
	req := AppSKeyReq{
		Header: Header{
			ProtocolVersion: info.version,
			SenderID:        c.opts.ASID,
			ReceiverID:      joinEUI.String(),
			TransactionID:   TransactionID{Value: info.txID},
			MessageType:     MsgAppSKeyReq,
		},
		DevEUI:       devEUI,
		SessionKeyID: sessionKeyID,
	}
	ans := &AppSKeyAns{}
	return ans, c.exchange(ctx, info, req, ans)
}

func (c *Client) fail(info requestInfo, kind error, status int, err error) *Error {
	return &Error{JoinServer: c.js.Name, MessageType: info.msgType, Kind: kind, HTTPStatus: status, Err: err}
}

// exchange sends one request inside the Join Server's guard (bulkhead and
// circuit breaker) and decodes its answer into ans.
func (c *Client) exchange(ctx context.Context, info requestInfo, req any, ans answer) error {
	var err error
	if kind, refusal := c.guard.run(ctx, func() error {
		err = c.roundTrip(ctx, info, req, ans)
		return err
	}); kind != nil {
		return c.fail(info, kind, 0, refusal)
	}
	return err
}

func (c *Client) roundTrip(ctx context.Context, info requestInfo, req any, ans answer) error {
	body, err := json.Marshal(req)
	if err != nil {
		return c.fail(info, ErrMalformed, 0, fmt.Errorf("encode request: %w", err))
	}
	target := c.js.URL(info.msgType)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return c.fail(info, ErrTransport, 0, fmt.Errorf("post %s: %w", target, err))
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", c.opts.UserAgent)
	for _, h := range c.js.Headers {
		hr.Header.Set(h.Name, h.Value)
	}
	if ba := c.js.BasicAuth; ba != nil {
		hr.SetBasicAuth(ba.Username, ba.Password)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.DeadlineExceeded) {
			return c.fail(info, ErrTimeout, 0, fmt.Errorf("post %s: %w", target, ctxErr))
		}
		return c.fail(info, ErrTransport, 0, fmt.Errorf("post %s: %w", target, unwrapURLError(err)))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerSize+1))
	if err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.DeadlineExceeded) {
			return c.fail(info, ErrTimeout, 0, fmt.Errorf("read answer from %s: %w", target, ctxErr))
		}
		return c.fail(info, ErrTransport, 0, fmt.Errorf("read answer from %s: %w", target, err))
	}
	if len(data) > MaxAnswerSize {
		return c.fail(info, ErrMalformedAnswer, resp.StatusCode, fmt.Errorf("answer from %s larger than %d bytes", target, MaxAnswerSize))
	}
	// Let the connection be reused: drain what little may remain.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return c.decode(info, resp.StatusCode, data, ans)
}

// unwrapURLError drops *url.Error's quoting of the URL, which exchange adds itself.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// classifyAnswer finds the result code of a BI answer body: a full answer
// (object with Result.ResultCode), a bare Result (top-level ResultCode) or none.
func classifyAnswer(data []byte) (res Result, full, bare bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Result{}, false, false
	}
	if raw, ok := top["Result"]; ok {
		var r map[string]json.RawMessage
		if json.Unmarshal(raw, &r) == nil {
			if code, ok := jsonString(r["ResultCode"]); ok {
				desc, _ := jsonString(r["Description"])
				return Result{ResultCode: ResultCode(code), Description: desc}, true, false
			}
		}
	}
	if code, ok := jsonString(top["ResultCode"]); ok {
		desc, _ := jsonString(top["Description"])
		return Result{ResultCode: ResultCode(code), Description: desc}, false, true
	}
	return Result{}, false, false
}

// decode interprets an answer body whatever the HTTP status (§6.3).
func (c *Client) decode(info requestInfo, status int, data []byte, ans answer) error {
	res, full, bare := classifyAnswer(data)
	ok2xx := status >= 200 && status < 300
	switch {
	case bare:
		if res.ResultCode == ResultSuccess {
			return c.fail(info, ErrMalformedAnswer, status, errors.New("bare Result with Success and no answer fields"))
		}
		return &ResultError{JoinServer: c.js.Name, MessageType: info.msgType, Code: res.ResultCode, Description: res.Description, HTTPStatus: status}
	case !full && ok2xx:
		return c.fail(info, ErrMalformedAnswer, status, errors.New("body is not a BI answer"))
	case !full:
		return c.fail(info, ErrHTTPStatus, status, nil)
	}
	if err := json.Unmarshal(data, ans); err != nil {
		if res.ResultCode != ResultSuccess {
			return &ResultError{JoinServer: c.js.Name, MessageType: info.msgType, Code: res.ResultCode, Description: res.Description, HTTPStatus: status}
		}
		return c.fail(info, ErrMalformedAnswer, status, fmt.Errorf("decode %s: %v", info.msgType.answerType(), err))
	}
	c.checkHeader(info, ans)
	if res.ResultCode != ResultSuccess {
		return &ResultError{JoinServer: c.js.Name, MessageType: info.msgType, Code: res.ResultCode, Description: res.Description, HTTPStatus: status}
	}
	if !ok2xx {
		c.warn("success_with_http_status", "Success answer with a non-2xx HTTP status", "status", status)
	}
	if err := ans.complete(info); err != nil {
		return c.fail(info, ErrIncomplete, status, err)
	}
	return nil
}

// warn logs a header-warning kind once per Join Server and counts every occurrence.
func (c *Client) warn(kind, msg string, args ...any) {
	c.mu.Lock()
	c.warnings[kind]++
	first := c.warnings[kind] == 1
	c.mu.Unlock()
	if first {
		c.log.Warn("joinclient: "+msg+" (logged once per Join Server, then counted)", append([]any{"kind", kind}, args...)...)
	}
}

func sameEUI(s string, e EUI64) bool {
	x, err := ParseEUI64(s)
	return err == nil && x == e
}

// checkHeader validates the answer header with warnings only (§6.3 rule 5).
func (c *Client) checkHeader(info requestInfo, ans answer) {
	h := ans.header()
	if h.ProtocolVersion != info.version {
		c.warn("protocol_version", "answer ProtocolVersion differs from the request", "want", string(info.version), "got", truncate(string(h.ProtocolVersion), 10))
	}
	if want := info.msgType.answerType(); h.MessageType != want {
		c.warn("message_type", "unexpected answer MessageType", "want", string(want), "got", truncate(string(h.MessageType), 20))
	}
	if h.TransactionID.Invalid || h.TransactionID.Value != info.txID {
		c.warn("transaction_id", "answer TransactionID differs from the request")
	}
	if !sameEUI(h.SenderID, info.joinEUI) {
		c.warn("sender_id", "answer SenderID is not the JoinEUI")
	}
	if info.msgType == MsgAppSKeyReq {
		if h.ReceiverID != info.receiverID {
			c.warn("receiver_id", "answer ReceiverID is not the AS-ID")
		}
	} else {
		if n, err := ParseNetID(h.ReceiverID); err != nil || n.String() != info.receiverID {
			c.warn("receiver_id", "answer ReceiverID is not the NetID")
		}
		if info.version == BI11 && info.nsid.Set && !sameEUI(h.ReceiverNSID, info.nsid.EUI) {
			c.warn("receiver_nsid", "BI1.1 answer ReceiverNSID missing or different from SenderNSID")
		}
	}
	switch a := ans.(type) {
	case *AppSKeyAns:
		if a.DevEUI != info.devEUI {
			c.warn("deveui_echo", "AppSKeyAns DevEUI differs from the request")
		}
		if len(a.SessionKeyID) > 0 && !bytes.Equal(a.SessionKeyID, info.sessionKeyID) {
			c.warn("session_key_id_echo", "AppSKeyAns SessionKeyID differs from the request")
		}
	case *JoinAns:
		if info.macVersion != "" && !info.macVersion.Is11() && a.NwkSKey == nil && a.FNwkSIntKey != nil {
			c.warn("fnwksintkey_for_10", "LoRaWAN 1.0 answer carries FNwkSIntKey instead of NwkSKey; using it")
		}
	}
}

// directHTTP is the HTTP client of one remote server: no proxy (a gateway
// reaches its Join and claim servers directly), kept-alive connections, the
// server's TLS settings, and redirects reported instead of followed (a
// redirected POST or PUT is not part of either protocol).
func directHTTP(tc *tls.Config, http2 bool, idle int) (*http.Transport, *http.Client) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   http2,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
	}
	if tc != nil {
		tr.TLSClientConfig = tc.Clone()
	}
	return tr, &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
