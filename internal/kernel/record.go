package kernel

import "golang.org/x/sys/unix"

// Record is one object as the agent keeps it. It has a fixed size and no
// pointers (a name is [16]byte), so that tables of records are plain arrays:
// reused every cycle, never scanned by the garbage collector.
type Record struct {
	ID         uint32
	Type       uint32 // MapType, ProgType or LinkType, by kind
	Flags      uint32 // maps: map_flags
	MaxEntries uint32 // maps
	Name       [16]byte
	ProgID     uint32 // links: the program the link holds
	// AttachType (links, HasAttachType): in syscall mode, for the link
	// types whose info carries one; from the link iterator, for every link,
	// on Linux 6.17 and later (bpf_link.attach_type).
	AttachType uint32
	Fields     Fields
	// Memory is the kernel's own figure in bytes (fdinfo memlock): maps'
	// bpf_map_memory_usage() (before Linux 6.4, the estimate
	// bpf_map_memory_footprint() made at creation), programs' pages *
	// PAGE_SIZE. Links: 0.
	Memory    uint64
	RunTimeNs uint64 // programs, with run-time statistics enabled
	RunCount  uint64 // programs, with run-time statistics enabled
	// Elements is the number of elements of a map whose type keeps an
	// exact count (HasElements): the hash family, through the kfunc
	// bpf_map_sum_elem_count (Linux 6.6 and later); LPM trie, queue,
	// stack, sockhash, devmap (Linux 6.4 and later) and devmap_hash, from
	// their own counters.
	// Arrays have none (they are full by construction).
	Elements uint64
}

// MaxUsedMaps is how many maps a program can use (the kernel's
// MAX_USED_MAPS).
const MaxUsedMaps = 64

// UsedMaps are the IDs of the maps a program uses, as a full read of the
// program gives them: what ties a map that no process holds to the holder
// of a program that uses it. Outside Records, which stay small: only the
// programs' reads fill one.
type UsedMaps struct {
	N   int
	IDs [MaxUsedMaps]uint32
}

// List returns the IDs.
func (u *UsedMaps) List() []uint32 { return u.IDs[:u.N] }

// Fields is the set of Record fields that a read filled.
type Fields uint16

const (
	HasDetails    Fields = 1 << iota // the fields that never change
	HasMemory                        // Memory
	HasStats                         // RunTimeNs, RunCount
	HasAttachType                    // AttachType
	HasElements                      // Elements
)

// Need selects what a Read must fill.
type Need uint8

const (
	// NeedDetails: everything that cannot change over an object's life
	// (type, sizes, flags, name, tag, attachment), and its memory.
	NeedDetails Need = 1 << iota
	// NeedMemory: memory only, for objects whose memory follows their contents.
	NeedMemory
	// NeedStats: run time and run count, for programs.
	NeedStats
)

// MemoryVaries reports whether an object's memory can change after it was
// created, so that it must be read again every cycle. Derived from the
// kernel's map_mem_usage callbacks (Linux 6.18): only maps that count what
// they allocate on demand vary; every other map type (arrays, preallocated
// and LRU hash maps, queues, ring buffers, storage maps, whose storages are
// not counted...), every program (prog->pages) and every link is fixed at
// creation.
//
// The map iterator has the same list (map_memory_varies in bpf/mapmem.h).
// Before Linux 6.4 a map's memlock is fixed at creation whatever its type:
// there, reading it again is merely redundant.
func MemoryVaries(k Kind, rec *Record) bool {
	if k != KindMap {
		return false
	}
	switch MapType(rec.Type) {
	case MapTypeHash, MapTypePercpuHash, MapTypeHashOfMaps:
		// htab_map_mem_usage: elements are counted unless preallocated.
		return rec.Flags&unix.BPF_F_NO_PREALLOC != 0
	case MapTypeLpmTrie, // trie_mem_usage: n_entries * node size
		MapTypeSockhash,   // sock_hash_mem_usage: count * elem_size
		MapTypeDevmap,     // dev_map_mem_usage: items * sizeof(bpf_dtab_netdev),
		MapTypeDevmapHash, // for both devmap types
		MapTypeXskmap:     // xsk_map_mem_usage: count * sizeof(xsk_map_node)
		return true
	}
	return false
}

// TypeName returns the type's name as bpftool prints it ("hash",
// "percpu_array", "socket_filter", "tracing"...), or "" for a type this
// build does not know.
func TypeName(k Kind, typ uint32) string {
	var names []string
	switch k {
	case KindMap:
		names = mapTypeNames[:]
	case KindProg:
		names = progTypeNames[:]
	case KindLink:
		names = linkTypeNames[:]
	}
	if int(typ) < len(names) {
		return names[typ]
	}
	return ""
}

// AttachTypeName returns the attach type's name ("cgroup_inet_ingress",
// "trace_iter"...), or "" if unknown.
func AttachTypeName(t uint32) string {
	if int(t) < len(attachTypeNames) {
		return attachTypeNames[t]
	}
	return ""
}

// NameString returns a record's name up to its first NUL. It allocates; use
// it for logs and tests, not in the cycle.
func (r *Record) NameString() string {
	for i, c := range r.Name {
		if c == 0 {
			return string(r.Name[:i])
		}
	}
	return string(r.Name[:])
}

func fillMap(rec *Record, info *MapInfo) {
	rec.Type = info.Type
	rec.Flags = info.MapFlags
	rec.MaxEntries = info.MaxEntries
	rec.Name = info.Name
	rec.Fields |= HasDetails
}

func fillProg(rec *Record, info *ProgInfo, need Need) {
	if need&NeedDetails != 0 {
		rec.Type = info.Type
		rec.Name = info.Name
		rec.Fields |= HasDetails
	}
	if need&NeedStats != 0 {
		rec.RunTimeNs = info.RunTimeNs
		rec.RunCount = info.RunCnt
		rec.Fields |= HasStats
	}
}

func fillLink(rec *Record, info *LinkInfo) {
	rec.Type = info.Type
	rec.ProgID = info.ProgID
	if at, ok := info.AttachType(); ok {
		rec.AttachType = uint32(at)
		rec.Fields |= HasAttachType
	}
	rec.Fields |= HasDetails
}
