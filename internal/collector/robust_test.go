package collector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// addID creates an object of kind k with the given ID: after the kernel's
// cyclic ID allocation wraps at INT_MAX, a new object can take any free ID.
func (f *fakeKernel) addID(k kernel.Kind, id uint32, o fakeObject) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[k][id] = o
}

// newFakeIterCollector is a collector in iterator mode over fi, with fk as
// the syscall fallback (fdinfo) and every capability.
func newFakeIterCollector(t testing.TB, cfg config.Config, fk *fakeKernel, fi *fakeIters, opts ...func(*Options)) *Collector {
	t.Helper()
	cfg.CollectionMode = config.ModeIterator
	all := append([]func(*Options){func(o *Options) {
		o.LoadIterators = fi.load
		o.Capabilities = allCaps
	}}, opts...)
	return newFakeCollector(t, cfg, fk, all...)
}

// bothModes runs a test in syscall mode and in iterator mode (with fake
// iterators over the same fake kernel).
func bothModes(t *testing.T, test func(t *testing.T, fk *fakeKernel, newC func(config.Config) *Collector)) {
	t.Run("syscall", func(t *testing.T) {
		fk := newFakeKernel()
		test(t, fk, func(cfg config.Config) *Collector { return newFakeCollector(t, cfg, fk) })
	})
	t.Run("iterator", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		test(t, fk, func(cfg config.Config) *Collector { return newFakeIterCollector(t, cfg, fk, fi) })
	})
}

// TestFakeWrappedIDs: once IDs wrap, a new object can have a lower ID than
// every object listed before. It is new wherever it falls: read in full
// (its memory counted), created_total counts it, removed_total counts the
// one that went.
func TestFakeWrappedIDs(t *testing.T) {
	bothModes(t, func(t *testing.T, fk *fakeKernel, newC func(config.Config) *Collector) {
		fk.addID(kernel.KindMap, 100, fakeObject{typ: 1, memory: 10})
		fk.addID(kernel.KindMap, 200, fakeObject{typ: 1, memory: 20})
		c := newC(testConfig(t))
		mustCycle(t, c)
		fk.remove(kernel.KindMap, 200)
		fk.addID(kernel.KindMap, 5, fakeObject{typ: 1, memory: 7})
		s := mustCycle(t, c)
		m := s.Kinds[kernel.KindMap]
		if m.Objects != 2 || m.MemoryBytes != 17 || m.Created != 1 || m.Removed != 1 || m.Unreadable != 0 {
			t.Fatalf("after a wrapped ID: %d objects, %d bytes, created %d, removed %d, unreadable %d; want 2, 17, 1, 1, 0",
				m.Objects, m.MemoryBytes, m.Created, m.Removed, m.Unreadable)
		}
		// The greatest ID went: the next object above the new greatest
		// is new too, and one below it that stays is not.
		fk.addID(kernel.KindMap, 150, fakeObject{typ: 1, memory: 15})
		s = mustCycle(t, c)
		if m := s.Kinds[kernel.KindMap]; m.Objects != 3 || m.MemoryBytes != 32 || m.Created != 2 || m.Removed != 1 {
			t.Fatalf("then a new ID above: %+v", m)
		}
	})
}

