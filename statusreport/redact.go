package statusreport

import (
	"regexp"
	"strings"
)

// urlPassword is the password of a URL's user information.
var urlPassword = regexp.MustCompile(`(://[^/\s:@]*):[^/\s@]*@`)

// sasSignature is an Azure shared access signature's sig (and the whole
// SharedAccessSignature token).
var sasSignature = regexp.MustCompile(`(?i)(SharedAccessSignature\s+\S+|sig=[^&\s"]+)`)

// RedactSecrets removes from text every secret value of four characters or
// more, URL passwords and SAS signatures: an error string can quote a URL or
// a server's answer. It is the Builder's Redact with the configured secrets.
func RedactSecrets(text string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	text = urlPassword.ReplaceAllString(text, "$1:[redacted]@")
	return sasSignature.ReplaceAllString(text, "[redacted]")
}
