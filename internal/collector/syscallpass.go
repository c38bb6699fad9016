// The syscall pass: list IDs with BPF_*_GET_NEXT_ID and read, in batches
// through the pool, only what the table does not know or what can change.

package collector

import (
	"context"
	"fmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// collectKind lists every object of kind k, batch by batch, and builds the
// kind's aggregates and table. Nothing is committed here: a cycle that
// stops half-way leaves the last complete picture untouched.
func (c *Collector) collectKind(ctx context.Context, k kernel.Kind) error {
	t, _, stats := c.beginKind(k)
	var after uint32
	for done := false; !done; {
		n := 0
		from := t.Building()
		for n < len(c.batch) {
			id, err := c.src.NextID(k, after)
			if err == kernel.ErrEndOfList {
				done = true
				break
			}
			if err != nil {
				return fmt.Errorf("listing %ss after ID %d: %w", k, after, err)
			}
			after = id
			if c.plan(k, t, id, stats, &c.batch[n], &c.spare[n]) {
				n++
			}
		}
		c.pool.run(n)
		c.collectBatch(k, t, from, n)
		c.snap.Batches++
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.overBudget(false) {
			return ErrMemoryLimit
		}
	}
	c.endKind(k)
	return nil
}

// job is one object to read in a batch.
type job struct {
	kind  kernel.Kind
	id    uint32
	need  kernel.Need
	rec   *kernel.Record
	slot  int32 // index in the table being built, or -1 for an untracked object
	known bool  // rec holds the previous cycle's record
	err   error
	maps  kernel.UsedMaps // a program's maps, from a full read (NeedDetails)
}

// usedMaps returns the maps of the program of job j.
func (c *Collector) usedMaps(j *job) []uint32 {
	if j.kind != kernel.KindProg {
		return nil
	}
	full := j.err == nil && j.need&kernel.NeedDetails != 0
	return c.attr.programMaps(j.id, j.maps.List(), full, j.slot >= 0)
}

// plan decides what the object id needs: nothing (already tracked, nothing
// changes: accounted at once), a refresh of what changes, a first read into
// a free slot of the table, or, with the table full, a read into a spare
// record so that it is counted and its memory summed without being kept.
// It reports whether a job was queued.
func (c *Collector) plan(k kernel.Kind, t *inventory.Table, id uint32, stats bool, j *job, spare *kernel.Record) bool {
	prev := t.Known(id)
	c.noteID(k, id, prev)
	*j = job{kind: k, id: id, slot: -1}
	switch {
	case prev != nil && !t.Full():
		slot, rec := t.Add(id)
		*rec = *prev
		if kernel.MemoryVaries(k, rec) {
			j.need |= kernel.NeedMemory
		}
		if stats {
			j.need |= kernel.NeedStats
		}
		if j.need == 0 {
			var maps []uint32
			if k == kernel.KindProg {
				maps = c.attr.programMaps(id, nil, false, true)
			}
			c.account(k, rec, maps)
			return false
		}
		j.rec, j.slot, j.known = rec, int32(slot), true
	case !t.Full():
		slot, rec := t.Add(id)
		j.rec, j.slot, j.need = rec, int32(slot), kernel.NeedDetails
	default:
		*spare = kernel.Record{}
		j.rec, j.need = spare, kernel.NeedDetails
	}
	if stats {
		j.need |= kernel.NeedStats
	}
	return true
}

// collectBatch accounts the results of a batch and drops from the table the
// objects that vanished while being read, or that could not be read at all.
func (c *Collector) collectBatch(k kernel.Kind, t *inventory.Table, from, n int) {
	drops := false
	for i := range n {
		j := &c.batch[i]
		switch {
		case j.err == nil:
			c.account(k, j.rec, c.usedMaps(j))
			continue
		case kernel.Gone(j.err):
			// Released after it was listed: it is not there any more.
		case j.known:
			// A refresh failed: the record is still right but for what
			// changes; the gate counted and logged the failure.
			c.account(k, j.rec, c.usedMaps(j))
			continue
		default:
			// Listed but unreadable: it exists, its details do not.
			c.countUnreadable(k, j.id)
		}
		if j.slot >= 0 {
			j.rec.ID = 0
			drops = true
		}
	}
	if drops {
		t.Compact(from)
	}
}
