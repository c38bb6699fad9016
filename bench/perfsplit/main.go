// Command perfsplit sorts the CPU samples of `perf script` (a `perf record
// -g` of bench/itercycle -spin) into the cost categories of an iterator
// cycle: the kernel's walk over its ID tables, the iterator programs, the
// element-count kfunc, CO-RE probe reads, seq_file writes, read() and the
// system calls, and on the Go side decoding, the collector's merge and
// aggregates, and the memory meter. A sample counts where its innermost
// frame is (self time), and only if some frame of its stack matches -within
// (default main.spin: the measured loop, not the setup).
//
//	perf record -F 4999 -e cpu-clock -g -o steady.data -- \
//		itercycle -stats-passes 0 -spin steady -spin-runs 600
//	perf script -i steady.data | perfsplit -ns 9950000
//
// With -ns (the mean duration of one spin run, printed by itercycle as
// spin_ns), each share is also given in milliseconds per run.
//
// Exit status: 0, 1 when no sample matched, 2 for bad flags.
package main

import (
	"bufio"
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// categories, tried in order; a symbol matching none is "other".
var categories = []struct {
	name string
	re   *regexp.Regexp
}{
	{"kernel: ID walk (idr, reference counts, locks)", regexp.MustCompile(
		`_get_curr_or_next|radix_tree|idr_get_next|_raw_spin|queued_spin|_seq_next$|_seq_stop$|_seq_start$|` +
			`bpf_(map|prog|link)_put|bpf_(map|prog|link)_inc|__rcu_read|local_bh`)},
	{"kernel: element-count kfunc (bpf_map_sum_elem_count)", regexp.MustCompile(`bpf_map_sum_elem_count|_find_next_bit`)},
	{"kernel: CO-RE probe reads (bpf_probe_read_kernel)", regexp.MustCompile(`copy_from_kernel_nofault|bpf_probe_read_kernel`)},
	{"kernel: iterator program bodies", regexp.MustCompile(`^bpf_prog_[0-9a-f]+_`)},
	{"kernel: program dispatch (bpf_iter_run_prog, *_seq_show)", regexp.MustCompile(
		`bpf_iter_run_prog|_seq_show$|migrate_|__x86_indirect_thunk|bpf_iter_get_info|rcu_read_lock`)},
	{"kernel: seq_file writes (bpf_seq_write, memcpy)", regexp.MustCompile(`bpf_seq_write|^seq_write|memcpy`)},
	{"kernel: read(), copy to user, syscall entry/exit, iterator create/close", regexp.MustCompile(
		`bpf_seq_read|copy_to_user|copy_user|rep_movs|entry_SYSCALL|do_syscall|syscall_exit|x64_sys|ksys_read|` +
			`vfs_read|fsnotify|fdget|fput|kvmalloc|kfree|kmalloc|kmem_cache|bpf_iter_new|__sys_bpf|seq_release|` +
			`bpf_iter_release|alloc_file|fd_install|exit_to_user|clear_bhb|untrain_ret|srso`)},
	{"kernel: scheduling, interrupts", regexp.MustCompile(`finish_task_switch|schedule|irq|hrtimer|tick|apic|softirq|sysvec|pvclock`)},
	{"Go: record decoding (kernel.Iterators)", regexp.MustCompile(`ebpf-metrics/internal/kernel\.`)},
	{"Go: collector merge and aggregates", regexp.MustCompile(`ebpf-metrics/internal/(collector|inventory)\.`)},
	{"Go: memory meter (runtime/metrics)", regexp.MustCompile(
		`runtime/metrics|consistentHeapStats|heapStatsDelta|readMetrics|metricsLock|metricsUnlock|Aggregate\)`)},
	{"Go: bench read loops", regexp.MustCompile(`bench/floor|main\.\(\*rawIters\)|Syscall|entersyscall|exitsyscall`)},
	{"Go: runtime, other", regexp.MustCompile(`^runtime\.|^internal/|^sync|^time\.|^main\.`)},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("perfsplit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	within := fs.String("within", "main.spin", "count only samples with a frame containing this")
	ns := fs.Float64("ns", 0, "duration of one run in ns, to print milliseconds per run")
	top := fs.Int("top", 25, "symbols to list")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bySym := map[string]int{}
	total := 0
	var stack []string
	flush := func() {
		if len(stack) > 0 && slices.ContainsFunc(stack, func(s string) bool { return strings.Contains(s, *within) }) {
			bySym[stack[0]]++
			total++
		}
		stack = stack[:0]
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			flush() // a sample's header line, or the blank line after it
			continue
		}
		// "\t ffffffff814dde70 bpf_map_get_curr_or_next+0x34 ([kernel.kallsyms])"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		sym := strings.Join(f[1:len(f)-1], " ")
		if i := strings.LastIndex(sym, "+0x"); i > 0 {
			sym = sym[:i]
		}
		stack = append(stack, sym)
	}
	flush()
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "perfsplit: %v\n", err)
		return 1
	}
	if total == 0 {
		fmt.Fprintf(stderr, "perfsplit: no sample within %s\n", *within)
		return 1
	}

	byCat := map[string]int{}
	for sym, n := range bySym {
		byCat[category(sym)] += n
	}
	show := func(name string, n int) {
		share := 100 * float64(n) / float64(total)
		if *ns > 0 {
			fmt.Fprintf(stdout, "%6.2f%% %8.3f ms  %s\n", share, share/100**ns/1e6, name)
		} else {
			fmt.Fprintf(stdout, "%6.2f%%  %s\n", share, name)
		}
	}
	fmt.Fprintf(stdout, "%d samples within %s\n", total, *within)
	for _, c := range sorted(byCat) {
		show(c, byCat[c])
	}
	fmt.Fprintln(stdout, "-- symbols (self)")
	syms := sorted(bySym)
	for _, s := range syms[:min(*top, len(syms))] {
		show(s, bySym[s])
	}
	return 0
}

func category(sym string) string {
	for _, c := range categories {
		if c.re.MatchString(sym) {
			return c.name
		}
	}
	return "other"
}

// sorted returns the keys of m, largest count first.
func sorted(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	return keys
}
