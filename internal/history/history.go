// Package history keeps the agent's aggregate series (objects and memory by
// kind and type, churn, the agent's own memory and cycle time) for every
// completed cycle, compressed, in a memory bound fixed at start.
//
// Rows, not series: one row per cycle holds one timestamp for every series
// of that cycle, written once (delta of deltas), then each series' value
// XORed with its previous one (Gorilla). A steady node's row costs a bit per
// series. Rows go into blocks of a few KiB preallocated at New and used as a
// ring: when the ring is full the oldest block is dropped, so retention
// follows from the bound. Series may come and go (a map type appears, an
// owner leaves the top set): a row lists the series that joined or left
// since the previous one, and a series' slot is reused once none of its
// samples is left.
package history

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
)

// MinBytes is the smallest bound New accepts: room for the series table and
// a ring of at least two blocks. The configuration checks the same figure.
const MinBytes = config.MinHistoryBytes

// Limits of the encoding.
const (
	idBits    = 10 // a series' slot in a change entry
	maxSeries = 1 << idBits
	// changeBits is one change entry: more (1), added or removed (1), slot.
	changeBits = 2 + idBits
)

// Label is a label of a series.
type Label struct{ Name, Value string }

// Ref is a series of a History, as Series returned it.
type Ref int32

// NoRef is the Ref of a series the history has no room for: Set ignores it.
const NoRef Ref = -1

// series is a slot of the series table, kept small: the table's share of
// the bound is what limits the number of series.
type series struct {
	name    string
	labels  []Label
	st      xorState
	val     float64 // its value in the row being built
	lastSeq uint32  // seq of the newest block with a sample of it; 0: none
	pos     int32   // index in History.active, -1 when not in the head block's active set
	stamp   uint32  // the row in which it was last Set
	used    bool    // the slot holds a series
	// released: its owner no longer sets it; the slot is freed once no
	// block holds its samples.
	released bool
}

// labelBytes is what a series' name and labels hold besides its slot.
func (s *series) labelBytes() int {
	n := len(s.name) + cap(s.labels)*int(unsafe.Sizeof(Label{}))
	for _, l := range s.labels {
		n += len(l.Name) + len(l.Value)
	}
	return n
}

// block is a stretch of consecutive rows.
type block struct {
	buf       []byte
	bits      int
	rows      int
	samples   int
	t0, tLast int64 // first and last row, unix ms
	prevDelta int64 // the last timestamp delta (head block only)
	seq       uint32
}

// History is the compressed store. One goroutine appends (Begin, Set,
// Commit); any number query it concurrently.
type History struct {
	mu sync.RWMutex

	limit     int
	blockSize int
	metaLimit int // bytes for the series table and labels
	maxRow    int // series in one row: what an empty block can hold

	blocks  []block // the ring
	head    int     // the block being written
	count   int     // blocks holding rows
	nextSeq uint32

	series []series
	free   []Ref
	meta   int // bytes of the series table and labels, see metaBytes

	active   []Ref // series of the head block's last row, in the order their values are written
	set      []Ref // series Set in the row being built
	rowStamp uint32
	rowTs    int64
	sealNext bool // the next row starts a block

	dropped uint64 // Set calls refused: no slot or no room in a row
}

// New returns a history that never holds more than limit bytes (see
// MinBytes). It allocates its blocks now: appending allocates nothing
// afterwards, unless a new series is registered.
func New(limit int) (*History, error) {
	if limit < MinBytes {
		return nil, fmt.Errorf("history bound %d bytes: below the minimum of %d", limit, MinBytes)
	}
	h := &History{limit: limit}
	// Blocks of 1/16 of the bound, a power of two between 4 and 16 KiB:
	// small enough that dropping the oldest loses little, large enough
	// that the series' first values, repeated in each block, cost little.
	h.blockSize = 4 << 10
	for h.blockSize < 16<<10 && h.blockSize*2 <= limit/16 {
		h.blockSize *= 2
	}
	h.maxRow = min(maxSeries, (h.blockSize*8-maxDodBits-2)/(changeBits+maxXorBits))
	// The series table gets an eighth of the bound, and at least 24 KiB:
	// about 150 series of a label each. A 32nd is left for the Go
	// allocator's rounding of the table and the labels to its size classes.
	h.metaLimit = max(limit/8, 24<<10)
	n := (limit - h.metaLimit - limit/32 - h.fixedBytes(0)) / (h.blockSize + int(unsafe.Sizeof(block{})))
	h.blocks = make([]block, n)
	for i := range h.blocks {
		h.blocks[i].buf = make([]byte, h.blockSize)
	}
	h.active = make([]Ref, 0, h.maxRow)
	h.set = make([]Ref, 0, h.maxRow)
	h.free = make([]Ref, 0, maxSeries)
	h.meta = h.metaBytes()
	h.head = -1
	return h, nil
}

