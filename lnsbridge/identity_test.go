package lnsbridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadIdentity(t *testing.T) {
	tests := []struct {
		name, uuid, serial string
		wantErr            string
		raw, dashed        string
	}{
		{"as mts-io writes it", "029998E06156CDD44523264B523115C1\n", "19186550\n", "", "029998E06156CDD44523264B523115C1", "029998e0-6156-cdd4-4523-264b523115c1"},
		{"lowercase with spaces", "  029998e06156cdd44523264b523115c1 \n", "", "", "029998E06156CDD44523264B523115C1", "029998e0-6156-cdd4-4523-264b523115c1"},
		{"too short", "029998E06156CDD44523264B523115C\n", "x", "not 32 hex digits", "", ""},
		{"not hex", "029998E06156CDD44523264B523115CZ\n", "x", "not 32 hex digits", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "uuid"), []byte(tc.uuid), 0o644)
			if tc.serial != "" {
				os.WriteFile(filepath.Join(dir, "device-id"), []byte(tc.serial), 0o644)
			}
			id, err := ReadIdentity(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil || id.UUIDRaw != tc.raw || id.UUID != tc.dashed || id.Serial != strings.TrimSpace(tc.serial) {
				t.Fatalf("got %+v, %v", id, err)
			}
		})
	}
	if _, err := ReadIdentity(t.TempDir()); err == nil || !strings.Contains(err.Error(), "uuid") {
		t.Fatalf("missing uuid: %v", err)
	}
}
