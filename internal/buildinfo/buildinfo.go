// Package buildinfo names the build a binary came from.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Unstamped is the version of a binary built without the Makefile's
// -ldflags "-X main.version=…" and without VCS information.
const Unstamped = "dev"

// Version returns stamped, the version set with -X at link time, unless it is
// empty or Unstamped; then the module version go install recorded, else the
// VCS revision go build recorded from the checkout (12 hex digits, "-dirty"
// when the tree had changes), else Unstamped.
func Version(stamped string) string {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(stamped, bi, ok)
}

func fromBuildInfo(stamped string, bi *debug.BuildInfo, ok bool) string {
	if stamped != "" && stamped != Unstamped {
		return stamped
	}
	if !ok || bi == nil {
		return Unstamped
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return Unstamped
	}
	rev = rev[:min(12, len(rev))]
	if dirty {
		rev += "-dirty"
	}
	return strings.ToLower(rev)
}
