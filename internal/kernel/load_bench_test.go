package kernel

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// BenchmarkLoadIterators loads the three object iterators against a kernel
// BTF parsed beforehand, as the agent does at start: the time is CO-RE
// relocation, the verifier and attaching. verified-insns is what the
// verifier walked for the three programs (bpf_prog_info.verified_insns,
// Linux 5.16 and later), which does not depend on the machine's speed.
func BenchmarkLoadIterators(b *testing.B) {
	testutil.RequireBPF(b)
	cache := btf.NewCache()
	if _, err := cache.Kernel(); err != nil {
		b.Fatal(err)
	}
	var insns [NumKinds]uint32
	for b.Loop() {
		it, errs, err := LoadIteratorsWith(&countingGate{}, "/proc", cache)
		if err != nil {
			b.Fatal(err)
		}
		for k, ik := range it.kinds {
			if ik == nil {
				b.Fatalf("%s: %v", Kind(k), errs[k])
			}
			info, err := ik.prog.Info()
			if err != nil {
				b.Fatal(err)
			}
			insns[k], _ = info.VerifiedInstructions()
		}
		it.Close()
	}
	for k, n := range insns {
		b.ReportMetric(float64(n), Kind(k).String()+"-verified-insns")
	}
}
