// Package jstest starts real Join Server peers for tests: brocaar/lorawan's
// backend/joinserver handler, a strict BI 1.1 Join Server wrapping it, an
// in-memory PKI for mutual TLS, and a TTJS v2 claim server. The simulated
// devices are internal/loradev's (aliased here as Device and SessionKeys).
//
// It is test support only: it imports testing and httptest, so neither the
// product nor the simulator imports it (a test checks cmd/conduit-sim).
package jstest

import "github.com/lorawan-gateway/app-connect/internal/loradev"

// Device is a simulated end device with its root keys (loradev.Device).
type Device = loradev.Device

// SessionKeys are the keys a device derives from a join-accept (loradev.SessionKeys).
type SessionKeys = loradev.SessionKeys