// fixedBytes is what the history holds besides blocks and the series
// table: the History itself, its row buffers and the free list.
func (h *History) fixedBytes(nblocks int) int {
	return int(unsafe.Sizeof(History{})) + (2*h.maxRow+maxSeries)*int(unsafe.Sizeof(Ref(0))) +
		nblocks*int(unsafe.Sizeof(block{}))
}

// metaBytes is what the series table holds: its slots and every series'
// name and labels.
func (h *History) metaBytes() int {
	n := cap(h.series) * int(unsafe.Sizeof(series{}))
	for i := range h.series {
		n += h.series[i].labelBytes()
	}
	return n
}

// memoryBytes is the memory the history holds: its blocks, its series table
// and labels, itself, and the margin for the allocator's rounding. It never
// exceeds the bound given to New.
func (h *History) memoryBytes() int {
	return h.fixedBytes(len(h.blocks)) + len(h.blocks)*h.blockSize + h.meta + h.limit/32
}

// Series returns the Ref of the series name{labels}, registering it if it
// is new (which allocates its name and labels). Register each series once
// and keep its Ref: appending with Refs allocates nothing. It returns NoRef
// when the table is full (1024 series, or the bound's share for the table).
// It must not be called between Begin and Commit.
func (h *History) Series(name string, labels ...Label) Ref {
	// Sorted in a buffer that stays on the stack for the usual few labels:
	// a series known or refused allocates nothing.
	var buf [4]Label
	ls := append(buf[:0], labels...)
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.series {
		s := &h.series[i]
		if s.used && s.name == name && slices.Equal(s.labels, ls) {
			s.released = false
			return Ref(i)
		}
	}
	meta := (&series{name: name, labels: ls[:len(ls):len(ls)]}).labelBytes()
	// New series win over old samples: while the table is full and
	// released series hold slots, the oldest blocks go first.
	for !h.room(meta) && h.count > 1 && h.anyReleased() {
		h.dropOldest()
	}
	if !h.room(meta) {
		if h.count == 1 && h.anyReleased() {
			// The released series all have samples in the head block:
			// end it at the next row, so that it can be dropped for the
			// next new series. Churn beyond the table's size costs
			// retention.
			h.sealNext = true
		}
		h.dropped++
		return NoRef
	}
	var ref Ref
	if n := len(h.free); n > 0 {
		ref = h.free[n-1]
		h.free = h.free[:n-1]
	} else {
		if len(h.series) == cap(h.series) {
			// Grown by 32 slots at a time, so that the table's share of
			// the bound is spent as series come, not doubled ahead.
			grown := make([]series, len(h.series), len(h.series)+32)
			copy(grown, h.series)
			h.series = grown
		}
		h.series = h.series[:len(h.series)+1]
		ref = Ref(len(h.series) - 1)
	}
	h.series[ref] = series{name: name, labels: slices.Clip(slices.Clone(ls)), used: true, pos: -1}
	h.meta = h.metaBytes()
	return ref
}

// Release tells that ref will not be Set again (an owner left the top
// set). Its samples stay; its slot is reused once they are dropped. Series
// with the same name and labels before that gets the same Ref back.
func (h *History) Release(ref Ref) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.release(ref)
}

// release is Release with the lock held (between Begin and Commit).
func (h *History) release(ref Ref) {
	if ref < 0 || int(ref) >= len(h.series) || !h.series[ref].used {
		return
	}
	h.series[ref].released = true
	// A series with no sample left in the ring (none ever, or all dropped)
	// is freed now, not at the next block: a new series then takes its
	// slot instead of dropping the oldest block for it.
	h.reclaim()
}

// room reports whether a series of meta label bytes fits the table now.
func (h *History) room(meta int) bool {
	if len(h.free) > 0 {
		return h.meta+meta <= h.metaLimit
	}
	if len(h.series) == maxSeries {
		return false
	}
	grow := 0
	if len(h.series) == cap(h.series) {
		grow = 32 * int(unsafe.Sizeof(series{}))
	}
	return h.meta+grow+meta <= h.metaLimit
}

func (h *History) anyReleased() bool {
	for i := range h.series {
		if h.series[i].used && h.series[i].released {
			return true
		}
	}
	return false
}

// dropOldest drops the oldest block (never the head) and frees the slots
// of the released series that had samples only there or before.
func (h *History) dropOldest() {
	h.count--
	h.reclaim()
}

// reclaim frees the released series that have no sample left and are not
// in the head block's active set.
func (h *History) reclaim() {
	oldest := h.oldestSeq()
	for i := range h.series {
		s := &h.series[i]
		if s.used && s.released && s.pos < 0 && (s.lastSeq == 0 || s.lastSeq < oldest) {
			*s = series{pos: -1}
			h.free = append(h.free, Ref(i)) // within its capacity: one entry per slot
		}
	}
	h.meta = h.metaBytes()
}

func (h *History) oldestSeq() uint32 {
	if h.count == 0 {
		return h.nextSeq + 1
	}
	return h.blocks[h.oldest()].seq
}

func (h *History) oldest() int {
	return (h.head - h.count + 1 + len(h.blocks)) % len(h.blocks)
}
