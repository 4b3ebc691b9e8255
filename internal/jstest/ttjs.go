package jstest

import (
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TTJSWrongToken is the exact message of The Things Join Server's 403 answer
// to a claim with a wrong owner token (or of a device claimed already).
const TTJSWrongToken = "claim failed with given owner token"

// TTJSDevice is a device provisioned on a TTJS test server.
type TTJSDevice struct {
	DevEUI     string // 16 uppercase hex digits
	OwnerToken string
	// Claim state.
	Claimed   bool
	ClaimedBy string // common name of the client certificate that claimed it
	HomeNetID string
	HomeNSID  string
	ASID      string
	Locked    bool
}

// TTJSRequest is one request received by a TTJS test server.
type TTJSRequest struct {
	Method        string
	Path          string
	ClientCN      string // empty without client certificate
	Authorization string
	ContentType   string
	Body          []byte
}

// TTJS is a TTJS v2 claiming API test server over mutual TLS:
// PUT/GET/DELETE /api/v2/devices/{DevEUI}/claim and batch
// DELETE /api/v2/devices/{DevEUI,…}/claims. It verifies client certificates
// issued by its PKI and answers 401 to a request without one, like TTJS.
type TTJS struct {
	URL    string
	Server *httptest.Server

	mu       sync.Mutex
	devices  map[string]*TTJSDevice
	requests []TTJSRequest
	hang     bool
	fault    int // status answered to everything when set
	release  chan struct{}
}

// NewTTJS starts a TTJS v2 test server whose certificate and accepted client
// certificates are issued by pki. It is closed when the test ends.
func NewTTJS(t testing.TB, pki *PKI) *TTJS {
	t.Helper()
	s := &TTJS{devices: map[string]*TTJSDevice{}, release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	cfg := pki.ServerTLS(t)
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	srv.TLS = cfg
	srv.EnableHTTP2 = true
	// Refused handshakes are part of the tests; keep them out of the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.release) }) // runs first: frees hanging handlers
	s.Server, s.URL = srv, srv.URL
	return s
}

// AddDevice provisions an unclaimed device.
func (s *TTJS) AddDevice(devEUI, ownerToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := strings.ToUpper(devEUI)
	s.devices[d] = &TTJSDevice{DevEUI: d, OwnerToken: ownerToken}
}

// ClaimAs marks a device claimed by another client (common name cn).
func (s *TTJS) ClaimAs(devEUI, cn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[strings.ToUpper(devEUI)]; d != nil {
		d.Claimed, d.ClaimedBy, d.HomeNetID, d.ASID, d.Locked = true, cn, "000001", "other.example", true
	}
}

// Device returns a copy of a device's state.
func (s *TTJS) Device(devEUI string) (TTJSDevice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[strings.ToUpper(devEUI)]
	if !ok {
		return TTJSDevice{}, false
	}
	return *d, true
}

// Requests returns the requests received so far.
func (s *TTJS) Requests() []TTJSRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TTJSRequest(nil), s.requests...)
}

// SetHang makes every request wait until the client gives up.
func (s *TTJS) SetHang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = on
}

// SetFault makes every request answer status (e.g. 500, 503) with an error
// message; 0 restores normal behaviour.
func (s *TTJS) SetFault(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = status
}

func ttjsJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ttjsError(w http.ResponseWriter, status int, msg string) {
	ttjsJSON(w, status, map[string]string{"message": msg})
}

