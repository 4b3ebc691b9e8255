package jstest

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	keywrap "github.com/NickBall/go-aes-key-wrap"
)

// KeyMode selects how the strict server delivers session keys.
type KeyMode int

// Key delivery modes.
const (
	KeysPlain        KeyMode = iota // every key in plaintext
	KeysWrapped                     // network keys wrapped with NSKEKLabel, AppSKey with ASKEKLabel
	KeysSessionKeyID                // network keys as KeysWrapped; AppSKey kept for AppSKeyReq
)

// StrictConfig is the behaviour of a Strict server; change it with Configure.
type StrictConfig struct {
	Mode       KeyMode
	KEKs       map[string][]byte
	NSKEKLabel string // empty: network keys in plaintext
	ASKEKLabel string // empty: AppSKey in plaintext
	// Result, when set, is answered (HTTP 200, full header) instead of processing.
	Result      string
	Description string
	// Status, when set, is answered without body.
	Status int
	// Body, when set, is answered verbatim with HTTP 200.
	Body []byte
	// Block holds every request until the client gives up.
	Block bool
	// HNSID is added to HomeNSAns under BI 1.1.
	HNSID string
	// Lifetime is written in JoinAns.
	Lifetime int
	// HeaderFault breaks the answer header: "transaction_id", "transaction_id_string",
	// "message_type", "protocol_version", "receiver_nsid".
	HeaderFault string
	// EnvelopeFault breaks the first network-key envelope: "label16" (16-byte
	// AESKey with a label), "iv8" (8 bytes), "len25", "corrupt".
	EnvelopeFault string
}

// Request is one request received by a Strict server.
type Request struct {
	Method   string
	Path     string // raw path, as sent
	Header   http.Header
	Body     map[string]any
	ClientCN string
}

// Strict is a strict BI 1.1 Join Server: it wraps brocaar's handler for the
// cryptography and adds what TTS's Join Server checks and sends: POST and
// application/json only, SenderNSID present iff 1.1, strict MACVersion,
// RejoinReq only under 1.1, answers in the request's version with
// ReceiverNSID, ReceiverToken and Lifetime, error answers with HTTP 200,
// AppSKeyReq, wrapped keys, and fault injection.
type Strict struct {
	inner http.Handler // brocaar's handler without KEKs (plaintext keys)

	mu       sync.Mutex
	cfg      StrictConfig
	requests []Request
	sessions map[string][]byte // SessionKeyID (hex) → AppSKey
}

// NewStrict wraps a brocaar handler built without KEKs and without AS label.
func NewStrict(inner http.Handler, cfg StrictConfig) *Strict {
	return &Strict{inner: inner, cfg: cfg, sessions: map[string][]byte{}}
}

// Configure changes the behaviour between requests.
func (s *Strict) Configure(f func(*StrictConfig)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.cfg)
}

