package kernel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// What the iterators do differently from one kernel to the next, checked
// against the kernel's own BTF (testutil's feature probes, tagged with the
// version that brought each feature). The kernel matrix (test/kernels) runs
// these on Linux 6.1 and 6.12; CI runs them on the host.

// newIterLink attaches an inert iterator link (iter/bpf_map: it runs only
// when an iterator is created from it and read).
func newIterLink(tb testing.TB) (linkID, progID uint32) {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_iter", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
		AttachTo: "bpf_map", License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	l, err := link.AttachIter(link.IterOptions{Program: p})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	info, err := l.Info()
	if err != nil {
		tb.Fatal(err)
	}
	pinfo, err := p.Info()
	if err != nil {
		tb.Fatal(err)
	}
	pid, _ := pinfo.ID()
	return uint32(info.ID), uint32(pid)
}

// linkRecord returns the link iterator's full record of link id.
func linkRecord(tb testing.TB, it *Iterators, id uint32) Record {
	tb.Helper()
	return recordOf(tb, it, KindLink, id, 0)
}

// TestIteratorsLoadOnThisKernel: every kind's iterator loads (whatever the
// kernel lacks, the programs guard it with CO-RE existence checks), and the
// features the iterators report are those of the kernel: element counts
// with bpf_map_sum_elem_count (6.6), a link attach type with
// bpf_link.attach_type (6.17), and nothing made up where they are missing.
func TestIteratorsLoadOnThisKernel(t *testing.T) {
	testutil.RequireBPF(t)
	linkID, progID := newIterLink(t)
	it, errs, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	links := testutil.HasFeature(t, testutil.FeatureLinkIterator)
	for k, e := range errs {
		if k == int(KindLink) && !links {
			if it.Available(KindLink) {
				t.Error("a link iterator on a kernel without iter/bpf_link")
			}
			continue
		}
		if e != nil || !it.Available(Kind(k)) {
			t.Errorf("%s iterator did not load on %s: %v", Kind(k), testutil.KernelRelease(), e)
		}
	}
	if got, want := it.ElementCounts(), testutil.HasFeature(t, testutil.FeatureElementCounts); got != want {
		t.Errorf("Iterators.ElementCounts() = %v; the kernel has bpf_map_sum_elem_count: %v", got, want)
	}

	if !links {
		return
	}
	rec := linkRecord(t, it, linkID)
	if LinkType(rec.Type) != LinkTypeIter || rec.ProgID != progID || rec.Fields&HasDetails == 0 {
		t.Errorf("link record %+v, want an iter link of program %d", rec, progID)
	}
	if testutil.HasFeature(t, testutil.FeatureLinkAttachType) {
		if rec.Fields&HasAttachType == 0 || AttachType(rec.AttachType) != AttachTypeTraceIter {
			t.Errorf("link record %+v: want attach type trace_iter (%d)", rec, AttachTypeTraceIter)
		}
	} else if rec.Fields&HasAttachType != 0 {
		t.Errorf("link record %+v: an attach type from a kernel whose bpf_link has none", rec)
	}
}

// TestIteratorLinkAttachType: on kernels whose struct bpf_link has an
// attach type, the link iterator gives it for every link, even those whose
// info carries none (iterator links).
func TestIteratorLinkAttachType(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequireFeature(t, testutil.FeatureLinkAttachType)
	linkID, _ := newIterLink(t)
	it, _, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	rec := linkRecord(t, it, linkID)
	if rec.Fields&HasAttachType == 0 || AttachType(rec.AttachType) != AttachTypeTraceIter {
		t.Fatalf("link record %+v: want attach type trace_iter (%d)", rec, AttachTypeTraceIter)
	}
}

// TestIteratorElementCountsOfHashMaps: with bpf_map_sum_elem_count, the
// map iterator counts the elements of a hash map exactly, in full and short
// records alike.
func TestIteratorElementCountsOfHashMaps(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequireFeature(t, testutil.FeatureElementCounts)
	m := newHash(t, 0, 64)
	for i := range 5 {
		if err := m.Put(uint32(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := m.Info()
	id, _ := info.ID()
	it, _, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.ElementCounts() {
		t.Fatal("the iterators do not report element counts")
	}
	for _, fullAbove := range []uint32{0, uint32(id)} {
		rec := mapPass(t, it, uint32(id), fullAbove)
		if rec.Fields&HasElements == 0 || rec.Elements != 5 {
			t.Errorf("threshold %d: %d elements (fields %b), want 5", fullAbove, rec.Elements, rec.Fields)
		}
	}
}

// TestIteratorMemoryWithoutFDInfo: the map iterator computes the memory of
// every map in the kernel, as fdinfo reports it, whatever the kernel's
// version (before 6.4, memlock's old estimate; from 6.4 on, map_mem_usage):
// iterator mode needs no fdinfo, hence no CAP_SYS_ADMIN, anywhere.
func TestIteratorMemoryWithoutFDInfo(t *testing.T) {
	testutil.RequireBPF(t)
	newHash(t, 0, 16)
	it, _, err := LoadIterators(&countingGate{}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	// Other processes may change their maps between bpftool's listing and
	// the iterator's pass: a difference must persist to count.
	var problems []string
	for try := 0; try < 5; try++ {
		problems = nil
		byID := testutil.Bpftool(t, bpftool.Map)
		if err := it.Begin(KindMap, 0, false); err != nil {
			t.Fatal(err)
		}
		var rec Record
		n := 0
		for {
			_, err := it.Next(&rec)
			if err == ErrEndOfList {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			o, ok := byID[rec.ID]
			if !ok {
				continue // created after bpftool listed, or the iterators' own
			}
			n++
			if rec.Fields&HasMemory == 0 {
				problems = append(problems, fmt.Sprintf("map %d (%s): memory left to fdinfo (%d)", rec.ID, o.Type, o.BytesMemlock))
			} else if rec.Memory != o.BytesMemlock {
				problems = append(problems, fmt.Sprintf("map %d (%s): iterator %d bytes, bpftool %d", rec.ID, o.Type, rec.Memory, o.BytesMemlock))
			}
		}
		it.End()
		if n == 0 {
			t.Fatal("no map compared")
		}
		if len(problems) == 0 {
			t.Logf("%d maps: memory equal to bpftool's", n)
			return
		}
	}
	t.Fatal(strings.Join(problems, "\n"))
}
