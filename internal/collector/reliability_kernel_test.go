package collector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// TestKernelChurn collects every 10 ms, in each mode, while other
// goroutines create and release maps, programs and links flat out for two
// seconds, and attach raw tracepoint links, which the kernel lists before it
// lets anyone open them: objects released between listing and reading, and
// links not yet attached, are not errors, no cycle fails, no fd is left
// open, and once the churn stops the counts and memory converge exactly to
// bpftool's.
func TestKernelChurn(t *testing.T) {
	testutil.RequireBPF(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			fdsBefore := countFDs(t)
			c, err := New(kernelConfig(t, mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustCycle(t, c)

			// Two seconds of churn, from when it starts: loading its
			// program can take that long on an emulated CPU. Raw
			// tracepoint links keep being attached after it, in syscall
			// mode until a cycle has met one not yet attached (a window
			// of microseconds per link), for up to 30 s more.
			churnCtx, churnDone := context.WithCancel(context.Background())
			defer churnDone()
			slowCtx, slowDone := context.WithCancel(context.Background())
			defer slowDone()
			var (
				wg             sync.WaitGroup
				st             loadgen.ChurnStats
				slow           int
				churn, slowErr error
			)
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer churnDone()
				st, churn = loadgen.ChurnFor(churnCtx, 0, 2*time.Second)
			}()
			go func() {
				defer wg.Done()
				slow, slowErr = loadgen.ChurnSlowLinks(slowCtx, 10*time.Millisecond)
			}()
			cycles, unsettled := 0, 0
			var deadline time.Time
			for {
				if churnCtx.Err() != nil {
					if deadline.IsZero() {
						deadline = time.Now().Add(30 * time.Second)
					}
					if unsettled > 0 || mode != config.ModeSyscall || time.Now().After(deadline) {
						break
					}
				}
				if err := c.Cycle(context.Background()); err != nil {
					t.Errorf("cycle %d during churn: %v", cycles, err)
					break
				}
				cycles++
				if published(c).Kinds[kernel.KindLink].Unreadable > 0 {
					unsettled++
				}
				time.Sleep(10 * time.Millisecond)
			}
			slowDone()
			wg.Wait()
			if churn != nil || slowErr != nil {
				t.Fatal(churn, slowErr)
			}
			s := published(c)
			t.Logf("%s: %d cycles during churn of %d objects in %v (%.0f/s) and %d raw tracepoint links; "+
				"%d cycles met a link not yet attached; created %d, removed %d maps seen",
				mode, cycles, st.Objects(), st.Elapsed, st.Rate(), slow, unsettled, s.Kinds[kernel.KindMap].Created, s.Kinds[kernel.KindMap].Removed)
			// A syscall cycle, which opens every new link, meets some links
			// being attached; an iterator pass, far shorter, met none in
			// some runs.
			if unsettled == 0 && mode == config.ModeSyscall {
				t.Error("no cycle met a link being attached: the case is not exercised")
			}
			if st.Rate() < 1000 && !testutil.Emulated() { // a CPU emulated in software is far slower
				t.Errorf("churn of %.0f objects/s, want at least 1000", st.Rate())
			}
			for op, n := range s.Errors {
				if n != 0 {
					t.Errorf("%d %s errors during churn", n, kernel.Op(op))
				}
			}
			if s.Kinds[kernel.KindMap].Created == 0 || s.Kinds[kernel.KindLink].Removed == 0 {
				t.Errorf("churn not seen: %+v", s.Kinds[kernel.KindMap])
			}
			after, counts, mem := cycleMatchingBpftool(t, c)
			for k := range kernel.NumKinds {
				if ks := after.Kinds[k]; ks.Objects != uint64(counts[k]) || ks.MemoryBytes != mem[k] || ks.Unreadable != 0 {
					t.Errorf("%s after churn: %d objects %d bytes (%d unreadable); bpftool %d objects %d bytes",
						kernel.Kind(k), ks.Objects, ks.MemoryBytes, ks.Unreadable, counts[k], mem[k])
				}
			}
			if after.Errors != s.Errors {
				t.Errorf("errors after churn: %v", after.Errors)
			}
			c.Close()
			if fds := countFDs(t); fds != fdsBefore {
				t.Errorf("%d fds open after Close, %d before New", fds, fdsBefore)
			}
		})
	}
}

