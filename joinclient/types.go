package joinclient

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/brocaar/lorawan"
)

// decodeHex decodes a BI hex string: case-insensitive, optional 0x/0X prefix.
func decodeHex(text []byte) ([]byte, error) {
	s := string(text)
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid hex %q", truncate(string(text), 40))
	}
	return b, nil
}

// decodeFixedHex decodes hex into dst, which must match the decoded length.
func decodeFixedHex(what string, dst []byte, text []byte) error {
	b, err := decodeHex(text)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s: want %d bytes, got %d", what, len(dst), len(b))
	}
	copy(dst, b)
	return nil
}

func upperHex(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return bytes.ToUpper(out)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// EUI64 is an EUI-64 (DevEUI, JoinEUI, NSID), most significant byte first.
// It is the project's own type rather than lorawan.EUI64 because BI JSON
// needs its text in uppercase hex (§2.2; lorawan.EUI64 writes lowercase) and
// reads a 0x prefix; convert with EUI64(e) / lorawan.EUI64(e).
type EUI64 [8]byte

// ParseEUI64 parses 16 hex digits (case-insensitive, optional 0x prefix).
func ParseEUI64(s string) (EUI64, error) {
	var e EUI64
	err := e.UnmarshalText([]byte(s))
	return e, err
}

func (e EUI64) String() string { return string(upperHex(e[:])) }

// MarshalText writes 16 uppercase hex digits.
func (e EUI64) MarshalText() ([]byte, error) { return upperHex(e[:]), nil }

// UnmarshalText reads 16 hex digits.
func (e *EUI64) UnmarshalText(text []byte) error { return decodeFixedHex("EUI-64", e[:], text) }

// Uint64 returns the EUI as a big-endian integer.
func (e EUI64) Uint64() uint64 { return binary.BigEndian.Uint64(e[:]) }

// OptEUI64 is an optional EUI-64 field: an empty string or null on the wire means absent.
type OptEUI64 struct {
	EUI EUI64
	Set bool
}

// SomeEUI64 returns a set OptEUI64.
func SomeEUI64(e EUI64) OptEUI64 { return OptEUI64{EUI: e, Set: true} }

// IsZero reports absence, for the omitzero JSON option.
func (o OptEUI64) IsZero() bool { return !o.Set }

func (o OptEUI64) String() string {
	if !o.Set {
		return ""
	}
	return o.EUI.String()
}

// MarshalText writes the EUI, or nothing when absent.
func (o OptEUI64) MarshalText() ([]byte, error) {
	if !o.Set {
		return []byte{}, nil
	}
	return o.EUI.MarshalText()
}

// UnmarshalText reads an EUI; an empty string means absent.
func (o *OptEUI64) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*o = OptEUI64{}
		return nil
	}
	if err := o.EUI.UnmarshalText(text); err != nil {
		return err
	}
	o.Set = true
	return nil
}

// NetID is a LoRaWAN NetID, 3 bytes, most significant first. It is
// github.com/brocaar/lorawan's NetID (convert with lorawan.NetID(n) for its
// Type, ID and DevAddr checks) with the BI text form: uppercase hex, 0x
// prefix accepted (lorawan.NetID writes lowercase).
type NetID lorawan.NetID

// ParseNetID parses 6 hex digits.
func ParseNetID(s string) (NetID, error) {
	var n NetID
	err := n.UnmarshalText([]byte(s))
	return n, err
}

func (n NetID) String() string { return string(upperHex(n[:])) }

// MarshalText writes 6 uppercase hex digits.
func (n NetID) MarshalText() ([]byte, error) { return upperHex(n[:]), nil }

// UnmarshalText reads 6 hex digits.
func (n *NetID) UnmarshalText(text []byte) error { return decodeFixedHex("NetID", n[:], text) }

// DevAddr is a device address, 4 bytes, most significant first. It is
// github.com/brocaar/lorawan's DevAddr (convert with lorawan.DevAddr(a), e.g.
// for IsNetID) with the BI text form: uppercase hex, 0x prefix accepted.
type DevAddr lorawan.DevAddr

