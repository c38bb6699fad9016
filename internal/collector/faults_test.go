package collector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// faultKernel wraps a kernel.Syscalls (the fake kernel or the real one) and
// makes chosen operations fail: fail returns the error that operation op on
// object (k, id) gets, or nil to let it through. It is the seam for the
// failures a real kernel will not produce on demand: ENOMEM, EPERM on one
// object, EMFILE at one call.
type faultKernel struct {
	kernel.Syscalls
	mu   sync.Mutex
	fail func(op kernel.Op, k kernel.Kind, id uint32) error
	fds  map[int]faultObj // open fds, to know which object an info call is about
}

type faultObj struct {
	k  kernel.Kind
	id uint32
}

func newFaultKernel(sys kernel.Syscalls) *faultKernel {
	return &faultKernel{Syscalls: sys, fds: map[int]faultObj{}}
}

// inject sets the failures; nil lets everything through.
func (f *faultKernel) inject(fail func(op kernel.Op, k kernel.Kind, id uint32) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

func (f *faultKernel) injected(op kernel.Op, k kernel.Kind, id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		return nil
	}
	return f.fail(op, k, id)
}

func (f *faultKernel) byFD(op kernel.Op, fd int) error {
	f.mu.Lock()
	o, ok := f.fds[fd]
	f.mu.Unlock()
	if !ok {
		return nil
	}
	return f.injected(op, o.k, o.id)
}

func (f *faultKernel) NextID(k kernel.Kind, after uint32) (uint32, error) {
	if err := f.injected(kernel.OpNextID, k, after); err != nil {
		return 0, err
	}
	return f.Syscalls.NextID(k, after)
}

func (f *faultKernel) FDByID(k kernel.Kind, id uint32) (int, error) {
	if err := f.injected(kernel.OpGetFD, k, id); err != nil {
		return -1, err
	}
	fd, err := f.Syscalls.FDByID(k, id)
	if err == nil {
		f.mu.Lock()
		f.fds[fd] = faultObj{k, id}
		f.mu.Unlock()
	}
	return fd, err
}

func (f *faultKernel) MapInfo(fd int, info *kernel.MapInfo) error {
	if err := f.byFD(kernel.OpInfo, fd); err != nil {
		return err
	}
	return f.Syscalls.MapInfo(fd, info)
}

func (f *faultKernel) ProgInfo(fd int, info *kernel.ProgInfo, maps *kernel.UsedMaps) error {
	if err := f.byFD(kernel.OpInfo, fd); err != nil {
		return err
	}
	return f.Syscalls.ProgInfo(fd, info, maps)
}

func (f *faultKernel) LinkInfo(fd int, info *kernel.LinkInfo) error {
	if err := f.byFD(kernel.OpInfo, fd); err != nil {
		return err
	}
	return f.Syscalls.LinkInfo(fd, info)
}

func (f *faultKernel) FDInfo(r *kernel.FDInfoReader, fd int, out *kernel.FDInfo) error {
	if err := f.byFD(kernel.OpFDInfo, fd); err != nil {
		return err
	}
	return f.Syscalls.FDInfo(r, fd, out)
}

// Close releases the fd whatever it returns, as close(2) does.
func (f *faultKernel) Close(fd int) error {
	injected := f.byFD(kernel.OpClose, fd)
	f.mu.Lock()
	delete(f.fds, fd)
	f.mu.Unlock()
	if err := f.Syscalls.Close(fd); err != nil {
		return err
	}
	return injected
}

// on returns a fail function that gives err to op on the objects of kind k
// with the given IDs.
func on(op kernel.Op, k kernel.Kind, err error, ids ...uint32) func(kernel.Op, kernel.Kind, uint32) error {
	return func(o kernel.Op, kk kernel.Kind, id uint32) error {
		if o == op && kk == k && slices.Contains(ids, id) {
			return err
		}
		return nil
	}
}

