package inventory

import (
	"cmp"
	"slices"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// OwnerKey names an owner as the metrics label it: the holding process's
// comm, container and pod. Processes that share all three are one owner.
type OwnerKey struct {
	Comm      [16]byte
	Container string
	Pod       string
}

// OwnerStats is what one owner holds in a cycle.
type OwnerStats struct {
	Objects     [kernel.NumKinds]uint64
	MemoryBytes uint64
	RunTimeNs   uint64
	RunCount    uint64
}

// NoOwner is the slot of no owner: the table is full (the object's owner
// goes to "other").
const NoOwner = -1

// Owners is a table of owners of fixed capacity: a slot per owner seen,
// reused once that owner has not been seen for a cycle. Looking up a known
// owner allocates nothing; a new one costs a map insertion (and its
// strings, which the caller already holds).
type Owners struct {
	index map[OwnerKey]int32
	keys  []OwnerKey
	seen  []uint64 // the cycle each slot was last looked up in
	stats []OwnerStats
	cycle uint64
	full  uint64 // lookups refused this cycle for want of a slot
}

// NewOwners allocates a table of capacity owners.
func NewOwners(capacity int) *Owners {
	return &Owners{
		index: make(map[OwnerKey]int32, capacity),
		keys:  make([]OwnerKey, 0, capacity),
		seen:  make([]uint64, 0, capacity),
		stats: make([]OwnerStats, 0, capacity),
	}
}

// Begin starts a cycle: every owner's stats start at zero.
func (o *Owners) Begin() {
	o.cycle++
	o.full = 0
	clear(o.stats)
}

// Lookup returns the slot of key, giving it one if it has none, or NoOwner
// when every slot is taken by an owner seen this cycle.
func (o *Owners) Lookup(key *OwnerKey) int32 {
	if i, ok := o.index[*key]; ok {
		o.seen[i] = o.cycle
		return i
	}
	i := int32(len(o.keys))
	if len(o.keys) < cap(o.keys) {
		o.keys = append(o.keys, *key)
		o.seen = append(o.seen, o.cycle)
		o.stats = append(o.stats, OwnerStats{})
	} else {
		i = o.stale()
		if i == NoOwner {
			o.full++
			return NoOwner
		}
		delete(o.index, o.keys[i])
		o.keys[i], o.seen[i], o.stats[i] = *key, o.cycle, OwnerStats{}
	}
	o.index[*key] = i
	return i
}

// stale returns a slot not seen this cycle, or NoOwner.
func (o *Owners) stale() int32 {
	for i, c := range o.seen {
		if c != o.cycle {
			return int32(i)
		}
	}
	return NoOwner
}

// Key returns the key of slot i.
func (o *Owners) Key(i int32) *OwnerKey { return &o.keys[i] }

// Stats returns the stats of slot i in the cycle being built.
func (o *Owners) Stats(i int32) *OwnerStats { return &o.stats[i] }

// Len is the number of slots in use.
func (o *Owners) Len() int { return len(o.keys) }

// Seen reports whether slot i was looked up in this cycle.
func (o *Owners) Seen(i int32) bool { return o.seen[i] == o.cycle }

// SaveStats appends the stats of every slot to dst, for RestoreStats.
func (o *Owners) SaveStats(dst []OwnerStats) []OwnerStats { return append(dst[:0], o.stats...) }

// RestoreStats puts back stats saved by SaveStats: a pass read again
// undoes what it had added. Slots taken since keep no stats.
func (o *Owners) RestoreStats(saved []OwnerStats) {
	n := copy(o.stats, saved)
	clear(o.stats[n:])
}

// Refused is the number of lookups this cycle that found no slot.
func (o *Owners) Refused() uint64 { return o.full }

// Ref is an object of a cycle with the process that holds it (directly, or
// through an object that refers to it) and that process's owner.
type Ref struct {
	ID    uint32
	PID   uint32
	Owner int32 // an Owners slot, or NoOwner
}

// Refs is the objects of one kind that a cycle found held, for lookups by
// ID: filled, sorted once, then looked up. An object held by several
// processes goes to the one with the lowest PID, whatever the order they
// came in. Fixed capacity: what does not fit is counted.
type Refs struct {
	refs    []Ref
	dropped uint64
}

// NewRefs allocates room for capacity references.
func NewRefs(capacity int) *Refs { return &Refs{refs: make([]Ref, 0, capacity)} }

// Reset empties the index.
func (x *Refs) Reset() {
	x.refs = x.refs[:0]
	x.dropped = 0
}

// Add records that process pid, of owner, holds object id.
func (x *Refs) Add(id, pid uint32, owner int32) {
	if len(x.refs) == cap(x.refs) {
		x.dropped++
		return
	}
	x.refs = append(x.refs, Ref{id, pid, owner})
}

// Sort prepares the lookups.
func (x *Refs) Sort() {
	slices.SortFunc(x.refs, func(a, b Ref) int {
		if c := cmp.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return cmp.Compare(a.PID, b.PID)
	})
}

// Lookup returns the reference of object id with the lowest PID.
func (x *Refs) Lookup(id uint32) (Ref, bool) {
	i, ok := slices.BinarySearchFunc(x.refs, id, func(r Ref, id uint32) int { return cmp.Compare(r.ID, id) })
	if !ok {
		return Ref{}, false
	}
	return x.refs[i], true
}

// Truncate drops the references added after the first n.
func (x *Refs) Truncate(n int) { x.refs = x.refs[:n] }

// Dropped is the number of references that did not fit since Reset: when
// it is not 0, an object Lookup does not find may be held all the same.
func (x *Refs) Dropped() uint64 { return x.dropped }

// Len is the number of references.
func (x *Refs) Len() int { return len(x.refs) }
