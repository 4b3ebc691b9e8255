package cache

import (
	"database/sql/driver"
	"fmt"
)

// EUI64 is a LoRaWAN EUI-64 (a device's DevEUI or AppEUI) in its 8 bytes, as
// outbox rows carry and store it. Its one text form is the dashed lowercase
// "16-ea-76-f6-ab-66-3d-80" of the gateway's network server, which the remote
// protocols' paths and topics use.
type EUI64 [8]byte

// ParseEUI64 reads 16 hex digits, optionally separated by '-' or ':' between
// bytes (case-insensitive).
func ParseEUI64(s string) (EUI64, error) {
	var e EUI64
	n := 0 // hex digits read
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c == '-' || c == ':') && n > 0 && n < 16 && n%2 == 0 {
			continue
		}
		v, ok := unhex(c)
		if !ok || n >= 16 {
			return EUI64{}, fmt.Errorf("cache: %q is not an EUI-64 (want 16 hex digits)", s)
		}
		e[n/2] |= v << (4 * (1 - n%2))
		n++
	}
	if n != 16 {
		return EUI64{}, fmt.Errorf("cache: %q is not an EUI-64 (want 16 hex digits)", s)
	}
	return e, nil
}

const hexDigits = "0123456789abcdef"

// AppendText appends the dashed lowercase text form to b.
func (e EUI64) AppendText(b []byte) ([]byte, error) { return e.appendText(b), nil }

func (e EUI64) appendText(b []byte) []byte {
	for i, x := range e {
		if i > 0 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0x0f])
	}
	return b
}

// String is the dashed lowercase text form.
func (e EUI64) String() string {
	var buf [23]byte
	return string(e.appendText(buf[:0]))
}

// MarshalText is the dashed lowercase text form.
func (e EUI64) MarshalText() ([]byte, error) { return e.appendText(make([]byte, 0, 23)), nil }

// UnmarshalText reads the forms ParseEUI64 reads.
func (e *EUI64) UnmarshalText(text []byte) error {
	v, err := ParseEUI64(string(text))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Scan reads the 8-byte BLOB the outbox stores.
func (e *EUI64) Scan(src any) error {
	b, ok := src.([]byte)
	if !ok || len(b) != len(e) {
		return fmt.Errorf("cache: EUI-64 column holds %T of %d bytes, want 8 bytes", src, len(b))
	}
	copy(e[:], b)
	return nil
}

// Value stores the EUI as an 8-byte BLOB.
func (e EUI64) Value() (driver.Value, error) { return e[:], nil }
