package joinclient

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// QRFormat is the variant of a LoRa Alliance TR005 device QR code.
type QRFormat string

// TR005 formats, chosen by prefix.
const (
	QRFormatTR005       QRFormat = "TR005"        // LW:D0:…
	QRFormatTR005Draft3 QRFormat = "TR005-draft3" // URN:DEV:LW:…
	QRFormatTR005Draft2 QRFormat = "TR005-draft2" // URN:LW:DP:…
)

// MaxQRLength bounds the text parsed by ParseQR.
const MaxQRLength = 1024

// ErrQR is the kind of every TR005 parse error (match with errors.Is).
var ErrQR = errors.New("invalid TR005 QR code")

// QRError is a TR005 parse error naming the field at fault. It never holds the
// owner token.
type QRError struct {
	Field string // "preface", "schema ID", "JoinEUI", "DevEUI", "ProfileID", "owner token", …
	Err   error
}

func (e *QRError) Error() string { return "tr005: " + e.Field + ": " + e.Err.Error() }

// Unwrap exposes ErrQR and the cause.
func (e *QRError) Unwrap() []error { return []error{ErrQR, e.Err} }

func qrErr(field, format string, args ...any) error {
	return &QRError{Field: field, Err: fmt.Errorf(format, args...)}
}

// DeviceQR is the content of a TR005 device QR code.
type DeviceQR struct {
	Format          QRFormat
	JoinEUI         EUI64
	DevEUI          EUI64
	VendorID        uint16 // first 2 bytes of the ProfileID
	VendorProfileID uint16 // last 2 bytes of the ProfileID
	OwnerToken      OwnerToken
	SerialNumber    string
	Proprietary     string
	Checksum        string // kept as text, not verified
}

// ProfileID returns the 8 uppercase hex digits VendorID‖VendorProfileID.
func (q *DeviceQR) ProfileID() string {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], q.VendorID)
	binary.BigEndian.PutUint16(b[2:], q.VendorProfileID)
	return string(upperHex(b[:]))
}

// Encode writes q in the final TR005 format (uppercase hex, extensions in the
// order C, O, S, P, empty ones left out). The result holds the owner token:
// it is meant for a QR code, never for a log.
func (q *DeviceQR) Encode() string {
	var b strings.Builder
	b.WriteString("LW:D0:" + q.JoinEUI.String() + ":" + q.DevEUI.String() + ":" + q.ProfileID())
	for _, ext := range []struct {
		tag byte
		v   string
	}{{'C', q.Checksum}, {'O', q.OwnerToken.Reveal()}, {'S', q.SerialNumber}, {'P', q.Proprietary}} {
		if ext.v != "" {
			b.WriteByte(':')
			b.WriteByte(ext.tag)
			b.WriteString(ext.v)
		}
	}
	return b.String()
}

// ParseQR parses a TR005 device QR code in the final format
// (LW:D0:<JoinEUI>:<DevEUI>:<ProfileID>[:<ext>]…) or one of the two drafts
// (URN:DEV:LW:… and URN:LW:DP:…), after trimming surrounding white space.
// EUIs must be exactly 16 hex digits and the ProfileID 8 (case-insensitive,
// no 0x). Unknown and empty extensions are ignored; a later duplicate tag
// wins. Every error is a *QRError naming the field.
func ParseQR(s string) (*DeviceQR, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxQRLength {
		return nil, qrErr("length", "%d characters, at most %d allowed", len(s), MaxQRLength)
	}
	if s == "" {
		return nil, qrErr("preface", "empty QR code")
	}
	if !utf8.ValidString(s) {
		return nil, qrErr("encoding", "not valid UTF-8")
	}
	switch {
	case strings.HasPrefix(s, "LW:"):
		return parseQRFinal(s)
	case strings.HasPrefix(s, "URN:DEV:LW:"):
		return parseQRDraft3(strings.TrimPrefix(s, "URN:DEV:LW:"))
	case strings.HasPrefix(s, "URN:LW:DP:"):
		return parseQRDraft2(strings.TrimPrefix(s, "URN:LW:DP:"))
	}
	p, _, _ := strings.Cut(s, ":")
	return nil, qrErr("preface", "unknown preface %q (want LW:, URN:DEV:LW: or URN:LW:DP:)", truncate(p, 12))
}

// parseQRIDs decodes the JoinEUI, DevEUI and ProfileID fields.
func parseQRIDs(q *DeviceQR, joinEUI, devEUI, profile string) error {
	if err := qrHex("JoinEUI", q.JoinEUI[:], joinEUI); err != nil {
		return err
	}
	if err := qrHex("DevEUI", q.DevEUI[:], devEUI); err != nil {
		return err
	}
	var p [4]byte
	if err := qrHex("ProfileID", p[:], profile); err != nil {
		return err
	}
	q.VendorID = binary.BigEndian.Uint16(p[:2])
	q.VendorProfileID = binary.BigEndian.Uint16(p[2:])
	return nil
}

