package collector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

func testConfig(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.ForProfile(config.ProfileProduction)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CollectionMode = config.ModeSyscall
	cfg.MaxSyscallsPerSecond = 0 // unlimited unless a test says otherwise
	cfg.MaxMemoryBytes = 64 << 20
	return cfg
}

func newFakeCollector(t testing.TB, cfg config.Config, fk *fakeKernel, opts ...func(*Options)) *Collector {
	t.Helper()
	o := Options{Config: cfg, Syscalls: fk, OwnerSource: &fakeOwners{}}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func published(c *Collector) snapshot.Snapshot {
	var s snapshot.Snapshot
	c.Publisher().Load(&s)
	return s
}

func mustCycle(t testing.TB, c *Collector) snapshot.Snapshot {
	t.Helper()
	if err := c.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	return published(c)
}

func TestFakeCountsMemoryAndTypes(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 7, fakeObject{typ: uint32(kernel.MapTypeHash), memory: 1000})
	fk.add(kernel.KindMap, 3, fakeObject{typ: uint32(kernel.MapTypeArray), memory: 300})
	fk.add(kernel.KindProg, 4, fakeObject{typ: uint32(kernel.ProgTypeKprobe), memory: 4096})
	fk.add(kernel.KindLink, 2, fakeObject{typ: uint32(kernel.LinkTypeIter)})
	c := newFakeCollector(t, testConfig(t), fk)

	s := mustCycle(t, c)
	m, p, l := s.Kinds[kernel.KindMap], s.Kinds[kernel.KindProg], s.Kinds[kernel.KindLink]
	if m.Objects != 10 || m.MemoryBytes != 7900 || p.Objects != 4 || p.MemoryBytes != 4*4096 || l.Objects != 2 || l.MemoryBytes != 0 {
		t.Fatalf("maps %d/%d progs %d/%d links %d/%d", m.Objects, m.MemoryBytes, p.Objects, p.MemoryBytes, l.Objects, l.MemoryBytes)
	}
	if h := m.Types[kernel.MapTypeHash]; h.Objects != 7 || h.MemoryBytes != 7000 {
		t.Fatalf("hash maps %+v", h)
	}
	if a := m.Types[kernel.MapTypeArray]; a.Objects != 3 || a.MemoryBytes != 900 {
		t.Fatalf("array maps %+v", a)
	}
	if !m.Seen(int(kernel.MapTypeHash)) || m.Seen(int(kernel.MapTypeLpmTrie)) {
		t.Fatal("seen types wrong")
	}
	if !s.Valid || !s.Active || s.Cycles != 1 || s.DurationCount != 1 || s.LastSuccessUnixNano == 0 {
		t.Fatalf("cycle state %+v", s)
	}
	if fk.openFDs() != 0 {
		t.Fatalf("%d fds left open", fk.openFDs())
	}
}

func TestFakeCapsKeepTotalsExact(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 25, fakeObject{typ: uint32(kernel.MapTypeHash), memory: 100})
	fk.add(kernel.KindProg, 9, fakeObject{typ: uint32(kernel.ProgTypeXdp), memory: 4096})
	fk.add(kernel.KindLink, 5, fakeObject{typ: uint32(kernel.LinkTypeXdp)})
	cfg := testConfig(t)
	cfg.MaxTrackedMaps, cfg.MaxTrackedPrograms, cfg.MaxTrackedLinks = 10, 4, 1
	c := newFakeCollector(t, cfg, fk)

	for range 2 { // first cycle and steady state
		s := mustCycle(t, c)
		for k, want := range []struct{ objects, mem, tracked uint64 }{{25, 2500, 10}, {9, 9 * 4096, 4}, {5, 0, 1}} {
			ks := s.Kinds[k]
			if ks.Objects != want.objects || ks.MemoryBytes != want.mem || ks.Tracked != want.tracked ||
				ks.Untracked != want.objects-want.tracked || ks.Capacity != want.tracked {
				t.Fatalf("%s: %+v", kernel.Kind(k), ks)
			}
		}
	}
	if got := c.tables[kernel.KindMap].Records(); len(got) != 10 || got[0].ID != 1 || got[9].ID != 10 {
		t.Fatalf("tracked maps %v", got)
	}
}