// TestKernelInjectedFaults runs syscall collection over a real population
// through the fault seam: ENOMEM on the info of two maps, EPERM on opening
// a program, EMFILE on the fdinfo of a map. Counts stay exact (bpftool's),
// the four objects are unreadable and their memory is what is missing from
// the totals, each failure is counted under its operation, and without the
// faults the next cycle matches bpftool exactly.
func TestKernelInjectedFaults(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 30, Programs: 6, Links: 2, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	maps, progs := pop.MapIDs(), pop.ProgramIDs()
	fdsBefore := countFDs(t)
	f := newFaultKernel(kernel.Sys{})
	f.inject(func(op kernel.Op, k kernel.Kind, id uint32) error {
		switch {
		case op == kernel.OpInfo && k == kernel.KindMap && (id == maps[3] || id == maps[17]):
			return unix.ENOMEM
		case op == kernel.OpGetFD && k == kernel.KindProg && id == progs[2]:
			return unix.EPERM
		case op == kernel.OpFDInfo && k == kernel.KindMap && id == maps[25]:
			return unix.EMFILE
		}
		return nil
	})
	opts := kernelConfig(t, config.ModeSyscall)
	opts.Syscalls = f
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	byID := map[kernel.Kind]map[uint32]bpftool.Object{}
	s, counts, mem := cycleMatchingBpftool(t, c)
	byID[kernel.KindMap] = testutil.Bpftool(t, bpftool.Map)
	byID[kernel.KindProg] = testutil.Bpftool(t, bpftool.Program)
	missing := [kernel.NumKinds]uint64{
		kernel.KindMap:  byID[kernel.KindMap][maps[3]].BytesMemlock + byID[kernel.KindMap][maps[17]].BytesMemlock + byID[kernel.KindMap][maps[25]].BytesMemlock,
		kernel.KindProg: byID[kernel.KindProg][progs[2]].BytesMemlock,
	}
	unreadable := [kernel.NumKinds]uint64{kernel.KindMap: 3, kernel.KindProg: 1}
	for k := range kernel.NumKinds {
		ks := s.Kinds[k]
		if ks.Objects != uint64(counts[k]) || ks.Unreadable != unreadable[k] || ks.MemoryBytes != mem[k]-missing[k] {
			t.Errorf("%s with faults: %d objects, %d unreadable, %d bytes; want %d, %d, %d",
				kernel.Kind(k), ks.Objects, ks.Unreadable, ks.MemoryBytes, counts[k], unreadable[k], mem[k]-missing[k])
		}
	}
	// Listed again and failed again in each cycle cycleMatchingBpftool ran.
	cycles := s.Cycles
	for op, want := range map[kernel.Op]uint64{kernel.OpInfo: 2 * cycles, kernel.OpGetFD: cycles, kernel.OpFDInfo: cycles} {
		if s.Errors[op] != want {
			t.Errorf("%d %s errors after %d cycles, want %d", s.Errors[op], op, cycles, want)
		}
	}
	if s.Errors[kernel.OpNextID] != 0 || s.Errors[kernel.OpClose] != 0 || !s.Active {
		t.Errorf("errors %v, active %v", s.Errors, s.Active)
	}

	f.inject(nil)
	s, counts, mem = cycleMatchingBpftool(t, c)
	for k := range kernel.NumKinds {
		if ks := s.Kinds[k]; ks.Objects != uint64(counts[k]) || ks.MemoryBytes != mem[k] || ks.Unreadable != 0 {
			t.Errorf("%s without faults: %+v; bpftool %d objects %d bytes", kernel.Kind(k), ks, counts[k], mem[k])
		}
	}
	c.Close()
	if fds := countFDs(t); fds != fdsBefore {
		t.Errorf("%d fds open after Close, %d before", fds, fdsBefore)
	}
}

// TestKernelIteratorCycleCancelled stops an iterator cycle half-way (a rate
// limit of 5 system calls per second makes it last seconds): Cycle returns
// within a second, the iterator's fd is closed, and the picture published
// is still the last complete one.
func TestKernelIteratorCycleCancelled(t *testing.T) {
	testutil.RequireBPF(t)
	opts := kernelConfig(t, config.ModeIterator)
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	good := mustCycle(t, c)
	// The same collector, rate-limited from now on.
	c.lim.rate, c.lim.burst, c.lim.tokens = 5, 1, 0
	fds := countFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Cycle(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled iterator cycle: %v", err)
	}
	if took > time.Second {
		t.Fatalf("cancellation took %v", took)
	}
	s := published(c)
	if s.Kinds != good.Kinds || s.Cycles != good.Cycles || s.LastSuccessUnixNano != good.LastSuccessUnixNano {
		t.Fatal("a cancelled cycle published a partial picture")
	}
	if s.Syscalls[kernel.OpIterCreate] == good.Syscalls[kernel.OpIterCreate] {
		t.Fatal("the cycle was cancelled before it began: nothing tested")
	}
	if got := countFDs(t); got != fds {
		t.Fatalf("%d fds open after the cancelled cycle, %d before", got, fds)
	}
	c.lim.rate = 0
	if s := mustCycle(t, c); s.Cycles != good.Cycles+1 {
		t.Fatalf("no recovery: %d cycles", s.Cycles)
	}
}

// TestKernelUnneededCapabilities: in iterator mode, holding CAP_SYS_ADMIN
// beside CAP_BPF and CAP_PERFMON is more than needed, unless run-time
// statistics (or the fdinfo fallback for a map type the iterator cannot
// compute) use it; then CAP_BPF and CAP_PERFMON are the ones not needed.
func TestKernelUnneededCapabilities(t *testing.T) {
	testutil.RequireBPF(t)
	for _, stats := range []bool{false, true} {
		opts := kernelConfig(t, config.ModeIterator)
		opts.Config.EnableSystemStats = stats
		opts.Capabilities = allCaps
		c, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		s := mustCycle(t, c)
		want := []string{"CAP_SYS_ADMIN"}
		if stats || s.Syscalls[kernel.OpFDInfo] > 0 {
			want = []string{"CAP_PERFMON", "CAP_BPF"}
		}
		if got := c.UnneededCapabilities(); !slices.Equal(got, want) {
			t.Errorf("stats %v (%d fdinfo reads): unneeded %v, want %v", stats, s.Syscalls[kernel.OpFDInfo], got, want)
		}
		c.Close()
	}
}
