package joinclient

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"

	"github.com/lorawan-gateway/app-connect/config"
)

// rfc3394IV is the default initial value of RFC 3394 §2.2.3.1.
var rfc3394IV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// Wrap wraps plaintext (a multiple of 8 bytes, at least 16) with kek
// (16, 24 or 32 bytes) per RFC 3394.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext)%8 != 0 || len(plaintext) < 16 {
		return nil, fmt.Errorf("key wrap: key data must be a multiple of 8 bytes, at least 16, got %d", len(plaintext))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key wrap: KEK: %w", err)
	}
	n := len(plaintext) / 8
	out := make([]byte, 8+len(plaintext))
	copy(out[8:], plaintext)
	var a [8]byte = rfc3394IV
	var b [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(b[:8], a[:])
			copy(b[8:], out[8*i:8*i+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:8*i+8], b[8:])
		}
	}
	copy(out[:8], a[:])
	return out, nil
}

// Unwrap unwraps ciphertext (a multiple of 8 bytes, at least 24) with kek per
// RFC 3394 and checks the integrity value. The length is checked first.
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	if len(ciphertext)%8 != 0 || len(ciphertext) < 24 {
		return nil, fmt.Errorf("key unwrap: wrapped key must be a multiple of 8 bytes, at least 24, got %d", len(ciphertext))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key unwrap: KEK: %w", err)
	}
	n := len(ciphertext)/8 - 1
	r := make([]byte, len(ciphertext)-8)
	copy(r, ciphertext[8:])
	var a [8]byte
	copy(a[:], ciphertext[:8])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
			copy(b[8:], r[8*(i-1):8*i])
			block.Decrypt(b[:], b[:])
			copy(a[:], b[:8])
			copy(r[8*(i-1):8*i], b[8:])
		}
	}
	if subtle.ConstantTimeCompare(a[:], rfc3394IV[:]) != 1 {
		return nil, errors.New("key unwrap: integrity check failed")
	}
	return r, nil
}

// KEKStore maps KEK labels to 16-byte key encryption keys. It is immutable
// after construction and safe for concurrent use; a nil store holds no KEK.
type KEKStore struct {
	keks map[string]AES128Key
}

// NewKEKStore builds a store. Labels must be non-empty; keys exactly 16 bytes.
func NewKEKStore(keks map[string][]byte) (*KEKStore, error) {
	s := &KEKStore{keks: make(map[string]AES128Key, len(keks))}
	for label, key := range keks {
		if label == "" {
			return nil, errors.New("joinclient: KEK label must not be empty")
		}
		if len(key) != 16 {
			return nil, fmt.Errorf("joinclient: KEK %q: must be 16 bytes, got %d", label, len(key))
		}
		s.keks[label] = AES128Key(key)
	}
	return s, nil
}

