// Package joinclient forwards LoRaWAN join traffic from the gateway's embedded
// network server to remote Join Servers using the LoRaWAN Backend Interfaces
// (TS002 1.0 and 1.1).
//
// It owns the BI wire types and messages (types.go, messages.go), typed errors
// carrying the BI result code (errors.go), The Things Stack interop repository
// loader (config.go), the JoinEUI-prefix router (router.go), one HTTP client per
// Join Server (client.go), the KEK store and RFC 3394 key wrap (kek.go) and the
// loopback proxy the network server talks to (proxy.go); and device claiming:
// the TR005 QR code parser (tr005.go), the claiming repository (claimconfig.go)
// and the TTJS v2 claim client with its CSV reader (claim.go).
//
// It must not know about uplink forwarding, must not log keys, passwords or
// header values, and keeps no package-level mutable state: everything hangs off
// values built by the caller. Production code imports only the root
// github.com/brocaar/lorawan package, never its backend packages.
package joinclient
