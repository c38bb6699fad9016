package kernel

import (
	"encoding/binary"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// memoryUnknownHere lists the map types whose memory the iterator leaves
// to fdinfo on this kernel, and why. On Linux 6.18 every map type is
// computed in the kernel (bpf/mapmem.h); a type that starts returning
// MEMORY_UNKNOWN fails TestIteratorMapMemoryEqualsFDInfo unless listed here.
var memoryUnknownHere = map[MapType]string{}

// mapCase is one map type: how to create a map of it and, for the types
// whose memory or element count follows their contents, how to fill it.
type mapCase struct {
	name string
	typ  MapType
	spec *ebpf.MapSpec
	// fill puts elements [from, to) into m. Nil: the test does not fill
	// this type (its memory is fixed, or filling needs more than a test can
	// set up; see the comment on the case).
	fill func(tb testing.TB, m *ebpf.Map, from, to int)
	// del removes elements [from, to) that fill put; nil if the type
	// cannot delete (arrays, bloom filter) or the test does not.
	del func(tb testing.TB, m *ebpf.Map, from, to int)
	// varies: memory follows contents (MemoryVaries must agree), on
	// kernels with map_mem_usage (6.4); before, memlock is fixed at
	// creation for every type.
	varies bool
	// counts: the iterator gives an exact element count, from the type's
	// own counter or, if countsNeed is set, with that kernel feature.
	counts     bool
	countsNeed *testutil.Feature
	// since: the first upstream release with this map type, where it is
	// younger than the matrix's oldest kernel (6.1). A hint for the skip
	// message: whether the kernel has the type is probed (builds of one
	// release differ: one 6.18 build creates arena maps, another refuses).
	since string
}

func u32(v int) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(v)) }
func u64(v int) []byte { return binary.NativeEndian.AppendUint64(nil, uint64(v)) }

func simple(typ ebpf.MapType, key, value, max uint32, flags uint32) *ebpf.MapSpec {
	return &ebpf.MapSpec{Type: typ, KeySize: key, ValueSize: value, MaxEntries: max, Flags: flags}
}

// lruEntries sizes the LRU maps so that no put evicts. An LRU map without
// BPF_F_NO_COMMON_LRU hands each CPU free nodes in batches of up to
// LOCAL_FREE_TARGET (128) and, when the global free list cannot fill a
// batch, evicts to make up the rest: with 64 entries on 2 CPUs, Linux 6.1
// evicted one of 8 keys once the test's thread moved to the other CPU.
// 128 per possible CPU plus the 8 keys the test puts leaves every CPU a
// full batch.
func lruEntries() uint32 {
	cpus, err := ebpf.PossibleCPU()
	if err != nil || cpus < 1 {
		cpus = 1
	}
	return uint32(128*cpus + 64)
}

func ofMaps(typ ebpf.MapType, flags uint32) *ebpf.MapSpec {
	return &ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: 4, MaxEntries: 16, Flags: flags,
		InnerMap: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}}
}

// storage is a local storage map (sk, inode, task, cgrp): BTF key and
// value, no preallocation, no max_entries.
func storage(typ ebpf.MapType) *ebpf.MapSpec {
	return &ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: 8, Flags: unix.BPF_F_NO_PREALLOC,
		Key:   &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value: &btf.Int{Name: "long long", Size: 8, Encoding: btf.Signed}}
}

// putKeys puts key i (4 bytes) with an 8-byte value.
func putKeys(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		value := make([]byte, m.ValueSize())
		binary.NativeEndian.PutUint64(value, uint64(i))
		if err := m.Put(u32(i), value); err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
}

// deleteKeys deletes keys [from, to) (4 bytes).
func deleteKeys(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		if err := m.Delete(u32(i)); err != nil {
			tb.Fatalf("delete %d: %v", i, err)
		}
	}
}

// putPerCPU puts key i with a zero value on every possible CPU.
func putPerCPU(tb testing.TB, m *ebpf.Map, from, to int) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	for i := from; i < to; i++ {
		values := make([][]byte, cpus)
		for c := range values {
			values[c] = make([]byte, m.ValueSize())
		}
		if err := m.Put(u32(i), values); err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
}

