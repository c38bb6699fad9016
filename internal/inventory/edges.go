package inventory

import (
	"cmp"
	"slices"
)

// Edges remembers, for the programs the tables track, the maps each uses.
// A program's used maps come only with a full read of it (its first cycle,
// or every cycle beyond the table), and never change: a steady cycle, which
// reads no program in full, finds them here. They tie a map that no process
// holds to the holder of a program that uses it.
//
// Like Table, it is built cycle by cycle into the second of two buffers of
// fixed capacity, and committed or aborted with the tables. Programs may
// come in any order: a syscall pass accounts some programs as it lists
// them and others when their batch is read.
type Edges struct {
	prev, cur []edge // prev sorted by (prog, map)
	dropped   uint64 // edges not kept this cycle for want of room
}

type edge struct{ prog, m uint32 }

// NewEdges allocates room for capacity edges (program, map) in each buffer.
func NewEdges(capacity int) *Edges {
	return &Edges{prev: make([]edge, 0, capacity), cur: make([]edge, 0, capacity)}
}

// Begin starts a cycle.
func (e *Edges) Begin() {
	e.cur = e.cur[:0]
	e.dropped = 0
}

// Keep carries over the maps of prog, known from the last cycle, and
// appends them to out.
func (e *Edges) Keep(prog uint32, out []uint32) []uint32 {
	i, _ := slices.BinarySearchFunc(e.prev, prog, func(x edge, p uint32) int { return cmp.Compare(x.prog, p) })
	for ; i < len(e.prev) && e.prev[i].prog == prog; i++ {
		out = append(out, e.prev[i].m)
		e.add(prog, e.prev[i].m)
	}
	return out
}

// Put records the maps of prog, read in full this cycle.
func (e *Edges) Put(prog uint32, maps []uint32) {
	for _, m := range maps {
		e.add(prog, m)
	}
}

func (e *Edges) add(prog, m uint32) {
	if len(e.cur) == cap(e.cur) {
		e.dropped++
		return
	}
	e.cur = append(e.cur, edge{prog, m})
}

// Mark and Truncate undo the edges added by a pass read again.
func (e *Edges) Mark() int      { return len(e.cur) }
func (e *Edges) Truncate(n int) { e.cur = e.cur[:n] }

// Dropped is how many edges the cycle being built could not keep.
func (e *Edges) Dropped() uint64 { return e.dropped }

// Commit makes the cycle being built the current one.
func (e *Edges) Commit() {
	slices.SortFunc(e.cur, func(a, b edge) int {
		if c := cmp.Compare(a.prog, b.prog); c != 0 {
			return c
		}
		return cmp.Compare(a.m, b.m)
	})
	e.prev, e.cur = e.cur, e.prev
	e.Begin()
}

// Abort drops the cycle being built.
func (e *Edges) Abort() { e.Begin() }
