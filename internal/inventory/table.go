// Package inventory keeps the objects the agent tracks in detail: per kind,
// preallocated parallel arrays of IDs and records sorted by ID, one pair for
// the previous cycle and one for the cycle being built. Walking the new IDs
// in ascending order against the previous array (a merge) tells which
// objects are already known, so that what cannot change is never read
// twice, and which are new or gone.
package inventory

import "github.com/ebpf-metrics/ebpf-metrics/internal/kernel"

// Table holds the tracked objects of one kind. It never grows: its arrays
// are allocated once, at the capacity the configuration gives. It is not
// safe for concurrent use; the records it hands out may be filled by other
// goroutines while the owner waits for them.
//
// AddCopy builds a cycle in place while it repeats the last one: as long as
// every object added is the previous cycle's object at the same position
// (nothing created or removed before it), its record is written over the
// previous one and nothing is copied between the buffers; new objects
// after the last known one are appended in place too. At the first
// difference the prefix built so far moves to the other buffer and the
// cycle goes on there. A steady cycle thus copies only what changed.
type Table struct {
	prevIDs, curIDs   []uint32
	prevRecs, curRecs []kernel.Record
	cursor            int // merge position in prevIDs
	// same is the number of slots built in place in prev; prevLen the
	// length prev had at Begin; diverged: the cycle is built in cur.
	same, prevLen int
	diverged      bool
}

// NewTable allocates a table for capacity objects.
func NewTable(capacity int) *Table {
	return &Table{
		prevIDs:  make([]uint32, 0, capacity),
		curIDs:   make([]uint32, 0, capacity),
		prevRecs: make([]kernel.Record, 0, capacity),
		curRecs:  make([]kernel.Record, 0, capacity),
	}
}

// Capacity is the number of objects the table can track.
func (t *Table) Capacity() int { return cap(t.curIDs) }

// Len is the number of objects tracked after the last completed cycle.
func (t *Table) Len() int { return len(t.prevIDs) }

// Records returns the records of the last completed cycle, sorted by ID.
// They stay valid until the next Commit.
func (t *Table) Records() []kernel.Record { return t.prevRecs }

// Begin starts building the table of a new cycle.
func (t *Table) Begin() {
	t.curIDs = t.curIDs[:0]
	t.curRecs = t.curRecs[:0]
	t.cursor = 0
	t.same, t.prevLen, t.diverged = 0, len(t.prevIDs), false
}

// diverge moves the slots built in place to cur: from here on the cycle is
// built there, and prev is only read.
func (t *Table) diverge() {
	if t.diverged {
		return
	}
	t.curIDs = append(t.curIDs[:0], t.prevIDs[:t.same]...)
	t.curRecs = append(t.curRecs[:0], t.prevRecs[:t.same]...)
	t.prevIDs, t.prevRecs = t.prevIDs[:t.prevLen], t.prevRecs[:t.prevLen]
	t.diverged = true
}

// inPlace reports whether id, just passed to Known, can take the next slot
// in place: it is the previous cycle's object at that position, or comes
// after all of them.
func (t *Table) inPlace(id uint32) bool {
	switch {
	case t.diverged:
		return false
	case t.same < t.prevLen:
		return t.cursor == t.same && t.prevIDs[t.same] == id
	default:
		return t.cursor == t.prevLen && t.same < cap(t.prevIDs)
	}
}

// Known advances the merge to id, which must be greater than every ID
// passed since Begin, and returns the previous cycle's record of that
// object, or nil if it was not tracked.
func (t *Table) Known(id uint32) *kernel.Record {
	n := t.prevLen
	for t.cursor < n && t.prevIDs[t.cursor] < id {
		t.cursor++
	}
	if t.cursor < n && t.prevIDs[t.cursor] == id {
		return &t.prevRecs[t.cursor]
	}
	return nil
}

// Full reports whether the table being built has no free slot.
func (t *Table) Full() bool { return t.Building() == cap(t.curIDs) }

// Add appends a slot for id, which must be greater than the last ID added,
// and returns its index and record. The record holds what was there
// before: the caller sets every field it relies on. It panics when full.
func (t *Table) Add(id uint32) (int, *kernel.Record) {
	t.diverge()
	i := len(t.curIDs)
	t.curIDs = append(t.curIDs, id)
	t.curRecs = append(t.curRecs, kernel.Record{})
	return i, &t.curRecs[i]
}

// AddCopy appends a slot for id, which must be greater than the last ID
// added, holding a copy of *rec, and returns it. rec may be the record
// Known returned for id (not copied when the slot is built in place).
// It panics when full.
func (t *Table) AddCopy(id uint32, rec *kernel.Record) *kernel.Record {
	if t.inPlace(id) {
		i := t.same
		if i == len(t.prevIDs) {
			t.prevIDs = append(t.prevIDs, id)
			t.prevRecs = append(t.prevRecs, *rec)
		} else if rec != &t.prevRecs[i] {
			t.prevRecs[i] = *rec
		}
		t.same++
		return &t.prevRecs[i]
	}
	t.diverge()
	i := len(t.curIDs)
	t.curIDs = append(t.curIDs, id)
	t.curRecs = append(t.curRecs, *rec)
	return &t.curRecs[i]
}

// Slot returns the record at index i of the table being built.
func (t *Table) Slot(i int) *kernel.Record {
	if !t.diverged {
		return &t.prevRecs[i]
	}
	return &t.curRecs[i]
}

// Building returns the number of slots added since Begin.
func (t *Table) Building() int {
	if !t.diverged {
		return t.same
	}
	return len(t.curIDs)
}

// Compact drops, of the slots added from index from on, those whose record
// ID the caller set to 0 (objects that vanished while being read), keeping
// the others in order. Object IDs start at 1, so 0 is free to mark with.
func (t *Table) Compact(from int) {
	t.diverge()
	w := from
	for r := from; r < len(t.curIDs); r++ {
		if t.curRecs[r].ID == 0 {
			continue
		}
		if w != r {
			t.curIDs[w] = t.curIDs[r]
			t.curRecs[w] = t.curRecs[r]
		}
		w++
	}
	t.curIDs = t.curIDs[:w]
	t.curRecs = t.curRecs[:w]
}

// Commit makes the table being built the current one.
func (t *Table) Commit() {
	if t.diverged {
		t.prevIDs, t.curIDs = t.curIDs, t.prevIDs
		t.prevRecs, t.curRecs = t.curRecs, t.prevRecs
	} else {
		// Built in place: objects after the last one added are gone.
		t.prevIDs, t.prevRecs = t.prevIDs[:t.same], t.prevRecs[:t.same]
	}
	t.Begin()
}

// Abort drops the table being built; the last completed one's objects
// stay. Records already updated in place keep their newer contents (the
// same objects, read later), and objects appended in place are dropped.
func (t *Table) Abort() {
	if !t.diverged {
		t.prevIDs, t.prevRecs = t.prevIDs[:t.prevLen], t.prevRecs[:t.prevLen]
	}
	t.Begin()
}
