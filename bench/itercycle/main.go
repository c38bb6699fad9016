// Command itercycle times the agent's collection cycle in iterator mode
// against the floor of iterator collection, on whatever eBPF objects exist
// in the kernel now (bench/iterator-vs-bpftool.sh holds a population with
// ebpf-loadgen while it runs). Everything is measured in one process, the
// contestants taking turns (in a rotating order) so that the noise of a
// shared machine falls on all of them alike:
//
//   - floor: bench/floor, iterators that write only each object's 4-byte
//     ID, read raw into one buffer and counted;
//   - raw: the agent's own iterator programs (-iter-object, the ELF that
//     internal/kernel embeds), loaded apart and read raw like the floor,
//     with every object known (short records): the kernel's side of a
//     steady cycle, without any Go decoding;
//   - next: the agent's kernel.Iterators, every object known, records
//     decoded by Next and dropped: kernel side plus decoding;
//   - steady: the agent's collector in iterator mode, after its first
//     cycle: kernel side, decoding, the merge with the last cycle, the
//     aggregates and the publication of the snapshot;
//
// then the first cycle of -first fresh collectors (everything new, full
// records), and, with -stats-passes, the kernel's run-time statistics
// (BPF_ENABLE_STATS, on only during that phase) of the floor's and the
// agent's iterator programs: how long the programs themselves run per
// object, apart from the kernel's walk and the seq_file around them.
//
// The collector runs the -profile configuration except: iterator mode, no
// rate limit, tables of -tables capacities (large enough by default to
// track every object) and a -memory budget. Output: one "key value" line
// per figure, durations in nanoseconds, medians over -runs:
//
//	objects, maps, programs, links, untracked, unreadable, memory_unknown
//	(the collector's last steady snapshot), runs,
//	{floor,raw,next,steady}_{ns,min_ns,max_ns,syscalls} (syscalls: of one pass),
//	floor_bytes, floor_objects, raw_bytes, next_objects,
//	{raw,next,steady}_over_floor (the median of the per-turn ratios),
//	steady_allocs (heap allocations per steady cycle, whole process),
//	first_ns, first_min_ns, first_max_ns, first_syscalls, first_allocs,
//	foreign_stats_runs (program runs counted while this process had no
//	statistics on: someone else had them on during the timing),
//	batch_size, meter_ns (one reading of the agent's memory, which a cycle
//	makes once per batch),
//	stats_passes, bpf_{floor,agent}_{maps,programs,links}_{ns_per_run,runs_per_pass},
//	bpf_{floor,agent}_ns_per_pass
//
// With -spin, it then runs that contestant (or all of them, in turns)
// -spin-runs times more, under a Go CPU profile if -cpuprofile is set (for
// go tool pprof; or run it under perf record, see bench/perfsplit), and
// prints spin_<name>_ns, the mean of each.
//
// Exit status: 0 when everything was measured, 1 when something failed, 2
// for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/bench/floor"
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

