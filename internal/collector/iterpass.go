// The iterator pass: one BPF iterator read per kind, merged with the
// table: full records for new objects, short ones for known objects.

package collector

import (
	"context"
	"fmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// errRepass ends a pass that met a short record of an object the table
// does not know; it is read again with full records from that ID on.
type errRepass struct{ from uint32 }

func (e errRepass) Error() string { return "a short record of an unknown object" }

// collectKindIter reads kind k with its iterator. Objects above the
// threshold come in full; the others carry only what can change and are
// merged with their record of the last cycle.
//
// An object the table does not know can come with a short record when its
// ID is below the threshold: IDs are allocated cyclically and wrap at
// INT_MAX, after which a new object can have any ID. The pass is then
// started again, once, with full records from that ID on.
func (c *Collector) collectKindIter(ctx context.Context, k kernel.Kind) error {
	fullAbove := c.fullAbove(k)
	c.attr.save()
	err := c.iterPass(ctx, k, fullAbove, false)
	if re, ok := err.(errRepass); ok {
		c.tables[k].Abort()
		c.attr.restore()
		err = c.iterPass(ctx, k, re.from-1, true)
	}
	return err
}

// iterPass is one pass of kind k's iterator. last: no pass follows, so a
// short record of an unknown object is counted as unreadable and the next
// cycle asks for full records.
func (c *Collector) iterPass(ctx context.Context, k kernel.Kind, fullAbove uint32, last bool) error {
	t, _, stats := c.beginKind(k)
	if err := c.iters.Begin(k, fullAbove, stats); err != nil {
		return fmt.Errorf("starting the %s iterator: %w", k, err)
	}
	defer c.iters.End()
	c.resync[k] = false
	scan := &c.scan
	for left := len(c.batch); ; {
		full, err := c.iters.Next(scan)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the %s iterator: %w", k, err)
		}
		id := scan.ID
		if id == 0 {
			// A link between bpf_link_prime and bpf_link_settle is in the
			// kernel's table without its ID yet: it is not there for
			// anyone else either; the next cycle sees it whole.
			continue
		}
		prev := t.Known(id)
		if prev == nil && !full && !last {
			return errRepass{from: id}
		}
		c.noteID(k, id, prev)
		var rec *kernel.Record
		switch {
		case prev != nil && !t.Full():
			if full {
				rec = t.AddCopy(id, scan)
			} else {
				rec = t.AddCopy(id, prev)
				overlay(rec, scan)
			}
		case full && !t.Full():
			rec = t.AddCopy(id, scan)
		case full:
			rec = scan // beyond the table: counted, not kept
		default:
			// A short record of an object the table does not hold, even
			// on the second pass: the table and the kernel disagree.
			// Count it; ask for full records next time.
			c.resync[k] = true
			c.countUnreadable(k, id)
			continue
		}
		if k == kernel.KindMap {
			c.mapMemory(rec, scan, full || prev == nil)
		}
		var maps []uint32
		if k == kernel.KindProg {
			maps = c.attr.programMaps(id, c.iters.UsedMaps(), full, rec != scan)
		}
		c.account(k, rec, maps)
		if left--; left == 0 {
			left = len(c.batch)
			c.snap.Batches++
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	// A pass allocates nothing: the budget is checked once, after it.
	if c.overBudget(false) {
		return ErrMemoryLimit
	}
	c.snap.Batches++
	c.endKind(k)
	if k == kernel.KindMap {
		c.guard.endPass(&c.agg[k])
	}
	return nil
}

// fullAbove is the ID above which the iterator must send full records:
// everything in the first cycle and after a disagreement; the objects new
// since the last cycle; and, with the table full, every object beyond it
// (read in full every cycle, as in syscall mode).
func (c *Collector) fullAbove(k kernel.Kind) uint32 {
	if !c.baseline || c.resync[k] {
		return 0
	}
	t := c.tables[k]
	if t.Len() == t.Capacity() && t.Len() > 0 {
		return min(c.prevMax[k], t.Records()[t.Len()-1].ID)
	}
	return c.prevMax[k]
}

// overlay copies onto a known record what a short record carries.
func overlay(rec, scan *kernel.Record) {
	const changing = kernel.HasMemory | kernel.HasElements | kernel.HasStats
	if scan.Fields&kernel.HasMemory != 0 {
		rec.Memory = scan.Memory
	}
	rec.Elements = scan.Elements
	rec.RunTimeNs = scan.RunTimeNs
	rec.RunCount = scan.RunCount
	rec.Fields = rec.Fields&^(kernel.HasElements|kernel.HasStats) | scan.Fields&changing
}

// mapMemory settles the memory of map rec, whose record from the iterator
// is scan. fdinfo (CAP_SYS_ADMIN) gives it for a map type whose memory the
// iterator cannot compute on this kernel, or whose formula the guard found
// wrong: once for a new map, every cycle for a type whose memory follows
// its contents. For the other types the guard may check the figure.
func (c *Collector) mapMemory(rec, scan *kernel.Record, first bool) {
	if c.fallback == nil {
		return
	}
	g := &c.guard
	slot := snapshot.TypeIndex(rec.Type)
	if first && scan.Fields&kernel.HasMemory == 0 {
		g.uncomputed[slot] = true
	}
	if g.uncomputed[slot] || g.broken[slot] {
		if first || rec.Fields&kernel.HasMemory == 0 || kernel.MemoryVaries(kernel.KindMap, rec) {
			c.memoryByFDInfo(rec)
		}
		return
	}
	if rec.Fields&kernel.HasMemory != 0 && g.wants(slot, rec.ID) {
		c.checkFormula(rec, slot)
	}
}

// memoryByFDInfo reads from fdinfo the memory of a map. It needs
// CAP_SYS_ADMIN (c.fallback); without it the memory stays unknown and is
// counted as such.
func (c *Collector) memoryByFDInfo(rec *kernel.Record) {
	err := c.fallback.Read(kernel.KindMap, rec.ID, kernel.NeedMemory, rec)
	if err != nil && !kernel.Gone(err) {
		rec.Fields &^= kernel.HasMemory
	}
}