// Labels returns the known labels, sorted.
func (s *KEKStore) Labels() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.keks))
	for l := range s.keks {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Has reports whether label is known (matched exactly, case-sensitive).
func (s *KEKStore) Has(label string) bool {
	if s == nil {
		return false
	}
	_, ok := s.keks[label]
	return ok
}

// Open returns the session key of env: plaintext when the label is empty
// (exactly 16 bytes), else unwrapped with the KEK of that label. An unknown
// label is an error, never treated as plaintext.
func (s *KEKStore) Open(env *KeyEnvelope) (AES128Key, error) {
	if env == nil {
		return AES128Key{}, errors.New("no key envelope")
	}
	if env.KEKLabel == "" {
		if len(env.AESKey) != 16 {
			return AES128Key{}, fmt.Errorf("plaintext AESKey must be 16 bytes, got %d", len(env.AESKey))
		}
		return AES128Key(env.AESKey), nil
	}
	if !s.Has(env.KEKLabel) {
		return AES128Key{}, fmt.Errorf("no KEK for label %q", truncate(env.KEKLabel, 64))
	}
	if len(env.AESKey) != 24 {
		return AES128Key{}, fmt.Errorf("KEK label %q: wrapped AESKey must be 24 bytes, got %d", env.KEKLabel, len(env.AESKey))
	}
	kek := s.keks[env.KEKLabel]
	key, err := Unwrap(kek[:], env.AESKey)
	if err != nil {
		return AES128Key{}, fmt.Errorf("KEK label %q: %w", env.KEKLabel, err)
	}
	if len(key) != 16 {
		return AES128Key{}, fmt.Errorf("KEK label %q: unwrapped key must be 16 bytes, got %d", env.KEKLabel, len(key))
	}
	return AES128Key(key), nil
}

// Seal returns an envelope of key: plaintext when label is empty, else
// wrapped with the KEK of label (which must exist).
func (s *KEKStore) Seal(label string, key AES128Key) (*KeyEnvelope, error) {
	if label == "" {
		return PlainEnvelope(key), nil
	}
	if !s.Has(label) {
		return nil, fmt.Errorf("no KEK for label %q", label)
	}
	kek := s.keks[label]
	w, err := Wrap(kek[:], key[:])
	if err != nil {
		return nil, err
	}
	return &KeyEnvelope{KEKLabel: label, AESKey: w}, nil
}

// LoadKEKFile reads a KEK file (see ParseKEKFile). A file readable by group or
// others is accepted with a warning.
func LoadKEKFile(path string, logger *slog.Logger) (*KEKStore, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("joinclient: kek file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && logger != nil {
		logger.Warn("joinclient: KEK file is readable by group or others", "path", path, "mode", fi.Mode().Perm().String())
	}
	return ParseKEKFile(path, data)
}

// ParseKEKFile parses a KEK file:
//
//	keks:
//	  - label: "000013"
//	    key: "000102030405060708090A0B0C0D0E0F"
//
// Labels are non-empty, unique and matched exactly; keys are exactly 32 hex
// digits. Unknown keys, duplicate keys and a second document are errors, each
// a *config.Error naming name, line and key. Errors never contain a KEK.
func ParseKEKFile(name string, data []byte) (*KEKStore, error) {
	root, errs := config.ParseYAML(name, data)
	if root == nil {
		return nil, errs.Err()
	}
	keks := map[string][]byte{}
	top := errs.Mapping(root, "")
	for _, kv := range top {
		switch kv.Key {
		case "keks":
			seq := errs.Sequence(kv.Value, "keks")
			for i, item := range seq {
				path := fmt.Sprintf("keks[%d]", i)
				var label, key *config.KV
				for _, f := range errs.Mapping(item, path) {
					switch f.Key {
					case "label":
						label = &f
					case "key":
						key = &f
					default:
						errs.Add(f.KeyNode, path+"."+f.Key, "unknown key")
					}
				}
				if label == nil {
					errs.Add(item, path+".label", "missing")
					continue
				}
				l, ok := errs.Str(label.Value, path+".label")
				if !ok {
					continue
				}
				if l == "" {
					errs.Add(label.Value, path+".label", "must not be empty")
					continue
				}
				if _, dup := keks[l]; dup {
					errs.Add(label.Value, path+".label", "duplicate label %q", l)
					continue
				}
				if key == nil {
					errs.Add(item, path+".key", "missing")
					continue
				}
				k, ok := errs.Str(key.Value, path+".key")
				if !ok {
					continue
				}
				b, err := decodeHexStrict(k)
				if err != nil || len(b) != 16 {
					// never echo the value: it is a secret
					errs.Add(key.Value, path+".key", "must be exactly 32 hex digits")
					continue
				}
				keks[l] = b
			}
		default:
			errs.Add(kv.KeyNode, kv.Key, "unknown key")
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return NewKEKStore(keks)
}

// decodeHexStrict decodes hex without prefix.
func decodeHexStrict(s string) ([]byte, error) {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return nil, errors.New("not hex")
		}
	}
	if len(s)%2 != 0 {
		return nil, errors.New("odd length")
	}
	return decodeHex([]byte(s))
}