type options struct {
	runs        int
	first       int
	profile     string
	tables      string
	memory      uint64
	iterObject  string
	statsPasses int
	spin        string
	spinRuns    int
	cpuprofile  string
	owners      int
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("itercycle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.runs, "runs", 21, "turns: each times the floor, raw, next and one steady cycle")
	fs.IntVar(&o.first, "first", 5, "fresh collectors timed on their first cycle")
	fs.StringVar(&o.profile, "profile", config.ProfileProduction, "profile the configuration starts from")
	fs.StringVar(&o.tables, "tables", "20000,10000,5000", `table capacities "maps,programs,links"`)
	fs.Uint64Var(&o.memory, "memory", 64<<20, "memory budget in bytes")
	fs.StringVar(&o.iterObject, "iter-object", "internal/kernel/iter_bpfel.o",
		`the agent's iterator ELF, for the raw row ("" to skip it)`)
	fs.IntVar(&o.statsPasses, "stats-passes", 20, "passes timed by BPF run-time statistics (0 to skip)")
	fs.StringVar(&o.spin, "spin", "", "after measuring, run only this one: floor, raw, next or steady; or all, in turns")
	fs.IntVar(&o.spinRuns, "spin-runs", 500, "runs of -spin")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a Go CPU profile of the -spin runs to this file")
	fs.IntVar(&o.owners, "owners", 0, "max_owners: 0 (the default here) measures the objects' collection alone, like the floor; -1 keeps the profile's (the holders pass is measured by bench/holderpass)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := configure(o)
	if err != nil {
		fmt.Fprintf(stderr, "itercycle: %v\n", err)
		return 2
	}
	out := &lines{w: stdout}
	if err := measure(cfg, o, out); err != nil {
		fmt.Fprintf(stderr, "itercycle: %v\n", err)
		return 1
	}
	return 0
}

func configure(o options) (config.Config, error) {
	if o.runs < 1 || o.first < 1 {
		return config.Config{}, fmt.Errorf("-runs and -first must be at least 1, got %d and %d", o.runs, o.first)
	}
	switch o.spin {
	case "", "floor", "raw", "next", "steady", "all":
	default:
		return config.Config{}, fmt.Errorf("-spin: want floor, raw, next, steady or all, got %q", o.spin)
	}
	if o.spin == "raw" && o.iterObject == "" {
		return config.Config{}, errors.New("-spin raw needs -iter-object")
	}
	cfg, err := config.ForProfile(o.profile)
	if err != nil {
		return config.Config{}, err
	}
	cfg.CollectionMode = config.ModeIterator
	cfg.MaxSyscallsPerSecond = 0
	cfg.MaxMemoryBytes = o.memory
	if o.owners >= 0 {
		cfg.MaxOwners = o.owners
	}
	if err := tables.Set(&cfg, o.tables); err != nil {
		return config.Config{}, err
	}
	return cfg, cfg.Validate()
}

// lines prints "key value" lines and keeps the first write error.
type lines struct {
	w   io.Writer
	err error
}

func (l *lines) put(key string, val any) {
	if l.err == nil {
		_, l.err = fmt.Fprintf(l.w, "%s %v\n", key, val)
	}
}

// contestant is one thing timed in turns: one pass over every object.
type contestant struct {
	name     string
	pass     func() (syscalls, bytes int, err error)
	times    []time.Duration
	syscalls int // of the last pass
	bytes    int
}

func (c *contestant) time() error {
	start := time.Now()
	sc, b, err := c.pass()
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.times = append(c.times, d)
	c.syscalls, c.bytes = sc, b
	return nil
}

func measure(cfg config.Config, o options, out *lines) error {
	ctx := context.Background()

	fl, err := floor.Load()
	if err != nil {
		return err
	}
	defer fl.Close()
	var fp floor.Pass
	floorC := &contestant{name: "floor", pass: func() (int, int, error) {
		p, err := fl.Read()
		fp = p
		return p.Syscalls, p.Bytes, err
	}}

	var raw *rawIters
	if o.iterObject != "" {
		raw, err = loadRaw(o.iterObject)
		if err != nil {
			return err
		}
		defer raw.close()
	}
	rawC := &contestant{name: "raw", pass: func() (int, int, error) { return raw.read() }}

	gate := &countingGate{}
	its, errs, err := kernel.LoadIterators(gate, "/proc")
	if err != nil {
		return err
	}
	defer its.Close()
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("the agent's iterators: %w", err)
	}
	var rec kernel.Record
	nextC := &contestant{name: "next", pass: func() (int, int, error) { return readNext(its, gate, &rec) }}

	c, err := collector.New(collector.Options{Config: cfg})
	if err != nil {
		return err
	}
	defer c.Close()
	var snap snapshot.Snapshot
	var steadyAllocs uint64
	var ms runtime.MemStats
	steadyC := &contestant{name: "steady", pass: func() (int, int, error) {
		var before snapshot.Snapshot
		c.Publisher().Load(&before)
		err := c.Cycle(ctx)
		if err != nil {
			return 0, 0, err
		}
		c.Publisher().Load(&snap)
		return int(snap.SyscallsTotal() - before.SyscallsTotal()), 0, nil
	}}
	if err := c.Cycle(ctx); err != nil { // the first: everything is new
		return fmt.Errorf("first cycle: %w", err)
	}

	all := []*contestant{floorC, nextC, steadyC}
	if raw != nil {
		all = []*contestant{floorC, rawC, nextC, steadyC}
	}
	for _, ct := range all { // warm up: the first pass of each is not timed
		if err := ct.time(); err != nil {
			return err
		}
		ct.times = ct.times[:0]
	}
	foreign := floorRuns(fl)
	for i := range o.runs {
		for j := range all {
			ct := all[(i+j)%len(all)]
			var m0 uint64
			if ct == steadyC {
				runtime.ReadMemStats(&ms)
				m0 = ms.Mallocs
			}
			if err := ct.time(); err != nil {
				return err
			}
			if ct == steadyC {
				runtime.ReadMemStats(&ms)
				steadyAllocs += ms.Mallocs - m0
			}
		}
	}
	foreign = floorRuns(fl) - foreign

	var objects, untracked, unreadable, unknown uint64
	for _, ks := range snap.Kinds {
		objects += ks.Objects
		untracked += ks.Untracked
		unreadable += ks.Unreadable
		unknown += ks.MemoryUnknown
	}
	out.put("objects", objects)
	out.put("maps", snap.Kinds[kernel.KindMap].Objects)
	out.put("programs", snap.Kinds[kernel.KindProg].Objects)
	out.put("links", snap.Kinds[kernel.KindLink].Objects)
	out.put("untracked", untracked)
	out.put("unreadable", unreadable)
	out.put("memory_unknown", unknown)
	out.put("runs", o.runs)
	for _, ct := range all {
		ts := slices.Sorted(slices.Values(ct.times))
		out.put(ct.name+"_ns", int64(stat.Median(ts)))
		out.put(ct.name+"_min_ns", int64(ts[0]))
		out.put(ct.name+"_max_ns", int64(ts[len(ts)-1]))
		out.put(ct.name+"_syscalls", ct.syscalls)
		switch ct {
		case floorC, rawC:
			out.put(ct.name+"_bytes", ct.bytes)
		case nextC:
			out.put(ct.name+"_objects", ct.bytes) // what readNext returns
		}
		if ct != floorC {
			out.put(ct.name+"_over_floor", ratio(ct.times, floorC.times))
		}
	}
	out.put("floor_objects", fp.Total())
	out.put("steady_allocs", strconv.FormatFloat(float64(steadyAllocs)/float64(o.runs), 'f', -1, 64))
	out.put("foreign_stats_runs", foreign)
	out.put("batch_size", cfg.BatchSize)
	out.put("meter_ns", meterCost())

	if err := measureFirst(ctx, cfg, o.first, out); err != nil {
		return err
	}
	if o.statsPasses > 0 {
		if err := measureStats(fl, raw, o.statsPasses, out); err != nil {
			return err
		}
	}
	if o.spin != "" {
		cts := all
		if o.spin != "all" {
			cts = []*contestant{map[string]*contestant{"floor": floorC, "raw": rawC, "next": nextC, "steady": steadyC}[o.spin]}
		}
		if err := spin(cts, o.spinRuns, o.cpuprofile, out); err != nil {
			return err
		}
	}
	return out.err
}

// measureFirst times the first cycle of fresh collectors. Building one
// (loading its iterators, allocating its tables) is not timed.
func measureFirst(ctx context.Context, cfg config.Config, runs int, out *lines) error {
	var ts []time.Duration
	var calls, allocs uint64
	var ms runtime.MemStats
	for range runs {
		c, err := collector.New(collector.Options{Config: cfg})
		if err != nil {
			return err
		}
		var before, after snapshot.Snapshot
		c.Publisher().Load(&before)
		runtime.ReadMemStats(&ms)
		m0 := ms.Mallocs
		start := time.Now()
		err = c.Cycle(ctx)
		d := time.Since(start)
		runtime.ReadMemStats(&ms)
		c.Publisher().Load(&after)
		c.Close()
		if err != nil {
			return fmt.Errorf("first cycle: %w", err)
		}
		ts = append(ts, d)
		calls += after.SyscallsTotal() - before.SyscallsTotal()
		allocs += ms.Mallocs - m0
	}
	slices.Sort(ts)
	out.put("first_ns", int64(stat.Median(ts)))
	out.put("first_min_ns", int64(ts[0]))
	out.put("first_max_ns", int64(ts[len(ts)-1]))
	out.put("first_syscalls", strconv.FormatFloat(float64(calls)/float64(runs), 'f', -1, 64))
	out.put("first_allocs", strconv.FormatFloat(float64(allocs)/float64(runs), 'f', -1, 64))
	return nil
}

// measureStats turns the kernel's run-time statistics on (BPF_ENABLE_STATS:
// on while its fd is open, for every program on the node), runs passes of
// the floor and of the agent's programs, and reports how long the programs
// ran. The statistics cost every program run on the node ~75–100 ns while
// they are on, so the timed turns above ran without them.
func measureStats(fl *floor.Floor, raw *rawIters, passes int, out *lines) error {
	groups := []struct {
		name  string
		progs [3]*ebpf.Program
		pass  func() error
	}{
		{"floor", fl.Programs(), func() error { _, err := fl.Read(); return err }},
	}
	if raw != nil {
		groups = append(groups, struct {
			name  string
			progs [3]*ebpf.Program
			pass  func() error
		}{"agent", raw.progs, func() error { _, _, err := raw.read(); return err }})
	}
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return fmt.Errorf("enabling run-time statistics: %w", err)
	}
	defer stats.Close()
	for _, g := range groups {
		var before [3]ebpf.ProgramStats
		for k, p := range g.progs {
			s, err := p.Stats()
			if err != nil {
				return err
			}
			before[k] = *s
		}
		for range passes {
			if err := g.pass(); err != nil {
				return err
			}
		}
		var total time.Duration
		for k, p := range g.progs {
			s, err := p.Stats()
			if err != nil {
				return err
			}
			rt, n := s.Runtime-before[k].Runtime, s.RunCount-before[k].RunCount
			total += rt
			perRun := 0.0
			if n > 0 {
				perRun = float64(rt.Nanoseconds()) / float64(n)
			}
			out.put(fmt.Sprintf("bpf_%s_%s_ns_per_run", g.name, floor.KindNames[k]), strconv.FormatFloat(perRun, 'f', 1, 64))
			out.put(fmt.Sprintf("bpf_%s_%s_runs_per_pass", g.name, floor.KindNames[k]), n/uint64(passes))
		}
		out.put(fmt.Sprintf("bpf_%s_ns_per_pass", g.name), total.Nanoseconds()/int64(passes))
	}
	out.put("stats_passes", passes)
	return stats.Close()
}

