// Package exposition renders the published snapshot.Snapshot: a Prometheus
// collector over it, the registry that adds the Go, process and build
// metrics, the text output of --once, and the HTTP server of /metrics.
//
// Nothing here reads the kernel: a scrape copies the latest snapshot out of
// the snapshot.Publisher and turns it into constant metrics.
package exposition

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// DefaultNamespace prefixes every metric name of the agent unless another
// namespace is configured.
const DefaultNamespace = "odigos_ebpf"

var namespaceRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// CheckNamespace reports whether ns can prefix metric names in the classic
// Prometheus character set ([a-zA-Z_][a-zA-Z0-9_]*). NewMetrics and
// NewRegistry panic on a namespace that fails this check, so configuration
// should call it first. The empty string is accepted and means
// DefaultNamespace.
func CheckNamespace(ns string) error {
	if ns == "" || namespaceRE.MatchString(ns) {
		return nil
	}
	return fmt.Errorf("invalid metric namespace %q: want [a-zA-Z_][a-zA-Z0-9_]*", ns)
}

func namespaceOrDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

// kindLabel is the label that names the kind of object: map, program, link.
const kindLabel = "type"

// typeLabelName is the label that names the type of an object of kind k:
// map_type, program_type, link_type.
func typeLabelName(k kernel.Kind) string { return k.String() + "_type" }

// snapshotCollector is a prometheus.Collector over the published snapshot.
// Its descriptors are built once; Collect copies the snapshot and emits
// constant metrics, so Collect and Describe may run concurrently with each
// other and with the collector's cycle.
type snapshotCollector struct {
	pub   *snapshot.Publisher
	descs []*prometheus.Desc // every descriptor, for Describe

	// Label values, computed once.
	kindNames [kernel.NumKinds]string
	opNames   [kernel.NumOps]string

	// Per kind (label type).
	objects, memory, capacity, tracked *prometheus.Desc
	untracked, unreadable              *prometheus.Desc
	memoryUnknown                      *prometheus.Desc
	created, removed                   *prometheus.Desc
	mode                               *prometheus.Desc // labels type, mode
	totalMemory                        *prometheus.Desc

	// Per type of one kind (label map_type, program_type or link_type).
	typeObjects [kernel.NumKinds]*prometheus.Desc
	typeMemory  [kernel.NumKinds]*prometheus.Desc // nil for links: the kernel gives them no memory figure
	runTime     *prometheus.Desc
	runs        *prometheus.Desc
	elements    *prometheus.Desc // maps, with element counts
	maxEntries  *prometheus.Desc
	nearFull    *prometheus.Desc
	mismatches  *prometheus.Desc // maps, with the memory formula check

	feature              *prometheus.Desc // label feature
	ownObjects, ownBytes *prometheus.Desc // label type

	// Per operation (label op).
	errors, syscalls *prometheus.Desc

	// The collector itself.
	active, systemStats       *prometheus.Desc
	statsSeconds              *prometheus.Desc
	memoryUsage, memoryBudget *prometheus.Desc
	memoryLimitHits           *prometheus.Desc
	cycles, overruns, batches *prometheus.Desc
	rateLimitWait             *prometheus.Desc
	duration                  *prometheus.Desc
	lastSuccess, lastDuration *prometheus.Desc

	owners ownerMetrics
}

// metricDef is one descriptor: where it goes, its name without the
// namespace, its help and its labels.
type metricDef struct {
	desc   **prometheus.Desc
	name   string
	help   string
	labels []string
}

