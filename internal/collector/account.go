// Accounting: what each object adds to the cycle's aggregates.

package collector

import (
	"slices"

	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// beginKind starts building kind k's table and aggregates for a pass, and
// tells whether the pass reads run-time statistics.
func (c *Collector) beginKind(k kernel.Kind) (*inventory.Table, *snapshot.KindStats, bool) {
	t := c.tables[k]
	t.Begin()
	// known is the ID up to which the last complete cycle's table held
	// every object listed: there, an ID the table does not know is new.
	// Above it, where objects were counted but not kept, only an ID above
	// the last cycle's greatest tells.
	c.known[k] = 0
	if c.prevUnreadable[k] == 0 {
		if n := t.Len(); uint64(n) == c.prevCount[k] {
			c.known[k] = c.prevMax[k]
		} else if n > 0 {
			c.known[k] = t.Records()[n-1].ID
		}
	}
	agg := &c.agg[k]
	*agg = snapshot.KindStats{Capacity: uint64(t.Capacity())}
	c.maxs[k], c.fresh[k] = 0, 0
	c.ownAgg[k] = snapshot.OwnStats{}
	return t, agg, c.snap.SystemStats && k == kernel.KindProg
}

// noteID records that object id of kind k was listed; prev is its record of
// the last complete cycle, if the table held it. IDs are allocated
// cyclically and wrap at INT_MAX (idr_alloc_cyclic), so a new object is
// not always above the greatest ID seen: it is one not seen before,
// wherever it falls.
func (c *Collector) noteID(k kernel.Kind, id uint32, prev *kernel.Record) {
	c.maxs[k] = max(c.maxs[k], id)
	if prev == nil && (id > c.prevMax[k] || id <= c.known[k]) {
		c.fresh[k]++
	}
}

// endKind completes kind k's aggregates at the end of a pass. Unreadable
// objects are counted apart from the untracked ones.
func (c *Collector) endKind(k kernel.Kind) {
	agg := &c.agg[k]
	agg.Tracked = uint64(c.tables[k].Building())
	agg.Untracked = agg.Objects - agg.Tracked - agg.Unreadable
}

// account adds one readable object to the cycle's aggregates.
// maps are the maps rec uses, if it is a program.
func (c *Collector) account(k kernel.Kind, rec *kernel.Record, maps []uint32) {
	agg := &c.agg[k]
	ti := snapshot.TypeIndex(rec.Type)
	ts := &agg.Types[ti]
	agg.Objects++
	ts.Objects++
	if k != kernel.KindLink && rec.Fields&kernel.HasMemory == 0 {
		agg.MemoryUnknown++
	}
	agg.MemoryBytes += rec.Memory
	ts.MemoryBytes += rec.Memory
	ts.RunTimeNs += rec.RunTimeNs
	ts.RunCount += rec.RunCount
	if rec.Fields&kernel.HasElements != 0 && rec.MaxEntries > 0 {
		ts.Elements += rec.Elements
		ts.MaxEntries += uint64(rec.MaxEntries)
		if rec.Elements*10 > uint64(rec.MaxEntries)*9 {
			ts.NearFull++
		}
	}
	c.seen[k][ti/64] |= 1 << (uint(ti) % 64)
	if own := c.own[k]; len(own) > 0 && rec.ID >= own[0] && rec.ID <= own[len(own)-1] {
		if _, ok := slices.BinarySearch(own, rec.ID); ok {
			c.ownAgg[k].Objects++
			c.ownAgg[k].MemoryBytes += rec.Memory
		}
	}
	c.attribute(k, rec, maps)
}

// countUnreadable counts an object listed but not read: in its kind, and
// for its owner, whose objects must sum to the kind's (its memory is
// unknown, and in no total).
func (c *Collector) countUnreadable(k kernel.Kind, id uint32) {
	c.agg[k].Objects++
	c.agg[k].Unreadable++
	c.unread = kernel.Record{ID: id}
	c.attribute(k, &c.unread, nil)
}
