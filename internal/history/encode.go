package history

import (
	"math"
	"math/bits"
)

// The Gorilla encodings (Pelkonen et al., "Gorilla: A Fast, Scalable,
// In-Memory Time Series Database", VLDB 2015), as the Prometheus TSDB's
// chunkenc writes them, with two changes: the timestamp column is written
// once per row for every series of the block, and a series' first value in
// a block is XORed with 0 rather than written raw, so that a small integer
// (an object count) costs about 25 bits instead of 64.

// Timestamp delta-of-delta buckets, in milliseconds: a control prefix, then
// the value in two's complement. Cycles end a few milliseconds off their
// period (7 bits); the first delta of a block is a whole interval (20 bits
// hold 8.7 minutes).
var dodBuckets = [...]struct {
	prefix, prefixBits uint64
	bits               int
}{
	{0b10, 2, 7},
	{0b110, 3, 12},
	{0b1110, 4, 20},
	{0b1111, 4, 64},
}

// maxDodBits bounds the bits of one timestamp.
const maxDodBits = 4 + 64

// writeDod writes a delta of deltas.
func writeDod(w *bitWriter, dod int64) {
	if dod == 0 {
		w.bit(false)
		return
	}
	for _, b := range dodBuckets {
		if b.bits == 64 || fitsSigned(dod, b.bits) {
			w.write(b.prefix, int(b.prefixBits))
			w.write(uint64(dod), b.bits)
			return
		}
	}
}

func readDod(r *bitReader) int64 {
	var prefix int
	for prefix < 4 && r.bit() {
		prefix++
	}
	if prefix == 0 {
		return 0
	}
	n := dodBuckets[prefix-1].bits
	return signExtend(r.read(n), n)
}

func fitsSigned(v int64, n int) bool {
	return v >= -(1<<(n-1)) && v < 1<<(n-1)
}

func signExtend(v uint64, n int) int64 {
	if n == 64 {
		return int64(v)
	}
	shift := uint(64 - n)
	return int64(v<<shift) >> shift
}

// xorState is the encoder's (or decoder's) memory of one series in a block.
type xorState struct {
	prev     uint64 // bits of the previous value
	leading  uint8  // leading zeros of the last window written; noWindow before the first
	trailing uint8
}

const noWindow = 0xff

// maxXorBits bounds the bits of one value: control, leading, length, 64.
const maxXorBits = 2 + 5 + 6 + 64

func (s *xorState) reset() { *s = xorState{leading: noWindow} }

// writeXor writes v against the series' previous value: '0' when equal;
// '10' and the meaningful bits when they fit the last window; '11', the
// leading zeros (5 bits), the length (6 bits, 64 written as 0) and the
// meaningful bits otherwise.
func writeXor(w *bitWriter, s *xorState, v float64) {
	cur := math.Float64bits(v)
	delta := cur ^ s.prev
	s.prev = cur
	if delta == 0 {
		w.bit(false)
		return
	}
	w.bit(true)
	leading := uint8(bits.LeadingZeros64(delta))
	trailing := uint8(bits.TrailingZeros64(delta))
	if leading >= 32 {
		leading = 31 // 5 bits
	}
	if s.leading != noWindow && leading >= s.leading && trailing >= s.trailing {
		w.bit(false)
		w.write(delta>>s.trailing, 64-int(s.leading)-int(s.trailing))
		return
	}
	s.leading, s.trailing = leading, trailing
	w.bit(true)
	w.write(uint64(leading), 5)
	sig := 64 - int(leading) - int(trailing)
	w.write(uint64(sig), 6) // 64 wraps to 0
	w.write(delta>>trailing, sig)
}

func readXor(r *bitReader, s *xorState) float64 {
	if !r.bit() {
		return math.Float64frombits(s.prev)
	}
	if r.bit() {
		s.leading = uint8(r.read(5))
		sig := uint8(r.read(6))
		if sig == 0 {
			sig = 64
		}
		s.trailing = 64 - s.leading - sig
	}
	sig := 64 - int(s.leading) - int(s.trailing)
	if sig <= 0 || sig > 64 {
		r.bad = true
		return 0
	}
	s.prev ^= r.read(sig) << s.trailing
	return math.Float64frombits(s.prev)
}
