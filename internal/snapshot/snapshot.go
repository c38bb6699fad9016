// Package snapshot is the contract between the collector, which fills a
// Snapshot at the end of each complete cycle, and everything that shows it:
// the Prometheus metrics, OTLP, the history and the status page. None of
// those imports the collector.
package snapshot

import (
	"bytes"
	"iter"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// MaxTypes bounds the per-type tables: map, program and link types are
// small kernel enums (34, 33 and 15 values on Linux 6.18). A type number at
// or above MaxTypes-1 is accounted in the last slot, named "unknown".
const MaxTypes = 64

// DurationBuckets are the upper bounds, in seconds, of the cycle duration
// histogram: 1 ms to about 2 minutes, doubling.
var DurationBuckets = [...]float64{
	0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
	1.024, 2.048, 4.096, 8.192, 16.384, 32.768, 65.536, 131.072,
}

// TypeStats aggregates the objects of one type.
type TypeStats struct {
	Objects     uint64
	MemoryBytes uint64
	RunTimeNs   uint64 // programs with run-time statistics on: sum over the programs loaded now
	RunCount    uint64
	// Maps whose element count the kernel gives (Snapshot.ElementCounts;
	// hash-like maps): their elements, the sum of their max_entries, and
	// how many are more than 90% full.
	Elements   uint64
	MaxEntries uint64
	NearFull   uint64
}

// KindStats is what a cycle found for one kind of object.
type KindStats struct {
	Objects     uint64 // every object listed, tracked or not
	MemoryBytes uint64 // sum of the kernel's memlock over every object
	Tracked     uint64 // objects with a record in the table (pool used)
	Capacity    uint64 // the table's capacity (pool size)
	Untracked   uint64 // Objects - Tracked: counted, not kept in detail
	Unreadable  uint64 // listed but not readable (an error other than "gone"): counted, memory unknown
	// MemoryUnknown counts readable maps and programs whose memory could not
	// be known (a map type the iterator cannot compute without
	// CAP_SYS_ADMIN for fdinfo): counted, not in MemoryBytes.
	MemoryUnknown uint64
	// Created and Removed count objects that appeared and disappeared
	// between consecutive complete cycles, since the agent started.
	Created uint64
	Removed uint64
	// Types is indexed by map, program or link type.
	Types [MaxTypes]TypeStats
	// TypesSeen has bit t set once a type t object has been seen: its series
	// keep being exported at zero after the last one goes, rather than vanish.
	TypesSeen [MaxTypes / 64]uint64
}

// Snapshot is everything exposition shows. It holds no pointers, so a copy
// is a deep copy and a published snapshot can never be half-written.
type Snapshot struct {
	// Valid is false until the first cycle completes.
	Valid bool
	// Mode is the collection mode of each kind ("syscall", "iterator").
	Mode [kernel.NumKinds]string
	// Kinds is the last complete cycle's picture.
	Kinds [kernel.NumKinds]KindStats

	// Active is true while collecting normally; false while suspended by
	// the memory budget or stopped.
	Active bool
	// SystemStats is true while run-time statistics are enabled.
	SystemStats bool
	// ElementCounts is true when map element counts are read (the kernel's
	// bpf_map_sum_elem_count, in iterator mode on Linux 6.6 and later).
	ElementCounts bool
	// Features names the optional capabilities in use, and whether each is
	// active on this kernel.
	Features [NumFeatures]bool
	// Own holds the objects the agent itself loaded (its iterator programs,
	// links and their maps), which Kinds counts like all others.
	Own [kernel.NumKinds]OwnStats
	// Owners is who holds the objects of the last complete cycle; Top, the
	// largest, fullest and hottest of them.
	Owners Owners
	Top    Top

	// FormulaMismatches counts, by map type slot, the confirmed
	// disagreements between the map iterator's memory and fdinfo's memlock;
	// after one, that type's memory is read from fdinfo.
	FormulaMismatches [MaxTypes]uint64

	// Counters since start.
	Cycles          uint64 // completed cycles
	MemoryLimitHits uint64 // cycles stopped or skipped at 90% of the budget
	Overruns        uint64 // cycles that took longer than the interval
	Batches         uint64
	Errors          [kernel.NumOps]uint64 // failed operations, by operation
	Syscalls        [kernel.NumOps]uint64 // system calls, by operation
	RateLimitWaitNs uint64                // time spent waiting for the rate limiter
	// StatsEnabledSeconds is how long run-time statistics have been on:
	// all the time with system_stats_duty_cycle 1, a share of it below.
	StatsEnabledSeconds float64

	// Cycle duration histogram (completed cycles).
	DurationCounts [len(DurationBuckets)]uint64 // per bucket, not cumulative
	DurationSum    float64                      // seconds
	DurationCount  uint64

	LastSuccessUnixNano int64 // end of the last complete cycle
	LastDurationNs      int64

	MemoryUsageBytes  uint64 // the agent's measured memory (see collector.MemoryMeter)
	MemoryBudgetBytes uint64 // max_memory_bytes
}

// MemoryKinds are the kinds with a memory figure. Links have none (their
// fdinfo has no memlock): their memory series are left out rather than
// shown at a 0 that would read as "links cost nothing".
var MemoryKinds = [...]kernel.Kind{kernel.KindMap, kernel.KindProg}

// OwnStats is what the agent's own objects amount to.
type OwnStats struct {
	Objects     uint64
	MemoryBytes uint64
}

// MaxOwners and MaxTopK bound the rows of Owners and Top: config.MaxOwners
// and config.MaxTopK.
const (
	MaxOwners = config.MaxOwners
	MaxTopK   = config.MaxTopK
)

// Owner is one owner's row: a process's comm, container and pod, and what
// the objects attributed to it amount to. An object goes to the process
// holding a file descriptor of it with the lowest PID; an object no process
// holds goes to the holder of an object that refers to it (a map, to a
// program that uses it; a program, to a link of it), if any.
type Owner struct {
	Comm        [16]byte // NUL-padded; "" for the objects no one holds
	ContainerID [64]byte // NUL-padded; "" for a host process
	PodUID      [36]byte
	Objects     [kernel.NumKinds]uint64
	MemoryBytes uint64
	RunTimeNs   uint64 // with run-time statistics
	RunCount    uint64
}

// Owners is the owners of the last complete cycle: the largest by memory
// in Rows, the rest summed into Other, and the objects no one holds in
// None. Rows, Other and None sum to the kinds' totals exactly.
type Owners struct {
	N     int // rows in use
	Rows  [MaxOwners]Owner
	Other Owner
	None  Owner
	// OtherOwners is how many owners Other sums.
	OtherOwners uint64
	// Processes is the number of processes holding an eBPF file
	// descriptor; Unreadable, those whose descriptors could not be read
	// (syscall mode without the privilege to); CgroupUnknown, holders whose
	// cgroup could not be read (their container and pod are "").
	Processes, Unreadable, CgroupUnknown uint64
	// Lost counts what did not fit the agent's fixed tables this cycle
	// (holdings, programs' maps, owners): those objects went to Other.
	Lost uint64
}

// OtherOwner is the owner label of Owners.Other, the owners beyond
// max_owners; the objects no one holds (Owners.None) have the empty owner.
const OtherOwner = "other"

// OwnerKind tells which part of Owners a row is: its owner label follows
// from it.
type OwnerKind uint8

const (
	OwnerRow   OwnerKind = iota // one of Rows: labelled with its comm
	OwnerOther                  // Other: OtherOwner
	OwnerNone                   // None: ""
)

// Shown yields the rows that have owner series, in the metrics and in the
// history alike: every row of Rows, Other when it sums anything (owners
// beyond max_owners, lost attributions, or objects), and None always.
func (o *Owners) Shown() iter.Seq2[OwnerKind, *Owner] {
	return func(yield func(OwnerKind, *Owner) bool) {
		for i := range o.N {
			if !yield(OwnerRow, &o.Rows[i]) {
				return
			}
		}
		if o.OtherOwners > 0 || o.Lost > 0 || o.Other != (Owner{}) {
			if !yield(OwnerOther, &o.Other) {
				return
			}
		}
		yield(OwnerNone, &o.None)
	}
}

// Labels returns the owner, container_id and pod_uid label values of w
// shown as a row of kind k.
func (w *Owner) Labels(k OwnerKind) (owner, container, pod string) {
	switch k {
	case OwnerOther:
		owner = OtherOwner
	case OwnerNone:
		owner = ""
	default:
		owner = CString(w.Comm[:])
	}
	return owner, CString(w.ContainerID[:]), CString(w.PodUID[:])
}

// CString is b up to its first NUL, as a label value: a comm or a name the
// kernel took from a user can hold any bytes, and a label must be UTF-8
// (invalid bytes become U+FFFD).
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// TopObject is one map or program of a ranking.
type TopObject struct {
	ID          uint32
	Type        uint32
	Name        [16]byte
	Owner       [16]byte // the comm of its owner, as in Owners
	ContainerID [64]byte
	MemoryBytes uint64
	Elements    uint64 // maps with an element count
	MaxEntries  uint64
	RunTimeNs   uint64 // programs, with run-time statistics
	RunCount    uint64
}

// Top is, for each ranking, the top_k objects, greatest first.
type Top struct {
	Memory  [MaxTopK]TopObject // maps with the most memory
	Fill    [MaxTopK]TopObject // maps with the greatest elements / max_entries
	RunTime [MaxTopK]TopObject // programs with the most run time
	N       [3]int             // entries in Memory, Fill, RunTime
}

// Feature is an optional capability of the collection.
type Feature int

const (
	FeatureMapIterator   Feature = iota // maps read by a BPF iterator
	FeatureProgIterator                 // programs read by a BPF iterator
	FeatureLinkIterator                 // links read by a BPF iterator
	FeatureElementCounts                // map element counts (kfunc bpf_map_sum_elem_count)
	FeatureRunTimeStats                 // program run time and count (BPF_ENABLE_STATS)
	// FeatureMemoryFormulaCheck: the map iterator's memory figures are
	// checked against fdinfo, a few maps per cycle (needs CAP_SYS_ADMIN).
	FeatureMemoryFormulaCheck
	// FeatureOwnership: the holders of objects are found (by the holders
	// iterator, or in syscall mode by reading procfs).
	FeatureOwnership
	NumFeatures
)

var featureNames = [NumFeatures]string{"map_iterator", "program_iterator", "link_iterator", "element_counts", "run_time_stats",
	"memory_formula_check", "ownership"}

// String returns the label value used in metrics.
func (f Feature) String() string { return featureNames[f] }

// Publisher hands the latest snapshot from the collector to readers. The
// collector copies a finished snapshot in; a reader copies it out. Each side
// holds the lock for one copy of a few kilobytes, never for a cycle, and
// neither allocates.
type Publisher struct {
	mu   sync.RWMutex
	snap Snapshot
}

// Publish replaces the published snapshot with a copy of *s.
func (p *Publisher) Publish(s *Snapshot) {
	p.mu.Lock()
	p.snap = *s
	p.mu.Unlock()
}

// Valid reports whether the published snapshot is of a complete cycle,
// without copying it.
func (p *Publisher) Valid() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.snap.Valid
}

