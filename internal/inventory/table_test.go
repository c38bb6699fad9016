package inventory

import (
	"testing"

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
