package kernel

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// TestUsedMaps: the maps a program uses come with its full record from
// the iterator, and with its info from bpf(2), the same IDs either way;
// a short record carries none.
func TestUsedMaps(t *testing.T) {
	testutil.RequireBPF(t)
	var want []uint32
	var insns asm.Instructions
	for range 3 {
		m := newHash(t, 0, 4)
		info, _ := m.Info()
		id, _ := info.ID()
		want = append(want, uint32(id))
		insns = append(insns, asm.LoadMapPtr(asm.R1, m.FD()))
	}
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_uses", Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pinfo, _ := p.Info()
	pid, _ := pinfo.ID()
	slices.Sort(want)

	it, _, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, fullAbove := range []uint32{0, uint32(pid)} {
		if err := it.Begin(KindProg, fullAbove, false); err != nil {
			t.Fatal(err)
		}
		var rec Record
		var got []uint32
		found := false
		for {
			full, err := it.Next(&rec)
			if err == ErrEndOfList {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.ID == uint32(pid) {
				found = true
				got = slices.Sorted(slices.Values(it.UsedMaps()))
				if full != (fullAbove == 0) {
					t.Errorf("threshold %d: full %v", fullAbove, full)
				}
			}
		}
		it.End()
		switch {
		case !found:
			t.Fatalf("program %d not listed", pid)
		case fullAbove == 0 && !slices.Equal(got, want):
			t.Errorf("iterator: the program uses maps %v, want %v", got, want)
		case fullAbove != 0 && len(got) != 0:
			t.Errorf("short record: maps %v", got)
		}
	}

	var pi ProgInfo
	var maps UsedMaps
	if err := ProgInfoByFD(p.FD(), &pi, &maps); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(maps.List())); !slices.Equal(got, want) {
		t.Errorf("bpf(2): the program uses maps %v, want %v", got, want)
	}

	// The syscall source reads them with a full read only, not with the
	// statistics read every cycle.
	src := NewSyscallSource(Sys{}, &countingGate{}, "/proc")
	defer src.Close()
	r, err := src.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, need := range []Need{NeedDetails | NeedStats, NeedStats, NeedDetails} {
		var rec Record
		if err := r.Read(KindProg, uint32(pid), need, &rec); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(slices.Values(r.UsedMaps()))
		switch {
		case need&NeedDetails != 0 && !slices.Equal(got, want):
			t.Errorf("syscall read %b: the program uses maps %v, want %v", need, got, want)
		case need&NeedDetails == 0 && len(got) != 0:
			t.Errorf("syscall read %b: maps %v, want none", need, got)
		}
	}
}
