package exposition

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite testdata/*.prom from the current output")

// seen returns a TypesSeen with the given type slots set.
func seen(slots ...int) (s [snapshot.MaxTypes / 64]uint64) {
	for _, i := range slots {
		s[i/64] |= 1 << (uint(i) % 64)
	}
	return s
}

// testSnapshot is a small complete cycle: two map types, one program type,
// one link type, run-time statistics on, four cycles in the histogram.
func testSnapshot() *snapshot.Snapshot {
	s := &snapshot.Snapshot{
		Valid:       true,
		Active:      true,
		SystemStats: true,
		Mode:        [kernel.NumKinds]string{"iterator", "iterator", "syscall"},

		Cycles:          4,
		MemoryLimitHits: 1,
		Overruns:        1,
		Batches:         12,
		RateLimitWaitNs: 250_000_000,

		LastSuccessUnixNano: 1_700_000_000_500_000_000,
		LastDurationNs:      6_000_000,
		MemoryUsageBytes:    10 << 20,
		MemoryBudgetBytes:   64 << 20,
		DurationSum:         200.0115,
		DurationCount:       4, // one cycle above the last bound
	}
	s.DurationCounts[0] = 1 // <= 1 ms
	s.DurationCounts[3] = 2 // <= 8 ms

	s.ElementCounts = true
	s.Features[snapshot.FeatureMapIterator] = true
	s.Features[snapshot.FeatureProgIterator] = true
	s.Features[snapshot.FeatureElementCounts] = true
	s.Features[snapshot.FeatureRunTimeStats] = true
	s.Features[snapshot.FeatureMemoryFormulaCheck] = true
	s.Features[snapshot.FeatureOwnership] = true
	s.Owners = snapshot.Owners{N: 2, Processes: 3, CgroupUnknown: 1, OtherOwners: 1}
	setOwner := func(w *snapshot.Owner, comm, container, pod string, maps, progs, links, memory, runNs uint64) {
		copy(w.Comm[:], comm)
		copy(w.ContainerID[:], container)
		copy(w.PodUID[:], pod)
		w.Objects = [kernel.NumKinds]uint64{maps, progs, links}
		w.MemoryBytes, w.RunTimeNs, w.RunCount = memory, runNs, runNs/100
	}
	setOwner(&s.Owners.Rows[0], "cilium-agent", "5c1a0f3e9b8d7c6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988", "3f0d9c2e-1b4a-4c5d-8e6f-7a8b9c0d1e2f", 2, 1, 1, 5632, 1_500_000_000)
	setOwner(&s.Owners.Rows[1], "ebpf-metrics", "", "", 1, 1, 1, 4096, 0)
	setOwner(&s.Owners.Other, "", "", "", 0, 1, 0, 0, 500_000)
	setOwner(&s.Owners.None, "", "", "", 0, 0, 1, 0, 0)
	top := func(x *snapshot.TopObject, id, typ uint32, name, owner string, memory, elements, maxEntries, runNs uint64) {
		*x = snapshot.TopObject{ID: id, Type: typ, MemoryBytes: memory, Elements: elements, MaxEntries: maxEntries,
			RunTimeNs: runNs, RunCount: runNs / 100}
		copy(x.Name[:], name)
		copy(x.Owner[:], owner)
	}
	top(&s.Top.Memory[0], 12, uint32(kernel.MapTypeHash), "cilium_ct4", "cilium-agent", 1024, 60, 64, 0)
	top(&s.Top.Memory[1], 7, uint32(kernel.MapTypeArray), "t_array", "ebpf-metrics", 512, 0, 0, 0)
	top(&s.Top.Fill[0], 12, uint32(kernel.MapTypeHash), "cilium_ct4", "cilium-agent", 1024, 60, 64, 0)
	top(&s.Top.RunTime[0], 33, uint32(kernel.ProgTypeSchedCls), "cil_from_netdev", "cilium-agent", 4096, 0, 0, 1_500_000_000)
	s.Top.N = [3]int{2, 1, 1}
	s.FormulaMismatches[snapshot.TypeIndex(uint32(kernel.MapTypeArray))] = 1
	s.Own[kernel.KindProg] = snapshot.OwnStats{Objects: 1, MemoryBytes: 4096}
	s.Own[kernel.KindLink] = snapshot.OwnStats{Objects: 1}
	s.Errors[kernel.OpGetFD] = 1
	s.Errors[kernel.OpFDInfo] = 3
	for op := range kernel.NumOps {
		s.Syscalls[op] = 10 + uint64(op)
	}

	m := &s.Kinds[kernel.KindMap]
	*m = snapshot.KindStats{Objects: 3, MemoryBytes: 1536, Tracked: 3, Capacity: 1000, Created: 5, Removed: 2}
	m.Types[kernel.MapTypeHash] = snapshot.TypeStats{Objects: 2, MemoryBytes: 1024, Elements: 150, MaxEntries: 200, NearFull: 1}
	m.Types[kernel.MapTypeArray] = snapshot.TypeStats{Objects: 1, MemoryBytes: 512}
	m.TypesSeen = seen(int(kernel.MapTypeHash), int(kernel.MapTypeArray))

	p := &s.Kinds[kernel.KindProg]
	*p = snapshot.KindStats{Objects: 2, MemoryBytes: 8192, Tracked: 1, Capacity: 1, Untracked: 1, Created: 1}
	p.Types[kernel.ProgTypeKprobe] = snapshot.TypeStats{Objects: 2, MemoryBytes: 8192, RunTimeNs: 1_500_000_000, RunCount: 42}
	p.TypesSeen = seen(int(kernel.ProgTypeKprobe))

	l := &s.Kinds[kernel.KindLink]
	*l = snapshot.KindStats{Objects: 2, Tracked: 1, Capacity: 200, Unreadable: 1}
	l.Types[kernel.LinkTypeTracing] = snapshot.TypeStats{Objects: 1}
	l.TypesSeen = seen(int(kernel.LinkTypeTracing))
	return s
}

func publish(s *snapshot.Snapshot) *snapshot.Publisher {
	pub := new(snapshot.Publisher)
	pub.Publish(s)
	return pub
}

// The expected text is written by hand: it is the contract.
func TestCollectorRepresentative(t *testing.T) {
	c := NewMetrics(publish(testSnapshot()), "")
	const want = `
# HELP odigos_ebpf_objects eBPF objects of each kind in the kernel at the end of the last complete cycle, tracked in detail or not.
# TYPE odigos_ebpf_objects gauge
odigos_ebpf_objects{type="link"} 2
odigos_ebpf_objects{type="map"} 3
odigos_ebpf_objects{type="program"} 2
# HELP odigos_ebpf_total_memory_bytes Kernel memory of every eBPF map and program, each object counted once, at the end of the last complete cycle (the kernel's memlock figure).
# TYPE odigos_ebpf_total_memory_bytes gauge
odigos_ebpf_total_memory_bytes 9728
# HELP odigos_ebpf_memory_bytes Kernel memory of the eBPF objects of each kind (the kernel's memlock figure). Only maps and programs: the kernel gives links no memory figure.
# TYPE odigos_ebpf_memory_bytes gauge
odigos_ebpf_memory_bytes{type="map"} 1536
odigos_ebpf_memory_bytes{type="program"} 8192
# HELP odigos_ebpf_map_objects eBPF maps in the kernel at the end of the last complete cycle, by map type. A type seen once keeps its series, at 0 when none is left.
# TYPE odigos_ebpf_map_objects gauge
odigos_ebpf_map_objects{map_type="array"} 1
odigos_ebpf_map_objects{map_type="hash"} 2
# HELP odigos_ebpf_map_memory_bytes Kernel memory of the eBPF maps of each map type (the kernel's memlock figure).
# TYPE odigos_ebpf_map_memory_bytes gauge
odigos_ebpf_map_memory_bytes{map_type="array"} 512
odigos_ebpf_map_memory_bytes{map_type="hash"} 1024
# HELP odigos_ebpf_link_objects eBPF links in the kernel at the end of the last complete cycle, by link type. A type seen once keeps its series, at 0 when none is left.
# TYPE odigos_ebpf_link_objects gauge
odigos_ebpf_link_objects{link_type="tracing"} 1
# HELP odigos_ebpf_program_run_time_seconds Sum, over the programs of each type loaded now, of the time they ran while the kernel's run-time statistics were enabled. A gauge, not a counter: it drops when a program is unloaded. Present only while run-time statistics are enabled.
# TYPE odigos_ebpf_program_run_time_seconds gauge
odigos_ebpf_program_run_time_seconds{program_type="kprobe"} 1.5
# HELP odigos_ebpf_program_runs Sum, over the programs of each type loaded now, of the number of times they ran while the kernel's run-time statistics were enabled. A gauge, not a counter: it drops when a program is unloaded. Present only while run-time statistics are enabled.
# TYPE odigos_ebpf_program_runs gauge
odigos_ebpf_program_runs{program_type="kprobe"} 42
# HELP odigos_ebpf_untracked_objects Objects of each kind counted (and their memory summed) but not tracked in detail because the table was full.
# TYPE odigos_ebpf_untracked_objects gauge
odigos_ebpf_untracked_objects{type="link"} 0
odigos_ebpf_untracked_objects{type="map"} 0
odigos_ebpf_untracked_objects{type="program"} 1
# HELP odigos_ebpf_collection_duration_seconds Duration of the completed collection cycles.
# TYPE odigos_ebpf_collection_duration_seconds histogram
odigos_ebpf_collection_duration_seconds_bucket{le="0.001"} 1
odigos_ebpf_collection_duration_seconds_bucket{le="0.002"} 1
odigos_ebpf_collection_duration_seconds_bucket{le="0.004"} 1
odigos_ebpf_collection_duration_seconds_bucket{le="0.008"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.016"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.032"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.064"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.128"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.256"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="0.512"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="1.024"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="2.048"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="4.096"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="8.192"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="16.384"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="32.768"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="65.536"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="131.072"} 3
odigos_ebpf_collection_duration_seconds_bucket{le="+Inf"} 4
odigos_ebpf_collection_duration_seconds_sum 200.0115
odigos_ebpf_collection_duration_seconds_count 4
# HELP odigos_ebpf_collection_errors_total Kernel operations that failed during collection, by operation (an object released while being read is not an error).
# TYPE odigos_ebpf_collection_errors_total counter
odigos_ebpf_collection_errors_total{op="close"} 0
odigos_ebpf_collection_errors_total{op="enable_stats"} 0
odigos_ebpf_collection_errors_total{op="fdinfo"} 3
odigos_ebpf_collection_errors_total{op="get_fd_by_id"} 1
odigos_ebpf_collection_errors_total{op="get_next_id"} 0
odigos_ebpf_collection_errors_total{op="iter_create"} 0
odigos_ebpf_collection_errors_total{op="iter_read"} 0
odigos_ebpf_collection_errors_total{op="obj_get_info"} 0
odigos_ebpf_collection_errors_total{op="procfs_read"} 0
odigos_ebpf_collection_errors_total{op="procfs_readlink"} 0
# HELP odigos_ebpf_collection_mode Always 1: how each kind of object is read from the kernel (mode: iterator or syscall).
# TYPE odigos_ebpf_collection_mode gauge
odigos_ebpf_collection_mode{mode="iterator",type="map"} 1
odigos_ebpf_collection_mode{mode="iterator",type="program"} 1
odigos_ebpf_collection_mode{mode="syscall",type="link"} 1
# HELP odigos_ebpf_last_success_timestamp_seconds Unix time at which the last complete collection cycle ended. Absent until a cycle completes.
# TYPE odigos_ebpf_last_success_timestamp_seconds gauge
odigos_ebpf_last_success_timestamp_seconds 1.7000000005e+09
# HELP odigos_ebpf_collection_rate_limit_wait_seconds_total Time system calls were held back by the rate limiter, summed over the callers waiting at once (it can grow faster than the clock).
# TYPE odigos_ebpf_collection_rate_limit_wait_seconds_total counter
odigos_ebpf_collection_rate_limit_wait_seconds_total 0.25
# HELP odigos_ebpf_collection_active 1 while the agent collects normally, 0 while collection is suspended (memory budget) or stopped.
# TYPE odigos_ebpf_collection_active gauge
odigos_ebpf_collection_active 1
`
	names := []string{
		"odigos_ebpf_objects", "odigos_ebpf_total_memory_bytes", "odigos_ebpf_memory_bytes",
		"odigos_ebpf_map_objects", "odigos_ebpf_map_memory_bytes", "odigos_ebpf_link_objects",
		"odigos_ebpf_program_run_time_seconds", "odigos_ebpf_program_runs", "odigos_ebpf_untracked_objects",
		"odigos_ebpf_collection_duration_seconds", "odigos_ebpf_collection_errors_total",
		"odigos_ebpf_collection_mode", "odigos_ebpf_last_success_timestamp_seconds",
		"odigos_ebpf_collection_rate_limit_wait_seconds_total", "odigos_ebpf_collection_active",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorGolden compares every metric of the collector with
// testdata/snapshot.prom (go test -run Golden -update rewrites it; review
// the diff).
func TestCollectorGolden(t *testing.T) {
	c := NewMetrics(publish(testSnapshot()), "")
	golden := filepath.Join("testdata", "snapshot.prom")
	if *update {
		// Not testutil.CollectAndFormat: with no names it writes nothing.
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		var got bytes.Buffer
		if err := WriteText(&got, reg); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(c, bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// The golden file holds every metric of the contract, and only them.
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range mfs {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, allMetricNames) {
		t.Errorf("golden metric families:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(allMetricNames, "\n"))
	}
}

// allMetricNames are the names of the collector's metrics, sorted.
var allMetricNames = []string{
	"odigos_ebpf_collection_active",
	"odigos_ebpf_collection_batches_total",
	"odigos_ebpf_collection_cycles_total",
	"odigos_ebpf_collection_duration_seconds",
	"odigos_ebpf_collection_errors_total",
	"odigos_ebpf_collection_memory_limit_hit_total",
	"odigos_ebpf_collection_mode",
	"odigos_ebpf_collection_overruns_total",
	"odigos_ebpf_collection_rate_limit_wait_seconds_total",
	"odigos_ebpf_collector_memory_budget_bytes",
	"odigos_ebpf_collector_memory_usage_bytes",
	"odigos_ebpf_feature_enabled",
	"odigos_ebpf_holder_processes",
	"odigos_ebpf_holder_processes_cgroup_unknown",
	"odigos_ebpf_holder_processes_unreadable",
	"odigos_ebpf_last_collection_duration_seconds",
	"odigos_ebpf_last_success_timestamp_seconds",
	"odigos_ebpf_link_objects",
	"odigos_ebpf_map_elements",
	"odigos_ebpf_map_max_entries",
	"odigos_ebpf_map_memory_bytes",
	"odigos_ebpf_map_objects",
	"odigos_ebpf_maps_near_full",
	"odigos_ebpf_memory_bytes",
	"odigos_ebpf_memory_formula_mismatches_total",
	"odigos_ebpf_memory_unknown_objects",
	"odigos_ebpf_objects",
	"odigos_ebpf_objects_created_total",
	"odigos_ebpf_objects_removed_total",
	"odigos_ebpf_own_memory_bytes",
	"odigos_ebpf_own_objects",
	"odigos_ebpf_owner_attribution_lost",
	"odigos_ebpf_owner_memory_bytes",
	"odigos_ebpf_owner_objects",
	"odigos_ebpf_owner_program_run_time_seconds_total",
	"odigos_ebpf_program_memory_bytes",
	"odigos_ebpf_program_objects",
	"odigos_ebpf_program_run_time_seconds",
	"odigos_ebpf_program_runs",
	"odigos_ebpf_stats_enabled_seconds_total",
	"odigos_ebpf_syscalls_total",
	"odigos_ebpf_system_stats_enabled",
	"odigos_ebpf_top_map_elements",
	"odigos_ebpf_top_map_fill_ratio",
	"odigos_ebpf_top_map_max_entries",
	"odigos_ebpf_top_map_memory_bytes",
	"odigos_ebpf_top_program_run_count_total",
	"odigos_ebpf_top_program_run_time_seconds_total",
	"odigos_ebpf_total_memory_bytes",
	"odigos_ebpf_tracked_capacity",
	"odigos_ebpf_tracked_objects",
	"odigos_ebpf_unreadable_objects",
	"odigos_ebpf_untracked_objects",
}

func TestCollectorInvalidSnapshot(t *testing.T) {
	s := &snapshot.Snapshot{
		Active:            true,
		Mode:              [kernel.NumKinds]string{"syscall", "syscall", "syscall"},
		MemoryUsageBytes:  4 << 20,
		MemoryBudgetBytes: 64 << 20,
		Batches:           3, // a first cycle is under way
	}
	s.Syscalls[kernel.OpNextID] = 7
	c := NewMetrics(publish(s), "")

	for _, name := range []string{
		"odigos_ebpf_objects", "odigos_ebpf_total_memory_bytes", "odigos_ebpf_memory_bytes",
		"odigos_ebpf_map_objects", "odigos_ebpf_map_memory_bytes", "odigos_ebpf_program_objects",
		"odigos_ebpf_program_memory_bytes", "odigos_ebpf_link_objects", "odigos_ebpf_program_run_time_seconds",
		"odigos_ebpf_program_runs", "odigos_ebpf_tracked_capacity", "odigos_ebpf_tracked_objects",
		"odigos_ebpf_untracked_objects", "odigos_ebpf_unreadable_objects",
		"odigos_ebpf_last_success_timestamp_seconds", "odigos_ebpf_last_collection_duration_seconds",
	} {
		if n := testutil.CollectAndCount(c, name); n != 0 {
			t.Errorf("%s: %d series before the first complete cycle, want none", name, n)
		}
	}

	const want = `
# HELP odigos_ebpf_collection_active 1 while the agent collects normally, 0 while collection is suspended (memory budget) or stopped.
# TYPE odigos_ebpf_collection_active gauge
odigos_ebpf_collection_active 1
# HELP odigos_ebpf_collector_memory_usage_bytes The agent's state as its memory budget counts it: the Go live heap at the last GC plus goroutine stacks. Garbage, runtime metadata and the binary's pages are left out: process_resident_memory_bytes is what the process costs.
# TYPE odigos_ebpf_collector_memory_usage_bytes gauge
odigos_ebpf_collector_memory_usage_bytes 4.194304e+06
# HELP odigos_ebpf_collector_memory_budget_bytes Memory budget of the agent (max_memory_bytes): collection stops when collector_memory_usage_bytes reaches 90% of it; also the Go soft memory limit unless GOMEMLIMIT is set.
# TYPE odigos_ebpf_collector_memory_budget_bytes gauge
odigos_ebpf_collector_memory_budget_bytes 6.7108864e+07
# HELP odigos_ebpf_collection_batches_total Batches of objects read by the collector.
# TYPE odigos_ebpf_collection_batches_total counter
odigos_ebpf_collection_batches_total 3
# HELP odigos_ebpf_collection_cycles_total Collection cycles completed.
# TYPE odigos_ebpf_collection_cycles_total counter
odigos_ebpf_collection_cycles_total 0
# HELP odigos_ebpf_syscalls_total System calls made by the collector, by operation.
# TYPE odigos_ebpf_syscalls_total counter
odigos_ebpf_syscalls_total{op="close"} 0
odigos_ebpf_syscalls_total{op="enable_stats"} 0
odigos_ebpf_syscalls_total{op="fdinfo"} 0
odigos_ebpf_syscalls_total{op="get_fd_by_id"} 0
odigos_ebpf_syscalls_total{op="get_next_id"} 7
odigos_ebpf_syscalls_total{op="iter_create"} 0
odigos_ebpf_syscalls_total{op="iter_read"} 0
odigos_ebpf_syscalls_total{op="obj_get_info"} 0
odigos_ebpf_syscalls_total{op="procfs_read"} 0
odigos_ebpf_syscalls_total{op="procfs_readlink"} 0
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"odigos_ebpf_collection_active", "odigos_ebpf_collector_memory_usage_bytes",
		"odigos_ebpf_collector_memory_budget_bytes", "odigos_ebpf_collection_batches_total",
		"odigos_ebpf_collection_cycles_total", "odigos_ebpf_syscalls_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"odigos_ebpf_collection_duration_seconds", "odigos_ebpf_collection_mode"} {
		if n := testutil.CollectAndCount(c, name); n == 0 {
			t.Errorf("%s: missing before the first complete cycle", name)
		}
	}
}

// A type whose last object went keeps its series at 0; a type never seen
// has none; run-time series go when statistics are turned off.
func TestCollectorSeenTypesStay(t *testing.T) {
	s := testSnapshot()
	s.SystemStats = false
	m := &s.Kinds[kernel.KindMap]
	m.Types[kernel.MapTypeArray] = snapshot.TypeStats{} // the array map is gone, still seen
	m.Objects, m.MemoryBytes, m.Tracked = 2, 1024, 2
	c := NewMetrics(publish(s), "")

	const want = `
# HELP odigos_ebpf_map_objects eBPF maps in the kernel at the end of the last complete cycle, by map type. A type seen once keeps its series, at 0 when none is left.
# TYPE odigos_ebpf_map_objects gauge
odigos_ebpf_map_objects{map_type="array"} 0
odigos_ebpf_map_objects{map_type="hash"} 2
# HELP odigos_ebpf_map_memory_bytes Kernel memory of the eBPF maps of each map type (the kernel's memlock figure).
# TYPE odigos_ebpf_map_memory_bytes gauge
odigos_ebpf_map_memory_bytes{map_type="array"} 0
odigos_ebpf_map_memory_bytes{map_type="hash"} 1024
# HELP odigos_ebpf_system_stats_enabled 1 while the agent keeps the kernel's eBPF run-time statistics enabled (BPF_ENABLE_STATS), else 0.
# TYPE odigos_ebpf_system_stats_enabled gauge
odigos_ebpf_system_stats_enabled 0
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"odigos_ebpf_map_objects", "odigos_ebpf_map_memory_bytes",
		"odigos_ebpf_program_run_time_seconds", "odigos_ebpf_program_runs",
		"odigos_ebpf_system_stats_enabled")
	if err != nil {
		t.Fatal(err)
	}
}

// The overflow slot and types this build does not name get their labels
// from snapshot.TypeLabel.
func TestCollectorTypeLabels(t *testing.T) {
	s := testSnapshot()
	p := &s.Kinds[kernel.KindProg]
	p.Types[snapshot.MaxTypes-1] = snapshot.TypeStats{Objects: 1}
	p.TypesSeen = seen(int(kernel.ProgTypeKprobe), snapshot.MaxTypes-1)
	c := NewMetrics(publish(s), "")
	const want = `
# HELP odigos_ebpf_program_objects eBPF programs in the kernel at the end of the last complete cycle, by program type. A type seen once keeps its series, at 0 when none is left.
# TYPE odigos_ebpf_program_objects gauge
odigos_ebpf_program_objects{program_type="kprobe"} 2
odigos_ebpf_program_objects{program_type="unknown"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "odigos_ebpf_program_objects"); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorNamespace(t *testing.T) {
	c := NewMetrics(publish(testSnapshot()), "node_bpf")
	if n := testutil.CollectAndCount(c, "node_bpf_objects"); n != 3 {
		t.Errorf("node_bpf_objects: %d series, want 3", n)
	}
	if n := testutil.CollectAndCount(c, "odigos_ebpf_objects"); n != 0 {
		t.Errorf("odigos_ebpf_objects: %d series with namespace node_bpf, want 0", n)
	}
	for _, ns := range []string{"", "odigos_ebpf", "_x", "a1"} {
		if err := CheckNamespace(ns); err != nil {
			t.Errorf("CheckNamespace(%q): %v", ns, err)
		}
	}
	for _, ns := range []string{"1a", "odigos.ebpf", "a-b", "a:b", "é"} {
		if err := CheckNamespace(ns); err == nil {
			t.Errorf("CheckNamespace(%q) accepted an invalid namespace", ns)
		}
	}
}

// Describe must send the same descriptors every time, and Collect only
// metrics of those descriptors (the pedantic registry checks the latter).
func TestCollectorDescribe(t *testing.T) {
	c := NewMetrics(publish(testSnapshot()), "")
	describe := func() []string {
		ch := make(chan *prometheus.Desc, 100)
		c.Describe(ch)
		close(ch)
		var s []string
		for d := range ch {
			s = append(s, d.String())
		}
		return s
	}
	first, second := describe(), describe()
	if len(first) == 0 || strings.Join(first, "\n") != strings.Join(second, "\n") {
		t.Fatalf("Describe is not stable:\n%v\n%v", first, second)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorLint(t *testing.T) {
	c := NewMetrics(publish(testSnapshot()), "")
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	problems, err = testutil.GatherAndLint(NewRegistry(c, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint (registry): %s: %s", p.Metric, p.Text)
	}
}

// A label value that is not UTF-8 fails that one metric, not the scrape.
func TestCollectorInvalidLabel(t *testing.T) {
	s := testSnapshot()
	s.Mode[kernel.KindMap] = "\xff"
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewMetrics(publish(s), ""))
	mfs, err := reg.Gather()
	if err == nil {
		t.Fatal("Gather accepted a label value that is not UTF-8")
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "odigos_ebpf_objects") {
		t.Errorf("the other metrics were lost: %v", names)
	}
}