func TestFakeBatchSize(t *testing.T) {
	for _, tc := range []struct{ batch, maps, want int }{{50, 120, 3}, {7, 120, 18}, {200, 120, 1}} {
		fk := newFakeKernel()
		fk.add(kernel.KindMap, tc.maps, fakeObject{typ: 1})
		cfg := testConfig(t)
		cfg.BatchSize = tc.batch
		c := newFakeCollector(t, cfg, fk)
		s := mustCycle(t, c)
		// One batch each for programs and links: the empty list ends in
		// the first one.
		if got := int(s.Batches) - 2; got != tc.want {
			t.Errorf("batch %d, %d maps: %d batches, want %d", tc.batch, tc.maps, got, tc.want)
		}
	}
}

func TestFakeConcurrencyLimit(t *testing.T) {
	for _, limit := range []int{1, 3} {
		fk := newFakeKernel()
		fk.add(kernel.KindMap, 60, fakeObject{typ: 1, memory: 10})
		fk.delay = 200 * time.Microsecond
		cfg := testConfig(t)
		cfg.MaxConcurrentSyscalls = limit
		c := newFakeCollector(t, cfg, fk)
		mustCycle(t, c)
		if got := fk.maxInFlight.Load(); got != int32(limit) {
			t.Errorf("limit %d: at most %d calls in flight", limit, got)
		}
		if got := c.gate.maxInFlight.Load(); got > int32(limit) {
			t.Errorf("limit %d: gate admitted %d", limit, got)
		}
	}
}

func TestFakeRateLimit(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 10, fakeObject{typ: 1, memory: 10})
	cfg := testConfig(t)
	cfg.MaxSyscallsPerSecond = 200
	cfg.SyscallBurst = 10
	c := newFakeCollector(t, cfg, fk)
	start := time.Now()
	s := mustCycle(t, c)
	elapsed := time.Since(start)
	calls := s.SyscallsTotal()
	// A first cycle over 10 maps: 11 next-id calls for maps, 1 each for
	// programs and links, and per map get-fd, info, fdinfo (3), close.
	if calls != 13+10*6 {
		t.Fatalf("%d calls", calls)
	}
	// The bucket starts full with 10 tokens; the rest come at 200/s. A
	// lower bound only: sleeping can be late, never early.
	if min := time.Duration(float64(calls-10) / 200 * float64(time.Second)); elapsed < min {
		t.Fatalf("cycle of %d calls took %v, less than the %v the rate limit allows", calls, elapsed, min)
	}
	if s.RateLimitWaitNs == 0 {
		t.Fatal("no wait accounted")
	}
}

func TestFakeIncrementalReadsOnlyWhatChanges(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 10, fakeObject{typ: uint32(kernel.MapTypeArray), memory: 10})
	grow := fk.add(kernel.KindMap, 2, fakeObject{typ: uint32(kernel.MapTypeHash), flags: unix.BPF_F_NO_PREALLOC, memory: 10})
	fk.add(kernel.KindProg, 5, fakeObject{typ: 1, memory: 4096})
	c := newFakeCollector(t, testConfig(t), fk)
	first := mustCycle(t, c)

	// Contents of the non-preallocated maps grow between cycles.
	fk.mu.Lock()
	for _, id := range grow {
		o := fk.objects[kernel.KindMap][id]
		o.memory = 500
		fk.objects[kernel.KindMap][id] = o
	}
	fk.mu.Unlock()

	second := mustCycle(t, c)
	delta := func(op kernel.Op) uint64 { return second.Syscalls[op] - first.Syscalls[op] }
	if delta(kernel.OpGetFD) != 2 || delta(kernel.OpFDInfo) != 2*3 || delta(kernel.OpInfo) != 0 {
		t.Fatalf("steady cycle: get_fd %d fdinfo %d info %d; want 2, 6, 0", delta(kernel.OpGetFD), delta(kernel.OpFDInfo), delta(kernel.OpInfo))
	}
	if got := second.Kinds[kernel.KindMap].MemoryBytes; got != 10*10+2*500 {
		t.Fatalf("memory %d, want the grown figure %d", got, 10*10+2*500)
	}
}

