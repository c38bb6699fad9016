package history

// bitWriter appends bits, most significant first, to a fixed buffer that
// the caller zeroed: writing only sets bits. It never grows the buffer; the
// store checks that a row fits before writing it.
type bitWriter struct {
	buf []byte
	n   int // bits written
}

// write appends the low nbits of v (nbits ≤ 64).
func (w *bitWriter) write(v uint64, nbits int) {
	for nbits > 0 {
		free := 8 - w.n%8 // bits left in the current byte
		take := min(free, nbits)
		nbits -= take
		bits := byte(v>>uint(nbits)) & (1<<uint(take) - 1)
		w.buf[w.n/8] |= bits << uint(free-take)
		w.n += take
	}
}

func (w *bitWriter) bit(b bool) {
	if b {
		w.buf[w.n/8] |= 0x80 >> uint(w.n%8)
	}
	w.n++
}

// bitReader reads what a bitWriter wrote. Reading past end returns zeros
// and sets bad, so that a decoder over a corrupt block stops instead of
// panicking.
type bitReader struct {
	buf []byte
	n   int // bits read
	end int // bits available
	bad bool
}

func (r *bitReader) read(nbits int) uint64 {
	if r.n+nbits > r.end {
		r.bad = true
		r.n = r.end
		return 0
	}
	var v uint64
	for nbits > 0 {
		avail := 8 - r.n%8
		take := min(avail, nbits)
		b := r.buf[r.n/8] >> uint(avail-take) & (1<<uint(take) - 1)
		v = v<<uint(take) | uint64(b)
		nbits -= take
		r.n += take
	}
	return v
}

func (r *bitReader) bit() bool { return r.read(1) == 1 }