// TestFakeIterRepassOnce: the second pass after a wrapped ID asks for full
// records from that ID on, and a steady cycle after it is a single pass.
func TestFakeIterRepassOnce(t *testing.T) {
	fk := newFakeKernel()
	fi := newFakeIters(fk)
	fk.addID(kernel.KindMap, 100, fakeObject{typ: 1, memory: 10})
	fk.addID(kernel.KindMap, 200, fakeObject{typ: 1, memory: 20})
	c := newFakeIterCollector(t, testConfig(t), fk, fi)
	mustCycle(t, c)
	fk.addID(kernel.KindMap, 5, fakeObject{typ: 1, memory: 7})
	mustCycle(t, c)
	mustCycle(t, c)
	if got, want := fi.lastPass(kernel.KindMap), []uint32{0, 200, 4, 200}; !equalU32(got, want) {
		t.Fatalf("thresholds of the passes %v, want %v", got, want)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFakeIterMerge: the iterator pass's merge on chosen situations.
func TestFakeIterMerge(t *testing.T) {
	t.Run("ID 0 is skipped", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		fi.zeroIDs = 2
		fk.add(kernel.KindLink, 3, fakeObject{typ: 1})
		c := newFakeIterCollector(t, testConfig(t), fk, fi)
		for range 2 {
			if l := mustCycle(t, c).Kinds[kernel.KindLink]; l.Objects != 3 || l.Tracked != 3 || l.Unreadable != 0 {
				t.Fatalf("links %+v", l)
			}
		}
	})
	t.Run("table full", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		ids := fk.add(kernel.KindMap, 5, fakeObject{typ: 1, memory: 3})
		cfg := testConfig(t)
		cfg.MaxTrackedMaps = 3
		c := newFakeIterCollector(t, cfg, fk, fi)
		for range 3 {
			m := mustCycle(t, c).Kinds[kernel.KindMap]
			if m.Objects != 5 || m.MemoryBytes != 15 || m.Tracked != 3 || m.Untracked != 2 {
				t.Fatalf("maps %+v", m)
			}
		}
		// Beyond the table, objects come in full every cycle.
		if got := fi.lastPass(kernel.KindMap); got[len(got)-1] != ids[2] {
			t.Fatalf("thresholds %v, want the last tracked ID %d", got, ids[2])
		}
	})
	t.Run("object gone mid-pass", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		ids := fk.add(kernel.KindMap, 4, fakeObject{typ: 1, memory: 1})
		c := newFakeIterCollector(t, testConfig(t), fk, fi)
		mustCycle(t, c)
		fi.onNext = func(i int) {
			if i == 1 {
				fk.remove(kernel.KindMap, ids[3])
			}
		}
		m := mustCycle(t, c).Kinds[kernel.KindMap]
		if m.Objects != 3 || m.Removed != 1 || m.Created != 0 || m.Tracked != 3 {
			t.Fatalf("maps %+v", m)
		}
	})
	t.Run("short read keeps the last picture", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		fk.add(kernel.KindMap, 4, fakeObject{typ: 1, memory: 1})
		c := newFakeIterCollector(t, testConfig(t), fk, fi)
		good := mustCycle(t, c)
		fk.add(kernel.KindMap, 2, fakeObject{typ: 1, memory: 1})
		fi.failAfter = 5
		if err := c.Cycle(context.Background()); !errors.Is(err, errFakeShortRead) {
			t.Fatalf("cycle: %v", err)
		}
		if s := published(c); s.Kinds != good.Kinds {
			t.Fatal("a failed pass published a partial picture")
		}
		fi.failAfter = 0
		if m := mustCycle(t, c).Kinds[kernel.KindMap]; m.Objects != 6 || m.Tracked != 6 || m.Created != 2 {
			t.Fatalf("after the short read: %+v", m)
		}
	})
	t.Run("disagreement resyncs", func(t *testing.T) {
		fk := newFakeKernel()
		fi := newFakeIters(fk)
		fk.add(kernel.KindMap, 2, fakeObject{typ: 1, memory: 1})
		c := newFakeIterCollector(t, testConfig(t), fk, fi)
		mustCycle(t, c)
		// An object the table does not hold comes short even on the
		// second pass: counted, unreadable, and the next cycle asks for
		// everything in full.
		fk.addID(kernel.KindMap, 1000, fakeObject{typ: 1, memory: 1})
		fi.forceShort[1000] = true
		m := mustCycle(t, c).Kinds[kernel.KindMap]
		if m.Objects != 3 || m.Unreadable != 1 {
			t.Fatalf("maps %+v", m)
		}
		delete(fi.forceShort, 1000)
		m = mustCycle(t, c).Kinds[kernel.KindMap]
		if got := fi.lastPass(kernel.KindMap); got[len(got)-1] != 0 {
			t.Fatalf("thresholds %v: want a full pass after the disagreement", got)
		}
		if m.Objects != 3 || m.Unreadable != 0 || m.Tracked != 3 || m.MemoryBytes != 3 {
			t.Fatalf("after the resync: %+v", m)
		}
	})
}

