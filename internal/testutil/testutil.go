// Package testutil holds what the real-kernel tests of every package share:
// capabilities, kernel feature probes, bpftool as an oracle.
package testutil

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
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

// Bpftool lists the objects of kind with `bpftool -j <kind> show`, an oracle
// independent of this code base. Without bpftool it skips, or fails in CI.
// A failure is retried for two seconds: bpftool fails while another
// process holds a link that the kernel lists but lets no one open yet.
func Bpftool(tb testing.TB, kind bpftool.Kind) map[uint32]bpftool.Object {
	tb.Helper()
	if _, err := bpftool.Path(); err != nil {
		if InCI() {
			tb.Fatal("bpftool not found; CI installs Debian's bpftool package")
		}
		tb.Skip(err)
	}
	for try := 0; ; try++ {
		objs, err := bpftool.Show(kind)
		if err == nil {
			return objs
		}
		if try == 20 {
			tb.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BpftoolTotals returns the number of objects of kind and the sum of their
// memlock, as bpftool reports them.
func BpftoolTotals(tb testing.TB, kind bpftool.Kind) (count int, memlock uint64) {
	tb.Helper()
	objs := Bpftool(tb, kind)
	for _, o := range objs {
		memlock += o.BytesMemlock
	}
	return len(objs), memlock
}
