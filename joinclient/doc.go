// Package joinclient forwards LoRaWAN join traffic from the gateway's embedded
// network server to remote Join Servers using the LoRaWAN Backend Interfaces
// (TS002 1.0 and 1.1).
//
// It owns the BI wire types and messages (types.go, messages.go), typed errors
// carrying the BI result code (errors.go), The Things Stack interop repository
// loader (config.go), the JoinEUI-prefix router (router.go), one HTTP client per
// Join Server (client.go) inside its guard (guard.go), the KEK store and RFC
// 3394 key wrap (kek.go) and the loopback proxy the network server talks to
// (proxy.go); and device claiming:
// the TR005 QR code parser (tr005.go), the claiming repository (claimconfig.go)
// and the TTJS v2 claim client with its CSV reader (claim.go).
//
// The proxy parses the network server's join-request and rejoin-request frames
// with the root github.com/brocaar/lorawan package (lorawan.PHYPayload; the MIC
// is not checked, the proxy has no key), and NetID and DevAddr are lorawan's
// types with the BI text form. EUI64, HEXBytes and AES128Key stay the
// package's own: BI writes uppercase hex and a key never prints itself. The
// lorawan backend packages (which pull Redis, logrus and OpenTelemetry) are
// never imported outside tests.
//
// Each Join Server has its own bound on requests in flight and a circuit
// breaker (guard.go); Proxy.Stats exports them with the header-warning counts.
// Join attempts are recorded after the answer, from a bounded queue, through
// the caller's Recorder (internal/joins stores them in the cache and counts
// them: this package does not know the cache).
//
// It must not know about uplink forwarding, must not log keys, passwords or
// header values, and keeps no package-level mutable state: everything hangs off
// values built by the caller.
package joinclient
