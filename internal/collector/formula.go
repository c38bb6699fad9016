// The memory formula guard: the map iterator recomputes in BPF what each
// map type's map_mem_usage returns, and a future kernel may change one.

package collector

import (
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// formulaChecks is how many map types a cycle checks, one map each: each
// check costs five system calls (open by ID, fdinfo, close).
const formulaChecks = 2

// formulaGuard compares, where fdinfo is readable (CAP_SYS_ADMIN), the
// memory the iterator computed for a few maps per cycle with fdinfo's
// memlock, rotating through the map types present and through the maps of
// each type. Two disagreements in a row on a type (memory that follows
// contents can change between the two reads: one is not enough) make it
// read that type from fdinfo from then on.
type formulaGuard struct {
	targets [formulaChecks]int // type slots to check this pass; -1: none
	done    [formulaChecks]bool
	last    [snapshot.MaxTypes]uint32 // ID of the map last checked, by type
	suspect [snapshot.MaxTypes]bool   // one disagreement: check it again next
	broken  [snapshot.MaxTypes]bool   // read from fdinfo from now on
	// uncomputed: the iterator gives no memory for the type on this
	// kernel, which is read from fdinfo: nothing to check.
	uncomputed [snapshot.MaxTypes]bool
	cursor     int           // the next type slot of the rotation
	fdinfo     kernel.Record // scratch record for fdinfo reads
}

func newFormulaGuard() formulaGuard {
	g := formulaGuard{}
	for i := range g.targets {
		g.targets[i] = -1
	}
	return g
}

// wants reports whether map id of type slot is this pass's check of its
// type: the first map after the one checked last time (wrapping around to
// the lowest ID when the last one was the greatest, which endPass does).
func (g *formulaGuard) wants(slot int, id uint32) bool {
	for i, t := range g.targets {
		if t == slot && !g.done[i] && id > g.last[slot] {
			g.done[i] = true
			return true
		}
	}
	return false
}

// checkFormula compares map rec's computed memory with fdinfo's.
func (c *Collector) checkFormula(rec *kernel.Record, slot int) {
	g := &c.guard
	g.last[slot] = rec.ID
	g.fdinfo = kernel.Record{}
	if err := c.fallback.Read(kernel.KindMap, rec.ID, kernel.NeedMemory, &g.fdinfo); err != nil ||
		g.fdinfo.Fields&kernel.HasMemory == 0 {
		return // gone, or unreadable: counted by the gate
	}
	if g.fdinfo.Memory == rec.Memory {
		g.suspect[slot] = false
		return
	}
	if !g.suspect[slot] {
		g.suspect[slot] = true
		g.last[slot] = rec.ID - 1 // the same map again next cycle
		return
	}
	g.suspect[slot] = false
	g.broken[slot] = true
	c.snap.FormulaMismatches[slot]++
	c.logger.Warn("the map iterator's memory formula disagrees with the kernel's: reading this map type's memory from fdinfo",
		"map_type", snapshot.TypeLabel(kernel.KindMap, slot), "id", rec.ID, "iterator_bytes", rec.Memory,
		"fdinfo_bytes", g.fdinfo.Memory)
	rec.Memory = g.fdinfo.Memory // this cycle's figure is fdinfo's already
	// Every map of the type gets its memory from fdinfo: the next pass
	// sends full records, which read it.
	c.resync[kernel.KindMap] = true
}

// endPass chooses the next pass's targets among the types present in agg:
// a suspect type first, then the rotation.
func (g *formulaGuard) endPass(agg *snapshot.KindStats) {
	for i, t := range g.targets {
		if t >= 0 && !g.done[i] {
			g.last[t] = 0 // no map after the last one checked: wrap around
		}
	}
	n := 0
	for slot := range g.suspect {
		if n < formulaChecks && g.suspect[slot] && agg.Types[slot].Objects > 0 {
			g.targets[n] = slot
			n++
		}
	}
	for tries := 0; n < formulaChecks && tries < snapshot.MaxTypes; tries++ {
		slot := g.cursor
		g.cursor = (g.cursor + 1) % snapshot.MaxTypes
		if agg.Types[slot].Objects > 0 && !g.broken[slot] && !g.suspect[slot] && !g.uncomputed[slot] {
			g.targets[n] = slot
			n++
		}
	}
	for i := range g.targets {
		if i >= n {
			g.targets[i] = -1
		}
		g.done[i] = false
	}
}