// TestFakeFaultsOnObjects makes one operation fail on three of twenty maps,
// for each operation and each errno a kernel can return there: the cycle
// completes, every map is counted, the three are unreadable (their memory
// unknown, left out of the totals) except when only the close failed, the
// failures are counted under their operation, no fd stays open, and the
// next cycle without the fault is exact again.
func TestFakeFaultsOnObjects(t *testing.T) {
	for _, op := range []kernel.Op{kernel.OpGetFD, kernel.OpInfo, kernel.OpFDInfo, kernel.OpClose} {
		for _, errno := range []unix.Errno{unix.EPERM, unix.EACCES, unix.ENOMEM, unix.EMFILE, unix.ENFILE} {
			t.Run(op.String()+"/"+unix.ErrnoName(errno), func(t *testing.T) {
				fk := newFakeKernel()
				ids := fk.add(kernel.KindMap, 20, fakeObject{typ: uint32(kernel.MapTypeArray), memory: 100})
				fk.add(kernel.KindProg, 2, fakeObject{typ: 1, memory: 4096})
				f := newFaultKernel(fk)
				bad := []uint32{ids[0], ids[9], ids[19]}
				f.inject(on(op, kernel.KindMap, errno, bad...))
				c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = f })

				s := mustCycle(t, c)
				m := s.Kinds[kernel.KindMap]
				unreadable := uint64(3)
				if op == kernel.OpClose {
					unreadable = 0 // read in full; only the close failed
				}
				if m.Objects != 20 || m.Unreadable != unreadable || m.Tracked != 20-unreadable ||
					m.MemoryBytes != (20-unreadable)*100 || m.Untracked != 0 {
					t.Fatalf("maps: %+v", m)
				}
				if p := s.Kinds[kernel.KindProg]; p.Objects != 2 || p.Unreadable != 0 {
					t.Fatalf("programs: %+v", p)
				}
				for o, n := range s.Errors {
					if want := uint64(0); kernel.Op(o) == op {
						if n != 3 {
							t.Errorf("%d %s errors, want 3", n, kernel.Op(o))
						}
					} else if n != want {
						t.Errorf("%d %s errors, want 0", n, kernel.Op(o))
					}
				}
				if !s.Active || !s.Valid || fk.openFDs() != 0 {
					t.Fatalf("active %v valid %v, %d fds open", s.Active, s.Valid, fk.openFDs())
				}

				f.inject(nil)
				s2 := mustCycle(t, c)
				if m := s2.Kinds[kernel.KindMap]; m.Objects != 20 || m.Unreadable != 0 || m.Tracked != 20 || m.MemoryBytes != 2000 {
					t.Fatalf("after the fault: %+v", m)
				}
				if s2.Errors != s.Errors {
					t.Fatalf("errors after the fault went: %v, before %v", s2.Errors, s.Errors)
				}
				if fk.openFDs() != 0 {
					t.Fatalf("%d fds open", fk.openFDs())
				}
			})
		}
	}
}

// TestFakeUnsettledLink: the kernel lists a link it is still attaching
// but answers EAGAIN to opening it. That is not a failure: the link is
// counted, unreadable for this cycle, and read at the next. EAGAIN on a map
// is a failure.
func TestFakeUnsettledLink(t *testing.T) {
	fk := newFakeKernel()
	links := fk.add(kernel.KindLink, 3, fakeObject{typ: uint32(kernel.LinkTypeRawTracepoint)})
	maps := fk.add(kernel.KindMap, 3, fakeObject{typ: 1, memory: 10})
	f := newFaultKernel(fk)
	f.inject(func(op kernel.Op, k kernel.Kind, id uint32) error {
		if op == kernel.OpGetFD && (k == kernel.KindLink && id == links[2] || k == kernel.KindMap && id == maps[0]) {
			return unix.EAGAIN
		}
		return nil
	})
	c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = f })
	s := mustCycle(t, c)
	if l := s.Kinds[kernel.KindLink]; l.Objects != 3 || l.Unreadable != 1 || l.Tracked != 2 {
		t.Fatalf("links: %+v", l)
	}
	if s.Errors[kernel.OpGetFD] != 1 || s.Kinds[kernel.KindMap].Unreadable != 1 {
		t.Fatalf("errors %v: want one, for the map", s.Errors)
	}
	f.inject(nil)
	s = mustCycle(t, c)
	if l := s.Kinds[kernel.KindLink]; l.Objects != 3 || l.Unreadable != 0 || l.Tracked != 3 || l.Created != 0 || l.Removed != 0 {
		t.Fatalf("links once attached: %+v", l)
	}
}

// TestFakeLateObject: an object first listed with an ID below the previous
// cycle's greatest (a link that was still being attached then, which an
// iterator pass skips) is counted as created, and the removed count does
// not wrap around.
func TestFakeLateObject(t *testing.T) {
	fk := newFakeKernel()
	ids := fk.add(kernel.KindLink, 5, fakeObject{typ: uint32(kernel.LinkTypeRawTracepoint)})
	fk.remove(kernel.KindLink, ids[2])
	c := newFakeCollector(t, testConfig(t), fk)
	mustCycle(t, c)
	fk.mu.Lock()
	fk.objects[kernel.KindLink][ids[2]] = fakeObject{typ: uint32(kernel.LinkTypeRawTracepoint)}
	fk.mu.Unlock()
	if l := mustCycle(t, c).Kinds[kernel.KindLink]; l.Objects != 5 || l.Created != 1 || l.Removed != 0 {
		t.Fatalf("links: %d objects, %d created, %d removed; want 5, 1, 0", l.Objects, l.Created, l.Removed)
	}
	fk.remove(kernel.KindLink, ids[0])
	if l := mustCycle(t, c).Kinds[kernel.KindLink]; l.Objects != 4 || l.Created != 1 || l.Removed != 1 {
		t.Fatalf("links: %d objects, %d created, %d removed; want 4, 1, 1", l.Objects, l.Created, l.Removed)
	}
}