// putInnerMaps puts a new inner map at key i.
func putInnerMaps(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		inner, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			tb.Fatal(err)
		}
		err = m.Put(u32(i), inner)
		inner.Close()
		if err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
}

// putPrefixes puts the /32 prefixes 10.0.0.i into an LPM trie.
func putPrefixes(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		key := append(u32(32), 10, 0, byte(i>>8), byte(i))
		if err := m.Put(key, u64(i)); err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
}

func deletePrefixes(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		if err := m.Delete(append(u32(32), 10, 0, byte(i>>8), byte(i))); err != nil {
			tb.Fatalf("delete %d: %v", i, err)
		}
	}
}

func pushValues(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		if err := m.Put(nil, u64(i)); err != nil {
			tb.Fatalf("push %d: %v", i, err)
		}
	}
}

// popValues pops to-from values from a queue or a stack.
func popValues(tb testing.TB, m *ebpf.Map, from, to int) {
	var v uint64
	for i := from; i < to; i++ {
		if err := m.LookupAndDelete(nil, &v); err != nil {
			tb.Fatalf("pop %d: %v", i, err)
		}
	}
}

// putSockets puts a new bound UDP socket at key i.
func putSockets(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			tb.Fatal(err)
		}
		if err := m.Put(u32(i), u32(fd)); err != nil {
			tb.Fatalf("put socket %d: %v", i, err)
		}
	}
}

// putLoopback puts the loopback device at key i of a devmap.
func putLoopback(tb testing.TB, m *ebpf.Map, from, to int) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := m.Put(u32(i), u32(lo.Index)); err != nil {
			tb.Fatalf("put %d: %v", i, err)
		}
	}
}

// putSocketStorage gives new UDP sockets a storage in an sk_storage map.
func putSocketStorage(tb testing.TB, m *ebpf.Map, from, to int) {
	for i := from; i < to; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { unix.Close(fd) })
		if err := m.Put(u32(fd), u64(i)); err != nil {
			tb.Fatalf("put storage %d: %v", i, err)
		}
	}
}

