// Package statusreport owns the gateway's status report: the one JSON object
// app-connect sends to its cloud every status_report.interval (opt-in), its
// strict decoder (the cloud-side fleet exporter parses it from untrusted
// peers), the builder that fills it from the running program's counters and
// the process, and the sender that publishes it out of band on each chosen
// application through a small Publisher interface.
//
// It holds no secret, key or session data by construction: the report has no
// field that could carry one, and the one free-text field (an application's
// last error) goes through the caller's redaction (RedactSecrets with the
// configured secrets) and is truncated.
//
// It imports no project package and no SQLite, so the exporter
// (cmd/fleet-exporter) links it without the gateway's dependencies.
package statusreport
