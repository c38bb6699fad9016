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
type Table struct {
	prevIDs, curIDs   []uint32
	prevRecs, curRecs []kernel.Record
	cursor            int // merge position in prevIDs
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
}

// Known advances the merge to id, which must be greater than every ID
// passed since Begin, and returns the previous cycle's record of that
// object, or nil if it was not tracked.
func (t *Table) Known(id uint32) *kernel.Record {
	for t.cursor < len(t.prevIDs) && t.prevIDs[t.cursor] < id {
		t.cursor++
	}
	if t.cursor < len(t.prevIDs) && t.prevIDs[t.cursor] == id {
		return &t.prevRecs[t.cursor]
	}
	return nil
}

// Full reports whether the table being built has no free slot.
func (t *Table) Full() bool { return len(t.curIDs) == cap(t.curIDs) }

// Add appends a slot for id, which must be greater than the last ID added,
// and returns its index and record. The record holds what was there
// before: the caller sets every field it relies on. It panics when full.
func (t *Table) Add(id uint32) (int, *kernel.Record) {
	i := len(t.curIDs)
	t.curIDs = append(t.curIDs, id)
	t.curRecs = append(t.curRecs, kernel.Record{})
	return i, &t.curRecs[i]
}

// AddCopy appends a slot for id, which must be greater than the last ID
// added, holding a copy of *rec, and returns it. It panics when full.
func (t *Table) AddCopy(id uint32, rec *kernel.Record) *kernel.Record {
	i := len(t.curIDs)
	t.curIDs = append(t.curIDs, id)
	t.curRecs = append(t.curRecs, *rec)
	return &t.curRecs[i]
}

// Slot returns the record at index i of the table being built.
func (t *Table) Slot(i int) *kernel.Record { return &t.curRecs[i] }

// Building returns the number of slots added since Begin.
func (t *Table) Building() int { return len(t.curIDs) }

// Compact drops, of the slots added from index from on, those whose record
// ID the caller set to 0 (objects that vanished while being read), keeping
// the others in order. Object IDs start at 1, so 0 is free to mark with.
func (t *Table) Compact(from int) {
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
	t.prevIDs, t.curIDs = t.curIDs, t.prevIDs
	t.prevRecs, t.curRecs = t.curRecs, t.prevRecs
	t.Begin()
}

// Abort drops the table being built; the last completed one stays.
func (t *Table) Abort() { t.Begin() }