// TestFakeFaultOnRefresh fails the fdinfo re-read of tracked maps whose
// memory follows their contents: they keep their last known figure, are not
// unreadable, and the failure is counted.
func TestFakeFaultOnRefresh(t *testing.T) {
	fk := newFakeKernel()
	grow := fk.add(kernel.KindMap, 4, fakeObject{typ: uint32(kernel.MapTypeHash), flags: unix.BPF_F_NO_PREALLOC, memory: 50})
	f := newFaultKernel(fk)
	c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = f })
	mustCycle(t, c)
	f.inject(on(kernel.OpFDInfo, kernel.KindMap, unix.ENOMEM, grow[1]))
	s := mustCycle(t, c)
	if m := s.Kinds[kernel.KindMap]; m.Objects != 4 || m.Unreadable != 0 || m.Tracked != 4 || m.MemoryBytes != 200 {
		t.Fatalf("%+v", m)
	}
	if s.Errors[kernel.OpFDInfo] != 1 || fk.openFDs() != 0 {
		t.Fatalf("errors %v, %d fds open", s.Errors, fk.openFDs())
	}
}

// TestFakeListingFault fails the listing itself (ENOMEM, EPERM from
// GET_NEXT_ID) half-way through the maps: the cycle fails, the failure is
// counted, the last complete picture stays published, and the next cycle
// recovers.
func TestFakeListingFault(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOMEM, unix.EPERM} {
		t.Run(unix.ErrnoName(errno), func(t *testing.T) {
			fk := newFakeKernel()
			ids := fk.add(kernel.KindMap, 30, fakeObject{typ: 1, memory: 10})
			f := newFaultKernel(fk)
			c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = f })
			good := mustCycle(t, c)
			fk.add(kernel.KindMap, 5, fakeObject{typ: 1, memory: 10})
			f.inject(on(kernel.OpNextID, kernel.KindMap, errno, ids[15]))
			if err := c.Cycle(context.Background()); !errors.Is(err, errno) {
				t.Fatalf("cycle with a listing fault: %v", err)
			}
			s := published(c)
			if s.Kinds != good.Kinds || s.Cycles != 1 || s.Errors[kernel.OpNextID] != 1 || !s.Active {
				t.Fatalf("after the fault: cycles %d errors %v active %v; picture changed: %v", s.Cycles, s.Errors, s.Active, s.Kinds != good.Kinds)
			}
			if fk.openFDs() != 0 {
				t.Fatalf("%d fds open", fk.openFDs())
			}
			f.inject(nil)
			if m := mustCycle(t, c).Kinds[kernel.KindMap]; m.Objects != 35 || m.MemoryBytes != 350 {
				t.Fatalf("after recovery: %+v", m)
			}
		})
	}
}

// allCaps holds CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON.
func allCaps(c kernel.Capability) bool {
	return c == unix.CAP_SYS_ADMIN || c == unix.CAP_BPF || c == unix.CAP_PERFMON
}

