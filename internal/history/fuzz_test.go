package history

import (
	"encoding/binary"
	"math"
	"strconv"
	"testing"
)

// FuzzRoundTrip appends rows made from the input (which of 8 series are
// in a row, their values' bits, the time step) and checks that a query
// returns every kept sample bit for bit: the encoder's windows, the 64-bit
// XOR, the widest timestamp bucket, series leaving and coming back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0xff, 1, 0, 0, 0, 0, 0, 0, 0x40, 0x45})
	f.Add([]byte{0x81, 0xe8, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(roundTrip)
}

func roundTrip(t *testing.T, data []byte) {
	h, err := New(MinBytes)
	if err != nil {
		t.Fatal(err)
	}
	var refs [8]Ref
	for i := range refs {
		refs[i] = h.Series("s", Label{"i", strconv.Itoa(i)})
	}
	type sample struct {
		t int64
		v uint64
	}
	want := map[Ref][]sample{}
	ts := int64(0)
	for len(data) >= 3 {
		mask := data[0]
		step := int64(binary.LittleEndian.Uint16(data[1:3]))
		if step == 0xffff {
			step = 1 << 40 // past every bucket but the widest
		}
		ts += 1 + step
		data = data[3:]
		h.Begin(ts)
		for i, ref := range refs {
			if mask&(1<<i) == 0 {
				continue
			}
			var b [8]byte
			copy(b[:], data)
			data = data[min(8, len(data)):]
			v := binary.LittleEndian.Uint64(b[:])
			h.Set(ref, math.Float64frombits(v))
			want[ref] = append(want[ref], sample{ts, v})
		}
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	oldest := h.Stats().Oldest
	got := map[string][]sample{}
	err = h.Query(Query{}, func(p *Points) error {
		for i := range p.T {
			got[p.Labels[0].Value] = append(got[p.Labels[0].Value], sample{p.T[i], math.Float64bits(p.V[i])})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range refs {
		var kept []sample
		for _, s := range want[ref] {
			if s.t >= oldest {
				kept = append(kept, s)
			}
		}
		g := got[strconv.Itoa(i)]
		if len(g) != len(kept) {
			t.Fatalf("series %d: %d samples, want %d", i, len(g), len(kept))
		}
		for j := range kept {
			if g[j] != kept[j] {
				t.Fatalf("series %d sample %d: %+v, want %+v", i, j, g[j], kept[j])
			}
		}
	}
}
