package collector

import (
	"context"
	"runtime"
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// benchPopulations are the populations BenchmarkCycle measures: the
// loadgen mix of ten map types, socket filter programs and iterator links
// (plus the one iterator program the links share), half of every fillable
// map filled.
var benchPopulations = []struct {
	name string
	spec loadgen.Spec
}{
	{"objects=1k", loadgen.Spec{Maps: 600, Programs: 300, Links: 100, Fill: 0.5}},
	{"objects=10k", loadgen.Spec{Maps: 6000, Programs: 3000, Links: 1000, Fill: 0.5}},
}

// BenchmarkCycle measures one collection cycle in syscall mode on a real
// population, with tables large enough to track every object, no rate
// limit and a 64 MiB budget (kernelConfig):
//
//   - steady: every object is already tracked; a cycle lists every ID and
//     re-reads only the memory of maps whose memory follows their contents.
//     It must allocate nothing (allocs/op 0). Ownership is off.
//   - first: a fresh collector's first cycle, which reads every object in
//     full. Building the collector (New allocates the tables) is not timed.
//   - steady-owners: steady, with ownership on (the holders pass, from
//     procfs in syscall mode); it must allocate nothing either.
//
// Besides ns/op and allocs/op it reports ns/object, syscalls/cycle and
// syscalls/object (from Snapshot.Syscalls, where an fdinfo read counts its
// open, read and close), and the objects counted, which include any other
// objects in the kernel at the time. The population is created once per
// size (10k objects take seconds) and released at the end.
func BenchmarkCycle(b *testing.B) {
	benchModes(b, config.ModeSyscall)
}

// BenchmarkIteratorCycle is BenchmarkCycle in iterator mode, on the same
// populations and configuration:
//
//   - steady: every object is already tracked; one pass of each kind's
//     iterator returns short records (the ID and what can change), merged
//     with the last cycle's records. It must allocate nothing (allocs/op
//     0; see benchSteady for what the runtime allocates meanwhile).
//   - first: a fresh collector's first cycle, full records for every
//     object. Building the collector (New loads the iterators, ~35 ms per
//     kind, and allocates the tables) is not timed.
//
// It reports the same metrics as BenchmarkCycle. bench/itercycle compares
// the same cycle with the floor of iterator collection (an iterator that
// writes only IDs).
func BenchmarkIteratorCycle(b *testing.B) {
	benchModes(b, config.ModeIterator)
}

// benchModes runs the steady and first-cycle benchmarks of mode on each
// population, created once per size and released at the end.
func benchModes(b *testing.B, mode string) {
	testutil.RequireBPF(b)
	for _, bp := range benchPopulations {
		b.Run(bp.name, func(b *testing.B) {
			p, err := loadgen.Create(bp.spec)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := p.Close(); err != nil {
					b.Error(err)
				}
			}()
			b.Run("steady", benchSteady(mode, false))
			b.Run("first", benchFirst(mode))
			b.Run("steady-owners", benchSteady(mode, true))
		})
	}
}

// benchConfig is kernelConfig with ownership off unless owners: the
// objects' collection alone is what the floors and bpftool are compared
// with; steady-owners adds the holders pass (bench/holders-vs-floor.sh
// compares that with its own floor).
func benchConfig(b *testing.B, mode string, owners bool) Options {
	opts := kernelConfig(b, mode)
	if !owners {
		opts.Config.MaxOwners = 0
	}
	return opts
}

// benchSteady times steady cycles of one collector in mode.
func benchSteady(mode string, owners bool) func(*testing.B) {
	return func(b *testing.B) {
		c, err := New(benchConfig(b, mode, owners))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		mustCycle(b, c) // the first cycle: everything is read and tracked
		s := mustCycle(b, c)
		requireAllTracked(b, &s)
		before := s.SyscallsTotal()

		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mallocs := ms.Mallocs
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Cycle(ctx); err != nil {
				b.Fatal(err)
			}
		}
		runtime.ReadMemStats(&ms)
		// Judged per cycle, rounded down, like allocs/op and
		// testing.AllocsPerRun: the cycle's own code allocates nothing, but
		// the Go runtime does now and then on its behalf. In syscall mode, a
		// 112-byte sudog when a worker or the cycle blocks (pool.work's
		// select, pool.run's WaitGroup.Wait) and the per-P cache is empty,
		// about once in ten to twenty cycles; in both modes, a new M (thread)
		// when a long system call (an iterator's read()) hands its P off
		// (runtime.allocm under handoffp, a few times in hundreds of cycles).
		// The exact mean is reported as allocs/cycle.
		n := ms.Mallocs - mallocs
		if n/uint64(b.N) != 0 {
			b.Errorf("%d steady cycles allocated %d times, want 0 per cycle", b.N, n)
		}
		b.ReportMetric(float64(n)/float64(b.N), "allocs/cycle")
		s = published(c)
		reportCycle(b, &s, s.SyscallsTotal()-before)
	}
}

// benchFirst times the first cycle of fresh collectors in mode.
func benchFirst(mode string) func(*testing.B) {
	return func(b *testing.B) {
		opts := benchConfig(b, mode, false)
		ctx := context.Background()
		var syscalls uint64
		var s snapshot.Snapshot
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			c, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			err = c.Cycle(ctx)
			b.StopTimer()
			if err != nil {
				c.Close()
				b.Fatal(err)
			}
			c.Publisher().Load(&s)
			c.Close()
			syscalls += s.SyscallsTotal()
			b.StartTimer()
		}
		requireAllTracked(b, &s)
		reportCycle(b, &s, syscalls)
	}
}

// requireAllTracked fails a benchmark whose tables did not hold every
// object: untracked objects are read in full every cycle, which is another
// measurement.
func requireAllTracked(b *testing.B, s *snapshot.Snapshot) {
	b.Helper()
	for k := range kernel.NumKinds {
		if ks := s.Kinds[k]; ks.Untracked != 0 || ks.Unreadable != 0 {
			b.Fatalf("%ss: %d untracked, %d unreadable of %d", kernel.Kind(k), ks.Untracked, ks.Unreadable, ks.Objects)
		}
	}
}

// reportCycle reports the per-object figures of b.N cycles over the objects
// the last snapshot s counted, which made syscalls system calls in all.
func reportCycle(b *testing.B, s *snapshot.Snapshot, syscalls uint64) {
	var objects uint64
	for _, ks := range s.Kinds {
		objects += ks.Objects
	}
	cycles := float64(b.N)
	b.ReportMetric(float64(objects), "objects")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/cycles/float64(objects), "ns/object")
	b.ReportMetric(float64(syscalls)/cycles, "syscalls/cycle")
	b.ReportMetric(float64(syscalls)/cycles/float64(objects), "syscalls/object")
}