// meterCost is what one reading of the agent's memory costs
// (collector.MemoryMeter.Usage, runtime/metrics): a cycle reads it once per
// batch of objects, to stop at the memory budget.
func meterCost() int64 {
	m := collector.NewMemoryMeter()
	const n = 2000
	start := time.Now()
	for range n {
		m.Usage()
	}
	return time.Since(start).Nanoseconds() / n
}

// floorRuns is how many times the floor's programs ran with statistics on
// (0 unless someone turned them on).
func floorRuns(fl *floor.Floor) uint64 {
	var n uint64
	for _, p := range fl.Programs() {
		if s, err := p.Stats(); err == nil {
			n += s.RunCount
		}
	}
	return n
}

// spin runs the contestants runs times each, in turns, under a CPU
// profile if cpuprofile is set, and prints the mean of each. In a profile
// of several, their frames tell them apart: floor.(*Floor).Read,
// main.(*rawIters).read, main.readNext, collector.(*Collector).Cycle.
func spin(cts []*contestant, runs int, cpuprofile string, out *lines) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, ct := range cts {
		ct.times = ct.times[:0]
	}
	for i := range runs {
		for j := range cts {
			if err := cts[(i+j)%len(cts)].time(); err != nil {
				return err
			}
		}
	}
	out.put("spin_runs", runs)
	for _, ct := range cts {
		var sum time.Duration
		for _, d := range ct.times {
			sum += d
		}
		out.put("spin_"+ct.name+"_ns", sum.Nanoseconds()/int64(runs))
	}
	return nil
}

