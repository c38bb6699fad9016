package exposition

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// ownerMetrics are the series per owner and per ranked object. Their
// label sets are bounded (max_owners rows plus "other" and the objects no
// one holds; top_k objects per ranking): a series whose owner or object
// left the set is not sent again, so it goes from the exposition.
type ownerMetrics struct {
	objects, memory, runTime          *prometheus.Desc
	processes, unreadable, cgroupless *prometheus.Desc
	lost                              *prometheus.Desc
	topMemory, topFill                *prometheus.Desc
	topElements, topMaxEntries        *prometheus.Desc
	topRunTime, topRunCount           *prometheus.Desc
}

var (
	ownerLabels   = []string{"owner", "container_id", "pod_uid"}
	topMapLabels  = []string{"id", "name", "map_type", "owner", "container_id"}
	topProgLabels = []string{"id", "name", "program_type", "owner", "container_id"}
)

func (o *ownerMetrics) defs() []metricDef {
	return []metricDef{
		{&o.objects, "owner_objects", "eBPF objects attributed to each owner (the comm of the process holding a file descriptor of it with the lowest PID, or of one holding an object that refers to it), by kind. owner=\"other\" sums the owners beyond max_owners; owner=\"\" the objects no process holds. They sum to objects.", append([]string{kindLabel}, ownerLabels...)},
		{&o.memory, "owner_memory_bytes", "Kernel memory of the eBPF maps and programs attributed to each owner; owner=\"other\" sums the owners beyond max_owners, owner=\"\" what no process holds. They sum to total_memory_bytes exactly.", ownerLabels},
		{&o.runTime, "owner_program_run_time_seconds_total", "Run time of the programs loaded now attributed to each owner, while the kernel's run-time statistics were on. Present only with run-time statistics.", ownerLabels},
		{&o.processes, "holder_processes", "Processes holding a file descriptor of an eBPF object.", nil},
		{&o.unreadable, "holder_processes_unreadable", "Processes whose descriptors the agent could not read (syscall mode, without the right to read other processes' fds): their objects have no owner.", nil},
		{&o.cgroupless, "holder_processes_cgroup_unknown", "Holding processes whose cgroup could not be read: their container_id and pod_uid are empty.", nil},
		{&o.lost, "owner_attribution_lost", "Holdings, programs' maps and owners that did not fit the agent's fixed tables this cycle: their objects are counted under owner=\"other\".", nil},
		{&o.topMemory, "top_map_memory_bytes", "Kernel memory of the top_k maps with the most memory.", topMapLabels},
		{&o.topFill, "top_map_fill_ratio", "Elements over max_entries of the top_k fullest maps among those with an element count (1: full).", topMapLabels},
		{&o.topElements, "top_map_elements", "Elements of the maps of top_map_fill_ratio.", topMapLabels},
		{&o.topMaxEntries, "top_map_max_entries", "max_entries of the maps of top_map_fill_ratio.", topMapLabels},
		{&o.topRunTime, "top_program_run_time_seconds_total", "Run time of the top_k programs with the most, while run-time statistics were on. Present only with run-time statistics.", topProgLabels},
		{&o.topRunCount, "top_program_run_count_total", "Runs of the programs of top_program_run_time_seconds_total, while run-time statistics were on.", topProgLabels},
	}
}

// collect sends the owner and ranking series of s.
func (o *ownerMetrics) collect(ch chan<- prometheus.Metric, s *snapshot.Snapshot, kindNames *[kernel.NumKinds]string) {
	if !s.Features[snapshot.FeatureOwnership] && s.Top.N == [3]int{} {
		return
	}
	ow := &s.Owners
	if s.Features[snapshot.FeatureOwnership] {
		gauge(ch, o.processes, float64(ow.Processes))
		gauge(ch, o.unreadable, float64(ow.Unreadable))
		gauge(ch, o.cgroupless, float64(ow.CgroupUnknown))
		gauge(ch, o.lost, float64(ow.Lost))
		// The rows and labels the history records too (snapshot.Owners.Shown).
		for kind, w := range ow.Shown() {
			o.owner(ch, s, w, kind, kindNames)
		}
	}
	t := &s.Top
	for i := range t.N[0] {
		x := &t.Memory[i]
		gauge(ch, o.topMemory, float64(x.MemoryBytes), topLabels(x, kernel.KindMap)...)
	}
	for i := range t.N[1] {
		x := &t.Fill[i]
		l := topLabels(x, kernel.KindMap)
		gauge(ch, o.topFill, float64(x.Elements)/float64(x.MaxEntries), l...)
		gauge(ch, o.topElements, float64(x.Elements), l...)
		gauge(ch, o.topMaxEntries, float64(x.MaxEntries), l...)
	}
	if s.SystemStats {
		for i := range t.N[2] {
			x := &t.RunTime[i]
			l := topLabels(x, kernel.KindProg)
			counter(ch, o.topRunTime, float64(x.RunTimeNs)/1e9, l...)
			counter(ch, o.topRunCount, float64(x.RunCount), l...)
		}
	}
}

func (o *ownerMetrics) owner(ch chan<- prometheus.Metric, s *snapshot.Snapshot, w *snapshot.Owner, kind snapshot.OwnerKind,
	kindNames *[kernel.NumKinds]string) {
	name, container, pod := w.Labels(kind)
	for k := range kernel.NumKinds {
		gauge(ch, o.objects, float64(w.Objects[k]), kindNames[k], name, container, pod)
	}
	gauge(ch, o.memory, float64(w.MemoryBytes), name, container, pod)
	if s.SystemStats {
		counter(ch, o.runTime, float64(w.RunTimeNs)/1e9, name, container, pod)
	}
}

func topLabels(x *snapshot.TopObject, k kernel.Kind) []string {
	return []string{strconv.FormatUint(uint64(x.ID), 10), snapshot.CString(x.Name[:]),
		snapshot.TypeLabel(k, snapshot.TypeIndex(x.Type)), snapshot.CString(x.Owner[:]), snapshot.CString(x.ContainerID[:])}
}
