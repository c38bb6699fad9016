package history

import (
	"strconv"
	"testing"
)

// testOwnerKey is what issue "Whose is it" labels owners with.
type testOwnerKey struct{ owner, container, pod string }

func putOwners(s *SeriesSet[testOwnerKey], keys []testOwnerKey, v float64) {
	for _, k := range keys {
		s.Put(k, v, func() []Label {
			return []Label{{"owner", k.owner}, {"container_id", k.container}, {"pod_uid", k.pod}}
		})
	}
}

func setup(t *testing.T) (*History, func(ts int64, keys []testOwnerKey)) {
	h := newHistory(t, MinBytes)
	set := NewSeriesSet[testOwnerKey](h, "odigos_ebpf_owner_memory_bytes")
	total := h.Series("odigos_ebpf_total_memory_bytes")
	return h, func(ts int64, keys []testOwnerKey) {
		putOwners(set, keys, float64(ts%1000))
		h.Begin(ts)
		h.Set(total, 1)
		set.Emit()
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
		if mem := h.Stats().MemoryBytes; mem > MinBytes {
			t.Fatalf("%d bytes held", mem)
		}
	}
}

// The top owners (max_owners 50 and "other") in the smallest history, one
// of them replaced by a new one every 20 cycles, for 20,000 cycles: slots are
// reused as the oldest blocks go (sooner than the ring would drop them,
// when the table is full), nothing is refused, the memory stays within the
// bound, and the last cycle has all 51. A steady set allocates nothing.
func TestSeriesSetChurn(t *testing.T) {
	h, row := setup(t)
	keys := make([]testOwnerKey, 51)
	for i := range keys {
		keys[i] = testOwnerKey{"comm" + strconv.Itoa(i), "c" + strconv.Itoa(i), ""}
	}
	ts := int64(0)
	for cycle := range 20000 {
		if cycle%20 == 0 {
			i := cycle / 20 % 51
			keys[i] = testOwnerKey{"comm" + strconv.Itoa(cycle), "c" + strconv.Itoa(i), "pod-" + strconv.Itoa(cycle)}
		}
		ts += 1000
		row(ts, keys)
	}
	st := h.Stats()
	t.Logf("%+v", st)
	if st.Dropped != 0 {
		t.Errorf("%d samples dropped", st.Dropped)
	}
	got := queryAll(t, h, Query{Names: []string{"odigos_ebpf_owner_memory_bytes"}})
	last := 0
	for _, pts := range got {
		if _, ok := pts[ts]; ok {
			last++
		}
	}
	if last != 51 || st.Rows < 100 {
		t.Errorf("%d owners at the last cycle, want 51; %d rows kept", last, st.Rows)
	}
	if n := testing.AllocsPerRun(1000, func() { ts += 1000; row(ts, keys) }); n != 0 {
		t.Errorf("%v allocations per cycle with a steady set", n)
	}
}

// Half of 51 owners new at every cycle is more than the table can follow:
// the history refuses and counts what does not fit, keeps the newest
// block or two, and stays within its bound.
func TestSeriesSetOverflow(t *testing.T) {
	h, row := setup(t)
	keys := make([]testOwnerKey, 51)
	ts := int64(0)
	for cycle := range 2000 {
		for i := range keys {
			gen := cycle
			if i%2 == 0 {
				gen = cycle / 10
			}
			keys[i] = testOwnerKey{"comm" + strconv.Itoa(i) + "-" + strconv.Itoa(gen), "c" + strconv.Itoa(i), ""}
		}
		ts += 1000
		row(ts, keys)
	}
	st := h.Stats()
	if st.Dropped == 0 || st.Newest != ts {
		t.Errorf("%+v", st)
	}
}