func validEUI(s string) bool {
	if len(s) != 16 || strings.ToUpper(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (s *TTJS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := TTJSRequest{Method: r.Method, Path: r.URL.EscapedPath(), Authorization: r.Header.Get("Authorization"),
		ContentType: r.Header.Get("Content-Type"), Body: body}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	hang, fault := s.hang, s.fault
	s.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		// A hanging server never answers: abort the connection instead of
		// letting the handler's return send an empty 200.
		panic(http.ErrAbortHandler)
	}
	if fault != 0 {
		ttjsError(w, fault, "internal error")
		return
	}
	if rec.ClientCN == "" {
		ttjsError(w, http.StatusUnauthorized, "unauthenticated: client certificate required")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v2/devices/")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if ids, ok := strings.CutSuffix(rest, "/claims"); ok && !strings.Contains(ids, "/") {
		if r.Method != http.MethodDelete {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.batchUnclaim(w, rec.ClientCN, strings.Split(ids, ","))
		return
	}
	eui, ok := strings.CutSuffix(rest, "/claim")
	if !ok || strings.Contains(eui, "/") {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if !validEUI(eui) {
		ttjsError(w, http.StatusBadRequest, "invalid DevEUI")
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.claim(w, r, rec.ClientCN, eui, body)
	case http.MethodGet:
		s.status(w, rec.ClientCN, eui)
	case http.MethodDelete:
		s.unclaim(w, rec.ClientCN, eui)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

type ttjsClaimRequest struct {
	OwnerToken           string          `json:"ownerToken"`
	HomeNetID            string          `json:"homeNetID"`
	HomeNSID             string          `json:"homeNSID"`
	ASID                 string          `json:"asID"`
	Lock                 *bool           `json:"lock"`
	RegenerateOwnerToken bool            `json:"regenerateOwnerToken"`
	KEK                  json.RawMessage `json:"kek"`
}

func (s *TTJS) claim(w http.ResponseWriter, r *http.Request, cn, eui string, body []byte) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		ttjsError(w, http.StatusBadRequest, "content type must be application/json")
		return
	}
	var req ttjsClaimRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		ttjsError(w, http.StatusBadRequest, "invalid claim request: "+err.Error())
		return
	}
	switch {
	case req.OwnerToken == "":
		ttjsError(w, http.StatusBadRequest, "ownerToken is required")
		return
	case len(req.HomeNetID) != 6 || !isHexString(req.HomeNetID):
		ttjsError(w, http.StatusBadRequest, "homeNetID must be 6 hex digits")
		return
	case req.HomeNSID != "" && (len(req.HomeNSID) != 16 || !isHexString(req.HomeNSID)):
		ttjsError(w, http.StatusBadRequest, "homeNSID must be an EUI-64")
		return
	case req.ASID == "":
		ttjsError(w, http.StatusBadRequest, "asID is required")
		return
	case req.Lock == nil:
		ttjsError(w, http.StatusBadRequest, "lock is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[eui]
	if !ok {
		ttjsError(w, http.StatusNotFound, "device not provisioned")
		return
	}
	if d.OwnerToken != req.OwnerToken || (d.Claimed && d.ClaimedBy != cn) {
		ttjsError(w, http.StatusForbidden, TTJSWrongToken)
		return
	}
	d.Claimed, d.ClaimedBy, d.HomeNetID, d.HomeNSID, d.ASID, d.Locked = true, cn, req.HomeNetID, req.HomeNSID, req.ASID, *req.Lock
	w.WriteHeader(http.StatusCreated)
}

func isHexString(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// claimedByCaller returns the device or writes 404/403.
func (s *TTJS) claimedByCaller(w http.ResponseWriter, cn, eui string) *TTJSDevice {
	d, ok := s.devices[eui]
	if !ok || !d.Claimed {
		ttjsError(w, http.StatusNotFound, "device not claimed")
		return nil
	}
	if d.ClaimedBy != cn {
		ttjsError(w, http.StatusForbidden, "access denied")
		return nil
	}
	return d
}

func (s *TTJS) status(w http.ResponseWriter, cn, eui string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.claimedByCaller(w, cn, eui)
	if d == nil {
		return
	}
	out := map[string]any{"homeNetID": d.HomeNetID, "locked": d.Locked}
	if d.HomeNSID != "" {
		out["homeNSID"] = d.HomeNSID
	}
	ttjsJSON(w, http.StatusOK, out)
}

func (s *TTJS) unclaim(w http.ResponseWriter, cn, eui string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.claimedByCaller(w, cn, eui)
	if d == nil {
		return
	}
	*d = TTJSDevice{DevEUI: d.DevEUI, OwnerToken: d.OwnerToken}
	w.WriteHeader(http.StatusNoContent)
}

func (s *TTJS) batchUnclaim(w http.ResponseWriter, cn string, euis []string) {
	for _, e := range euis {
		if !validEUI(e) {
			ttjsError(w, http.StatusBadRequest, "invalid DevEUI in batch")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	failed := map[string]map[string]string{}
	for _, e := range euis {
		d, ok := s.devices[e]
		switch {
		case !ok || !d.Claimed:
			failed[e] = map[string]string{"message": "device not claimed"}
		case d.ClaimedBy != cn:
			failed[e] = map[string]string{"message": "access denied"}
		default:
			*d = TTJSDevice{DevEUI: d.DevEUI, OwnerToken: d.OwnerToken}
		}
	}
	if len(failed) > 0 {
		ttjsJSON(w, http.StatusBadRequest, failed)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
