package lnsbridge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Identity is the gateway's own identity from mts-io.
type Identity struct {
	UUIDRaw string // 32 uppercase hex digits, as API 1.0 uses it
	UUID    string // dashed lowercase 8-4-4-4-12, as API 1.1 and 1.1.1 use it
	Serial  string // device-id, template key gwserial
}

// ReadIdentity reads uuid and device-id from the mts-io sysfs directory root.
// The UUID must be 32 hex digits once whitespace is trimmed (the original cut
// the last character blindly).
func ReadIdentity(root string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(root, "uuid"))
	if err != nil {
		return id, fmt.Errorf("lnsbridge: gateway uuid: %w", err)
	}
	raw := strings.ToUpper(strings.TrimSpace(string(b)))
	raw = strings.ReplaceAll(raw, "-", "")
	if len(raw) != 32 || strings.Trim(raw, "0123456789ABCDEF") != "" {
		return id, fmt.Errorf("lnsbridge: gateway uuid in %s: %q is not 32 hex digits", filepath.Join(root, "uuid"), strings.TrimSpace(string(b)))
	}
	id.UUIDRaw = raw
	l := strings.ToLower(raw)
	id.UUID = l[0:8] + "-" + l[8:12] + "-" + l[12:16] + "-" + l[16:20] + "-" + l[20:32]
	if s, err := os.ReadFile(filepath.Join(root, "device-id")); err == nil {
		id.Serial = strings.TrimSpace(string(s))
	} else if !os.IsNotExist(err) {
		return id, fmt.Errorf("lnsbridge: gateway device-id: %w", err)
	}
	return id, nil
}