func (a DevAddr) String() string { return string(upperHex(a[:])) }

// MarshalText writes 8 uppercase hex digits.
func (a DevAddr) MarshalText() ([]byte, error) { return upperHex(a[:]), nil }

// UnmarshalText reads 8 hex digits.
func (a *DevAddr) UnmarshalText(text []byte) error { return decodeFixedHex("DevAddr", a[:], text) }

// HEXBytes is a byte string written as uppercase hex. An empty string decodes as absent (nil).
type HEXBytes []byte

func (h HEXBytes) String() string { return string(upperHex(h)) }

// MarshalText writes uppercase hex without prefix.
func (h HEXBytes) MarshalText() ([]byte, error) { return upperHex(h), nil }

// UnmarshalText reads hex, case-insensitive, with an optional 0x prefix.
func (h *HEXBytes) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*h = nil
		return nil
	}
	b, err := decodeHex(text)
	if err != nil {
		return err
	}
	*h = b
	return nil
}

// DLSettings is the join-accept DLSettings byte: bit 7 OptNeg, bits 6..4
// RX1DROffset, bits 3..0 RX2DataRate.
type DLSettings byte

// OptNeg reports the LoRaWAN 1.1 option-negotiation bit.
func (d DLSettings) OptNeg() bool { return d&0x80 != 0 }

// MarshalText writes 2 uppercase hex digits.
func (d DLSettings) MarshalText() ([]byte, error) { return upperHex([]byte{byte(d)}), nil }

// UnmarshalText reads 2 hex digits (a 0x prefix is accepted, unlike brocaar's decoder).
func (d *DLSettings) UnmarshalText(text []byte) error {
	var b [1]byte
	if err := decodeFixedHex("DLSettings", b[:], text); err != nil {
		return err
	}
	*d = DLSettings(b[0])
	return nil
}

// AES128Key is a 16-byte AES key. Its String method never reveals the key
// (lorawan.AES128Key prints itself in hex, so it is not used for keys here).
type AES128Key [16]byte

// String hides the key so that it cannot leak through logs or errors.
func (AES128Key) String() string { return "[key]" }

// GoString hides the key from %#v.
func (AES128Key) GoString() string { return "[key]" }

// KeyEnvelope carries a session key: plaintext when KEKLabel is empty, else
// wrapped (RFC 3394) with the KEK of that label.
type KeyEnvelope struct {
	KEKLabel string   `json:"KEKLabel"`
	AESKey   HEXBytes `json:"AESKey"`
}

// String hides the key material.
func (k KeyEnvelope) String() string {
	return fmt.Sprintf("KeyEnvelope{KEKLabel:%q, AESKey:%d bytes}", k.KEKLabel, len(k.AESKey))
}

// PlainEnvelope returns an envelope holding key in plaintext.
func PlainEnvelope(key AES128Key) *KeyEnvelope {
	return &KeyEnvelope{AESKey: append(HEXBytes(nil), key[:]...)}
}

// TransactionID is the BI transaction identifier. It decodes leniently: a
// number, a numeric string or anything else (then 0 with Invalid set), so that
// a malformed answer header never makes decoding fail; the client only warns
// about an Invalid one in an answer, the proxy refuses a request carrying one
// as malformed.
type TransactionID struct {
	Value   uint32
	Invalid bool
}

// MarshalJSON writes a JSON number.
func (t TransactionID) MarshalJSON() ([]byte, error) {
	return strconv.AppendUint(nil, uint64(t.Value), 10), nil
}

// UnmarshalJSON never fails on a well-formed JSON value.
func (t *TransactionID) UnmarshalJSON(b []byte) error {
	*t = TransactionID{}
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return nil
	}
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f < 0 || f > 0xFFFFFFFF || f != float64(uint32(f)) {
			t.Invalid = true
			return nil
		}
		v = uint64(f)
	}
	t.Value = uint32(v)
	return nil
}