func TestFakeCreatedRemoved(t *testing.T) {
	fk := newFakeKernel()
	old := fk.add(kernel.KindMap, 5, fakeObject{typ: 1})
	c := newFakeCollector(t, testConfig(t), fk)
	s := mustCycle(t, c)
	if s.Kinds[kernel.KindMap].Created != 0 {
		t.Fatal("the first cycle is the baseline, not creations")
	}
	fk.add(kernel.KindMap, 4, fakeObject{typ: 1})
	fk.remove(kernel.KindMap, old[1], old[3])
	s = mustCycle(t, c)
	if m := s.Kinds[kernel.KindMap]; m.Created != 4 || m.Removed != 2 || m.Objects != 7 {
		t.Fatalf("created %d removed %d objects %d", m.Created, m.Removed, m.Objects)
	}
	fk.remove(kernel.KindMap, old[0])
	s = mustCycle(t, c)
	if m := s.Kinds[kernel.KindMap]; m.Created != 4 || m.Removed != 3 {
		t.Fatalf("created %d removed %d", m.Created, m.Removed)
	}
	if recs := c.tables[kernel.KindMap].Records(); len(recs) != 6 || recs[0].ID != old[2] {
		t.Fatalf("table after removals: %d records, first %d", len(recs), recs[0].ID)
	}
}

// goneOnce makes objects vanish between listing and opening.
type goneOnce struct {
	*fakeKernel
	gone map[uint32]bool
}

func (g goneOnce) FDByID(k kernel.Kind, id uint32) (int, error) {
	if g.gone[id] {
		g.remove(k, id)
	}
	return g.fakeKernel.FDByID(k, id)
}

func TestFakeVanishedIsNotAnError(t *testing.T) {
	fk := newFakeKernel()
	ids := fk.add(kernel.KindMap, 10, fakeObject{typ: 1, memory: 1})
	g := goneOnce{fk, map[uint32]bool{ids[2]: true, ids[7]: true}}
	c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = g })
	s := mustCycle(t, c)
	if m := s.Kinds[kernel.KindMap]; m.Objects != 8 || m.Tracked != 8 || m.MemoryBytes != 8 {
		t.Fatalf("%+v", m)
	}
	for op, n := range s.Errors {
		if n != 0 {
			t.Fatalf("%d errors on %s", n, kernel.Op(op))
		}
	}
	recs := c.tables[kernel.KindMap].Records()
	for i := 1; i < len(recs); i++ {
		if recs[i].ID <= recs[i-1].ID || recs[i].ID == ids[2] || recs[i].ID == ids[7] {
			t.Fatalf("table not sorted or holds a vanished object: %v", recs)
		}
	}
}

func TestFakeEPERMIsCountedNotEnd(t *testing.T) {
	fk := newFakeKernel()
	ids := fk.add(kernel.KindMap, 10, fakeObject{typ: 1, memory: 1})
	fk.failGetFD[ids[4]] = unix.EPERM
	c := newFakeCollector(t, testConfig(t), fk)
	s := mustCycle(t, c)
	m := s.Kinds[kernel.KindMap]
	if m.Objects != 10 || m.Unreadable != 1 || m.MemoryBytes != 9 || m.Tracked != 9 {
		t.Fatalf("%+v", m)
	}
	if s.Errors[kernel.OpGetFD] != 1 {
		t.Fatalf("errors %v", s.Errors)
	}

	fk.failList = unix.EPERM
	if err := c.Cycle(context.Background()); !errors.Is(err, unix.EPERM) {
		t.Fatalf("listing failure gave %v", err)
	}
	after := published(c)
	if after.Errors[kernel.OpNextID] != 1 || after.Kinds != s.Kinds || after.Cycles != 1 {
		t.Fatal("a failed listing must be counted and keep the last complete picture")
	}
}

