package kernel

import (
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// countingGate admits everything and counts calls.
type countingGate struct{ calls, failures [NumOps]int }

func (g *countingGate) Acquire(Op) error { return nil }
func (g *countingGate) Release(op Op, _ Kind, _ uint32, err error) {
	g.calls[op]++
	if err != nil {
		g.failures[op]++
	}
}

func TestIteratorsListWhatTheKernelHas(t *testing.T) {
	testutil.RequireBPF(t)
	m := newHash(t, 0, 16)
	info, _ := m.Info()
	mapID, _ := info.ID()
	p := newProg(t)
	pinfo, _ := p.Info()
	progID, _ := pinfo.ID()

	g := &countingGate{}
	it, errs, err := LoadIterators(g, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for k, e := range errs {
		if e != nil {
			t.Errorf("%s: %v", Kind(k), e)
		}
	}
	for k := range NumKinds {
		want := ids(t, k)
		if err := it.Begin(k, 0, false); err != nil {
			t.Fatal(err)
		}
		var got []uint32
		var rec Record
		for {
			full, err := it.Next(&rec)
			if err == ErrEndOfList {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !full {
				t.Fatalf("%s %d: short record with threshold 0", k, rec.ID)
			}
			got = append(got, rec.ID)
			if k == KindMap && rec.ID == uint32(mapID) {
				if MapType(rec.Type) != MapTypeHash || rec.MaxEntries != 16 || rec.NameString() != "t_hash" || rec.Fields&HasMemory == 0 {
					t.Errorf("map record %+v", rec)
				}
			}
			if k == KindProg && rec.ID == uint32(progID) {
				if ProgType(rec.Type) != ProgTypeSocketFilter || rec.NameString() != "t_prog" || rec.Memory == 0 {
					t.Errorf("prog record %+v", rec)
				}
			}
		}
		it.End()
		t.Logf("%s: %d objects; listed by GET_NEXT_ID: %d", k, len(got), len(want))
		if len(got) != len(want) {
			t.Errorf("%s: iterator %v, GET_NEXT_ID %v", k, got, want)
		}
	}
	t.Logf("calls %v", g.calls)
}
