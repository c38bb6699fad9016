package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// stampVersion fills in what the linker flags did not set, from the build
// information Go embeds in every binary: the main module's version (a
// pseudo-version from the commit for a plain `go build` in a checkout,
// "+dirty" when it has changes; "(devel)" where there is none) and the
// commit's time. prometheus/common/version takes the revision from there
// already.
func stampVersion() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version.Version == "" {
		version.Version = bi.Main.Version
	}
	if version.BuildDate == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				version.BuildDate = s.Value
			}
		}
	}
}
