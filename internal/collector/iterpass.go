// The iterator pass: one BPF iterator read per kind, merged with the
// table: full records for new objects, short ones for known objects.

package collector

import (
	"context"
	"fmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// collectKindIter reads kind k with its BPF iterator: one pass of a few
// large reads. Objects above the threshold come in full; the others carry
// only what can change and are merged with their record of the last cycle.
func (c *Collector) collectKindIter(ctx context.Context, k kernel.Kind) error {
	t, agg, stats := c.beginKind(k)
	if err := c.iters.Begin(k, c.fullAbove(k), stats); err != nil {
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
		c.maxs[k] = max(c.maxs[k], id)
		if id > c.prevMax[k] {
			c.above[k]++
		}
		prev := t.Known(id)
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
			// A short record of an object the table does not hold: the
			// table and the kernel disagree (a cycle stopped half-way
			// between them). Count it; ask for full records next time.
			c.resync[k] = true
			agg.Objects++
			agg.Unreadable++
			continue
		}
		// The iterator gave no memory: the map type's memory cannot be
		// computed in BPF on this kernel, or it has not changed.
		if k == kernel.KindMap && scan.Fields&kernel.HasMemory == 0 && c.fallback != nil &&
			(full || prev == nil || rec.Fields&kernel.HasMemory == 0 || kernel.MemoryVaries(k, rec)) {
			c.memoryByFDInfo(k, rec)
		}
		c.account(k, rec)
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

// memoryByFDInfo reads from fdinfo the memory of a map whose memory the
// iterator could not compute on this kernel: once for a new map, every
// cycle for a type whose memory follows its contents. It needs
// CAP_SYS_ADMIN (c.fallback); without it the memory stays unknown and is
// counted as such.
func (c *Collector) memoryByFDInfo(k kernel.Kind, rec *kernel.Record) {
	err := c.fallback.Read(k, rec.ID, kernel.NeedMemory, rec)
	if err != nil && !kernel.Gone(err) {
		rec.Fields &^= kernel.HasMemory
	}
}
