package collector

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// TestKernelFeatures: what the collector exports as active features
// (odigos_ebpf_feature_enabled) is what the running kernel has, per mode:
// the three iterators wherever the agent may use them (every kernel of the
// matrix has them; links need 5.19), element counts only with
// bpf_map_sum_elem_count (Linux 6.6) and iterators, and the fill of hash
// maps only then.
func TestKernelFeatures(t *testing.T) {
	testutil.RequireBPF(t)
	elements := testutil.HasFeature(t, testutil.FeatureElementCounts)
	links := testutil.HasFeature(t, testutil.FeatureLinkIterator)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_fill", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for k := range uint32(60) {
		if err := m.Put(k, uint64(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []string{config.ModeAuto, config.ModeIterator, config.ModeSyscall} {
		t.Run(mode, func(t *testing.T) {
			c, err := New(kernelConfig(t, mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := mustCycle(t, c)
			iter := mode != config.ModeSyscall
			var want [snapshot.NumFeatures]bool
			want[snapshot.FeatureMapIterator] = iter
			want[snapshot.FeatureProgIterator] = iter
			want[snapshot.FeatureLinkIterator] = iter && links
			want[snapshot.FeatureElementCounts] = iter && elements
			// As root, fdinfo is readable: the map iterator's figures are
			// checked against it.
			want[snapshot.FeatureMemoryFormulaCheck] = iter
			// Holders by the holders iterator, or in syscall mode from
			// procfs: found either way as root.
			want[snapshot.FeatureOwnership] = true
			for f := range snapshot.NumFeatures {
				if s.Features[f] != want[f] {
					t.Errorf("feature %s: %v, want %v on %s", f, s.Features[f], want[f], testutil.KernelRelease())
				}
			}
			if s.ElementCounts != want[snapshot.FeatureElementCounts] {
				t.Errorf("Snapshot.ElementCounts %v, want %v", s.ElementCounts, want[snapshot.FeatureElementCounts])
			}
			byIter := [kernel.NumKinds]bool{iter, iter, iter && links}
			for k := range kernel.NumKinds {
				if wantMode := map[bool]string{true: "iterator", false: "syscall"}[byIter[k]]; s.Mode[k] != wantMode {
					t.Errorf("%s read by %s, want %s", kernel.Kind(k), s.Mode[k], wantMode)
				}
			}
			ts := s.Kinds[kernel.KindMap].Types[kernel.MapTypeHash]
			switch {
			case want[snapshot.FeatureElementCounts] && (ts.Elements < 60 || ts.NearFull < 1):
				t.Errorf("hash maps: %d elements, %d near full; want at least 60 and 1", ts.Elements, ts.NearFull)
			case !want[snapshot.FeatureElementCounts] && (ts.Elements != 0 || ts.NearFull != 0):
				t.Errorf("hash maps: %d elements, %d near full without element counts", ts.Elements, ts.NearFull)
			}
		})
	}
}

// TestKernelIteratorLeastPrivilege: with CAP_BPF and CAP_PERFMON only,
// iterator mode cannot read fdinfo, and needs not: on every kernel the map
// iterator computes each map's memory as fdinfo gives it (before Linux 6.4,
// the kernel's old estimate), so counts and memory equal bpftool's and no
// memory is unknown.
func TestKernelIteratorLeastPrivilege(t *testing.T) {
	testutil.RequireBPF(t)
	newPopulation(t, 30, 4, 2)
	opts := kernelConfig(t, config.ModeIterator)
	opts.Capabilities = func(c kernel.Capability) bool { return c == unix.CAP_BPF || c == unix.CAP_PERFMON }
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, counts, mem := cycleMatchingBpftool(t, c)
	for k := range kernel.NumKinds {
		ks := s.Kinds[k]
		if ks.Objects != uint64(counts[k]) || ks.MemoryBytes != mem[k] || ks.MemoryUnknown != 0 {
			t.Errorf("%s: %d objects, %d bytes, %d of unknown memory; bpftool: %d objects, %d bytes",
				kernel.Kind(k), ks.Objects, ks.MemoryBytes, ks.MemoryUnknown, counts[k], mem[k])
		}
	}
}
