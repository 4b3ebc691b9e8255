package main

import "github.com/lorawan-gateway/app-connect/internal/buildinfo"

// A build without the Makefile's -X main.version (go build, go install)
// reports the VCS revision it was built from instead of "dev".
func init() { version = buildinfo.Version(version) }