// readNext reads every object with the agent's iterators, all of them
// known (short records), decoding each record and dropping it. Not inlined:
// its frame names it in a profile.
//
//go:noinline
func readNext(its *kernel.Iterators, gate *countingGate, rec *kernel.Record) (calls, objects int, err error) {
	before := gate.calls
	for k := range kernel.NumKinds {
		if err := its.Begin(k, math.MaxUint32, false); err != nil {
			return 0, 0, err
		}
		for {
			_, err := its.Next(rec)
			if err == kernel.ErrEndOfList {
				break
			}
			if err != nil {
				return 0, 0, err
			}
			objects++
		}
		if err := its.End(); err != nil {
			return 0, 0, err
		}
	}
	return gate.calls - before, objects, nil
}

// rawIters are the agent's iterator programs, loaded from their ELF apart
// from the agent, with every object "known" (full_above at the greatest
// ID): what they write is what a steady cycle reads.
type rawIters struct {
	coll  *ebpf.Collection
	progs [3]*ebpf.Program
	links [3]*link.Iter
	buf   []byte
}

func loadRaw(path string) (_ *rawIters, err error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, fmt.Errorf("the agent's iterator object: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	// As internal/kernel sets them (LoadIterators).
	sets := []struct {
		name string
		val  any
	}{{"nr_cpus", uint32(cpus)}, {"page_size", uint64(os.Getpagesize())}}
	for _, s := range sets {
		v := spec.Variables[s.name]
		if v == nil {
			return nil, fmt.Errorf("%s: no variable %s", path, s.name)
		}
		if err := v.Set(s.val); err != nil {
			return nil, fmt.Errorf("%s: setting %s: %w", path, s.name, err)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	r := &rawIters{coll: coll, buf: make([]byte, floor.BufferSize)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	fa := coll.Variables["full_above"]
	if fa == nil {
		return nil, fmt.Errorf("%s: no variable full_above", path)
	}
	if err := fa.Set([3]uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32}); err != nil {
		return nil, fmt.Errorf("%s: setting full_above: %w", path, err)
	}
	for k, name := range []string{"dump_maps", "dump_progs", "dump_links"} {
		p := coll.Programs[name]
		if p == nil {
			return nil, fmt.Errorf("%s: no program %s", path, name)
		}
		r.progs[k] = p
		if r.links[k], err = link.AttachIter(link.IterOptions{Program: p}); err != nil {
			return nil, fmt.Errorf("attaching %s: %w", name, err)
		}
	}
	return r, nil
}

//go:noinline // its frame names it in a profile
func (r *rawIters) read() (calls, bytes int, err error) {
	for _, l := range r.links {
		n, c, err := floor.ReadIterator(l, r.buf)
		calls += c
		bytes += n
		if err != nil {
			return calls, bytes, err
		}
	}
	return calls, bytes, nil
}

func (r *rawIters) close() {
	for k, l := range r.links {
		if l != nil {
			l.Close()
			r.links[k] = nil
		}
	}
	r.coll.Close()
}

// countingGate admits every call and counts them.
type countingGate struct{ calls int }

func (g *countingGate) Acquire(kernel.Op) error                       { return nil }
func (g *countingGate) Release(kernel.Op, kernel.Kind, uint32, error) { g.calls++ }

// ratio is the median over the turns of a[i] / b[i]: each pair was timed
// back to back, under the same load.
func ratio(a, b []time.Duration) string {
	rs := make([]float64, len(a))
	for i := range a {
		rs[i] = float64(a[i]) / float64(b[i])
	}
	slices.Sort(rs)
	n := len(rs)
	m := rs[n/2]
	if n%2 == 0 {
		m = (rs[n/2-1] + rs[n/2]) / 2
	}
	return strconv.FormatFloat(m, 'f', 3, 64)
}
