// Package admin is app-connect's operator surface: the loopback admin
// endpoint (/healthz, /status, /metrics), the status document behind it, the
// start-up progress it shows from the first second (RetryStep runs a step
// until it succeeds), mPower's status.json with its one-line AppInfo, the
// client side of `app-connect status` (PrintStatus), the reading of the
// running daemon's parts (NewSources) and the opt-in status report built
// from the same state (StartStatusReports; the report itself is the
// statusreport package's).
//
// Every counter has one name, used by /status (snake_case JSON), /metrics,
// the status text and AppInfo alike; the README's tables list them.
package admin