// TestFakeIteratorsFailToLoad: when no BPF iterator can be loaded, auto
// mode reads every kind with system calls, says so in the log and in the
// snapshot (modes, features); iterator mode refuses to start, with the
// reason, and leaves nothing running.
func TestFakeIteratorsFailToLoad(t *testing.T) {
	loadErr := errors.New("loading dump_maps: operation not permitted")
	failing := func(kernel.Gate, string) (kernel.IteratorSource, [kernel.NumKinds]error, error) {
		var errs [kernel.NumKinds]error
		for k := range errs {
			errs[k] = loadErr
		}
		return nil, errs, loadErr
	}
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 3, fakeObject{typ: 1, memory: 10})
	var log bytes.Buffer
	cfg := testConfig(t)
	cfg.CollectionMode = config.ModeAuto
	c := newFakeCollector(t, cfg, fk, func(o *Options) {
		o.LoadIterators = failing
		o.Capabilities = allCaps
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	s := mustCycle(t, c)
	for k := range kernel.NumKinds {
		if s.Mode[k] != "syscall" {
			t.Errorf("%s read by %q, want syscall", kernel.Kind(k), s.Mode[k])
		}
	}
	for _, f := range []snapshot.Feature{snapshot.FeatureMapIterator, snapshot.FeatureProgIterator, snapshot.FeatureLinkIterator, snapshot.FeatureElementCounts} {
		if s.Features[f] {
			t.Errorf("feature %s on", f)
		}
	}
	if s.Kinds[kernel.KindMap].Objects != 3 || !s.Active {
		t.Fatalf("fallback collection: %+v", s.Kinds[kernel.KindMap])
	}
	if out := log.String(); !strings.Contains(out, "BPF iterators unavailable") || !strings.Contains(out, loadErr.Error()) {
		t.Fatalf("fallback not logged with its reason:\n%s", out)
	}

	cfg.CollectionMode = config.ModeIterator
	_, err := New(Options{Config: cfg, Syscalls: fk, LoadIterators: failing, Capabilities: allCaps})
	if err == nil || !strings.Contains(err.Error(), "collection mode iterator") || !errors.Is(err, loadErr) {
		t.Fatalf("iterator mode without iterators: %v", err)
	}
}

func TestUnneededCapabilities(t *testing.T) {
	caps := func(cs ...kernel.Capability) func(kernel.Capability) bool {
		return func(c kernel.Capability) bool { return slices.Contains(cs, c) }
	}
	root := func(kernel.Capability) bool { return true }
	for _, tc := range []struct {
		name                     string
		bySyscall, stats, fdinfo bool
		has                      func(kernel.Capability) bool
		want                     string
	}{
		{"iterator, least privilege", false, false, false, caps(unix.CAP_BPF, unix.CAP_PERFMON), ""},
		{"iterator with sys_admin", false, false, false, caps(unix.CAP_SYS_ADMIN, unix.CAP_BPF, unix.CAP_PERFMON), "CAP_SYS_ADMIN"},
		{"iterator with sys_admin only", false, false, false, caps(unix.CAP_SYS_ADMIN), "CAP_SYS_ADMIN"},
		{"iterator, stats", false, true, false, caps(unix.CAP_SYS_ADMIN, unix.CAP_BPF, unix.CAP_PERFMON), "CAP_PERFMON,CAP_BPF"},
		{"iterator, fdinfo fallback", false, false, true, caps(unix.CAP_SYS_ADMIN), ""},
		{"syscall", true, false, false, caps(unix.CAP_SYS_ADMIN), ""},
		{"syscall with more", true, false, false, caps(unix.CAP_SYS_ADMIN, unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_NET_BIND_SERVICE), "CAP_NET_ADMIN,CAP_BPF"},
		{"root, iterator", false, false, false, root, ""}, // checked below: everything but three
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := capabilityList(unneededCapabilities(tc.has, neededCapabilities(tc.bySyscall, tc.stats, tc.fdinfo)))
			if tc.name == "root, iterator" {
				for _, keep := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_BIND_SERVICE"} {
					if slices.Contains(strings.Split(got, ","), keep) {
						t.Errorf("%s reported unneeded: %s", keep, got)
					}
				}
				if n := len(strings.Split(got, ",")); n != 64-3 || !strings.Contains(got, "CAP_SYS_ADMIN,") || !strings.Contains(got, "capability 63") {
					t.Errorf("%d unneeded: %s", n, got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("unneeded %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFakeWarnsOnceAboutUnneededCapabilities: a syscall-mode collector that
// also holds CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN warns once, naming
// them, after its first cycle; one holding CAP_SYS_ADMIN alone does not.
func TestFakeWarnsOnceAboutUnneededCapabilities(t *testing.T) {
	for _, tc := range []struct {
		has  []kernel.Capability
		want []string
	}{
		{[]kernel.Capability{unix.CAP_SYS_ADMIN, unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN}, []string{"CAP_NET_ADMIN", "CAP_PERFMON", "CAP_BPF"}},
		{[]kernel.Capability{unix.CAP_SYS_ADMIN}, nil},
	} {
		fk := newFakeKernel()
		fk.add(kernel.KindMap, 2, fakeObject{typ: 1})
		var log bytes.Buffer
		c := newFakeCollector(t, testConfig(t), fk, func(o *Options) {
			o.Capabilities = func(c kernel.Capability) bool { return slices.Contains(tc.has, c) }
			o.Logger = slog.New(slog.NewTextHandler(&log, nil))
		})
		if c.UnneededCapabilities() != nil {
			t.Fatal("judged before the first cycle")
		}
		for range 3 {
			mustCycle(t, c)
		}
		if got := c.UnneededCapabilities(); !slices.Equal(got, tc.want) {
			t.Errorf("holding %v: unneeded %v, want %v", tc.has, got, tc.want)
		}
		n := strings.Count(log.String(), "capabilities that its collection does not need")
		switch {
		case tc.want == nil && n != 0:
			t.Errorf("holding %v: warned:\n%s", tc.has, log.String())
		case tc.want != nil && (n != 1 || !strings.Contains(log.String(), "unneeded=CAP_NET_ADMIN,CAP_PERFMON,CAP_BPF") ||
			!strings.Contains(log.String(), "needs=CAP_SYS_ADMIN")):
			t.Errorf("holding %v: want one warning naming them:\n%s", tc.has, log.String())
		}
	}
}
