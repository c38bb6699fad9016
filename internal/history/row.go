package history

// Writing a row: the columns of one cycle appended to the newest block,
// the oldest block dropped when the next does not fit.

import "errors"

// Begin starts the row of time ts (unix milliseconds), which must be later
// than the previous row's. The history stays locked for queries until
// Commit: Set the row's series in between, then Commit.
func (h *History) Begin(ts int64) {
	h.mu.Lock()
	h.rowTs = ts
	h.rowStamp++
	if h.rowStamp == 0 { // wrapped: no slot may still carry stamp 0 as current
		for i := range h.series {
			h.series[i].stamp = 0
		}
		h.rowStamp = 1
	}
	h.set = h.set[:0]
}

// Set gives series ref the value v in the row being built. A series not Set
// in a row has no sample at that time.
func (h *History) Set(ref Ref, v float64) {
	if ref < 0 || int(ref) >= len(h.series) || !h.series[ref].used {
		return
	}
	s := &h.series[ref]
	if s.stamp == h.rowStamp {
		s.val = v
		return
	}
	if len(h.set) == h.maxRow {
		h.dropped++
		return
	}
	s.stamp = h.rowStamp
	s.val = v
	h.set = append(h.set, ref)
}

// ErrOutOfOrder: a row's time is not after the previous row's.
var ErrOutOfOrder = errors.New("history: row not later than the last one")

// Commit encodes the row and unlocks the history.
func (h *History) Commit() error {
	defer h.mu.Unlock()
	if h.head >= 0 && h.blocks[h.head].rows > 0 && h.rowTs <= h.blocks[h.head].tLast {
		return ErrOutOfOrder
	}
	if h.head < 0 || h.sealNext || !h.fits() {
		h.sealNext = false
		h.startBlock()
	}
	h.writeRow()
	return nil
}

// fits reports whether the row fits the head block, by an upper bound.
func (h *History) fits() bool {
	b := &h.blocks[h.head]
	changes := 0
	for _, ref := range h.active {
		if h.series[ref].stamp != h.rowStamp {
			changes++
		}
	}
	for _, ref := range h.set {
		if h.series[ref].pos < 0 {
			changes++
		}
	}
	need := maxDodBits + 2 + changes*changeBits + len(h.set)*maxXorBits
	return b.bits+need <= len(b.buf)*8
}

// startBlock makes the next block of the ring the head, dropping the
// oldest one when the ring is full.
func (h *History) startBlock() {
	for _, ref := range h.active {
		h.series[ref].pos = -1
	}
	h.active = h.active[:0]
	next := (h.head + 1) % len(h.blocks)
	if h.count == len(h.blocks) {
		h.count--
	}
	h.head = next
	h.count++
	h.nextSeq++
	b := &h.blocks[next]
	clear(b.buf)
	*b = block{buf: b.buf, seq: h.nextSeq, t0: h.rowTs}
	h.reclaim()
}

func (h *History) writeRow() {
	b := &h.blocks[h.head]
	w := bitWriter{buf: b.buf, n: b.bits}
	if b.rows > 0 {
		delta := h.rowTs - b.tLast
		writeDod(&w, delta-b.prevDelta)
		b.prevDelta = delta
	}
	b.tLast = h.rowTs

	changed := false
	kept := h.active[:0]
	for _, ref := range h.active {
		s := &h.series[ref]
		if s.stamp == h.rowStamp {
			s.pos = int32(len(kept))
			kept = append(kept, ref)
			continue
		}
		if !changed {
			w.bit(true)
			changed = true
		}
		w.write(0b10, 2) // more, removed
		w.write(uint64(ref), idBits)
		s.pos = -1
	}
	h.active = kept
	for _, ref := range h.set {
		s := &h.series[ref]
		if s.pos >= 0 {
			continue
		}
		if !changed {
			w.bit(true)
			changed = true
		}
		w.write(0b11, 2) // more, added
		w.write(uint64(ref), idBits)
		s.pos = int32(len(h.active))
		s.st.reset()
		h.active = append(h.active, ref)
	}
	w.bit(false) // no change, or no more changes
	for _, ref := range h.active {
		s := &h.series[ref]
		writeXor(&w, &s.st, s.val)
		s.lastSeq = b.seq
	}
	b.bits = w.n
	b.rows++
	b.samples += len(h.active)
}

// Stats describes what the history holds.
type Stats struct {
	// Bytes is the size of the compressed rows; Samples the values they
	// hold; Bytes/Samples is the cost of a sample.
	Bytes, Samples, Rows int
	// MemoryBytes is all the history holds (blocks allocated at New, the
	// series table); Limit the bound it stays within.
	MemoryBytes, Limit int
	// Oldest and Newest are the times of the first and last row, unix ms;
	// 0 when empty.
	Oldest, Newest int64
	Series         int    // series with samples, or registered
	Dropped        uint64 // samples refused for want of a slot or of room in a row
}

// Stats returns what the history holds now.
func (h *History) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st := Stats{MemoryBytes: h.memoryBytes(), Limit: h.limit, Dropped: h.dropped}
	for i := 0; i < h.count; i++ {
		b := &h.blocks[(h.oldest()+i)%len(h.blocks)]
		st.Bytes += (b.bits + 7) / 8
		st.Samples += b.samples
		st.Rows += b.rows
	}
	if h.count > 0 {
		st.Oldest = h.blocks[h.oldest()].t0
		st.Newest = h.blocks[h.head].tLast
	}
	for i := range h.series {
		if h.series[i].used {
			st.Series++
		}
	}
	return st
}
