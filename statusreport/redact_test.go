package statusreport

import (
	"strings"
	"testing"
)

func TestRedactSecrets(t *testing.T) {
	secrets := []string{"mp-Passw0rd-7f3a91", "", "abc"}
	tests := []struct{ in, gone string }{
		{`Post "https://tenant:url-pw-9a8b7c6d@host/x": EOF`, "url-pw-9a8b7c6d"},
		{`connect ssl://u:pw-in-url@broker:8883: refused`, "pw-in-url"},
		{`not authorized with password mp-Passw0rd-7f3a91`, "mp-Passw0rd-7f3a91"},
		{`SharedAccessSignature sr=hub%2Fdevices%2Fgw&sig=Zm9vYmFy%3D&se=1700000000`, "Zm9vYmFy"},
	}
	for _, tc := range tests {
		got := RedactSecrets(tc.in, secrets)
		if strings.Contains(got, tc.gone) || !strings.Contains(got, "[redacted]") {
			t.Errorf("RedactSecrets(%q) = %q", tc.in, got)
		}
	}
	if got := RedactSecrets("HTTP 503 from abc.example", secrets); got != "HTTP 503 from abc.example" {
		t.Errorf("short secrets must not blank ordinary text: %q", got)
	}
}