// NewMetrics returns a Prometheus collector of the snapshots published in
// pub, with metric names prefixed by namespace ("" means DefaultNamespace).
// See CheckNamespace.
func NewMetrics(pub *snapshot.Publisher, namespace string) prometheus.Collector {
	c := &snapshotCollector{pub: pub}
	for k := range kernel.NumKinds {
		c.kindNames[k] = k.String()
	}
	for op := range kernel.NumOps {
		c.opNames[op] = op.String()
	}
	kind := []string{kindLabel}
	mapType, progType := []string{typeLabelName(kernel.KindMap)}, []string{typeLabelName(kernel.KindProg)}
	defs := []metricDef{
		{&c.objects, "objects", "eBPF objects of each kind in the kernel at the end of the last complete cycle, tracked in detail or not.", kind},
		{&c.totalMemory, "total_memory_bytes", "Kernel memory of every eBPF map and program, each object counted once, at the end of the last complete cycle (the kernel's memlock figure).", nil},
		{&c.memory, "memory_bytes", "Kernel memory of the eBPF objects of each kind (the kernel's memlock figure). Only maps and programs: the kernel gives links no memory figure.", kind},
		{&c.capacity, "tracked_capacity", "Objects of each kind that the agent can track in detail: the size of its preallocated table (max_tracked_maps, max_tracked_programs, max_tracked_links).", kind},
		{&c.tracked, "tracked_objects", "Objects of each kind tracked in detail in the agent's table.", kind},
		{&c.untracked, "untracked_objects", "Objects of each kind counted (and their memory summed) but not tracked in detail because the table was full.", kind},
		{&c.unreadable, "unreadable_objects", "Objects of each kind listed by the kernel but whose information could not be read (counted; memory unknown).", kind},
		{&c.memoryUnknown, "memory_unknown_objects", "Maps and programs counted in objects whose memory could not be known, so that it is missing from memory_bytes: in iterator mode, a map type whose memory the iterator cannot compute, when the agent lacks CAP_SYS_ADMIN to read its fdinfo.", kind},
		{&c.created, "objects_created_total", "Objects of each kind that appeared between two consecutive complete cycles, since the agent started.", kind},
		{&c.removed, "objects_removed_total", "Objects of each kind that disappeared between two consecutive complete cycles, since the agent started.", kind},
		{&c.runTime, "program_run_time_seconds", "Sum, over the programs of each type loaded now, of the time they ran while the kernel's run-time statistics were enabled. " +
			"A gauge, not a counter: it drops when a program is unloaded. Present only while run-time statistics are enabled.", progType},
		{&c.runs, "program_runs", "Sum, over the programs of each type loaded now, of the number of times they ran while the kernel's run-time statistics were enabled. " +
			"A gauge, not a counter: it drops when a program is unloaded. Present only while run-time statistics are enabled.", progType},
		{&c.mode, "collection_mode", "Always 1: how each kind of object is read from the kernel (mode: iterator or syscall).", []string{kindLabel, "mode"}},
		{&c.errors, "collection_errors_total", "Kernel operations that failed during collection, by operation (an object released while being read is not an error).", []string{"op"}},
		{&c.syscalls, "syscalls_total", "System calls made by the collector, by operation.", []string{"op"}},
		{&c.active, "collection_active", "1 while the agent collects normally, 0 while collection is suspended (memory budget) or stopped.", nil},
		{&c.systemStats, "system_stats_enabled", "1 while the agent keeps the kernel's eBPF run-time statistics enabled (BPF_ENABLE_STATS), else 0.", nil},
		{&c.statsSeconds, "stats_enabled_seconds_total", "Time run-time statistics have been on since the agent started: all of it with system_stats_duty_cycle 1, that share of it below. Divide the rate of run time by its rate to read it per enabled second. Present only with run-time statistics.", nil},
		{&c.memoryUsage, "collector_memory_usage_bytes", "The agent's state as its memory budget counts it: the Go live heap at the last GC plus goroutine stacks. Garbage, runtime metadata and the binary's pages are left out: process_resident_memory_bytes is what the process costs.", nil},
		{&c.memoryBudget, "collector_memory_budget_bytes", "Memory budget of the agent (max_memory_bytes): collection stops when collector_memory_usage_bytes reaches 90% of it; also the Go soft memory limit unless GOMEMLIMIT is set.", nil},
		{&c.memoryLimitHits, "collection_memory_limit_hit_total", "Cycles stopped or skipped because the agent reached 90% of its memory budget.", nil},
		{&c.cycles, "collection_cycles_total", "Collection cycles completed.", nil},
		{&c.overruns, "collection_overruns_total", "Collection cycles that took longer than the collection interval.", nil},
		{&c.batches, "collection_batches_total", "Batches of objects read by the collector.", nil},
		{&c.rateLimitWait, "collection_rate_limit_wait_seconds_total", "Time system calls were held back by the rate limiter, summed over the callers waiting at once (it can grow faster than the clock).", nil},
		{&c.elements, "map_elements", "Elements in the eBPF maps of each map type whose element count the kernel gives (hash-like maps; arrays are full by construction and not counted). Present only where element counts are available (iterator mode, Linux 6.6 and later).", mapType},
		{&c.maxEntries, "map_max_entries", "Sum of max_entries over the maps counted in map_elements, by map type: map_elements / map_max_entries is their fill.", mapType},
		{&c.nearFull, "maps_near_full", "Maps of each map type more than 90% full (elements over max_entries), among those with an element count.", mapType},
		{&c.mismatches, "memory_formula_mismatches_total", "Disagreements, confirmed twice, between the memory the map iterator computes for a map type and the kernel's fdinfo memlock; after one, that type's memory is read from fdinfo. Present only while the check runs (feature memory_formula_check: iterator mode with CAP_SYS_ADMIN).", mapType},
		{&c.feature, "feature_enabled", "1 if an optional collection feature is active on this kernel, 0 if not: map_iterator, program_iterator, link_iterator, element_counts, run_time_stats, memory_formula_check.", []string{"feature"}},
		{&c.ownObjects, "own_objects", "eBPF objects of each kind that the agent itself loaded (its iterator programs, links and maps); they are included in objects, so subtract them to see the others.", kind},
		{&c.ownBytes, "own_memory_bytes", "Kernel memory of the eBPF objects that the agent itself loaded, by kind; included in memory_bytes.", kind},
		{&c.duration, "collection_duration_seconds", "Duration of the completed collection cycles.", nil},
		{&c.lastSuccess, "last_success_timestamp_seconds", "Unix time at which the last complete collection cycle ended. Absent until a cycle completes.", nil},
		{&c.lastDuration, "last_collection_duration_seconds", "Duration of the last complete collection cycle. Absent until a cycle completes.", nil},
	}
	for k := range kernel.NumKinds {
		labels := []string{typeLabelName(k)}
		defs = append(defs, metricDef{&c.typeObjects[k], k.String() + "_objects",
			fmt.Sprintf("eBPF %ss in the kernel at the end of the last complete cycle, by %s type. A type seen once keeps its series, at 0 when none is left.", k, k),
			labels})
		if slices.Contains(snapshot.MemoryKinds[:], k) {
			defs = append(defs, metricDef{&c.typeMemory[k], k.String() + "_memory_bytes",
				fmt.Sprintf("Kernel memory of the eBPF %ss of each %s type (the kernel's memlock figure).", k, k), labels})
		}
	}
	defs = append(defs, c.owners.defs()...)
	ns := namespaceOrDefault(namespace)
	for _, d := range defs {
		*d.desc = prometheus.NewDesc(prometheus.BuildFQName(ns, "", d.name), d.help, d.labels, nil)
		c.descs = append(c.descs, *d.desc)
	}
	return c
}

