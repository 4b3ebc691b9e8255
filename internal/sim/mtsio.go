package sim

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteMtsIO writes the mts-io identity files a Conduit exposes under
// /sys/devices/platform/mts-io: dir/uuid (32 uppercase hex digits and a newline) and
// dir/device-id (the serial and a newline). uuid may be given dashed or in any case.
func WriteMtsIO(dir, uuid, deviceID string) error {
	raw := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(uuid), "-", ""))
	if b, err := hex.DecodeString(raw); err != nil || len(b) != 16 {
		return fmt.Errorf("sim: mts-io: uuid %q is not 32 hex digits", uuid)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sim: mts-io: %w", err)
	}
	for name, content := range map[string]string{"uuid": raw, "device-id": deviceID} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o644); err != nil {
			return fmt.Errorf("sim: mts-io: %w", err)
		}
	}
	return nil
}
