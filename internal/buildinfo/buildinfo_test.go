package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	const rev = "0AAA440C1D2E3F405162738495A6B7C8D9E0F1A2"
	for _, tc := range []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"stamped by the Makefile wins", "v1.2.0-3-gabcdef", vcs(rev, "false"), true, "v1.2.0-3-gabcdef"},
		{"unstamped: VCS revision", Unstamped, vcs(rev, "false"), true, "0aaa440c1d2e"},
		{"empty stamp: VCS revision", "", vcs(rev, "false"), true, "0aaa440c1d2e"},
		{"modified tree", Unstamped, vcs(rev, "true"), true, "0aaa440c1d2e-dirty"},
		{"go install of a module version", Unstamped, &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, true, "v1.3.0"},
		{"no VCS information", Unstamped, vcs("", ""), true, Unstamped},
		{"no build information", Unstamped, nil, false, Unstamped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.stamped, tc.bi, tc.ok); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
