// Command cycletime times the agent's collection cycle in syscall mode on
// whatever eBPF objects exist in the kernel now (bench/syscall-vs-bpftool.sh
// holds a population with ebpf-loadgen while it runs).
//
// It measures the first cycle of -runs fresh collectors, and -runs steady
// cycles of one collector after its first cycle, with the configuration of
// -profile except: syscall mode, no rate limit, tables of -tables capacities
// (large enough by default to track every object, so that the steady cycle
// is the steady state), and a -memory budget. It prints one "key value" line
// per figure, durations in nanoseconds, medians over the runs:
//
//	objects, maps, programs, links, untracked, unreadable, workers, batch_size,
//	first_ns, first_syscalls, first_allocs,
//	steady_ns, steady_min_ns, steady_max_ns, steady_syscalls, steady_allocs
//
// where *_syscalls are per cycle (an fdinfo read counts its open, read and
// close) and *_allocs are heap allocations per cycle, of the whole process.
//
// Exit status: 0 when every cycle completed, 1 when one failed, 2 for bad
// flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/bench/internal/stat"
	"github.com/ebpf-metrics/ebpf-metrics/bench/internal/tables"
	"github.com/ebpf-metrics/ebpf-metrics/internal/collector"
	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags.
type options struct {
	runs    int
	profile string
	workers int
	tables  string
	memory  uint64
	owners  int
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cycletime", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.runs, "runs", 5, "fresh collectors timed on their first cycle, and steady cycles timed after it")
	fs.StringVar(&o.profile, "profile", config.ProfileProduction, "profile the configuration starts from")
	fs.IntVar(&o.workers, "workers", 0, "concurrent syscalls (0: the profile's)")
	fs.StringVar(&o.tables, "tables", "20000,10000,5000",
		`table capacities "maps,programs,links", or "profile" for the profile's`)
	fs.Uint64Var(&o.memory, "memory", 64<<20, "memory budget in bytes")
	fs.IntVar(&o.owners, "owners", 0, "max_owners: 0 (the default here) measures the objects' collection alone, like the floor; -1 keeps the profile's (the holders pass is measured by bench/holderpass)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := configure(o)
	if err != nil {
		fmt.Fprintf(stderr, "cycletime: %v\n", err)
		return 2
	}
	if err := measure(cfg, o.runs, stdout); err != nil {
		fmt.Fprintf(stderr, "cycletime: %v\n", err)
		return 1
	}
	return 0
}

func configure(o options) (config.Config, error) {
	if o.runs < 1 {
		return config.Config{}, fmt.Errorf("-runs must be at least 1, got %d", o.runs)
	}
	cfg, err := config.ForProfile(o.profile)
	if err != nil {
		return config.Config{}, err
	}
	cfg.CollectionMode = config.ModeSyscall
	cfg.MaxSyscallsPerSecond = 0
	cfg.MaxMemoryBytes = o.memory
	if o.workers > 0 {
		cfg.MaxConcurrentSyscalls = o.workers
	}
	if o.owners >= 0 {
		cfg.MaxOwners = o.owners
	}
	if o.tables != "profile" {
		if err := tables.Set(&cfg, o.tables); err != nil {
			return config.Config{}, err
		}
	}
	return cfg, cfg.Validate()
}

// cycle is what one timed cycle cost.
type cycle struct {
	d        time.Duration
	syscalls uint64
	allocs   uint64
}

func measure(cfg config.Config, runs int, w io.Writer) error {
	ctx := context.Background()
	first := make([]cycle, 0, runs)
	for range runs {
		c, err := collector.New(collector.Options{Config: cfg})
		if err != nil {
			return err
		}
		r, _, err := timeCycle(ctx, c)
		c.Close()
		if err != nil {
			return fmt.Errorf("first cycle: %w", err)
		}
		first = append(first, r)
	}

	c, err := collector.New(collector.Options{Config: cfg})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, _, err := timeCycle(ctx, c); err != nil {
		return fmt.Errorf("first cycle: %w", err)
	}
	steady := make([]cycle, 0, runs)
	var s snapshot.Snapshot
	for range runs {
		r, snap, err := timeCycle(ctx, c)
		if err != nil {
			return fmt.Errorf("steady cycle: %w", err)
		}
		steady = append(steady, r)
		s = snap
	}

	var objects, untracked, unreadable uint64
	for _, ks := range s.Kinds {
		objects += ks.Objects
		untracked += ks.Untracked
		unreadable += ks.Unreadable
	}
	durations := func(cs []cycle) []time.Duration {
		ds := make([]time.Duration, len(cs))
		for i, c := range cs {
			ds[i] = c.d
		}
		slices.Sort(ds)
		return ds
	}
	sd := durations(steady)
	lines := []struct {
		key string
		val any
	}{
		{"objects", objects},
		{"maps", s.Kinds[kernel.KindMap].Objects},
		{"programs", s.Kinds[kernel.KindProg].Objects},
		{"links", s.Kinds[kernel.KindLink].Objects},
		{"untracked", untracked},
		{"unreadable", unreadable},
		{"workers", cfg.MaxConcurrentSyscalls},
		{"batch_size", cfg.BatchSize},
		{"first_ns", int64(stat.Median(durations(first)))},
		{"first_syscalls", mean(first, func(c cycle) uint64 { return c.syscalls })},
		{"first_allocs", mean(first, func(c cycle) uint64 { return c.allocs })},
		{"steady_ns", int64(stat.Median(sd))},
		{"steady_min_ns", int64(sd[0])},
		{"steady_max_ns", int64(sd[len(sd)-1])},
		{"steady_syscalls", mean(steady, func(c cycle) uint64 { return c.syscalls })},
		{"steady_allocs", mean(steady, func(c cycle) uint64 { return c.allocs })},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%s %v\n", l.key, l.val); err != nil {
			return err
		}
	}
	return nil
}

// timeCycle runs one cycle of c and returns its duration, the system calls
// it made and the heap allocations of the process meanwhile, and the
// snapshot it published.
func timeCycle(ctx context.Context, c *collector.Collector) (cycle, snapshot.Snapshot, error) {
	var before, after snapshot.Snapshot
	c.Publisher().Load(&before)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	start := time.Now()
	err := c.Cycle(ctx)
	d := time.Since(start)
	runtime.ReadMemStats(&ms)
	if err != nil {
		return cycle{}, after, err
	}
	c.Publisher().Load(&after)
	return cycle{d: d, syscalls: after.SyscallsTotal() - before.SyscallsTotal(), allocs: ms.Mallocs - mallocs}, after, nil
}

func mean(cs []cycle, f func(cycle) uint64) string {
	var sum uint64
	for _, c := range cs {
		sum += f(c)
	}
	return strconv.FormatFloat(float64(sum)/float64(len(cs)), 'f', -1, 64)
}
