package collector

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// fakeKernel is a kernel.Syscalls over objects held in memory, for the
// tests that need exact control: populations of a known size, failures on
// chosen objects, slow calls.
type fakeKernel struct {
	mu      sync.Mutex
	objects [kernel.NumKinds]map[uint32]fakeObject
	nextID  [kernel.NumKinds]uint32
	fds     map[int]fakeFD
	lastFD  int

	failGetFD map[uint32]error // by ID, all kinds
	failList  error            // NextID fails with this
	delay     time.Duration    // each call sleeps this long

	inFlight, maxInFlight atomic.Int32
	calls                 atomic.Int64
}

type fakeObject struct {
	typ, flags uint32
	memory     uint64
	runTime    uint64
	runCount   uint64
	maps       []uint32 // programs: the maps they use
	prog       uint32   // links: the program they hold
}

type fakeFD struct {
	kind kernel.Kind
	id   uint32
}

func newFakeKernel() *fakeKernel {
	f := &fakeKernel{fds: map[int]fakeFD{}, failGetFD: map[uint32]error{}, lastFD: 1000}
	for k := range f.objects {
		f.objects[k] = map[uint32]fakeObject{}
	}
	return f
}

// add creates n objects of kind k and returns their IDs.
func (f *fakeKernel) add(k kernel.Kind, n int, o fakeObject) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []uint32
	for range n {
		f.nextID[k]++
		f.objects[k][f.nextID[k]] = o
		ids = append(ids, f.nextID[k])
	}
	return ids
}

func (f *fakeKernel) remove(k kernel.Kind, ids ...uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		delete(f.objects[k], id)
	}
}

func (f *fakeKernel) openFDs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.fds)
}

func (f *fakeKernel) enter() {
	f.calls.Add(1)
	n := f.inFlight.Add(1)
	for {
		m := f.maxInFlight.Load()
		if n <= m || f.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
}

func (f *fakeKernel) exit() { f.inFlight.Add(-1) }

func (f *fakeKernel) NextID(k kernel.Kind, after uint32) (uint32, error) {
	f.enter()
	defer f.exit()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failList != nil {
		return 0, f.failList
	}
	ids := make([]uint32, 0, len(f.objects[k]))
	for id := range f.objects[k] {
		if id > after {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0, kernel.ErrEndOfList
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids[0], nil
}

func (f *fakeKernel) FDByID(k kernel.Kind, id uint32) (int, error) {
	f.enter()
	defer f.exit()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failGetFD[id]; err != nil {
		return -1, err
	}
	if _, ok := f.objects[k][id]; !ok {
		return -1, unix.ENOENT
	}
	f.lastFD++
	f.fds[f.lastFD] = fakeFD{k, id}
	return f.lastFD, nil
}

func (f *fakeKernel) object(fd int) (fakeFD, fakeObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.fds[fd]
	if !ok {
		return h, fakeObject{}, unix.EBADF
	}
	// An open fd keeps the object alive, as in the kernel: removed objects
	// stay readable through fds opened before.
	return h, f.objects[h.kind][h.id], nil
}

func (f *fakeKernel) MapInfo(fd int, info *kernel.MapInfo) error {
	f.enter()
	defer f.exit()
	h, o, err := f.object(fd)
	if err != nil {
		return err
	}
	*info = kernel.MapInfo{ID: h.id, Type: o.typ, MapFlags: o.flags, KeySize: 4, ValueSize: 8, MaxEntries: 16}
	return nil
}

func (f *fakeKernel) ProgInfo(fd int, info *kernel.ProgInfo, maps *kernel.UsedMaps) error {
	f.enter()
	defer f.exit()
	h, o, err := f.object(fd)
	if err != nil {
		return err
	}
	*info = kernel.ProgInfo{ID: h.id, Type: o.typ, RunTimeNs: o.runTime, RunCnt: o.runCount, NrMapIds: uint32(len(o.maps))}
	if maps != nil {
		maps.N = copy(maps.IDs[:], o.maps)
	}
	return nil
}

func (f *fakeKernel) LinkInfo(fd int, info *kernel.LinkInfo) error {
	f.enter()
	defer f.exit()
	h, o, err := f.object(fd)
	if err != nil {
		return err
	}
	*info = kernel.LinkInfo{ID: h.id, Type: o.typ, ProgID: o.prog}
	return nil
}

func (f *fakeKernel) FDInfo(_ *kernel.FDInfoReader, fd int, out *kernel.FDInfo) error {
	f.enter()
	defer f.exit()
	_, o, err := f.object(fd)
	if err != nil {
		return err
	}
	*out = kernel.FDInfo{Memlock: o.memory, Has: kernel.HasMemlock}
	return nil
}

func (f *fakeKernel) Close(fd int) error {
	f.enter()
	defer f.exit()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fds[fd]; !ok {
		return unix.EBADF
	}
	delete(f.fds, fd)
	return nil
}