// mapCases has one case per map type of Linux 6.18 (and variants whose
// formula differs: no-prealloc hash maps, a mmapable array).
var mapCases = []mapCase{
	{name: "hash", typ: MapTypeHash, spec: simple(ebpf.Hash, 4, 8, 64, 0), fill: putKeys, del: deleteKeys, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "hash_no_prealloc", typ: MapTypeHash, spec: simple(ebpf.Hash, 4, 8, 64, unix.BPF_F_NO_PREALLOC), fill: putKeys, del: deleteKeys, varies: true, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "percpu_hash", typ: MapTypePercpuHash, spec: simple(ebpf.PerCPUHash, 4, 8, 64, 0), fill: putPerCPU, del: deleteKeys, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "percpu_hash_no_prealloc", typ: MapTypePercpuHash, spec: simple(ebpf.PerCPUHash, 4, 12, 64, unix.BPF_F_NO_PREALLOC), fill: putPerCPU, del: deleteKeys, varies: true, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "lru_hash", typ: MapTypeLruHash, spec: simple(ebpf.LRUHash, 4, 8, lruEntries(), 0), fill: putKeys, del: deleteKeys, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "lru_percpu_hash", typ: MapTypeLruPercpuHash, spec: simple(ebpf.LRUCPUHash, 4, 8, lruEntries(), 0), fill: putPerCPU, del: deleteKeys, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "hash_of_maps", typ: MapTypeHashOfMaps, spec: ofMaps(ebpf.HashOfMaps, 0), fill: putInnerMaps, del: deleteKeys, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "hash_of_maps_no_prealloc", typ: MapTypeHashOfMaps, spec: ofMaps(ebpf.HashOfMaps, unix.BPF_F_NO_PREALLOC), fill: putInnerMaps, del: deleteKeys, varies: true, counts: true, countsNeed: &testutil.FeatureElementCounts},
	{name: "array", typ: MapTypeArray, spec: simple(ebpf.Array, 4, 12, 64, 0), fill: putKeys},
	{name: "array_mmapable", typ: MapTypeArray, spec: simple(ebpf.Array, 4, 8, 1000, unix.BPF_F_MMAPABLE)},
	{name: "percpu_array", typ: MapTypePercpuArray, spec: simple(ebpf.PerCPUArray, 4, 12, 64, 0)},
	{name: "prog_array", typ: MapTypeProgArray, spec: simple(ebpf.ProgramArray, 4, 4, 8, 0)},
	{name: "perf_event_array", typ: MapTypePerfEventArray, spec: simple(ebpf.PerfEventArray, 4, 4, 0, 0)},
	{name: "cgroup_array", typ: MapTypeCgroupArray, spec: simple(ebpf.CGroupArray, 4, 4, 8, 0)},
	{name: "array_of_maps", typ: MapTypeArrayOfMaps, spec: ofMaps(ebpf.ArrayOfMaps, 0), fill: putInnerMaps},
	{name: "stack_trace", typ: MapTypeStackTrace, spec: simple(ebpf.StackTrace, 4, 64, 100, 0)},
	{name: "lpm_trie", typ: MapTypeLpmTrie, spec: simple(ebpf.LPMTrie, 8, 8, 256, unix.BPF_F_NO_PREALLOC), fill: putPrefixes, del: deletePrefixes, varies: true, counts: true},
	{name: "queue", typ: MapTypeQueue, spec: simple(ebpf.Queue, 0, 8, 16, 0), fill: pushValues, del: popValues, counts: true},
	{name: "stack", typ: MapTypeStack, spec: simple(ebpf.Stack, 0, 8, 16, 0), fill: pushValues, del: popValues, counts: true},
	{name: "bloom_filter", typ: MapTypeBloomFilter, spec: simple(ebpf.BloomFilter, 0, 8, 1000, 0), fill: pushValues},
	{name: "ringbuf", typ: MapTypeRingbuf, spec: simple(ebpf.RingBuf, 0, 0, uint32(4*os.Getpagesize()), 0)},
	{name: "user_ringbuf", typ: MapTypeUserRingbuf, spec: simple(ebpf.UserRingbuf, 0, 0, uint32(8*os.Getpagesize()), 0)},
	// devmap counts its items since map_mem_usage (6.4); devmap_hash always has.
	{name: "devmap", typ: MapTypeDevmap, spec: simple(ebpf.DevMap, 4, 4, 16, 0), fill: putLoopback, del: deleteKeys, varies: true, counts: true, countsNeed: &testutil.FeatureMapMemUsage},
	{name: "devmap_hash", typ: MapTypeDevmapHash, spec: simple(ebpf.DevMapHash, 4, 4, 10, 0), fill: putLoopback, del: deleteKeys, varies: true, counts: true},
	// Entries (a kthread each) are not counted by the kernel: not filled.
	{name: "cpumap", typ: MapTypeCpumap, spec: simple(ebpf.CPUMap, 4, 4, 0, 0)},
	// Its memory counts AF_XDP sockets' map nodes; binding an AF_XDP
	// socket needs a UMEM and rings: not filled here.
	{name: "xskmap", typ: MapTypeXskmap, spec: simple(ebpf.XSKMap, 4, 4, 8, 0), varies: true},
	{name: "sockmap", typ: MapTypeSockmap, spec: simple(ebpf.SockMap, 4, 4, 8, 0), fill: putSockets, del: deleteKeys},
	{name: "sockhash", typ: MapTypeSockhash, spec: simple(ebpf.SockHash, 4, 4, 10, 0), fill: putSockets, del: deleteKeys, varies: true, counts: true},
	{name: "reuseport_sockarray", typ: MapTypeReuseportSockarray, spec: simple(ebpf.ReusePortSockArray, 4, 8, 8, 0)},
	// Storages are created on attachment and not counted: not filled.
	{name: "cgroup_storage", typ: MapTypeCgroupStorage, spec: simple(ebpf.CGroupStorage, 16, 8, 0, 0)},
	{name: "percpu_cgroup_storage", typ: MapTypePercpuCgroupStorage, spec: simple(ebpf.PerCPUCGroupStorage, 16, 8, 0, 0)},
	{name: "sk_storage", typ: MapTypeSkStorage, spec: storage(ebpf.SkStorage), fill: putSocketStorage},
	{name: "inode_storage", typ: MapTypeInodeStorage, spec: storage(ebpf.InodeStorage)},
	{name: "task_storage", typ: MapTypeTaskStorage, spec: storage(ebpf.TaskStorage)},
	{name: "cgrp_storage", typ: MapTypeCgrpStorage, spec: storage(ebpf.CgroupStorage), since: "6.2"},
	// Created, never registered: no program runs.
	{name: "struct_ops", typ: MapTypeStructOps, spec: &ebpf.MapSpec{Type: ebpf.StructOpsMap, KeySize: 4, MaxEntries: 1,
		Key: &btf.Int{Size: 4}, Value: &btf.Struct{Name: "tcp_congestion_ops"}}},
	{name: "arena", typ: MapTypeArena, spec: simple(ebpf.Arena, 0, 0, 4, unix.BPF_F_MMAPABLE), since: "6.9"},
}