// ProtocolVersion is the BI ProtocolVersion header value.
type ProtocolVersion string

// Protocol versions.
const (
	BI10 ProtocolVersion = "1.0"
	BI11 ProtocolVersion = "1.1"
)

// MessageType is the BI MessageType header value.
type MessageType string

// Message types used between an NS/AS and a Join Server.
const (
	MsgJoinReq    MessageType = "JoinReq"
	MsgJoinAns    MessageType = "JoinAns"
	MsgRejoinReq  MessageType = "RejoinReq"
	MsgRejoinAns  MessageType = "RejoinAns"
	MsgAppSKeyReq MessageType = "AppSKeyReq"
	MsgAppSKeyAns MessageType = "AppSKeyAns"
	MsgHomeNSReq  MessageType = "HomeNSReq"
	MsgHomeNSAns  MessageType = "HomeNSAns"
)

// answerType returns the answer type of a request type.
func (m MessageType) answerType() MessageType {
	if s, ok := strings.CutSuffix(string(m), "Req"); ok && s != "" {
		return MessageType(s + "Ans")
	}
	return "ErrorNotif"
}

// MACVersion is a device's LoRaWAN MAC version as written in BI messages.
type MACVersion string

// NormalizeMACVersion maps 1.0.0 → 1.0 and 1.1.0 → 1.1 and accepts only the
// six values of BI (1.0, 1.0.1, 1.0.2, 1.0.3, 1.0.4, 1.1).
func NormalizeMACVersion(s string) (MACVersion, error) {
	switch s {
	case "1.0.0":
		return "1.0", nil
	case "1.1.0":
		return "1.1", nil
	case "1.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.1":
		return MACVersion(s), nil
	}
	return "", fmt.Errorf("unsupported MACVersion %q", truncate(s, 20))
}

// Is11 reports a LoRaWAN 1.1 device.
func (v MACVersion) Is11() bool { return strings.HasPrefix(string(v), "1.1") }

// EUIPrefix is a JoinEUI prefix: the first Length bits of EUI.
type EUIPrefix struct {
	EUI    EUI64
	Length int // 0..64
}

// ParsePrefix parses "<16 hex digits>/<bits>" with bits written in 1 or 2
// decimal digits, 0..64.
func ParsePrefix(s string) (EUIPrefix, error) {
	var p EUIPrefix
	err := p.UnmarshalText([]byte(s))
	return p, err
}

func (p EUIPrefix) String() string { return p.EUI.String() + "/" + strconv.Itoa(p.Length) }

// MarshalText writes the prefix as "<EUI>/<bits>".
func (p EUIPrefix) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads "<16 hex digits>/<bits>".
func (p *EUIPrefix) UnmarshalText(text []byte) error {
	s := string(text)
	eui, bits, ok := strings.Cut(s, "/")
	if !ok {
		return errors.New("prefix must be <16 hex digits>/<bits>")
	}
	if len(eui) != 16 {
		return fmt.Errorf("prefix EUI %q must be exactly 16 hex digits", truncate(eui, 20))
	}
	b, err := hex.DecodeString(eui)
	if err != nil {
		return fmt.Errorf("prefix EUI %q is not hex", eui)
	}
	if len(bits) < 1 || len(bits) > 2 || strings.Trim(bits, "0123456789") != "" {
		return fmt.Errorf("prefix length %q must be 1 or 2 decimal digits", truncate(bits, 10))
	}
	n, _ := strconv.Atoi(bits)
	if n > 64 {
		return fmt.Errorf("prefix length %d is beyond 64 bits", n)
	}
	copy(p.EUI[:], b)
	p.Length = n
	return nil
}

func (p EUIPrefix) mask() uint64 {
	if p.Length == 0 {
		return 0
	}
	return ^uint64(0) << (64 - p.Length)
}

// Matches reports whether eui starts with the prefix's first Length bits.
func (p EUIPrefix) Matches(eui EUI64) bool {
	m := p.mask()
	return eui.Uint64()&m == p.EUI.Uint64()&m
}

