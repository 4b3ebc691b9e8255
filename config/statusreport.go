package config

import "time"

// StatusReport is the opt-in status report (README "Status report"): one
// JSON object with the gateway's health, sent every Interval to the chosen
// applications, out of band (never queued with uplinks, never stored).
type StatusReport struct {
	// Enabled is false by default, so a cloud written for the original sees nothing new.
	Enabled  bool          `yaml:"enabled"`
	Interval time.Duration `yaml:"interval"`
	// Applications carrying the report: "default" (the default app),
	// "all", or application EUIs.
	Applications []string `yaml:"applications"`
}

// StatusReportDefault names the default app in StatusReport.Applications;
// StatusReportAll every application.
const (
	StatusReportDefault = "default"
	StatusReportAll     = "all"
)

// DefaultStatusReport is off, every 60 s, on the default app.
func DefaultStatusReport() StatusReport {
	return StatusReport{Interval: 60 * time.Second, Applications: []string{StatusReportDefault}}
}

// Validate checks the section.
func (s StatusReport) Validate() []FieldError {
	var errs []FieldError
	if s.Interval < time.Second {
		errs = append(errs, fieldErr("status_report.interval", "must be at least 1s, got %s", s.Interval))
	}
	if s.Enabled && len(s.Applications) == 0 {
		errs = append(errs, fieldErr("status_report.applications", "must name at least one application (default, all or an EUI)"))
	}
	for _, a := range s.Applications {
		if a == StatusReportDefault || a == StatusReportAll {
			continue
		}
		if _, err := NormalizeEUI(a); err != nil {
			errs = append(errs, fieldErr("status_report.applications", "%q is not default, all or an application EUI", a))
		}
	}
	return errs
}

// Carries reports whether an application (its EUI and source, "default" or
// "appnet") carries the status report.
func (s StatusReport) Carries(eui, source string) bool {
	for _, a := range s.Applications {
		switch a {
		case StatusReportAll:
			return true
		case StatusReportDefault:
			if source == "default" {
				return true
			}
		default:
			if n, err := NormalizeEUI(a); err == nil && n == eui {
				return true
			}
		}
	}
	return false
}
