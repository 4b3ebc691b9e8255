package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/joinclient"
	"gopkg.in/yaml.v3"
)

// TestMonitoringUsesRealMetrics: every app-connect metric (appconnect_*, not
// the fleet exporter's appconnect_fleet_*) that the Grafana dashboards and the
// alert rules in monitoring/ query is one /metrics exposes. The names are read
// from writeMetrics' own output, so renaming a metric fails here until the
// dashboards and rules follow.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	st := admin.NewState("test", nil)
	// Every optional section on, so its families are written.
	st.Attach(admin.Sources{JoinProxy: func() *joinclient.ProxyStats { return &joinclient.ProxyStats{} }})
	var buf bytes.Buffer
	if err := admin.WriteMetrics(&buf, st.Status(), nil); err != nil {
		t.Fatal(err)
	}
	exposed := exposedNames(buf.Bytes())
	if len(exposed) < 10 {
		t.Fatalf("only %d metric names read from /metrics", len(exposed))
	}
	used := monitoringQueries(t, "../../monitoring")
	n := 0
	for where, exprs := range used {
		for _, expr := range exprs {
			for _, name := range metricName.FindAllString(expr, -1) {
				if strings.HasPrefix(name, "appconnect_fleet_") {
					continue
				}
				n++
				if !exposed[name] {
					t.Errorf("%s queries %s, which app-connect's /metrics does not expose (expr %s)", where, name, expr)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d app-connect metric references found in monitoring/", n)
	}
}

var metricName = regexp.MustCompile(`\bappconnect_[a-z0-9_]+\b`)

// exposedNames are the metric names of an exposition, from its TYPE lines
// (histograms add _bucket, _sum and _count).
func exposedNames(expo []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(expo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				out[f[2]+"_bucket"], out[f[2]+"_sum"], out[f[2]+"_count"] = true, true, true
			}
		}
	}
	return out
}

// monitoringQueries reads every PromQL expression of the dashboards and
// alert rules under dir, keyed by where it is.
func monitoringQueries(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range []string{"grafana/app-connect-gateway.json", "grafana/app-connect-fleet.json"} {
		raw, err := os.ReadFile(dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out[f+" panel "+p.Title] = append(out[f+" panel "+p.Title], tg.Expr)
			}
		}
	}
	raw, err := os.ReadFile(dir + "/prometheus/app-connect-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = append(out["alert "+r.Alert], r.Expr)
		}
	}
	return out
}
