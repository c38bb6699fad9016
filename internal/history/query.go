package history

import (
	"cmp"
	"errors"
	"math"
	"slices"
)

// Query selects series and a time range.
type Query struct {
	// Names keeps the series with one of these names; none keeps all.
	Names []string
	// Start and End bound the rows, unix ms, inclusive. End 0 means no
	// upper bound.
	Start, End int64
	// MaxPoints thins the rows in range to at most this many, evenly,
	// always keeping the newest. 0 means DefaultMaxPoints.
	MaxPoints int
}

// DefaultMaxPoints is Prometheus' limit of points per series in a range
// query: more than a chart can show.
const DefaultMaxPoints = 11000

// maxValues bounds the points a query holds at once (16 bytes each): more
// series than that are decoded in several passes over the copy.
const maxValues = 1 << 16

// Points is one series of a query's result. Its slices are reused for the
// next series: copy what must outlive the callback.
type Points struct {
	Name   string
	Labels []Label
	T      []int64 // unix ms
	V      []float64
}

// errCorrupt: a block does not decode. Not expected: it would be a bug of
// the encoder.
var errCorrupt = errors.New("history: corrupt block")

// view is a copy of the blocks a query reads and of the series table, taken
// under the read lock so that decoding holds no lock.
type view struct {
	series []seriesMeta
	blocks []blockView
	data   []byte
}

type seriesMeta struct {
	name   string
	labels []Label
	used   bool
}

type blockView struct {
	off, bits, rows int
	t0              int64
}

func (h *History) view(start, end int64) *view {
	h.mu.RLock()
	defer h.mu.RUnlock()
	v := &view{series: make([]seriesMeta, len(h.series))}
	for i := range h.series {
		s := &h.series[i]
		v.series[i] = seriesMeta{name: s.name, labels: s.labels, used: s.used}
	}
	size := 0
	for i := 0; i < h.count; i++ {
		b := &h.blocks[(h.oldest()+i)%len(h.blocks)]
		if b.tLast >= start && b.t0 <= end {
			size += (b.bits + 7) / 8
		}
	}
	v.data = make([]byte, 0, size)
	for i := 0; i < h.count; i++ {
		b := &h.blocks[(h.oldest()+i)%len(h.blocks)]
		if b.tLast >= start && b.t0 <= end {
			v.blocks = append(v.blocks, blockView{off: len(v.data), bits: b.bits, rows: b.rows, t0: b.t0})
			v.data = append(v.data, b.buf[:(b.bits+7)/8]...)
		}
	}
	return v
}

// decode calls visit for every row of v, oldest first, with the series of
// the row and their values (valid during the call only).
func (v *view) decode(visit func(t int64, refs []Ref, vals []float64)) error {
	states := make([]xorState, len(v.series))
	active := make([]Ref, 0, maxSeries)
	vals := make([]float64, maxSeries)
	for _, b := range v.blocks {
		r := bitReader{buf: v.data[b.off:], end: b.bits}
		active = active[:0]
		t, delta := b.t0, int64(0)
		for row := 0; row < b.rows; row++ {
			if row > 0 {
				delta += readDod(&r)
				t += delta
			}
			if r.bit() {
				for r.bit() {
					added := r.bit()
					ref := Ref(r.read(idBits))
					if int(ref) >= len(states) {
						return errCorrupt
					}
					if added {
						if len(active) == maxSeries {
							return errCorrupt
						}
						states[ref].reset()
						active = append(active, ref)
					} else if i := slices.Index(active, ref); i >= 0 {
						active = slices.Delete(active, i, i+1)
					} else {
						return errCorrupt
					}
				}
			}
			for i, ref := range active {
				vals[i] = readXor(&r, &states[ref])
			}
			if r.bad {
				return errCorrupt
			}
			visit(t, active, vals[:len(active)])
		}
	}
	return nil
}

// Query calls fn for every series that q selects and that has points in
// its range, in the order of their names and labels. The work is bounded
// by the history's size: the rows are copied under the read lock (the
// appender waits for no decoding), then decoded once to count the rows in
// range, and once for each group of series whose points fit 1 MiB.
func (h *History) Query(q Query, fn func(*Points) error) error {
	end := q.End
	if end == 0 {
		end = math.MaxInt64
	}
	maxPoints := q.MaxPoints
	if maxPoints <= 0 {
		maxPoints = DefaultMaxPoints
	}
	v := h.view(q.Start, end)

	var picked []Ref
	for i, s := range v.series {
		if s.used && (len(q.Names) == 0 || slices.Contains(q.Names, s.name)) {
			picked = append(picked, Ref(i))
		}
	}
	slices.SortFunc(picked, func(a, b Ref) int {
		sa, sb := &v.series[a], &v.series[b]
		if c := cmp.Compare(sa.name, sb.name); c != 0 {
			return c
		}
		return slices.CompareFunc(sa.labels, sb.labels, func(x, y Label) int {
			if c := cmp.Compare(x.Name, y.Name); c != 0 {
				return c
			}
			return cmp.Compare(x.Value, y.Value)
		})
	})
	if len(picked) == 0 {
		return nil
	}

	inRange := 0
	if err := v.decode(func(t int64, _ []Ref, _ []float64) {
		if t >= q.Start && t <= end {
			inRange++
		}
	}); err != nil {
		return err
	}
	if inRange == 0 {
		return nil
	}
	stride := (inRange + maxPoints - 1) / maxPoints
	kept := (inRange + stride - 1) / stride

	// slot[ref] is the ref's place in the group being decoded, or -1.
	slot := make([]int, len(v.series))
	group := max(1, min(len(picked), maxValues/kept))
	ts := make([]int64, group*kept)
	vs := make([]float64, group*kept)
	n := make([]int, group)
	out := Points{}
	for g := 0; g < len(picked); g += group {
		members := picked[g:min(g+group, len(picked))]
		for i := range slot {
			slot[i] = -1
		}
		for i, ref := range members {
			slot[ref] = i
			n[i] = 0
		}
		row := 0
		err := v.decode(func(t int64, refs []Ref, vals []float64) {
			if t < q.Start || t > end {
				return
			}
			keep := (inRange-1-row)%stride == 0
			row++
			if !keep {
				return
			}
			for i, ref := range refs {
				if j := slot[ref]; j >= 0 {
					ts[j*kept+n[j]] = t
					vs[j*kept+n[j]] = vals[i]
					n[j]++
				}
			}
		})
		if err != nil {
			return err
		}
		for i, ref := range members {
			if n[i] == 0 {
				continue
			}
			s := &v.series[ref]
			out.Name, out.Labels = s.name, s.labels
			out.T, out.V = ts[i*kept:i*kept+n[i]], vs[i*kept:i*kept+n[i]]
			if err := fn(&out); err != nil {
				return err
			}
		}
	}
	return nil
}
