package claimcli

import "testing"

// --dev-eui and --join-eui are read by config.NormalizeEUI, the one EUI normaliser.
func TestStrictEUIUsesTheOneNormaliser(t *testing.T) {
	for _, in := range []string{"0004A30B001C0530", "00-04-a3-0b-00-1c-05-30", "00:04:A3:0B:00:1C:05:30"} {
		if e, err := strictEUI(in); err != nil || e.String() != "0004A30B001C0530" {
			t.Errorf("strictEUI(%q) = %v, %v", in, e, err)
		}
	}
	if _, err := strictEUI("0004A30B001C053"); err == nil || err.Error() != `"0004A30B001C053" is not an EUI-64 (want 16 hex digits)` {
		t.Errorf("15 digits: %v", err)
	}
}