// Describe sends the descriptors built by NewMetrics, the same every time.
func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect copies the published snapshot and sends it as constant metrics.
// It makes no system call and reads no file.
//
// Before the first complete cycle (!Valid) it sends only what is true
// without one: the collector's state, memory, mode and counters, never
// object gauges at a made-up 0.
func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	var s snapshot.Snapshot
	c.pub.Load(&s)

	gauge(ch, c.active, boolValue(s.Active))
	gauge(ch, c.systemStats, boolValue(s.SystemStats))
	if s.SystemStats {
		counter(ch, c.statsSeconds, s.StatsEnabledSeconds)
	}
	gauge(ch, c.memoryUsage, float64(s.MemoryUsageBytes))
	gauge(ch, c.memoryBudget, float64(s.MemoryBudgetBytes))
	counter(ch, c.memoryLimitHits, float64(s.MemoryLimitHits))
	counter(ch, c.cycles, float64(s.Cycles))
	counter(ch, c.overruns, float64(s.Overruns))
	counter(ch, c.batches, float64(s.Batches))
	counter(ch, c.rateLimitWait, float64(s.RateLimitWaitNs)/1e9)
	for op := range kernel.NumOps {
		counter(ch, c.errors, float64(s.Errors[op]), c.opNames[op])
		counter(ch, c.syscalls, float64(s.Syscalls[op]), c.opNames[op])
	}
	c.collectDuration(ch, &s)
	for f := range snapshot.NumFeatures {
		gauge(ch, c.feature, boolValue(s.Features[f]), f.String())
	}
	for k := range kernel.NumKinds {
		ks := &s.Kinds[k]
		counter(ch, c.created, float64(ks.Created), c.kindNames[k])
		counter(ch, c.removed, float64(ks.Removed), c.kindNames[k])
		if s.Mode[k] != "" {
			gauge(ch, c.mode, 1, c.kindNames[k], s.Mode[k])
		}
	}

	if !s.Valid {
		return
	}
	gauge(ch, c.lastSuccess, float64(s.LastSuccessUnixNano)/1e9)
	gauge(ch, c.lastDuration, float64(s.LastDurationNs)/1e9)
	var total uint64
	for k := range kernel.NumKinds {
		ks := &s.Kinds[k]
		kind := c.kindNames[k]
		total += ks.MemoryBytes
		gauge(ch, c.objects, float64(ks.Objects), kind)
		gauge(ch, c.capacity, float64(ks.Capacity), kind)
		gauge(ch, c.tracked, float64(ks.Tracked), kind)
		gauge(ch, c.untracked, float64(ks.Untracked), kind)
		gauge(ch, c.unreadable, float64(ks.Unreadable), kind)
		if c.typeMemory[k] != nil {
			gauge(ch, c.memory, float64(ks.MemoryBytes), kind)
			gauge(ch, c.ownBytes, float64(s.Own[k].MemoryBytes), kind)
			gauge(ch, c.memoryUnknown, float64(ks.MemoryUnknown), kind)
		}
		gauge(ch, c.ownObjects, float64(s.Own[k].Objects), kind)
		c.collectTypes(ch, &s, k)
	}
	gauge(ch, c.totalMemory, float64(total))
	c.owners.collect(ch, &s, &c.kindNames)
}