// recordOf runs kind k's iterator once and returns the record of object
// id, full if fullAbove is below id, short otherwise.
func recordOf(tb testing.TB, it *Iterators, k Kind, id, fullAbove uint32) Record {
	tb.Helper()
	if err := it.Begin(k, fullAbove, false); err != nil {
		tb.Fatal(err)
	}
	defer it.End()
	var rec, found Record
	ok := false
	for {
		_, err := it.Next(&rec)
		if err == ErrEndOfList {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		if rec.ID == id {
			found, ok = rec, true
		}
	}
	if !ok {
		tb.Fatalf("%s %d not listed by the iterator", k, id)
	}
	return found
}

// mapPass is recordOf for map id.
func mapPass(tb testing.TB, it *Iterators, id, fullAbove uint32) Record {
	tb.Helper()
	return recordOf(tb, it, KindMap, id, fullAbove)
}

func memlock(tb testing.TB, r *FDInfoReader, m *ebpf.Map) uint64 {
	tb.Helper()
	var fi FDInfo
	if err := r.Read(m.FD(), &fi); err != nil {
		tb.Fatal(err)
	}
	if fi.Has&HasMemlock == 0 {
		tb.Fatal("fdinfo has no memlock")
	}
	return fi.Memlock
}

// TestIteratorMapMemoryEqualsFDInfo creates a map of every type the
// kernel can create and checks that the memory the iterator computes is
// the kernel's own figure (fdinfo memlock), empty and, where the test can
// fill the type, with elements; that memory follows contents exactly for
// the types MemoryVaries names (from Linux 6.4; before, memlock is fixed at
// creation); and that element counts are exact where the kernel gives
// them, and absent where it cannot.
func TestIteratorMapMemoryEqualsFDInfo(t *testing.T) {
	testutil.RequireBPF(t)
	it, _, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.Available(KindMap) {
		t.Fatal("no map iterator")
	}
	fdr := fdinfoReader(t)
	defer fdr.Close()
	memUsage := testutil.HasFeature(t, testutil.FeatureMapMemUsage)

	for _, c := range mapCases {
		t.Run(c.name, func(t *testing.T) {
			testutil.RequireFeature(t, testutil.MapType(c.name, c.spec.Type, c.since))
			m, err := ebpf.NewMap(c.spec)
			if err != nil {
				t.Fatalf("creating a %s map: %v", c.name, err)
			}
			defer m.Close()
			info, err := m.Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			counts := c.counts && (c.countsNeed == nil || testutil.HasFeature(t, *c.countsNeed))
			follows := c.varies && memUsage

			check := func(stage string, wantElements int) Record {
				t.Helper()
				rec := mapPass(t, it, uint32(id), 0)
				want := memlock(t, fdr, m)
				// The short record of a known map carries exactly what can
				// have changed: memory if it varies, the element count.
				short := mapPass(t, it, uint32(id), uint32(id))
				if c.varies && (short.Fields&HasMemory == 0 || short.Memory != want) {
					t.Errorf("%s: short record memory %d (fields %b), fdinfo memlock %d", stage, short.Memory, short.Fields, want)
				}
				if !c.varies && short.Fields&HasMemory != 0 {
					t.Errorf("%s: short record of a fixed-memory map carries memory", stage)
				}
				if counts && (short.Fields&HasElements == 0 || short.Elements != uint64(wantElements)) {
					t.Errorf("%s: short record: %d elements (fields %b), want %d", stage, short.Elements, short.Fields, wantElements)
				}
				if MapType(rec.Type) != c.typ {
					t.Fatalf("type %d, want %d", rec.Type, c.typ)
				}
				if why, ok := memoryUnknownHere[c.typ]; ok {
					if rec.Fields&HasMemory != 0 {
						t.Errorf("%s: memory now computed (%d, fdinfo %d); remove it from memoryUnknownHere (%s)", stage, rec.Memory, want, why)
					}
				} else if rec.Fields&HasMemory == 0 {
					t.Errorf("%s: the iterator left memory unknown; fdinfo memlock %d", stage, want)
				} else if rec.Memory != want {
					t.Errorf("%s: iterator memory %d, fdinfo memlock %d", stage, rec.Memory, want)
				} else {
					t.Logf("%s: %d == %d", stage, rec.Memory, want)
				}
				switch {
				case counts && rec.Fields&HasElements == 0:
					t.Errorf("%s: no element count", stage)
				case counts && rec.Elements != uint64(wantElements):
					t.Errorf("%s: %d elements, want %d", stage, rec.Elements, wantElements)
				case !counts && rec.Fields&HasElements != 0:
					t.Errorf("%s: element count %d for a type without one on this kernel", stage, rec.Elements)
				case !counts && short.Fields&HasElements != 0:
					t.Errorf("%s: short record: element count %d for a type without one on this kernel", stage, short.Elements)
				}
				if got := MemoryVaries(KindMap, &rec); got != c.varies {
					t.Errorf("MemoryVaries = %v, want %v", got, c.varies)
				}
				return rec
			}

			empty := check("empty", 0)
			if c.fill == nil {
				return
			}
			c.fill(t, m, 0, 3)
			three := check("3 elements", 3)
			c.fill(t, m, 3, 8)
			eight := check("8 elements", 8)
			if follows && !(empty.Memory < three.Memory && three.Memory < eight.Memory) {
				t.Errorf("memory does not follow contents: %d, %d, %d for 0, 3, 8 elements", empty.Memory, three.Memory, eight.Memory)
			}
			if !follows && (three.Memory != empty.Memory || eight.Memory != empty.Memory) {
				t.Errorf("memory of a fixed type changed: %d, %d, %d for 0, 3, 8 elements", empty.Memory, three.Memory, eight.Memory)
			}
			if c.del == nil {
				return
			}
			c.del(t, m, 3, 8)
			if again := check("8 elements, 5 deleted", 3); again.Memory != three.Memory {
				t.Errorf("3 elements again: memory %d, was %d", again.Memory, three.Memory)
			}
		})
	}
}

// TestMapCasesCoverEveryMapType keeps mapCases complete: every map type
// this build knows has a case, so that a type whose memory silently stays
// unknown cannot go untested.
func TestMapCasesCoverEveryMapType(t *testing.T) {
	have := map[MapType]bool{}
	for _, c := range mapCases {
		have[c.typ] = true
	}
	for typ := MapTypeHash; int(typ) < len(mapTypeNames); typ++ {
		if !have[typ] {
			t.Errorf("no case for map type %d (%s)", typ, TypeName(KindMap, uint32(typ)))
		}
	}
}
