// Command soak runs the agent's collection for many cycles while another
// process churns eBPF objects, and reports whether its memory, fds and
// goroutines stay flat (docs/reliability.md).
//
// The measured process holds what the agent holds: a collector in -mode
// with the production profile (rate limit off, tables for 20,000 / 10,000 /
// 5,000 objects, 64 MiB budget), its Prometheus registry behind the
// exposition cache refreshed after every cycle, and a scrape (a gather,
// encoded in the text format) every -scrape-every cycles. It runs -cycles
// cycles, one every -interval (a cycle longer than the interval is followed
// at once by the next one). It does no churning itself: it starts itself
// again as a child (-churn-child) that holds a population of -population
// objects and creates and releases objects with loadgen.Churn at -churn-rate
// per second (0: as fast as it can; negative: no churn), so that the
// measured process's memory is the collector's alone.
//
// Every -sample cycles it prints one line: cycle, elapsed seconds, VmRSS as
// the process runs, then, after debug.FreeOSMemory (a garbage collection
// that returns every free page to the kernel), RssAnon: the anonymous memory
// the process really holds (heap, stacks, runtime), without the runtime's
// pacing and scavenging noise and without the pages of the binary, which
// grow as code runs for the first time; then live heap, heap fragmentation
// (bytes unused in spans in use), the runtime's own memory (stacks and
// metadata), OS threads, goroutines, open fds, objects counted and errors
// counted so far. Failed kernel operations
// are logged on stderr.
//
// At the end it prints the churn achieved and the drifts after -warmup
// cycles, in percent: of RssAnon after FreeOSMemory, last and highest
// sample against the first; of the running RSS, the median of the
// last tenth of the samples against the median of the first tenth. PASS
// when every drift is within -max-drift.
//
// Exit status: 0 when it ran (PASS or MISS), 1 when a cycle failed or the
// churn could not run, 2 for bad flags.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/collector"
	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	mode        string
	cycles      int
	interval    time.Duration
	sample      int
	warmup      int
	scrapeEvery int
	churnRate   float64
	population  string
	maxDrift    float64
	churnChild  bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.mode, "mode", config.ModeIterator, "collection mode: iterator or syscall")
	fs.IntVar(&o.cycles, "cycles", 10000, "cycles to run")
	fs.DurationVar(&o.interval, "interval", 10*time.Millisecond, "time between cycle starts")
	fs.IntVar(&o.sample, "sample", 500, "print a sample every this many cycles")
	fs.IntVar(&o.warmup, "warmup", 1000, "cycles before the baseline sample")
	fs.IntVar(&o.scrapeEvery, "scrape-every", 10, "gather and encode the registry every this many cycles")
	fs.Float64Var(&o.churnRate, "churn-rate", 0, "objects created per second by the churn child (0: flat out; negative: no churn)")
	fs.StringVar(&o.population, "population", "1000,200,50", `objects the churn child holds: "maps,programs,links"`)
	fs.Float64Var(&o.maxDrift, "max-drift", 5, "largest RSS drift, in percent, that passes")
	fs.BoolVar(&o.churnChild, "churn-child", false, "internal: be the churning child")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	spec, err := parsePopulation(o.population)
	if err != nil {
		fmt.Fprintf(stderr, "soak: -population: %v\n", err)
		return 2
	}
	if o.churnChild {
		return churnChild(spec, o.churnRate, stdout, stderr)
	}
	if o.cycles < 1 || o.sample < 1 || o.warmup < 0 || o.warmup >= o.cycles || o.scrapeEvery < 1 {
		fmt.Fprintln(stderr, "soak: need -cycles > -warmup >= 0, -sample >= 1, -scrape-every >= 1")
		return 2
	}
	if o.mode != config.ModeIterator && o.mode != config.ModeSyscall {
		fmt.Fprintf(stderr, "soak: -mode %q: want iterator or syscall\n", o.mode)
		return 2
	}
	if err := soak(o, stdout); err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 1
	}
	return 0
}

func parsePopulation(s string) (loadgen.Spec, error) {
	var n [3]int
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return loadgen.Spec{}, fmt.Errorf("want maps,programs,links, got %q", s)
	}
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return loadgen.Spec{}, fmt.Errorf("bad count %q", p)
		}
		n[i] = v
	}
	return loadgen.Spec{Maps: n[0], Programs: n[1], Links: n[2], Fill: 0.5}, nil
}

// churnReport is the churn child's last line.
type churnReport struct {
	Maps, Programs, Links int
	Seconds               float64
	Rate                  float64
	Error                 string `json:",omitempty"`
}

// churnChild holds spec's population, prints "ready", churns until SIGTERM
// and prints a churnReport.
func churnChild(spec loadgen.Spec, rate float64, stdout, stderr io.Writer) int {
	pop, err := loadgen.Create(spec)
	if err != nil {
		fmt.Fprintf(stderr, "soak churn: %v\n", err)
		return 1
	}
	defer pop.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintln(stdout, "ready")
	var r churnReport
	if rate >= 0 {
		st, err := loadgen.Churn(ctx, rate)
		r = churnReport{Maps: st.Maps, Programs: st.Programs, Links: st.Links, Seconds: st.Elapsed.Seconds(), Rate: st.Rate()}
		if err != nil {
			r.Error = err.Error()
		}
	} else {
		<-ctx.Done()
	}
	json.NewEncoder(stdout).Encode(r)
	return 0
}

