package inventory

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// build runs one cycle over ids: known records are carried over, new ones
// get Memory = id, and the IDs in gone are dropped by Compact.
func build(t *testing.T, tb *Table, ids []uint32, gone map[uint32]bool) (known int) {
	t.Helper()
	tb.Begin()
	for _, id := range ids {
		if tb.Full() {
			break
		}
		prev := tb.Known(id)
		_, rec := tb.Add(id)
		if prev != nil {
			*rec = *prev
			known++
		} else {
			*rec = kernel.Record{ID: id, Memory: uint64(id)}
		}
		if gone[id] {
			rec.ID = 0
		}
	}
	tb.Compact(0)
	tb.Commit()
	return known
}

func ids(tb *Table) []uint32 {
	var out []uint32
	for _, r := range tb.Records() {
		out = append(out, r.ID)
	}
	return out
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTableMergeCarriesKnownRecords(t *testing.T) {
	tb := NewTable(4)
	if known := build(t, tb, []uint32{3, 5, 9}, nil); known != 0 {
		t.Fatal("nothing is known in the first cycle")
	}
	// 5 went away, 11 and 12 arrived; 12 does not fit.
	if known := build(t, tb, []uint32{3, 9, 11, 12, 13}, nil); known != 2 {
		t.Fatalf("%d known, want 2 (3 and 9)", known)
	}
	if got := ids(tb); !equal(got, []uint32{3, 9, 11, 12}) {
		t.Fatalf("table %v", got)
	}
	if tb.Len() != 4 || tb.Capacity() != 4 {
		t.Fatalf("len %d cap %d", tb.Len(), tb.Capacity())
	}
}

func TestTableCompactDropsMarked(t *testing.T) {
	tb := NewTable(8)
	build(t, tb, []uint32{1, 2, 3, 4, 5, 6}, map[uint32]bool{2: true, 5: true})
	if got := ids(tb); !equal(got, []uint32{1, 3, 4, 6}) {
		t.Fatalf("table %v", got)
	}
	for _, r := range tb.Records() {
		if r.Memory != uint64(r.ID) {
			t.Fatalf("record %d moved without its data: %+v", r.ID, r)
		}
	}
}

func TestTableAbortKeepsLastComplete(t *testing.T) {
	tb := NewTable(4)
	build(t, tb, []uint32{1, 2}, nil)
	tb.Begin()
	tb.Add(7)
	tb.Abort()
	if got := ids(tb); !equal(got, []uint32{1, 2}) {
		t.Fatalf("table %v after abort", got)
	}
}

func TestTableCycleAllocatesNothing(t *testing.T) {
	tb := NewTable(100)
	list := make([]uint32, 100)
	for i := range list {
		list[i] = uint32(i*3 + 1)
	}
	build(t, tb, list, nil)
	allocs := testing.AllocsPerRun(100, func() { build(t, tb, list, nil) })
	if allocs != 0 {
		t.Fatalf("%v allocations per cycle", allocs)
	}
}

func TestTableBytes(t *testing.T) {
	if got, want := TableBytes([kernel.NumKinds]int{500, 200, 100}), uint64(800)*uint64(BytesPerTracked); got != want {
		t.Fatalf("%d, want %d", got, want)
	}
}

// TestCheckBudget: the tables and the history must fit half the memory
// budget, to the byte.
func TestCheckBudget(t *testing.T) {
	// Capacities whose tables need more than 1 MiB, so that the budget, not
	// config.MinMemoryBytes, decides at the boundary.
	big := [3]int{10000, 5000, 2000}
	bigNeed := TableBytes(big)
	keys := []string{"max_tracked_maps", "max_tracked_programs", "max_tracked_links", "history_bytes", "max_memory_bytes"}
	const hist = 256 << 10
	for _, tc := range []struct {
		name    string
		caps    [3]int
		mem     uint64
		history uint64
		want    []string // nil: fits
	}{
		{"production", [3]int{500, 200, 100}, 10 << 20, hist, nil},
		{"a million maps in 10MiB", [3]int{1000000, 200, 100}, 10 << 20, hist,
			append(keys, strconv.FormatUint(TableBytes([3]int{1000000, 200, 100}), 10), "5242880")},
		{"tables exactly half", big, 2 * bigNeed, 0, nil},
		{"tables one byte over half", big, 2*bigNeed - 1, 0,
			append(keys, strconv.FormatUint(bigNeed, 10), strconv.FormatUint(bigNeed-1, 10))},
		{"tables and history exactly half", big, 2 * (bigNeed + hist), hist, nil},
		{"tables and history one byte over half", big, 2*(bigNeed+hist) - 2, hist,
			append(keys, strconv.FormatUint(bigNeed+hist, 10), strconv.FormatUint(bigNeed+hist-1, 10))},
		{"history alone over half", [3]int{1, 1, 1}, 2 << 20, 1 << 20,
			append(keys, "1048576", strconv.FormatUint(TableBytes([3]int{1, 1, 1})+1<<20, 10))},
		{"capacity out of range: Validate's to say", [3]int{0, 1, 1}, 1, hist, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.ForProfile(config.ProfileProduction)
			if err != nil {
				t.Fatal(err)
			}
			c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks = tc.caps[0], tc.caps[1], tc.caps[2]
			c.MaxMemoryBytes = tc.mem
			c.HistoryBytes = tc.history
			err = CheckBudget(&c)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not name %s", err, w)
				}
			}
		})
	}
}

