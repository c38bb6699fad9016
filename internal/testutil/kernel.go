package testutil

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Kernel features that tests depend on. Each is decided by asking the
// running kernel (its BTF, or creating the thing), never by its version:
// builds of one version differ by configuration (one 6.18 build creates
// arena maps, another refuses). Upstream names the release that brought
// the feature, for the message only.
var (
	// FeatureElementCounts: the kfunc bpf_map_sum_elem_count, with which
	// the map iterator counts the elements of every hash map.
	FeatureElementCounts = Feature{Name: "element counts (kfunc bpf_map_sum_elem_count)", Upstream: "6.6",
		probe: btfFunc("bpf_map_sum_elem_count")}
	// FeatureMapMemUsage: bpf_map_ops.map_mem_usage. From it on, fdinfo's
	// memlock is what the map holds now (it follows the contents of
	// non-preallocated maps); before, an estimate fixed at creation.
	FeatureMapMemUsage = Feature{Name: "map memory that follows contents (bpf_map_ops.map_mem_usage)", Upstream: "6.4",
		probe: btfMember("bpf_map_ops", "map_mem_usage")}
	// FeatureLinkIterator: BPF iterators over links (iter/bpf_link).
	FeatureLinkIterator = Feature{Name: "the link iterator (iter/bpf_link)", Upstream: "5.19",
		probe: btfStruct("bpf_iter__bpf_link")}
	// FeatureLinkAttachType: struct bpf_link.attach_type, which the link
	// iterator reads; before, only some link types carry one, in their info.
	FeatureLinkAttachType = Feature{Name: "the attach type in struct bpf_link", Upstream: "6.17",
		probe: btfMember("bpf_link", "attach_type")}
)

// Feature is something a kernel may or may not have.
type Feature struct {
	Name     string // what it is, for messages
	Upstream string // the first upstream release with it ("6.6"): a hint, never a test
	// probe asks the running kernel; why says what it answered when it
	// lacks the feature.
	probe func() (ok bool, why string, err error)
}

// MissingPrefix starts every skip for a missing kernel feature: the kernel
// matrix (test/kernels) accepts no other skip.
const MissingPrefix = "missing kernel feature: "

// MapType is the feature "the kernel creates maps of type t", probed as
// cilium/ebpf's features package does: by creating one.
func MapType(name string, t ebpf.MapType, upstream string) Feature {
	return Feature{Name: name + " maps", Upstream: upstream, probe: func() (bool, string, error) {
		err := features.HaveMapType(t)
		var errno unix.Errno
		switch {
		case err == nil:
			return true, "", nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return false, "this kernel does not know the map type", nil
		case errors.As(err, &errno):
			return false, fmt.Sprintf("this kernel refuses to create them (%s)", unix.ErrnoName(errno)), nil
		}
		return false, "", err
	}}
}

// RequireFeature skips tb when the running kernel lacks f, with a message
// that names f and what the kernel answered.
func RequireFeature(tb testing.TB, f Feature) {
	tb.Helper()
	if ok, why := probe(tb, f); !ok {
		tb.Skip(missing(f, why))
	}
}

// HasFeature is RequireFeature for a test that checks the kernel's
// behaviour either way: it returns false, and logs it, where RequireFeature
// would skip.
func HasFeature(tb testing.TB, f Feature) bool {
	tb.Helper()
	ok, why := probe(tb, f)
	if !ok {
		tb.Logf("%s; checking the behaviour without it", missing(f, why))
	}
	return ok
}

func missing(f Feature, why string) string {
	msg := MissingPrefix + f.Name + ": " + why
	if f.Upstream != "" {
		msg += " (upstream Linux " + f.Upstream + " and later have it; running " + KernelRelease() + ")"
	}
	return msg
}

type probeResult struct {
	ok  bool
	why string
}

// probes caches each feature's answer for the test binary's life: the
// kernel does not change under it.
var probes sync.Map // Feature.Name → probeResult

func probe(tb testing.TB, f Feature) (bool, string) {
	tb.Helper()
	if r, ok := probes.Load(f.Name); ok {
		return r.(probeResult).ok, r.(probeResult).why
	}
	ok, why, err := f.probe()
	if err != nil {
		tb.Fatalf("probing %s: %v", f.Name, err)
	}
	probes.Store(f.Name, probeResult{ok, why})
	return ok, why
}

var kernelBTF = sync.OnceValues(btf.LoadKernelSpec)

func withBTF(has func(*btf.Spec) bool, why string) func() (bool, string, error) {
	return func() (bool, string, error) {
		spec, err := kernelBTF()
		if err != nil {
			return false, "", fmt.Errorf("loading the kernel's BTF: %w", err)
		}
		if has(spec) {
			return true, "", nil
		}
		return false, why, nil
	}
}

func btfFunc(name string) func() (bool, string, error) {
	return withBTF(func(spec *btf.Spec) bool {
		var fn *btf.Func
		return spec.TypeByName(name, &fn) == nil
	}, "the kernel's BTF has no function "+name)
}

func btfStruct(name string) func() (bool, string, error) {
	return withBTF(func(spec *btf.Spec) bool {
		var s *btf.Struct
		return spec.TypeByName(name, &s) == nil
	}, "the kernel's BTF has no struct "+name)
}

func btfMember(structName, member string) func() (bool, string, error) {
	return withBTF(func(spec *btf.Spec) bool {
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
	}, "the kernel's struct "+structName+" has no member "+member)
}

// KernelRelease is the running kernel's release, as uname -r prints it.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Emulated reports whether the tests run on an emulated CPU (the kernel
// matrix's QEMU guests, TCG: tens of times slower than the host), where
// bounds on timing and on the Go runtime's own allocations, calibrated on
// real CPUs, do not hold. test/kernels sets EBPF_METRICS_EMULATED=1.
func Emulated() bool { return os.Getenv("EBPF_METRICS_EMULATED") != "" }