// HasHostBits reports bits set beyond Length (ignored when matching).
func (p EUIPrefix) HasHostBits() bool { return p.EUI.Uint64()&^p.mask() != 0 }

// ResultCode is a BI result code. Unknown codes are kept verbatim.
type ResultCode string

// Result codes of BI 1.0 and 1.1.
const (
	ResultSuccess                ResultCode = "Success"
	ResultNoAction               ResultCode = "NoAction" // 1.1 only
	ResultMICFailed              ResultCode = "MICFailed"
	ResultFrameReplayed          ResultCode = "FrameReplayed" // 1.1 only
	ResultJoinReqFailed          ResultCode = "JoinReqFailed"
	ResultNoRoamingAgreement     ResultCode = "NoRoamingAgreement"
	ResultDevRoamingDisallowed   ResultCode = "DevRoamingDisallowed"
	ResultRoamingActDisallowed   ResultCode = "RoamingActDisallowed"
	ResultActivationDisallowed   ResultCode = "ActivationDisallowed"
	ResultUnknownDevEUI          ResultCode = "UnknownDevEUI"
	ResultUnknownDevAddr         ResultCode = "UnknownDevAddr"
	ResultUnknownSender          ResultCode = "UnknownSender"
	ResultUnknownReceiver        ResultCode = "UnkownReceiver" // (sic) the spelling of both TS002 versions
	ResultUnknownReceiverCorrect ResultCode = "UnknownReceiver"
	ResultDeferred               ResultCode = "Deferred"
	ResultXmitFailed             ResultCode = "XmitFailed"
	ResultInvalidFPort           ResultCode = "InvalidFPort"
	ResultInvalidProtocolVersion ResultCode = "InvalidProtocolVersion"
	ResultStaleDeviceProfile     ResultCode = "StaleDeviceProfile"
	ResultMalformedRequest       ResultCode = "MalformedRequest" // 1.0 spelling
	ResultMalformedMessage       ResultCode = "MalformedMessage" // 1.1 spelling
	ResultFrameSizeError         ResultCode = "FrameSizeError"
	ResultOther                  ResultCode = "Other"
)

var knownCodes = map[ResultCode]bool{
	ResultSuccess: true, ResultNoAction: true, ResultMICFailed: true, ResultFrameReplayed: true,
	ResultJoinReqFailed: true, ResultNoRoamingAgreement: true, ResultDevRoamingDisallowed: true,
	ResultRoamingActDisallowed: true, ResultActivationDisallowed: true, ResultUnknownDevEUI: true,
	ResultUnknownDevAddr: true, ResultUnknownSender: true, ResultUnknownReceiver: true,
	ResultUnknownReceiverCorrect: true, ResultDeferred: true, ResultXmitFailed: true,
	ResultInvalidFPort: true, ResultInvalidProtocolVersion: true, ResultStaleDeviceProfile: true,
	ResultMalformedRequest: true, ResultMalformedMessage: true, ResultFrameSizeError: true, ResultOther: true,
}

// Known reports whether the code is one of TS002 1.0/1.1 (either spelling of
// the receiver code).
func (c ResultCode) Known() bool { return knownCodes[c] }

// Only11 reports codes that exist only in BI 1.1.
func (c ResultCode) Only11() bool { return c == ResultNoAction || c == ResultFrameReplayed }

// malformedCode returns the malformed-message code spelled for version v.
func malformedCode(v ProtocolVersion) ResultCode {
	if v == BI11 {
		return ResultMalformedMessage
	}
	return ResultMalformedRequest
}

// jsonString is used to detect a JSON string member without failing on other kinds.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// tableOrder sorts routing tables for people: most specific prefix first,
// then by EUI.
func (p EUIPrefix) tableOrder(q EUIPrefix) bool {
	if p.Length != q.Length {
		return p.Length > q.Length
	}
	return p.EUI.Uint64() < q.EUI.Uint64()
}
