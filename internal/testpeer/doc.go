// Package testpeer starts the real peers app-connect's tests talk to (Debian's
// Mosquitto, ...) on free loopback ports and stops them when the test ends.
// Under CI=true a missing peer fails the test; elsewhere it skips it.
package testpeer
