package config

import (
	"strings"
	"testing"
	"time"
)

func TestStatusReportSection(t *testing.T) {
	cfg, err := Parse("app-connect.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StatusReport.Enabled || cfg.StatusReport.Interval != time.Minute || !cfg.StatusReport.Carries("ff-ff-ff-ff-ff-ff-ff-ff", "default") {
		t.Fatalf("defaults: %+v", cfg.StatusReport)
	}
	cfg, err = Parse("app-connect.yml", []byte("status_report:\n  enabled: true\n  interval: 30s\n  applications: [default, 16EA76F6AB663D80]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.StatusReport
	if !s.Enabled || s.Interval != 30*time.Second || !s.Carries("16-ea-76-f6-ab-66-3d-80", "appnet") || s.Carries("16-ea-76-f6-ab-66-3d-81", "appnet") {
		t.Fatalf("parsed: %+v", s)
	}
	for yml, key := range map[string]string{
		"status_report:\n  interval: 100ms\n":                   "status_report.interval",
		"status_report:\n  enabled: true\n  applications: []\n": "status_report.applications",
		"status_report:\n  applications: [nope]\n":              "status_report.applications",
		"status_report:\n  enable: true\n":                      "status_report.enable",
	} {
		_, err := Parse("app-connect.yml", []byte(yml))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v does not name %s", yml, err, key)
		}
	}
}
