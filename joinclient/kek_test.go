package joinclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

func TestRFC3394Vector(t *testing.T) {
	kek := mustHex("000102030405060708090A0B0C0D0E0F")
	data := mustHex("00112233445566778899AABBCCDDEEFF")
	wrapped := mustHex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
	got, err := Wrap(kek, data)
	if err != nil || !bytes.Equal(got, wrapped) {
		t.Fatalf("Wrap = %X, %v", got, err)
	}
	plain, err := Unwrap(kek, wrapped)
	if err != nil || !bytes.Equal(plain, data) {
		t.Fatalf("Unwrap = %X, %v", plain, err)
	}
	for i := range wrapped {
		bad := append([]byte(nil), wrapped...)
		bad[i] ^= 0x10
		if _, err := Unwrap(kek, bad); err == nil {
			t.Fatalf("flipped bit in byte %d not detected", i)
		}
	}
}

func TestKEKStoreOpen(t *testing.T) {
	// §11.1: NwkSKey wrapped by brocaar's handler with the 000013 KEK (16 zero bytes).
	store, err := NewKEKStore(map[string][]byte{"000013": make([]byte, 16)})
	if err != nil {
		t.Fatal(err)
	}
	nwkSKey := mustHex("386284F9907D629776E2F0D6A54D0790")
	for _, tc := range []struct {
		name    string
		env     KeyEnvelope
		want    []byte
		wantErr string
	}{
		{"wrapped", KeyEnvelope{"000013", mustHex("93C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B079")}, nwkSKey, ""},
		{"plaintext", KeyEnvelope{"", mustHex("BB53B962A31661C08FB2E98CA8DE27EB")}, mustHex("BB53B962A31661C08FB2E98CA8DE27EB"), ""},
		{"label is case-sensitive", KeyEnvelope{"00001a", mustHex("93C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B079")}, nil, `no KEK for label "00001a"`},
		{"unknown label never plaintext", KeyEnvelope{"as:x", mustHex("BB53B962A31661C08FB2E98CA8DE27EB")}, nil, `no KEK for label "as:x"`},
		{"16 bytes with label", KeyEnvelope{"000013", mustHex("BB53B962A31661C08FB2E98CA8DE27EB")}, nil, "must be 24 bytes, got 16"},
		{"8 bytes (IV)", KeyEnvelope{"000013", mustHex("A6A6A6A6A6A6A6A6")}, nil, "must be 24 bytes, got 8"},
		{"25 bytes", KeyEnvelope{"000013", mustHex("93C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B07900")}, nil, "must be 24 bytes, got 25"},
		{"corrupt", KeyEnvelope{"000013", mustHex("92C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B079")}, nil, "integrity"},
		{"plaintext 15 bytes", KeyEnvelope{"", mustHex("BB53B962A31661C08FB2E98CA8DE27")}, nil, "must be 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.Open(&tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got[:], tc.want) {
				t.Fatalf("got %X, %v", got[:], err)
			}
		})
	}
	var nilStore *KEKStore
	if _, err := nilStore.Open(&KeyEnvelope{KEKLabel: "000013", AESKey: make(HEXBytes, 24)}); err == nil {
		t.Fatal("nil store opened a wrapped key")
	}
	env, err := store.Seal("000013", AES128Key(nwkSKey))
	if err != nil || env.AESKey.String() != "93C9C318B1B016268D1FFC71A0496BA394BC56A8B9A0B079" {
		t.Fatalf("Seal = %v, %v", env, err)
	}
}

func TestParseKEKFile(t *testing.T) {
	good := "keks:\n  - label: \"000013\"\n    key: \"000102030405060708090A0B0C0D0E0F\"\n  - label: \"as:conduit-1.example.com\"\n    key: \"000102030405060708090a0b0c0d0e0f\"\n"
	s, err := ParseKEKFile("keks.yml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Labels(), ","); got != "000013,as:conduit-1.example.com" {
		t.Fatalf("labels %s", got)
	}
	secret := "00112233445566778899AABBCCDDEE"
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", "keks: []\nkey: x\n", "keks.yml:2: key: unknown key"},
		{"unknown item key", "keks:\n  - label: a\n    kee: " + secret + "FF\n", "keks.yml:3: keks[0].kee: unknown key"},
		{"short key not echoed", "keks:\n  - label: a\n    key: " + secret + "\n", "keks.yml:3: keks[0].key: must be exactly 32 hex digits"},
		{"duplicate label", "keks:\n  - label: a\n    key: " + secret + "FF\n  - label: a\n    key: " + secret + "FF\n", "keks.yml:4: keks[1].label: duplicate label \"a\""},
		{"empty label", "keks:\n  - label: ''\n    key: " + secret + "FF\n", "keks.yml:2: keks[0].label: must not be empty"},
		{"empty file", "", "keks.yml: empty file"},
		{"second document", "keks: []\n---\nkeks: []\n", "second YAML document"},
		{"duplicate key", "keks: []\nkeks: []\n", "keks.yml:2: keks: given twice (first on line 1)"},
		{"tab indentation", "keks:\n\t- label: a\n", "keks.yml:2: tabs are not allowed for indentation; use spaces"},
		{"not a list", "keks: a\n", "keks.yml:1: keks: must be a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKEKFile("keks.yml", []byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the key: %v", err)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("not a *config.Error: %T", err)
			}
		})
	}
}

func FuzzKeyEnvelope(f *testing.F) {
	f.Add("000013", []byte{0x93, 0xC9, 0xC3, 0x18, 0xB1, 0xB0, 0x16, 0x26, 0x8D, 0x1F, 0xFC, 0x71, 0xA0, 0x49, 0x6B, 0xA3, 0x94, 0xBC, 0x56, 0xA8, 0xB9, 0xA0, 0xB0, 0x79})
	f.Add("", []byte{0xBB, 0x53, 0xB9, 0x62, 0xA3, 0x16, 0x61, 0xC0, 0x8F, 0xB2, 0xE9, 0x8C, 0xA8, 0xDE, 0x27, 0xEB})
	f.Add("000013", []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6})
	f.Add("unknown", []byte{1, 2, 3})
	f.Add("000013", []byte{})
	store, err := NewKEKStore(map[string][]byte{"000013": make([]byte, 16)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, label string, key []byte) {
		// Through JSON, as envelopes arrive.
		b, _ := json.Marshal(KeyEnvelope{KEKLabel: label, AESKey: key})
		var env KeyEnvelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := store.Open(&env); err == nil && label != "" && label != "000013" {
			t.Fatal("unknown label opened")
		}
		if out, err := Unwrap(make([]byte, 16), key); err == nil && len(out) != len(key)-8 {
			t.Fatalf("unwrap length %d from %d", len(out), len(key))
		}
	})
}
