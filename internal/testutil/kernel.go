package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Kernel features that tests depend on, each tagged with the first upstream
// Linux version that has it and probed in the running kernel's BTF. A test
// that needs one skips on an older kernel that lacks it, naming the version
// (the kernel matrix of test/kernels lists those skips), and fails on a
// kernel as recent as the version that lacks it: there the probe, or the
// kernel, is wrong. A kernel older than the version that has the feature
// anyway (a distribution backport) runs the test.
var (
	// FeatureElementCounts: the kfunc bpf_map_sum_elem_count, with which
	// the map iterator counts the elements of every hash map.
	FeatureElementCounts = Feature{Version: "6.6", What: "element counts (kfunc bpf_map_sum_elem_count)",
		probe: btfFunc("bpf_map_sum_elem_count")}
	// FeatureMapMemUsage: bpf_map_ops.map_mem_usage. From it on, fdinfo's
	// memlock is what the map holds now (it follows the contents of
	// non-preallocated maps); before, an estimate fixed at creation.
	FeatureMapMemUsage = Feature{Version: "6.4", What: "map memory that follows contents (bpf_map_ops.map_mem_usage)",
		probe: btfMember("bpf_map_ops", "map_mem_usage")}
	// FeatureLinkIterator: BPF iterators over links (iter/bpf_link).
	FeatureLinkIterator = Feature{Version: "5.19", What: "the link iterator (iter/bpf_link)",
		probe: btfStruct("bpf_iter__bpf_link")}
	// FeatureLinkAttachType: struct bpf_link.attach_type, which the link
	// iterator reads; before, only some link types carry one, in their info.
	FeatureLinkAttachType = Feature{Version: "6.17", What: "the attach type in struct bpf_link",
		probe: btfMember("bpf_link", "attach_type")}
)

// Feature is something the kernel gained in a known version.
type Feature struct {
	Version string // first upstream version with it: "6.6"
	What    string // what it is, for messages
	probe   func(*btf.Spec) bool
}

// RequireKernel skips tb, naming version and what, when the running kernel
// is older than version ("6.6"). Every skip for a kernel feature says
// "needs Linux <major>.<minor> for <what>": the kernel matrix
// (test/kernels) accepts no other skip. For a feature that a probe can see, prefer
// RequireFeature, which also fails when a recent kernel lacks it.
func RequireKernel(tb testing.TB, version, what string) {
	tb.Helper()
	if KernelOlderThan(tb, version) {
		tb.Skipf("needs Linux %s for %s (running %s)", version, what, KernelRelease())
	}
}

// RequireFeature runs tb if the kernel has f, skips it naming f.Version on
// an older kernel without it, and fails it on a kernel that should have it.
func RequireFeature(tb testing.TB, f Feature) {
	tb.Helper()
	if !probe(tb, f) {
		tb.Skipf("needs Linux %s for %s (running %s)", f.Version, f.What, KernelRelease())
	}
}

// HasFeature is RequireFeature for a test that checks the kernel's
// behaviour either way: it returns false, and logs it, where RequireFeature
// would skip.
func HasFeature(tb testing.TB, f Feature) bool {
	tb.Helper()
	if probe(tb, f) {
		return true
	}
	tb.Logf("Linux %s lacks %s (Linux %s has it): checking the behaviour without it", KernelRelease(), f.What, f.Version)
	return false
}

func probe(tb testing.TB, f Feature) bool {
	tb.Helper()
	spec, err := kernelBTF()
	if err != nil {
		tb.Fatalf("probing %s: %v", f.What, err)
	}
	if f.probe(spec) {
		return true
	}
	if !KernelOlderThan(tb, f.Version) {
		tb.Fatalf("Linux %s lacks %s, which Linux %s and later have", KernelRelease(), f.What, f.Version)
	}
	return false
}

var kernelBTF = sync.OnceValues(btf.LoadKernelSpec)

func btfFunc(name string) func(*btf.Spec) bool {
	return func(spec *btf.Spec) bool {
		var fn *btf.Func
		return spec.TypeByName(name, &fn) == nil
	}
}

func btfStruct(name string) func(*btf.Spec) bool {
	return func(spec *btf.Spec) bool {
		var s *btf.Struct
		return spec.TypeByName(name, &s) == nil
	}
}

func btfMember(structName, member string) func(*btf.Spec) bool {
	return func(spec *btf.Spec) bool {
		var s *btf.Struct
		if spec.TypeByName(structName, &s) != nil {
			return false
		}
		for _, m := range s.Members {
			if m.Name == member {
				return true
			}
		}
		return false
	}
}

// KernelRelease is the running kernel's release, as uname -r prints it.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// KernelOlderThan reports whether the running kernel's major.minor is below
// version ("6.6").
func KernelOlderThan(tb testing.TB, version string) bool {
	tb.Helper()
	want, err := parseVersion(version)
	if err != nil {
		tb.Fatal(err)
	}
	have, err := parseVersion(KernelRelease())
	if err != nil {
		tb.Fatal(err)
	}
	return have[0] < want[0] || have[0] == want[0] && have[1] < want[1]
}

// parseVersion reads major.minor from "6.1", "6.1.0-56-cloud-amd64" or
// "6.12.117+deb12-cloud-amd64".
func parseVersion(s string) ([2]int, error) {
	var v [2]int
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("kernel version %q: want major.minor", s)
	}
	for i := range v {
		digits := parts[i]
		if end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
			digits = digits[:end]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return v, fmt.Errorf("kernel version %q: %w", s, err)
		}
		v[i] = n
	}
	return v, nil
}

// Emulated reports whether the tests run on an emulated CPU (the kernel
// matrix's QEMU guests, TCG: tens of times slower than the host), where
// bounds on timing and on the Go runtime's own allocations, calibrated on
// real CPUs, do not hold. test/kernels sets EBPF_METRICS_EMULATED=1.
func Emulated() bool { return os.Getenv("EBPF_METRICS_EMULATED") != "" }