// collectTypes sends the per-type series of kind k: one per type ever seen.
func (c *snapshotCollector) collectTypes(ch chan<- prometheus.Metric, s *snapshot.Snapshot, k kernel.Kind) {
	ks := &s.Kinds[k]
	stats := k == kernel.KindProg && s.SystemStats
	for i := range ks.Types {
		if !ks.Seen(i) {
			continue
		}
		t := &ks.Types[i]
		typ := snapshot.TypeLabel(k, i)
		gauge(ch, c.typeObjects[k], float64(t.Objects), typ)
		if c.typeMemory[k] != nil {
			gauge(ch, c.typeMemory[k], float64(t.MemoryBytes), typ)
		}
		if stats {
			gauge(ch, c.runTime, float64(t.RunTimeNs)/1e9, typ)
			gauge(ch, c.runs, float64(t.RunCount), typ)
		}
		if k == kernel.KindMap && s.Features[snapshot.FeatureMemoryFormulaCheck] {
			counter(ch, c.mismatches, float64(s.FormulaMismatches[i]), typ)
		}
		if k == kernel.KindMap && s.ElementCounts && t.MaxEntries > 0 {
			gauge(ch, c.elements, float64(t.Elements), typ)
			gauge(ch, c.maxEntries, float64(t.MaxEntries), typ)
			gauge(ch, c.nearFull, float64(t.NearFull), typ)
		}
	}
}

// collectDuration sends the cycle duration histogram. The snapshot counts
// each bucket alone; Prometheus buckets are cumulative.
func (c *snapshotCollector) collectDuration(ch chan<- prometheus.Metric, s *snapshot.Snapshot) {
	buckets := make(map[float64]uint64, len(snapshot.DurationBuckets))
	var cum uint64
	for i, upper := range snapshot.DurationBuckets {
		cum += s.DurationCounts[i]
		buckets[upper] = cum
	}
	// The +Inf bucket is the count; it can never be below the last bound's.
	count := max(s.DurationCount, cum)
	m, err := prometheus.NewConstHistogram(c.duration, count, s.DurationSum, buckets)
	if err != nil {
		m = prometheus.NewInvalidMetric(c.duration, err)
	}
	ch <- m
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	send(ch, d, prometheus.GaugeValue, v, labels)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	send(ch, d, prometheus.CounterValue, v, labels)
}

// send sends a constant metric, or an invalid metric (which the registry
// reports as a gathering error) if a label value is not valid UTF-8.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
