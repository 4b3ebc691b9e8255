package admin

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// The README's tables name every series /metrics writes, and no other
// appconnect_ series: one name per counter, written down once.
func TestREADMENamesEveryMetric(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	srv := httptest.NewServer(Handler(hostileState(t), "/proc", discard))
	defer srv.Close()
	_, _, body := testpeer.HTTPGet(t, srv.URL+"/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for name := range fams {
		if !strings.Contains(readme, "`"+name) {
			t.Errorf("README does not name %s", name)
		}
	}
	for _, m := range regexp.MustCompile("`(appconnect_[a-z_]+)").FindAllStringSubmatch(readme, -1) {
		if _, ok := fams[m[1]]; !ok && !strings.HasPrefix(m[1], "appconnect_fleet_") {
			t.Errorf("README names %s, which /metrics does not write", m[1])
		}
	}
}
