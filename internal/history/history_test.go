package history

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

// The encodings' sizes, counted by hand from the format.
func TestXorBits(t *testing.T) {
	cases := []struct {
		vals []float64
		bits int
	}{
		// First value against 0: 42 is 0x4045000000000000, 1 leading and
		// 48 trailing zeros: '11', 5, 6 and 15 bits.
		{[]float64{42}, 28},
		// 1 is 0x3ff0000000000000: 2 leading, 52 trailing, 10 bits.
		{[]float64{1}, 23},
		// Equal values cost one bit each.
		{[]float64{42, 42, 42, 42}, 28 + 3},
		// 42 then 43 (0x4045800000000000): XOR 0x0000800000000000 has 16
		// leading and 47 trailing zeros, outside 42's window (1, 48):
		// '11', 5, 6, 1 bit. Then 42 again: same XOR, inside the new
		// window: '10' and 1 bit.
		{[]float64{42, 43, 42}, 28 + 14 + 3},
		// Zero against zero.
		{[]float64{0, 0}, 2},
	}
	for _, c := range cases {
		buf := make([]byte, 64)
		w := bitWriter{buf: buf}
		var st xorState
		st.reset()
		for _, v := range c.vals {
			writeXor(&w, &st, v)
		}
		if w.n != c.bits {
			t.Errorf("%v: %d bits, want %d", c.vals, w.n, c.bits)
		}
		r := bitReader{buf: buf, end: w.n}
		st.reset()
		for i, want := range c.vals {
			if got := readXor(&r, &st); got != want {
				t.Errorf("%v: value %d read %v", c.vals, i, got)
			}
		}
		if r.bad || r.n != w.n {
			t.Errorf("%v: read %d bits of %d (bad %v)", c.vals, r.n, w.n, r.bad)
		}
	}
}

func TestDodBits(t *testing.T) {
	cases := []struct {
		dod  int64
		bits int
	}{
		{0, 1}, {1, 9}, {-64, 9}, {63, 9}, {64, 15}, {-2048, 15}, {2047, 15},
		{2048, 24}, {60000, 24}, {-524288, 24}, {524288, 68}, {math.MinInt64, 68}, {math.MaxInt64, 68},
	}
	for _, c := range cases {
		buf := make([]byte, 16)
		w := bitWriter{buf: buf}
		writeDod(&w, c.dod)
		if w.n != c.bits {
			t.Errorf("dod %d: %d bits, want %d", c.dod, w.n, c.bits)
		}
		r := bitReader{buf: buf, end: w.n}
		if got := readDod(&r); got != c.dod || r.bad {
			t.Errorf("dod %d: read %d (bad %v)", c.dod, got, r.bad)
		}
	}
}

