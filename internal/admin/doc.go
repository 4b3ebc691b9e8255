// Package admin is app-connect's operator surface: the loopback admin
// endpoint (/healthz, /status, /metrics), the status document behind it, the
// start-up progress it shows from the first second, mPower's status.json
// with its one-line AppInfo, and the client side of `app-connect status`.
//
// Every counter has one name, used by /status (snake_case JSON), /metrics,
// the status text and AppInfo alike; the README's tables list them.
package admin
