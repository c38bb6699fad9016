package collector

import (
	"errors"
	"sort"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/owner"
)

// fakeIters is a kernel.IteratorSource over a fakeKernel, for deterministic
// tests of the iterator pass's merge: a pass lists, in ascending ID order,
// the objects present when Next reaches them (as a BPF iterator walks the
// kernel's IDR live), in full above the threshold and short below it.
type fakeIters struct {
	fk *fakeKernel
	// formulaError is added to the memory the "iterator" computes for maps
	// of a type, by type: a kernel whose map_mem_usage changed.
	formulaError map[uint32]uint64
	// zeroIDs: records with ID 0 (links not settled yet) at the start of
	// each pass.
	zeroIDs int
	// failAfter > 0: Next fails after that many records (a short read).
	failAfter int
	// forceShort: IDs always sent short, whatever the threshold.
	forceShort map[uint32]bool
	// onNext is called before each record with its index in the pass.
	onNext func(i int)

	// The pass in progress.
	k         kernel.Kind
	fullAbove uint32
	ids       []uint32
	pos, sent int
	maps      kernel.UsedMaps // of the last full program record
	// What the passes asked for, for the tests: each Begin's threshold.
	passes [kernel.NumKinds][]uint32
}

var errFakeShortRead = errors.New("fake short read")

func newFakeIters(fk *fakeKernel) *fakeIters {
	return &fakeIters{fk: fk, formulaError: map[uint32]uint64{}, forceShort: map[uint32]bool{}}
}

// load is an Options.LoadIterators giving f for every kind.
func (f *fakeIters) load(kernel.Gate, string) (kernel.IteratorSource, [kernel.NumKinds]error, error) {
	return f, [kernel.NumKinds]error{}, nil
}

func (f *fakeIters) Available(kernel.Kind) bool      { return true }
func (f *fakeIters) ElementCounts() bool             { return false }
func (f *fakeIters) Own() []kernel.OwnObject         { return nil }
func (f *fakeIters) End() error                      { f.ids = nil; return nil }
func (f *fakeIters) Close() error                    { return nil }
func (f *fakeIters) lastPass(k kernel.Kind) []uint32 { return f.passes[k] }
func (f *fakeIters) UsedMaps() []uint32              { return f.maps.List() }

func (f *fakeIters) Begin(k kernel.Kind, fullAbove uint32, stats bool) error {
	f.fk.mu.Lock()
	defer f.fk.mu.Unlock()
	f.k, f.fullAbove, f.pos, f.sent = k, fullAbove, 0, 0
	f.ids = f.ids[:0]
	for range f.zeroIDs {
		f.ids = append(f.ids, 0)
	}
	var ids []uint32
	for id := range f.fk.objects[k] {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	f.ids = append(f.ids, ids...)
	f.passes[k] = append(f.passes[k], fullAbove)
	return nil
}

func (f *fakeIters) Next(rec *kernel.Record) (bool, error) {
	for {
		if f.failAfter > 0 && f.sent == f.failAfter {
			return false, errFakeShortRead
		}
		if f.pos >= len(f.ids) {
			return false, kernel.ErrEndOfList
		}
		if f.onNext != nil {
			f.onNext(f.pos)
		}
		id := f.ids[f.pos]
		f.pos++
		if id == 0 {
			f.sent++
			*rec = kernel.Record{}
			return true, nil
		}
		f.fk.mu.Lock()
		o, ok := f.fk.objects[f.k][id]
		f.fk.mu.Unlock()
		if !ok {
			continue // removed before the walk reached it
		}
		f.sent++
		full := kernel.Record{ID: id, Type: o.typ, Flags: o.flags, MaxEntries: 16,
			ProgID: o.prog, Fields: kernel.HasDetails}
		if f.k != kernel.KindLink {
			full.Memory = o.memory
			if f.k == kernel.KindMap {
				full.Memory += f.formulaError[o.typ]
			}
			full.Fields |= kernel.HasMemory
		}
		f.maps.N = 0
		if id > f.fullAbove && !f.forceShort[id] {
			*rec = full
			if f.k == kernel.KindProg {
				f.maps.N = copy(f.maps.IDs[:], o.maps)
			}
			return true, nil
		}
		*rec = kernel.Record{ID: id}
		if kernel.MemoryVaries(f.k, &full) {
			rec.Memory, rec.Fields = full.Memory, kernel.HasMemory
		}
		return false, nil
	}
}

// fakeOwners is an owner.Source over a list of holdings, for the fake
// collectors: they never read the real kernel's holders.
type fakeOwners struct {
	holdings []owner.Holding
	pos      int
	in       bool
	err      error // Begin fails with it
}

func (f *fakeOwners) Mode() string { return "fake" }
func (f *fakeOwners) Begin() error {
	if f.err != nil {
		return f.err
	}
	f.pos, f.in = 0, true
	return nil
}
func (f *fakeOwners) Next(h *owner.Holding) error {
	if f.pos >= len(f.holdings) {
		return kernel.ErrEndOfList
	}
	*h = f.holdings[f.pos]
	f.pos++
	return nil
}
func (f *fakeOwners) End() (owner.Pass, error) {
	f.in = false
	pids := map[uint32]bool{}
	for _, h := range f.holdings {
		pids[h.Process.PID] = true
	}
	return owner.Pass{Processes: len(pids)}, nil
}
func (f *fakeOwners) Close() error { return nil }

// hold returns a holding of object (k, id) by process pid named comm.
func hold(k kernel.Kind, id, pid uint32, comm, container, pod string) owner.Holding {
	h := owner.Holding{Kind: k, ID: id, Process: owner.Process{PID: pid, ContainerID: container, PodUID: pod}}
	copy(h.Process.Comm[:], comm)
	return h
}
