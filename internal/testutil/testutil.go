// Package testutil holds what the real-kernel tests of every package share.
package testutil

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI, where nothing that needs the
// kernel may pass by skipping.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireBPF skips a test that needs CAP_SYS_ADMIN and CAP_BPF when they are
// missing, and fails it instead in CI.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		tb.Fatalf("capget: %v", err)
	}
	for _, c := range []int{unix.CAP_SYS_ADMIN, unix.CAP_BPF} {
		if data[c/32].Effective&(1<<(uint(c)%32)) == 0 {
			if InCI() {
				tb.Fatalf("CI=%s: this test needs capability %d and must not be skipped", os.Getenv("CI"), c)
			}
			tb.Skipf("needs capability %d (run as root)", c)
		}
	}
}

// BpftoolObject is what the tests compare against: bpftool's JSON view of
// one map, program or link.
type BpftoolObject struct {
	ID           uint32 `json:"id"`
	Type         string `json:"type"`
	Name         string `json:"name"`
	BytesMemlock uint64 `json:"bytes_memlock"`
	ProgID       uint32 `json:"prog_id"`
	RunTimeNs    uint64 `json:"run_time_ns"`
	RunCnt       uint64 `json:"run_cnt"`
}

// Bpftool lists the objects of kind ("map", "prog" or "link") with
// `bpftool -j <kind> show`, an oracle independent of this code base.
func Bpftool(tb testing.TB, kind string) []BpftoolObject {
	tb.Helper()
	path, err := exec.LookPath("bpftool")
	if err != nil {
		if InCI() {
			tb.Fatal("bpftool not found; CI installs Debian's bpftool package")
		}
		tb.Skip("bpftool not found")
	}
	out, err := exec.Command(path, "-j", kind, "show").Output()
	if err != nil {
		tb.Fatalf("bpftool %s show: %v", kind, err)
	}
	var objs []BpftoolObject
	if err := json.Unmarshal(out, &objs); err != nil {
		tb.Fatalf("bpftool %s show: %v", kind, err)
	}
	return objs
}

// BpftoolTotals returns the number of objects of kind and the sum of their
// memlock, as bpftool reports them.
func BpftoolTotals(tb testing.TB, kind string) (count int, memlock uint64) {
	tb.Helper()
	objs := Bpftool(tb, kind)
	for _, o := range objs {
		memlock += o.BytesMemlock
	}
	return len(objs), memlock
}