func newHistory(t testing.TB, limit int) *History {
	t.Helper()
	h, err := New(limit)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A constant series sampled every second for 120 rows, counted by hand:
// row 0 is the change bit, one entry (1, 1, 10 bits), the end bit and the
// first value (28 bits): 42 bits. Row 1 adds a delta of 1000 ms ('110' and
// 12 bits), no change (1) and the same value (1): 17 bits. Each later row:
// delta of delta 0, no change, same value: 3 bits. 42 + 17 + 118×3 = 413
// bits, 52 bytes.
func TestKnownByteCount(t *testing.T) {
	h := newHistory(t, 256<<10)
	ref := h.Series("x")
	for i := range 120 {
		h.Begin(1_700_000_000_000 + int64(i)*1000)
		h.Set(ref, 42)
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	st := h.Stats()
	if st.Bytes != 52 || st.Samples != 120 || st.Rows != 120 {
		t.Errorf("stats %+v, want 52 bytes, 120 samples and rows", st)
	}
	// With 80 such series a row costs 80 bits plus 2: 10.25 bytes for 80
	// samples.
	h = newHistory(t, 256<<10)
	var refs []Ref
	for i := range 80 {
		refs = append(refs, h.Series("x", Label{"i", strconv.Itoa(i)}))
	}
	for i := range 1000 {
		h.Begin(1_700_000_000_000 + int64(i)*1000)
		for _, r := range refs {
			h.Set(r, 42)
		}
		h.Commit()
	}
	st = h.Stats()
	// Row 0: 1 + 80×12 + 1 + 80×28; row 1: 15 + 1 + 80; then 82 bits.
	want := (1 + 80*12 + 1 + 80*28 + 15 + 1 + 80 + 998*82 + 7) / 8
	if st.Bytes != want {
		t.Errorf("80 constant series, 1000 rows: %d bytes, want %d", st.Bytes, want)
	}
	if bps := float64(st.Bytes) / float64(st.Samples); bps > 0.14 {
		t.Errorf("%.3f bytes per sample", bps)
	}
}

// model is what a history should answer: every sample set, by series.
type model map[string]map[int64]float64

func key(name string, labels []Label) string { return fmt.Sprint(name, labels) }

func queryAll(t *testing.T, h *History, q Query) model {
	t.Helper()
	got := model{}
	var prev *Points
	err := h.Query(q, func(p *Points) error {
		k := key(p.Name, p.Labels)
		if prev != nil && (p.Name < prev.Name || p.Name == prev.Name && slices.CompareFunc(p.Labels, prev.Labels, func(a, b Label) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Value, b.Value))
		}) <= 0) {
			t.Errorf("series %s after %s: not sorted", k, key(prev.Name, prev.Labels))
		}
		prev = &Points{Name: p.Name, Labels: p.Labels}
		if len(p.T) != len(p.V) || len(p.T) == 0 {
			t.Errorf("%s: %d times, %d values", k, len(p.T), len(p.V))
		}
		m := map[int64]float64{}
		for i, ts := range p.T {
			if i > 0 && ts <= p.T[i-1] {
				t.Errorf("%s: times not increasing", k)
			}
			m[ts] = p.V[i]
		}
		got[k] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Series come and go at random, values are random floats, timestamps
// jitter: what a query returns is exactly what was appended and not yet
// dropped, and the history's accounting stays within its bound.
func TestRoundTripChurn(t *testing.T) {
	h := newHistory(t, MinBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	const names = 40
	refs := make([]Ref, names)
	for i := range refs {
		refs[i] = NoRef
	}
	want := model{}
	ts := int64(1_700_000_000_000)
	for row := range 3000 {
		ts += 1000 + rng.Int64N(20) - 10
		if row%500 == 0 {
			ts += 3600_000 // a gap: the agent was stopped
		}
		// Register and release outside the row.
		for i := range refs {
			switch {
			case refs[i] == NoRef && rng.IntN(20) == 0:
				refs[i] = h.Series("s", Label{"n", strconv.Itoa(i)}, Label{"a", "b"})
			case refs[i] != NoRef && rng.IntN(50) == 0:
				h.Release(refs[i])
				refs[i] = NoRef
			}
		}
		h.Begin(ts)
		for i, r := range refs {
			if r == NoRef || rng.IntN(10) == 0 {
				continue // absent from this row
			}
			v := float64(rng.IntN(5))
			if i%3 == 0 {
				v = rng.NormFloat64() * 1e6
			}
			h.Set(r, v)
			k := key("s", []Label{{"a", "b"}, {"n", strconv.Itoa(i)}})
			if want[k] == nil {
				want[k] = map[int64]float64{}
			}
			want[k][ts] = v
		}
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
		if mem := h.Stats().MemoryBytes; mem > MinBytes {
			t.Fatalf("row %d: %d bytes held, bound %d", row, mem, MinBytes)
		}
	}
	st := h.Stats()
	if st.Dropped != 0 {
		t.Errorf("%d samples dropped", st.Dropped)
	}
	if st.Rows >= 3000 {
		t.Fatalf("%d rows kept: the ring never wrapped, the test proves nothing about dropping", st.Rows)
	}
	got := queryAll(t, h, Query{})
	samples := 0
	for k, pts := range want {
		for ts, v := range pts {
			if ts < st.Oldest {
				continue
			}
			samples++
			if g, ok := got[k][ts]; !ok || g != v {
				t.Fatalf("%s at %d: got %v (present %v), want %v", k, ts, g, ok, v)
			}
		}
	}
	n := 0
	for _, pts := range got {
		n += len(pts)
	}
	if n != samples || st.Samples != samples {
		t.Errorf("query returned %d samples, stats %d, appended and kept %d", n, st.Samples, samples)
	}
}

func TestQueryRangeNamesAndThinning(t *testing.T) {
	h := newHistory(t, MinBytes)
	a, b := h.Series("a"), h.Series("b", Label{"type", "map"})
	for i := range 100 {
		h.Begin(int64(i+1) * 1000)
		h.Set(a, float64(i))
		if i >= 50 {
			h.Set(b, float64(-i))
		}
		h.Commit()
	}
	got := queryAll(t, h, Query{Names: []string{"b"}, Start: 40_000, End: 60_000})
	if len(got) != 1 || len(got[key("b", []Label{{"type", "map"}})]) != 10 { // 51..60 s
		t.Errorf("b in [40 s, 60 s]: %v", got)
	}
	var times []int64
	h.Query(Query{Names: []string{"a"}, MaxPoints: 7}, func(p *Points) error {
		times = slices.Clone(p.T)
		return nil
	})
	// 100 rows thinned to at most 7: every 15th, ending with the last.
	want := []int64{10_000, 25_000, 40_000, 55_000, 70_000, 85_000, 100_000}
	if !slices.Equal(times, want) {
		t.Errorf("thinned times %v, want %v", times, want)
	}
	if err := func() error { h.Begin(100_000); return h.Commit() }(); err != ErrOutOfOrder {
		t.Errorf("a row at the last row's time: %v, want ErrOutOfOrder", err)
	}
}

// A query whose points do not fit maxValues at once is decoded in groups:
// the result is the same.
func TestQueryGroups(t *testing.T) {
	h := newHistory(t, 1<<20)
	var refs []Ref
	for i := range 300 {
		refs = append(refs, h.Series("s", Label{"i", fmt.Sprintf("%03d", i)}))
	}
	const rows = 2000 // 600k points: 10 groups
	for r := range rows {
		h.Begin(int64(r+1) * 1000)
		for i, ref := range refs {
			h.Set(ref, float64(i*r))
		}
		h.Commit()
	}
	st := h.Stats()
	i := 0
	h.Query(Query{}, func(p *Points) error {
		if len(p.T) != st.Rows {
			t.Fatalf("series %d: %d points, want %d", i, len(p.T), st.Rows)
		}
		last := len(p.V) - 1
		if p.V[last] != float64(i*(rows-1)) || p.T[last] != rows*1000 {
			t.Fatalf("series %d: last point (%d, %v)", i, p.T[last], p.V[last])
		}
		i++
		return nil
	})
	if i != 300 {
		t.Errorf("%d series", i)
	}
}

// Appending a row of known series allocates nothing, including when a row
// starts a new block and when the ring drops its oldest one.
func TestAppendAllocatesNothing(t *testing.T) {
	h := newHistory(t, MinBytes)
	var refs []Ref
	for i := range 100 {
		refs = append(refs, h.Series("s", Label{"i", strconv.Itoa(i)}))
	}
	ts := int64(0)
	row := func() {
		ts += 1000
		h.Begin(ts)
		for i, r := range refs {
			if i == int(ts/1000)%100 {
				continue // one series leaves, another comes back
			}
			h.Set(r, float64(ts%7777))
		}
		h.Commit()
	}
	for range 100 {
		row()
	}
	before := h.Stats()
	if n := testing.AllocsPerRun(5000, row); n != 0 {
		t.Errorf("%v allocations per row", n)
	}
	if after := h.Stats(); after.Oldest == before.Oldest {
		t.Error("the ring did not wrap during the measure")
	}
}

// The bound holds as the Go heap counts it: New and filling the history,
// with as many series as the table takes, stay within it.
func TestMemoryWithinBound(t *testing.T) {
	for _, limit := range []int{MinBytes, 256 << 10, 1 << 20} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			refs := make([]Ref, 0, maxSeries)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			h := newHistory(t, limit)
			for i := 0; ; i++ {
				r := h.Series("odigos_ebpf_map_memory_bytes", Label{"map_type", "type_" + strconv.Itoa(i)})
				if r == NoRef {
					break
				}
				refs = append(refs, r)
			}
			for r := range 5000 {
				h.Begin(int64(r+1) * 1000)
				for _, ref := range refs {
					h.Set(ref, float64(r))
				}
				h.Commit()
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			heap := int(m1.HeapAlloc) - int(m0.HeapAlloc)
			st := h.Stats()
			t.Logf("%d series, %d rows, %d bytes held, %d on the heap, bound %d", len(refs), st.Rows, st.MemoryBytes, heap, limit)
			if st.MemoryBytes > limit || heap > limit {
				t.Errorf("held %d, heap grew %d: bound %d", st.MemoryBytes, heap, limit)
			}
			if len(refs) < 140 {
				t.Errorf("room for %d series only", len(refs))
			}
			runtime.KeepAlive(h)
		})
	}
}

// Released series free their slot once their samples are dropped; until
// then the same name and labels get the same Ref.
func TestReleaseReclaims(t *testing.T) {
	h := newHistory(t, MinBytes)
	keep := h.Series("keep")
	a := h.Series("gone", Label{"owner", "a"})
	h.Begin(1000)
	h.Set(keep, 1)
	h.Set(a, 2)
	h.Commit()
	h.Release(a)
	if again := h.Series("gone", Label{"owner", "a"}); again != a {
		t.Fatalf("re-registered before its samples aged out: %d, want %d", again, a)
	}
	h.Release(a)
	ts := int64(1000)
	for h.Stats().Oldest == 1000 {
		ts += 1000
		h.Begin(ts)
		h.Set(keep, 1)
		h.Commit()
	}
	if st := h.Stats(); st.Series != 1 {
		t.Errorf("%d series after the released one aged out", st.Series)
	}
	if b := h.Series("new", Label{"owner", "b"}); b != a {
		t.Errorf("new series got slot %d, want the freed %d", b, a)
	}
	got := queryAll(t, h, Query{})
	if len(got) != 1 {
		t.Errorf("series %v", got)
	}
}

// A series released with no sample in the ring frees its slot at once:
// the next new series takes it, no block dropped.
func TestReleaseWithoutSamplesFreesAtOnce(t *testing.T) {
	h := newHistory(t, MinBytes)
	keep := h.Series("keep")
	a := h.Series("gone", Label{"owner", "a"})
	h.Begin(1000)
	h.Set(keep, 1)
	h.Commit()
	h.Release(a)
	if st := h.Stats(); st.Series != 1 {
		t.Errorf("%d series after releasing one without samples, want 1", st.Series)
	}
	if b := h.Series("new", Label{"owner", "b"}); b != a {
		t.Errorf("new series got slot %d, want the freed %d", b, a)
	}
}

func TestNewRejectsSmallBound(t *testing.T) {
	if _, err := New(MinBytes - 1); err == nil {
		t.Error("no error")
	}
}

// A series the full table refuses costs nothing but the count: no table
// grown and copied, no labels cloned.
func TestSeriesRefusedAllocatesNothing(t *testing.T) {
	h := newHistory(t, MinBytes)
	for i := 0; h.Series("m", Label{"map_type", "type_" + strconv.Itoa(i)}) != NoRef; i++ {
	}
	before := h.Stats()
	if n := testing.AllocsPerRun(10, func() {
		if h.Series("m", Label{"map_type", "refused"}) != NoRef {
			t.Fatal("a full table took a series")
		}
	}); n != 0 {
		t.Errorf("%v allocations per refusal", n)
	}
	if st := h.Stats(); st.Dropped != before.Dropped+11 || st.MemoryBytes != before.MemoryBytes {
		t.Errorf("refusals: dropped %d -> %d, memory %d -> %d", before.Dropped, st.Dropped, before.MemoryBytes, st.MemoryBytes)
	}
}