// Requests returns the requests received so far.
func (s *Strict) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Strict) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var body map[string]any
	bodyErr := dec.Decode(&body)
	req.Body = body
	s.mu.Lock()
	s.requests = append(s.requests, req)
	cfg := s.cfg
	s.mu.Unlock()

	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if cfg.Block {
		<-r.Context().Done()
		panic(http.ErrAbortHandler) // never an (empty 200) answer
	}
	if cfg.Status != 0 {
		w.WriteHeader(cfg.Status)
		return
	}
	if cfg.Body != nil {
		_, _ = w.Write(cfg.Body)
		return
	}
	if bodyErr != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	pv, _ := body["ProtocolVersion"].(string)
	mt, _ := body["MessageType"].(string)
	ans := map[string]any{
		"ProtocolVersion": pv,
		"SenderID":        body["ReceiverID"],
		"ReceiverID":      body["SenderID"],
		"TransactionID":   body["TransactionID"],
		"MessageType":     strings.TrimSuffix(mt, "Req") + "Ans",
	}
	if tok, ok := body["SenderToken"]; ok {
		ans["ReceiverToken"] = tok
	}
	nsid, hasNSID := body["SenderNSID"].(string)
	isNS := mt == "JoinReq" || mt == "RejoinReq" || mt == "HomeNSReq"
	if pv == "1.1" && isNS && hasNSID {
		ans["ReceiverNSID"] = nsid
	}
	malformed := "MalformedRequest"
	if pv == "1.1" {
		malformed = "MalformedMessage"
	}
	fail := func(code, desc string) {
		ans["Result"] = map[string]any{"ResultCode": code, "Description": desc}
		s.write(w, cfg, ans)
	}
	switch {
	case pv != "1.0" && pv != "1.1":
		ans["ProtocolVersion"] = "1.1"
		fail("Other", "unknown ProtocolVersion")
		return
	case isNS && pv == "1.1" && !hasNSID:
		fail(malformed, "SenderNSID missing under BI 1.1")
		return
	case isNS && pv == "1.0" && hasNSID:
		fail(malformed, "SenderNSID present under BI 1.0")
		return
	case mt == "AppSKeyReq" && hasNSID:
		fail(malformed, "SenderNSID in an AS message")
		return
	case mt == "RejoinReq" && pv == "1.0":
		fail(malformed, "RejoinReq is not a BI 1.0 message")
		return
	case !isNS && mt != "AppSKeyReq":
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if mt == "JoinReq" || mt == "RejoinReq" {
		switch body["MACVersion"] {
		case "1.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.1":
		default:
			fail(malformed, "unsupported MACVersion")
			return
		}
	}
	if cfg.Result != "" {
		fail(cfg.Result, cfg.Description)
		return
	}
	if mt == "AppSKeyReq" {
		id, _ := body["SessionKeyID"].(string)
		s.mu.Lock()
		key, ok := s.sessions[strings.ToUpper(id)]
		s.mu.Unlock()
		if !ok {
			fail("UnknownDevEUI", "unknown session")
			return
		}
		ans["DevEUI"] = body["DevEUI"]
		ans["SessionKeyID"] = id
		ans["AppSKey"] = envelope(cfg, cfg.ASKEKLabel, key)
		ans["Result"] = map[string]any{"ResultCode": "Success"}
		s.write(w, cfg, ans)
		return
	}

	// NS message: let brocaar's handler do the cryptography under BI 1.0.
	inner := map[string]any{}
	for k, v := range body {
		inner[k] = v
	}
	inner["ProtocolVersion"] = "1.0"
	delete(inner, "SenderNSID")
	ib, _ := json.Marshal(inner)
	rec := httptest.NewRecorder()
	s.inner.ServeHTTP(rec, httptestRequest(ib))
	var got map[string]any
	d := json.NewDecoder(rec.Body)
	d.UseNumber()
	if err := d.Decode(&got); err != nil {
		fail("Other", "inner join server: "+err.Error())
		return
	}
	res, _ := got["Result"].(map[string]any)
	if res == nil { // brocaar's bare Result
		fail(asString(got["ResultCode"]), asString(got["Description"]))
		return
	}
	result := map[string]any{"ResultCode": res["ResultCode"]}
	if d := asString(res["Description"]); d != "" {
		result["Description"] = d
	}
	ans["Result"] = result
	if asString(res["ResultCode"]) != "Success" {
		s.write(w, cfg, ans)
		return
	}
	switch mt {
	case "HomeNSReq":
		ans["HNetID"] = strings.ToUpper(asString(got["HNetID"]))
		if pv == "1.1" && cfg.HNSID != "" {
			ans["HNSID"] = cfg.HNSID
		}
	default:
		ans["PHYPayload"] = strings.ToUpper(asString(got["PHYPayload"]))
		ans["Lifetime"] = cfg.Lifetime
		first := true
		for _, f := range []string{"NwkSKey", "FNwkSIntKey", "SNwkSIntKey", "NwkSEncKey"} {
			key := plainKey(got[f])
			if key == nil {
				continue
			}
			env := envelope(cfg, cfg.NSKEKLabel, key)
			if first {
				env = envelopeFault(cfg, env)
				first = false
			}
			ans[f] = env
		}
		appSKey := plainKey(got["AppSKey"])
		if cfg.Mode == KeysSessionKeyID {
			id := make([]byte, 8)
			_, _ = rand.Read(id)
			hid := strings.ToUpper(hex.EncodeToString(id))
			s.mu.Lock()
			s.sessions[hid] = appSKey
			s.mu.Unlock()
			ans["SessionKeyID"] = hid
		} else {
			ans["AppSKey"] = envelope(cfg, cfg.ASKEKLabel, appSKey)
		}
	}
	s.write(w, cfg, ans)
}

func asString(v any) string { s, _ := v.(string); return s }

func plainKey(v any) []byte {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	b, err := hex.DecodeString(asString(m["AESKey"]))
	if err != nil || len(b) != 16 {
		return nil
	}
	return b
}

func envelope(cfg StrictConfig, label string, key []byte) map[string]any {
	if label == "" || cfg.Mode == KeysPlain {
		return map[string]any{"KEKLabel": "", "AESKey": strings.ToUpper(hex.EncodeToString(key))}
	}
	block, err := aes.NewCipher(cfg.KEKs[label])
	if err != nil {
		panic("jstest: no KEK for label " + label)
	}
	w, err := keywrap.Wrap(block, key)
	if err != nil {
		panic(err)
	}
	return map[string]any{"KEKLabel": label, "AESKey": strings.ToUpper(hex.EncodeToString(w))}
}

func envelopeFault(cfg StrictConfig, env map[string]any) map[string]any {
	b, _ := hex.DecodeString(asString(env["AESKey"]))
	label := asString(env["KEKLabel"])
	if label == "" {
		label = cfg.NSKEKLabel
	}
	switch cfg.EnvelopeFault {
	case "":
		return env
	case "label16":
		b = b[:16]
	case "iv8":
		b = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}
	case "len25":
		b = append(b, 0x00)
	case "corrupt":
		b[0] ^= 0x01
	}
	return map[string]any{"KEKLabel": label, "AESKey": strings.ToUpper(hex.EncodeToString(b))}
}

func (s *Strict) write(w http.ResponseWriter, cfg StrictConfig, ans map[string]any) {
	switch cfg.HeaderFault {
	case "transaction_id":
		ans["TransactionID"] = 12345
	case "transaction_id_string":
		ans["TransactionID"] = "not a number"
	case "message_type":
		ans["MessageType"] = "ErrorNotif"
	case "protocol_version":
		ans["ProtocolVersion"] = "9.9"
	case "receiver_nsid":
		ans["ReceiverNSID"] = "0000000000000BAD"
	}
	b, _ := json.Marshal(ans)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b) // always 200, as The Things Stack does
}

func httptestRequest(body []byte) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
}