// qrHex decodes exactly len(dst) bytes of hex, without prefix.
func qrHex(field string, dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return qrErr(field, "want %d hex digits, got %d", 2*len(dst), len(s))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return qrErr(field, "not hex: %q", s)
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) {
			return true
		}
	}
	return false
}

// setExt stores one extension value; unknown tags are ignored (TTS does the same).
func setExt(q *DeviceQR, tag byte, v string, ownerTag byte) error {
	var field string
	var dst *string
	var tok string
	switch tag {
	case 'C':
		if ownerTag != 'O' { // the drafts have no checksum extension
			return nil
		}
		field, dst = "checksum", &q.Checksum
	case ownerTag:
		field, dst = "owner token", &tok
	case 'S':
		field, dst = "serial number", &q.SerialNumber
	case 'P':
		field, dst = "proprietary", &q.Proprietary
	default:
		return nil
	}
	if hasControl(v) {
		return qrErr(field, "contains a control character")
	}
	if strings.TrimSpace(v) != v {
		return qrErr(field, "has leading or trailing white space")
	}
	*dst = v
	if tag == ownerTag {
		q.OwnerToken = OwnerToken(tok)
	}
	return nil
}

func parseQRFinal(s string) (*DeviceQR, error) {
	parts := strings.Split(s, ":")
	if parts[1] != "D0" {
		return nil, qrErr("schema ID", "unknown schema ID %q (want D0)", truncate(parts[1], 8))
	}
	names := []string{"", "", "JoinEUI", "DevEUI", "ProfileID"}
	if len(parts) < 5 {
		return nil, qrErr(names[len(parts)], "missing")
	}
	q := &DeviceQR{Format: QRFormatTR005}
	if err := parseQRIDs(q, parts[2], parts[3], parts[4]); err != nil {
		return nil, err
	}
	for _, ext := range parts[5:] {
		if ext == "" {
			continue
		}
		if err := setExt(q, ext[0], ext[1:], 'O'); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// draft3Value reports the characters allowed in draft 3 extension values.
func draft3Value(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func parseQRDraft3(s string) (*DeviceQR, error) {
	parts := strings.Split(s, "_")
	names := []string{"JoinEUI", "DevEUI", "ProfileID"}
	if len(parts) < 3 {
		return nil, qrErr(names[len(parts)], "missing")
	}
	q := &DeviceQR{Format: QRFormatTR005Draft3}
	if err := parseQRIDs(q, parts[0], parts[1], parts[2]); err != nil {
		return nil, err
	}
	for _, ext := range parts[3:] {
		if ext == "" {
			continue
		}
		if !draft3Value(ext) {
			return nil, qrErr(draft3Field(ext[0]), "extension values may only hold 0-9 and A-Z")
		}
		if err := setExt(q, ext[0], ext[1:], 'V'); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func draft3Field(tag byte) string {
	switch tag {
	case 'V':
		return "owner token"
	case 'S':
		return "serial number"
	case 'P':
		return "proprietary"
	}
	return "extension"
}

// draft2Value reports the characters allowed in draft 2 extension values
// (after %25 is decoded).
func draft2Char(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || strings.IndexByte("$*+-./", c) >= 0
}

func parseQRDraft2(s string) (*DeviceQR, error) {
	parts := strings.Split(s, ":")
	names := []string{"JoinEUI", "DevEUI", "ProfileID"}
	if len(parts) < 3 {
		return nil, qrErr(names[len(parts)], "missing")
	}
	if len(parts) > 4 {
		return nil, qrErr("extensions", "must be a single segment of %%-introduced extensions")
	}
	q := &DeviceQR{Format: QRFormatTR005Draft2}
	if err := parseQRIDs(q, parts[0], parts[1], parts[2]); err != nil {
		return nil, err
	}
	if len(parts) < 4 || parts[3] == "" {
		return q, nil
	}
	exts := parts[3]
	if exts[0] != '%' {
		return nil, qrErr("extensions", "must start with %%")
	}
	// Split on '%' that is not the escape %25.
	var cur []byte
	var tag byte
	flush := func() error {
		if tag == 0 {
			return nil
		}
		return setExt(q, tag, string(cur), 'V')
	}
	for i := 0; i < len(exts); {
		c := exts[i]
		switch {
		case c == '%' && strings.HasPrefix(exts[i:], "%25") && tag != 0:
			cur = append(cur, '%')
			i += 3
		case c == '%':
			if err := flush(); err != nil {
				return nil, err
			}
			if i+1 >= len(exts) {
				tag, cur = 0, nil
				i++
				continue
			}
			tag, cur = exts[i+1], nil
			if !('A' <= tag && tag <= 'Z') {
				return nil, qrErr("extensions", "tag must be a letter A-Z")
			}
			i += 2
		case draft2Char(c):
			cur = append(cur, c)
			i++
		default:
			return nil, qrErr(draft3Field(tag), "extension values may only hold 0-9, A-Z and $*+-./")
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return q, nil
}