// TestFakeFormulaGuard: a map type whose memory the iterator computes
// wrongly (a kernel whose map_mem_usage changed) is found by the checks
// against fdinfo, confirmed, counted, and read from fdinfo from then on; a
// right type is never flagged.
func TestFakeFormulaGuard(t *testing.T) {
	fk := newFakeKernel()
	fi := newFakeIters(fk)
	const bad, good = 2, 1 // array, hash
	fi.formulaError[bad] = 64
	fk.add(kernel.KindMap, 3, fakeObject{typ: bad, memory: 100})
	fk.add(kernel.KindMap, 3, fakeObject{typ: good, memory: 10})
	var log bytes.Buffer
	c := newFakeIterCollector(t, testConfig(t), fk, fi, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	var s snapshot.Snapshot
	for range 8 {
		s = mustCycle(t, c)
	}
	if !s.Features[snapshot.FeatureMemoryFormulaCheck] {
		t.Fatal("memory_formula_check off with CAP_SYS_ADMIN and a map iterator")
	}
	if s.FormulaMismatches[bad] != 1 || s.FormulaMismatches[good] != 0 {
		t.Fatalf("mismatches: array %d, hash %d; want 1, 0", s.FormulaMismatches[bad], s.FormulaMismatches[good])
	}
	m := s.Kinds[kernel.KindMap]
	if m.MemoryBytes != 330 || m.Types[bad].MemoryBytes != 300 {
		t.Fatalf("memory %d (arrays %d), want 330 (300): the wrong formula's figure stayed", m.MemoryBytes, m.Types[bad].MemoryBytes)
	}
	if n := strings.Count(log.String(), "memory formula disagrees"); n != 1 {
		t.Fatalf("%d log lines about the formula, want 1:\n%s", n, log.String())
	}
}

// TestFakeFormulaGuardOffWithoutFDInfo: without CAP_SYS_ADMIN there is no
// fdinfo to check against, and the feature says so.
func TestFakeFormulaGuardOffWithoutFDInfo(t *testing.T) {
	fk := newFakeKernel()
	fi := newFakeIters(fk)
	fk.add(kernel.KindMap, 2, fakeObject{typ: 1, memory: 10})
	c := newFakeIterCollector(t, testConfig(t), fk, fi, func(o *Options) {
		o.Capabilities = func(c kernel.Capability) bool { return c == unix.CAP_BPF || c == unix.CAP_PERFMON }
	})
	s := mustCycle(t, c)
	if s.Features[snapshot.FeatureMemoryFormulaCheck] {
		t.Fatal("memory_formula_check on without CAP_SYS_ADMIN")
	}
	if s.Syscalls[kernel.OpFDInfo] != 0 {
		t.Fatal("fdinfo read without CAP_SYS_ADMIN")
	}
}

// TestFakeEAGAINRetriesAreGated: EAGAIN is retried a bounded number of
// times, each retry a system call admitted and counted by the gate, and
// the failure counted once.
func TestFakeEAGAINRetriesAreGated(t *testing.T) {
	fk := newFakeKernel()
	maps := fk.add(kernel.KindMap, 3, fakeObject{typ: 1, memory: 10})
	f := newFaultKernel(fk)
	f.inject(on(kernel.OpGetFD, kernel.KindMap, unix.EAGAIN, maps[1]))
	c := newFakeCollector(t, testConfig(t), fk, func(o *Options) { o.Syscalls = f })
	s := mustCycle(t, c)
	// Two maps opened once, one tried 1 + maxEAGAIN times.
	if got, want := s.Syscalls[kernel.OpGetFD], uint64(2+1+5); got != want {
		t.Errorf("get_fd_by_id calls %d, want %d", got, want)
	}
	if s.Errors[kernel.OpGetFD] != 1 {
		t.Errorf("get_fd_by_id failures %d, want 1", s.Errors[kernel.OpGetFD])
	}
	if m := s.Kinds[kernel.KindMap]; m.Objects != 3 || m.Unreadable != 1 {
		t.Errorf("maps %+v", m)
	}
}

// TestFakeFDInfoMissingIsAnError: a missing fdinfo (a wrong --path.procfs,
// hidepid) is the agent's failure, counted and logged once, never an object
// gone: the objects stay counted.
func TestFakeFDInfoMissingIsAnError(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 4, fakeObject{typ: 1, memory: 10})
	f := newFaultKernel(fk)
	f.inject(func(op kernel.Op, k kernel.Kind, id uint32) error {
		if op == kernel.OpFDInfo {
			return kernel.ErrFDInfoMissing
		}
		return nil
	})
	var log bytes.Buffer
	c := newFakeCollector(t, testConfig(t), fk, func(o *Options) {
		o.Syscalls = f
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	var s snapshot.Snapshot
	for range 3 {
		s = mustCycle(t, c)
	}
	if m := s.Kinds[kernel.KindMap]; m.Objects != 4 || m.Unreadable != 4 {
		t.Fatalf("maps %+v: want 4 counted, unreadable", m)
	}
	if s.Errors[kernel.OpFDInfo] != 12 {
		t.Fatalf("fdinfo failures %d, want 12", s.Errors[kernel.OpFDInfo])
	}
	if n := strings.Count(log.String(), "reading the fdinfo of the agent's own fds failed"); n != 1 {
		t.Fatalf("%d log lines about fdinfo over 3 cycles, want 1:\n%s", n, log.String())
	}
}

// TestFakeOverrunPublishedWithItsCycle: a cycle longer than the interval is
// an overrun in the snapshot published at its end, and the publication
// hook runs once after it, so /metrics shows it at once.
func TestFakeOverrunPublishedWithItsCycle(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 1, fakeObject{typ: 1, memory: 1})
	fk.delay = 30 * time.Millisecond // a cycle makes at least 5 calls: > 100ms
	cfg := testConfig(t)
	cfg.CollectionInterval = 100 * time.Millisecond
	var published atomic.Int32
	var overruns atomic.Uint64
	var c *Collector
	c = newFakeCollector(t, cfg, fk, func(o *Options) {
		o.OnPublish = func(*snapshot.Snapshot) {
			published.Add(1)
			var s snapshot.Snapshot
			c.Publisher().Load(&s)
			overruns.Store(s.Overruns)
		}
	})
	mustCycle(t, c)
	if published.Load() != 1 || overruns.Load() != 1 {
		t.Fatalf("after one long cycle: %d publications, overruns %d when published; want 1, 1", published.Load(), overruns.Load())
	}
}

// TestFakeCloseWaitsForTheCycle: Close stops the cycle in progress and
// returns only once it has ended, so that no fd it uses is closed (and
// reused) under it.
func TestFakeCloseWaitsForTheCycle(t *testing.T) {
	fk := newFakeKernel()
	fk.add(kernel.KindMap, 50, fakeObject{typ: 1, memory: 1})
	fk.delay = 2 * time.Millisecond
	cfg := testConfig(t)
	cfg.MaxConcurrentSyscalls = 1
	var (
		mu     sync.Mutex
		events []string
	)
	event := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	// The cycle's last act is its publication.
	c := newFakeCollector(t, cfg, fk, func(o *Options) { o.OnPublish = func(*snapshot.Snapshot) { event("cycle ended") } })
	cycled := make(chan error, 1)
	go func() { cycled <- c.Cycle(context.Background()) }()
	for fk.calls.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	c.Close()
	event("close returned")
	if err := <-cycled; !errors.Is(err, ErrClosed) {
		t.Fatalf("the cycle in progress ended with %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] != "cycle ended" {
		t.Fatalf("events %v: Close returned before the cycle", events)
	}
	if fk.openFDs() != 0 {
		t.Fatalf("%d fds left open", fk.openFDs())
	}
	if err := c.Cycle(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("a cycle after Close: %v, want ErrClosed", err)
	}
}

// TestKernelStatsDutyCycle: with system_stats_duty_cycle below 1, run-time
// statistics are on for about that share of the time, and off between the
// cycles' windows; at 1, all the time.
func TestKernelStatsDutyCycle(t *testing.T) {
	testutil.RequireBPF(t)
	for _, tc := range []struct {
		duty     float64
		min, max float64 // share of the run with statistics on
	}{{0.2, 0.05, 0.6}, {1, 0.8, 1.01}} {
		fk := newFakeKernel()
		fk.add(kernel.KindProg, 2, fakeObject{typ: 1, memory: 4096})
		cfg := testConfig(t)
		cfg.EnableSystemStats = true
		cfg.SystemStatsDutyCycle = tc.duty
		cfg.CollectionInterval = 100 * time.Millisecond
		// At duty cycle 1 the statistics go on in New: the run is timed
		// from before it (which takes tens of ms on an emulated CPU), and
		// both figures are read at the same instant.
		start := time.Now()
		c := newFakeCollector(t, cfg, fk, func(o *Options) { o.Capabilities = allCaps })
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		c.Run(ctx)
		cancel()
		now := time.Now()
		elapsed := now.Sub(start).Seconds()
		s := published(c)
		on := c.statsSeconds(now)
		if s.Cycles < 5 || on < tc.min*elapsed || on > tc.max*elapsed {
			t.Errorf("duty cycle %v: statistics on %.2f s of %.2f s over %d cycles, want between %v and %v of it",
				tc.duty, on, elapsed, s.Cycles, tc.min, tc.max)
		}
		if s.StatsEnabledSeconds == 0 || s.StatsEnabledSeconds > on {
			t.Errorf("duty cycle %v: published %.3f s, now %.3f s", tc.duty, s.StatsEnabledSeconds, on)
		}
	}
}
