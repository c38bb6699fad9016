package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// TestVersionFromBuildInfo: a binary built in a checkout without linker
// flags says its module version and revision, from Go's build information,
// rather than an empty version and "unknown".
func TestVersionFromBuildInfo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if testutil.InCI() {
			t.Fatal("git not found; CI installs it")
		}
		t.Skip("git not found: the build cannot read the checkout")
	}
	bin := filepath.Join(t.TempDir(), "ebpf-metrics")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`version v0\.0\.0-\d{14}-[0-9a-f]{12}(\+dirty)? \(branch: [^,]*, revision: [0-9a-f]{40}(-modified)?\)`)
	if !want.Match(out) {
		t.Fatalf("--version:\n%s\nwant the module's pseudo-version and the commit", out)
	}
}