// mergeCycle runs one cycle the way the iterator collector does: Known,
// then AddCopy of the previous record (Memory incremented: the changing
// field) or of a new one (Memory = id), until the table is full. stop > 0
// aborts after that many objects instead of committing. It reports whether
// the cycle left the in-place path.
func mergeCycle(tb *Table, ids []uint32, stop int) (diverged bool) {
	tb.Begin()
	for n, id := range ids {
		if stop > 0 && n == stop {
			diverged = tb.diverged
			tb.Abort()
			return diverged
		}
		if tb.Full() {
			break
		}
		if prev := tb.Known(id); prev != nil {
			rec := tb.AddCopy(id, prev)
			rec.Memory++
		} else {
			tb.AddCopy(id, &kernel.Record{ID: id, Memory: uint64(id)})
		}
	}
	diverged = tb.diverged
	tb.Commit()
	return diverged
}

// TestTableInPlace checks the in-place path against a model over cycles
// that repeat, remove, append and insert, with aborts, and that a cycle
// that repeats the last one (or only appends to it) copies nothing.
func TestTableInPlace(t *testing.T) {
	const capacity = 8
	type step struct {
		ids     []uint32
		stop    int  // abort after this many objects
		inPlace bool // the cycle must not diverge; without stop, it must otherwise
	}
	steps := []step{
		{ids: []uint32{2, 4, 6}, inPlace: true},                      // first cycle: appended in place
		{ids: []uint32{2, 4, 6}, inPlace: true},                      // steady
		{ids: []uint32{2, 4, 6, 7, 9}, inPlace: true},                // new objects after the last
		{ids: []uint32{2, 4, 6, 7}, inPlace: true},                   // the last one gone
		{ids: []uint32{2, 6, 7}},                                     // one gone in the middle
		{ids: []uint32{2, 3, 6, 7}},                                  // one new in the middle
		{ids: []uint32{2, 3, 6, 7, 8, 10}, stop: 5},                  // aborted after appending 8
		{ids: []uint32{2, 3, 6, 7, 8, 10}, stop: 2},                  // aborted in place
		{ids: []uint32{1, 2, 3, 6, 7, 8, 10, 11, 12}},                // one new before all; the last does not fit
		{ids: []uint32{1, 2, 3, 6, 7, 8, 10, 11, 12}, inPlace: true}, // full: 12 still does not fit
	}
	tb := NewTable(capacity)
	model := map[uint32]uint64{} // the memory each tracked object must show
	var tracked []uint32
	for i, s := range steps {
		diverged := mergeCycle(tb, s.ids, s.stop)
		if s.inPlace && diverged {
			t.Errorf("step %d: copied to the other buffer, want in place", i)
		}
		if !s.inPlace && s.stop == 0 && !diverged {
			t.Errorf("step %d: built in place over a changed ID sequence", i)
		}
		next := map[uint32]uint64{}
		var nextTracked []uint32
		for n, id := range s.ids {
			if s.stop > 0 && n == s.stop || len(nextTracked) == capacity {
				break
			}
			if m, ok := model[id]; ok {
				next[id] = m + 1
			} else {
				next[id] = uint64(id)
			}
			nextTracked = append(nextTracked, id)
		}
		if s.stop > 0 {
			// Aborted: the last complete cycle's objects, those reached
			// with their newer memory.
			for _, id := range tracked {
				if m, ok := next[id]; ok {
					model[id] = m
				}
			}
		} else {
			model, tracked = next, nextTracked
		}
		if got := ids(tb); !equal(got, tracked) {
			t.Fatalf("step %d: table %v, want %v", i, got, tracked)
		}
		for _, r := range tb.Records() {
			if r.Memory != model[r.ID] {
				t.Fatalf("step %d: object %d memory %d, want %d", i, r.ID, r.Memory, model[r.ID])
			}
		}
	}
}