func TestFakeMemoryBudgetSuspendsAndResumes(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 3, fakeObject{typ: 1, memory: 1})
	cfg := testConfig(t)
	cfg.MaxMemoryBytes = 10 << 20
	var usage atomic.Uint64
	usage.Store(1 << 20)
	c := newFakeCollector(t, cfg, fk, func(o *Options) { o.MemoryUsage = usage.Load })
	good := mustCycle(t, c)

	usage.Store(9<<20 + 1) // just past 90%
	fk.add(kernel.KindMap, 5, fakeObject{typ: 1, memory: 1})
	if err := c.Cycle(context.Background()); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("cycle at 90%%: %v", err)
	}
	s := published(c)
	if s.Active || s.MemoryLimitHits != 1 || s.Kinds != good.Kinds || s.LastSuccessUnixNano != good.LastSuccessUnixNano || !s.Valid {
		t.Fatalf("suspended snapshot: active %v hits %d", s.Active, s.MemoryLimitHits)
	}

	usage.Store(2 << 20)
	s = mustCycle(t, c)
	if !s.Active || s.Kinds[kernel.KindMap].Objects != 8 || s.MemoryLimitHits != 1 {
		t.Fatalf("after resume: active %v objects %d", s.Active, s.Kinds[kernel.KindMap].Objects)
	}
}

func TestFakeStopsMidCycleWithoutPublishing(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 200, fakeObject{typ: 1, memory: 1})
	cfg := testConfig(t)
	cfg.BatchSize = 10
	c := newFakeCollector(t, cfg, fk)
	good := mustCycle(t, c)
	fk.add(kernel.KindMap, 50, fakeObject{typ: 1, memory: 1})
	fk.delay = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Cycle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled cycle: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("cancellation took more than a second")
	}
	if s := published(c); s.Kinds != good.Kinds || s.Cycles != 1 {
		t.Fatal("a cancelled cycle published a partial picture")
	}
	if fk.openFDs() != 0 {
		t.Fatalf("%d fds left open", fk.openFDs())
	}
}

func TestFakeOverrunIsCountedAndCyclesDoNotOverlap(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 40, fakeObject{typ: 1, memory: 1})
	fk.delay = time.Millisecond // 40 maps * 6 calls: > 200ms per first cycle
	cfg := testConfig(t)
	cfg.CollectionInterval = 100 * time.Millisecond
	cfg.MaxConcurrentSyscalls = 1
	c := newFakeCollector(t, cfg, fk)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	c.Run(ctx)
	s := published(c)
	if s.Overruns == 0 {
		t.Fatal("no overrun counted")
	}
	if got := fk.maxInFlight.Load(); got != 1 {
		t.Fatalf("%d calls in flight: cycles overlapped", got)
	}
}

func TestFakeIntervalTakesEffect(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 1, fakeObject{typ: 1})
	for _, tc := range []struct {
		interval   time.Duration
		minC, maxC uint64
	}{{100 * time.Millisecond, 5, 11}, {400 * time.Millisecond, 2, 4}} {
		cfg := testConfig(t)
		cfg.CollectionInterval = tc.interval
		c := newFakeCollector(t, cfg, fk)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.Run(ctx)
		cancel()
		if s := published(c); s.Cycles < tc.minC || s.Cycles > tc.maxC {
			t.Errorf("interval %v: %d cycles in 1s", tc.interval, s.Cycles)
		}
	}
}