// sample is one line of the report.
type sample struct {
	cycle      int
	elapsed    time.Duration
	rss, floor uint64 // VmRSS as it runs, and RssAnon after FreeOSMemory
	heap       uint64
	unused     uint64    // heap bytes in spans in use, not in objects
	runtimeMem uint64    // goroutine and OS stacks, runtime metadata
	parts      [7]uint64 // runtimeMem by /memory/classes (memSamples[2:])
	threads    int
	goroutines int
	fds        int
	objects    uint64
	errors     uint64
}

func soak(o options, stdout io.Writer) error {
	// The churning child.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-churn-child", "-churn-rate", strconv.FormatFloat(o.churnRate, 'f', -1, 64), "-population", o.population)
	child.Stderr = os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never churn on alone
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer child.Process.Kill()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		child.Wait()
		return errors.New("the churn child did not start")
	}

	cfg, err := config.ForProfile(config.ProfileProduction)
	if err != nil {
		return err
	}
	cfg.CollectionMode = o.mode
	cfg.CollectionInterval = max(o.interval, 100*time.Millisecond) // validated; the loop below keeps its own
	cfg.MaxSyscallsPerSecond = 0
	cfg.MaxTrackedMaps, cfg.MaxTrackedPrograms, cfg.MaxTrackedLinks = 20000, 10000, 5000
	cfg.MaxMemoryBytes = 64 << 20

	// What the agent wires (cmd/ebpf-metrics): the registry over the
	// collector's snapshot, gathered into a cache after every cycle.
	var reg *prometheus.Registry
	cache := exposition.NewCache(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return reg.Gather() }))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := collector.New(collector.Options{Config: cfg, OnPublish: func(*snapshot.Snapshot) { cache.Notify() }, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Close()
	reg = exposition.NewRegistry(exposition.NewMetrics(c.Publisher(), ""), "", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cache.Run(ctx)

	fmt.Fprintf(stdout, "soak: mode %s, %d cycles every %v, churn rate %v (0: flat out), population %s, kernel %s, %d CPUs, %s\n",
		o.mode, o.cycles, o.interval, o.churnRate, o.population, kernelRelease(), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(stdout, "%8s %9s %9s %9s %9s %9s %9s %7s %6s %5s %8s %7s\n", "cycle", "elapsed_s", "rss_kib", "anon_kib",
		"heap_kib", "unused_kib", "rtime_kib", "threads", "gorout", "fds", "objects", "errors")
	var (
		samples []sample
		snap    snapshot.Snapshot
		start   = time.Now()
		overrun int
	)
	take := func(cycle int) sample {
		s := sample{cycle: cycle, elapsed: time.Since(start), rss: statusBytes("VmRSS:")}
		debug.FreeOSMemory()
		s.floor, s.goroutines, s.fds = statusBytes("RssAnon:"), runtime.NumGoroutine(), openFDs()
		s.heap, s.unused, s.runtimeMem, s.parts = runtimeMemory()
		s.threads = int(statusField("Threads:"))
		c.Publisher().Load(&snap)
		for _, k := range snap.Kinds {
			s.objects += k.Objects
		}
		for _, n := range snap.Errors {
			s.errors += n
		}
		fmt.Fprintf(stdout, "%8d %9.1f %9d %9d %9d %9d %9d %7d %6d %5d %8d %7d\n", s.cycle, s.elapsed.Seconds(), s.rss>>10, s.floor>>10,
			s.heap>>10, s.unused>>10, s.runtimeMem>>10, s.threads, s.goroutines, s.fds, s.objects, s.errors)
		return s
	}
	samples = append(samples, take(0))
	for i := 1; i <= o.cycles; i++ {
		begin := time.Now()
		if err := c.Cycle(ctx); err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
		if i%o.scrapeEvery == 0 {
			if err := scrape(cache); err != nil {
				return fmt.Errorf("scrape after cycle %d: %w", i, err)
			}
		}
		if i%o.sample == 0 || i == o.warmup {
			samples = append(samples, take(i))
		}
		if d := o.interval - time.Since(begin); d > 0 {
			time.Sleep(d)
		} else {
			overrun++
		}
	}
	elapsed := time.Since(start)

	child.Process.Signal(syscall.SIGTERM)
	var churn churnReport
	for lines.Scan() {
		json.Unmarshal(lines.Bytes(), &churn)
	}
	child.Wait()
	if churn.Error != "" {
		return fmt.Errorf("churn: %s", churn.Error)
	}

	var steady []sample // from the warm-up on
	for _, s := range samples {
		if s.cycle >= o.warmup {
			steady = append(steady, s)
		}
	}
	base, last := steady[0], steady[len(steady)-1]
	tenth := max(1, len(steady)/10)
	// Medians of the first and the last tenth of the samples: a single
	// sample falls anywhere in the garbage collector's sawtooth.
	median := func(ss []sample, f func(sample) uint64) uint64 {
		v := make([]uint64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	span := func(f func(sample) uint64) (early, late, lo, hi uint64) {
		lo, hi = f(steady[0]), f(steady[0])
		for _, s := range steady {
			lo, hi = min(lo, f(s)), max(hi, f(s))
		}
		return median(steady[:tenth], f), median(steady[len(steady)-tenth:], f), lo, hi
	}
	pct := func(v, from uint64) float64 { return (float64(v) - float64(from)) / float64(from) * 100 }
	rssEarly, rssLate, rssLo, rssHi := span(func(s sample) uint64 { return s.rss })
	anonEarly, anonLate, anonLo, anonHi := span(func(s sample) uint64 { return s.floor })
	heapEarly, heapLate, _, _ := span(func(s sample) uint64 { return s.heap })

	fmt.Fprintf(stdout, "\n%d cycles in %v (%.1f ms per cycle, interval %v, %d cycles longer than the interval); errors %d\n",
		o.cycles, elapsed.Round(time.Second), float64(elapsed.Milliseconds())/float64(o.cycles), o.interval, overrun, last.errors)
	fmt.Fprintf(stdout, "churn: %d maps, %d programs, %d links created and released in %.0f s: %.0f objects/s\n",
		churn.Maps, churn.Programs, churn.Links, churn.Seconds, churn.Rate)
	fmt.Fprintf(stdout, "cycle %d -> %d: fds %d -> %d, goroutines %d -> %d, threads %d -> %d, live heap %d -> %d KiB, "+
		"heap fragmentation %d -> %d KiB, runtime %d -> %d KiB\n",
		base.cycle, last.cycle, base.fds, last.fds, base.goroutines, last.goroutines, base.threads, last.threads,
		base.heap>>10, last.heap>>10, base.unused>>10, last.unused>>10, base.runtimeMem>>10, last.runtimeMem>>10)
	fmt.Fprintf(stdout, "runtime memory by class, KiB, cycle %d -> %d:", base.cycle, last.cycle)
	for i, m := range memSamples[2:] {
		fmt.Fprintf(stdout, " %s %d -> %d;", strings.TrimSuffix(strings.TrimPrefix(m.Name, "/memory/classes/"), ":bytes"), base.parts[i]>>10, last.parts[i]>>10)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "medians of the first and last %d samples after cycle %d:\n", tenth, o.warmup)
	fmt.Fprintf(stdout, "  RSS        %6d -> %6d KiB (%+.2f%%), range %d..%d KiB\n", rssEarly>>10, rssLate>>10, pct(rssLate, rssEarly), rssLo>>10, rssHi>>10)
	fmt.Fprintf(stdout, "  RssAnon    %6d -> %6d KiB (%+.2f%%), range %d..%d KiB (after FreeOSMemory)\n",
		anonEarly>>10, anonLate>>10, pct(anonLate, anonEarly), anonLo>>10, anonHi>>10)
	fmt.Fprintf(stdout, "  live heap  %6d -> %6d KiB (%+.2f%%)\n", heapEarly>>10, heapLate>>10, pct(heapLate, heapEarly))
	verdict := "PASS"
	if d := pct(rssLate, rssEarly); d > o.maxDrift || d < -o.maxDrift {
		verdict = "MISS"
	}
	fmt.Fprintf(stdout, "RSS drift %+.2f%%: %s (limit %.0f%%)\n", pct(rssLate, rssEarly), verdict, o.maxDrift)
	if last.errors != 0 {
		return fmt.Errorf("%d errors counted", last.errors)
	}
	return nil
}

// scrape does what serving /metrics does: gather the cache, encode it.
func scrape(g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// statusBytes returns a "kB" field of /proc/self/status, in bytes.
func statusBytes(field string) uint64 { return statusField(field) << 10 }

// statusField returns the number in a field of /proc/self/status.
func statusField(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

var memSamples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/stacks:bytes"},
	{Name: "/memory/classes/os-stacks:bytes"},
	{Name: "/memory/classes/metadata/mcache/inuse:bytes"},
	{Name: "/memory/classes/metadata/mspan/inuse:bytes"},
	{Name: "/memory/classes/metadata/other:bytes"},
	{Name: "/memory/classes/profiling/buckets:bytes"},
	{Name: "/memory/classes/other:bytes"},
}

// runtimeMemory returns the live heap, the unused bytes of heap spans in
// use, and the runtime's own memory (stacks and metadata), in total and by
// class.
func runtimeMemory() (live, unused, rt uint64, parts [7]uint64) {
	metrics.Read(memSamples)
	for i, s := range memSamples[2:] {
		parts[i] = s.Value.Uint64()
		rt += parts[i]
	}
	return memSamples[0].Value.Uint64(), memSamples[1].Value.Uint64(), rt, parts
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