// Load copies the published snapshot into *dst.
func (p *Publisher) Load(dst *Snapshot) {
	p.mu.RLock()
	*dst = p.snap
	p.mu.RUnlock()
}

// TypeIndex maps a kernel type number to its slot in KindStats.Types.
func TypeIndex(t uint32) int {
	if t >= MaxTypes-1 {
		return MaxTypes - 1
	}
	return int(t)
}

// TypeLabel is the label value of slot i of kind k: the kernel's name
// ("hash", "kprobe"...), "type_<n>" for a type this build does not name, or
// "unknown" for the overflow slot.
func TypeLabel(k kernel.Kind, i int) string { return typeLabels[k][i] }

var typeLabels = func() (l [kernel.NumKinds][MaxTypes]string) {
	for k := range kernel.NumKinds {
		for i := range MaxTypes - 1 {
			if l[k][i] = kernel.TypeName(k, uint32(i)); l[k][i] == "" {
				l[k][i] = "type_" + strconv.Itoa(i)
			}
		}
		l[k][MaxTypes-1] = "unknown"
	}
	return l
}()

// Seen reports whether type slot i was ever seen.
func (ks *KindStats) Seen(i int) bool { return ks.TypesSeen[i/64]&(1<<(uint(i)%64)) != 0 }

// SyscallsTotal is the number of system calls since start, all operations
// together.
func (s *Snapshot) SyscallsTotal() (n uint64) {
	for _, c := range s.Syscalls {
		n += c
	}
	return n
}
