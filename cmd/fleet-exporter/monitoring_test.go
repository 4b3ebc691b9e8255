package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/internal/sim"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

const monitoringDir = "../../monitoring"

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestMonitoringDashboards: both Grafana dashboards are importable (a
// Prometheus datasource input, a uid, panels with unique ids, each target a
// query on that datasource) and every fleet metric they query is one the
// exporter serves (names read from its own /metrics output).
func TestMonitoringDashboards(t *testing.T) {
	exposed := exporterNames(t)
	uids := map[string]bool{}
	refs := 0
	for _, f := range []string{"grafana/app-connect-gateway.json", "grafana/app-connect-fleet.json"} {
		raw, err := os.ReadFile(monitoringDir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: not JSON: %v", f, err)
		}
		if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
			t.Errorf("%s: want one Prometheus datasource input DS_PROMETHEUS, got %+v", f, d.Inputs)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" || d.SchemaVersion < 30 || len(d.Panels) < 8 {
			t.Errorf("%s: uid %q title %q schemaVersion %d, %d panels", f, d.UID, d.Title, d.SchemaVersion, len(d.Panels))
		}
		uids[d.UID] = true
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] || p.Title == "" || len(p.Targets) == 0 || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("%s: panel %d %q: duplicate id, no title, no query or not on ${DS_PROMETHEUS}", f, p.ID, p.Title)
			}
			ids[p.ID] = true
			for _, tg := range p.Targets {
				if tg.RefID == "" || strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q: a target without refId or expr", f, p.Title)
				}
				refs += checkFleetNames(t, f+" panel "+p.Title, tg.Expr, exposed)
			}
		}
	}
	if refs < 15 {
		t.Fatalf("only %d fleet metric references in the dashboards", refs)
	}
}

// TestMonitoringRules: the alert rules are valid (promtool check rules, and
// promtool test rules on their unit tests, when promtool is installed: under
// CI it must be), each with a severity and a summary, and every fleet metric
// they use is served by the exporter.
func TestMonitoringRules(t *testing.T) {
	raw, err := os.ReadFile(monitoringDir + "/prometheus/app-connect-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	exposed := exporterNames(t)
	seen := map[string]bool{}
	n, refs := 0, 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || seen[r.Alert] || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("group %s: rule %q: needs a unique alert name, an expr, a severity label and a summary", g.Name, r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("rule %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			seen[r.Alert] = true
			refs += checkFleetNames(t, "alert "+r.Alert, r.Expr, exposed)
		}
	}
	if n < 15 || refs < 10 {
		t.Fatalf("%d rules, %d fleet metric references", n, refs)
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		testpeer.Missing(t, "promtool")
		return
	}
	for _, args := range [][]string{{"check", "rules", "app-connect-alerts.yml"}, {"test", "rules", "app-connect-alerts.test.yml"}} {
		cmd := exec.Command(p, args...)
		cmd.Dir = monitoringDir + "/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var fleetMetric = regexp.MustCompile(`\bappconnect_fleet_[a-z0-9_]+\b`)

// checkFleetNames reports the fleet metrics of expr the exporter does not
// serve; it returns how many it checked.
func checkFleetNames(t *testing.T, where, expr string, exposed map[string]bool) int {
	t.Helper()
	names := fleetMetric.FindAllString(expr, -1)
	for _, name := range names {
		if !exposed[name] {
			t.Errorf("%s queries %s, which the fleet exporter does not serve (expr %s)", where, name, expr)
		}
	}
	return len(names)
}

// exporterNames are the metric names of the exporter's /metrics, read from
// its TYPE lines (with the broker subscription's gauge).
func exporterNames(t *testing.T) map[string]bool {
	t.Helper()
	f := &Fleet{MaxGateways: 10, MaxApps: 16, Stale: time.Minute, Expire: time.Hour}
	_, body := sim.GatewayStatus(1, time.Now(), 1)
	if err := f.Accept("mqtt", "", body); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := httptest.NewRecorder()
	handler(f, false, &subscription{Log: log}, log).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]bool{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) == 4 && fs[0] == "#" && fs[1] == "TYPE" {
			out[fs[2]] = true
		}
	}
	if !out["appconnect_fleet_mqtt_connected"] || !out["appconnect_fleet_gateway_last_seen_timestamp_seconds"] {
		t.Fatalf("exporter names incomplete: %v", out)
	}
	return out
}
