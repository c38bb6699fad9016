package main

// The agent binary under churn, faults and signals, and its read-only
// guarantee: what docs/reliability.md reports.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// envDenyBPF makes the test binary a wrapper of the agent (execWrapped): the
// bpf(2) commands it lists, comma-separated, are refused with EPERM by a
// seccomp filter, as a container runtime's seccomp profile or an LSM would.
const envDenyBPF = "EBPF_METRICS_TEST_DENY_BPF"

// bpf(2) commands (include/uapi/linux/bpf.h).
const (
	bpfProgLoad     = 5
	bpfMapGetFDByID = 14
)

// execWrapped returns at once unless envDenyBPF is set. Then this process is
// a wrapper: it installs the seccomp filter on its thread and replaces itself
// with the command of its arguments (the agent), which inherits the filter
// and keeps the pid. It never returns then.
func execWrapped() {
	deny := os.Getenv(envDenyBPF)
	if deny == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "agent wrapper: %v\n", err)
		os.Exit(3)
	}
	var cmds []uint32
	for _, s := range strings.Split(deny, ",") {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			fail(err)
		}
		cmds = append(cmds, uint32(n))
	}
	if len(os.Args) < 2 {
		fail(errors.New("no command"))
	}
	// A seccomp filter installed with prctl applies to this thread only;
	// execve from the same thread keeps it.
	runtime.LockOSThread()
	if err := denyBPF(cmds); err != nil {
		fail(err)
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, envDenyBPF+"=") })
	fail(syscall.Exec(os.Args[1], os.Args[1:], env))
}

// denyBPF installs a seccomp filter that makes bpf(2) with one of cmds fail
// with EPERM and lets every other system call through.
func denyBPF(cmds []uint32) error {
	if runtime.GOARCH != "amd64" {
		return errors.New("the seccomp filter is written for x86_64")
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		arch = 4  // offsetof(struct seccomp_data, arch)
		nr   = 0  // offsetof(struct seccomp_data, nr)
		arg0 = 16 // offsetof(struct seccomp_data, args[0]), low half on little endian
	)
	n := uint8(len(cmds))
	f := []unix.SockFilter{
		{Code: ld, K: arch},
		{Code: jeq, K: unix.AUDIT_ARCH_X86_64, Jf: n + 3}, // else allow
		{Code: ld, K: nr},
		{Code: jeq, K: unix.SYS_BPF, Jf: n + 1}, // else allow
		{Code: ld, K: arg0},
	}
	for i, c := range cmds {
		f = append(f, unix.SockFilter{Code: jeq, K: c, Jt: n - uint8(i)}) // to deny
	}
	f = append(f,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)})
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0)
}

// wrapDenyBPF returns the wrapper and environment for startAgentVia that run
// the agent with the bpf(2) commands refused.
func wrapDenyBPF(cmds ...int) (wrap, env []string) {
	s := make([]string, len(cmds))
	for i, c := range cmds {
		s[i] = strconv.Itoa(c)
	}
	return []string{os.Args[0]}, []string{envDenyBPF + "=" + strings.Join(s, ",")}
}

// checkGoroutines returns 1, after saying which, if goroutines of the tests
// are still running once idle HTTP connections are closed.
func checkGoroutines() int {
	http.DefaultClient.CloseIdleConnections()
	plainWeb.client.CloseIdleConnections()
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left behind by the tests: %v\n", err)
		return 1
	}
	return 0
}

// plainWeb reaches an agent without keeping connections open, so that the
// agent's fds are its own.
var plainWeb = webClient{client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}

// bigTables tracks every object of a busy test machine in detail, so that
// cycles stay short whatever else runs.
const bigTables = "max_tracked_maps: 20000\nmax_tracked_programs: 10000\nmax_tracked_links: 5000\nmax_memory_bytes: 64MiB\n"

// stop sends sig to the agent and waits for it to exit; stderr can then be
// read. The exit status stays available to the cleanup.
func (a *agent) stop(t *testing.T, sig os.Signal) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		a.done <- err
		return err, time.Since(start)
	case <-time.After(10 * time.Second):
		t.Fatalf("the agent did not exit within 10s of %v", sig)
		return nil, 0
	}
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settledFDs is the fewest fds the process held in 20 samples 25 ms apart:
// what it holds between cycles, without an object or fdinfo read in flight.
func settledFDs(t *testing.T, pid int) int {
	t.Helper()
	least := fdCount(t, pid)
	for range 19 {
		time.Sleep(25 * time.Millisecond)
		least = min(least, fdCount(t, pid))
	}
	return least
}

// settledGoroutines is the fewest goroutines the agent reported in 20
// scrapes 60 ms apart. go_goroutines is sampled when the cache refreshes,
// after each cycle, and counts the HTTP connections then open (this
// test's own scrapes, closing or in flight) with their goroutines, so one
// sample says little; the least over a dozen refreshes is what the agent
// itself runs, or close to it.
func (a *agent) settledGoroutines(t *testing.T) float64 {
	t.Helper()
	least := math.Inf(1)
	for i := range 20 {
		if i > 0 {
			time.Sleep(60 * time.Millisecond)
		}
		fams, _ := a.scrape(t)
		least = min(least, value(t, fams, "go_goroutines"))
	}
	return least
}

// lowestFreeFD is the fd number the process would get for its next file,
// least over 20 samples 25 ms apart (fds in flight fill holes): with
// RLIMIT_NOFILE set to it, it can open nothing more.
func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	least := -1
	for i := range 20 {
		if i > 0 {
			time.Sleep(25 * time.Millisecond)
		}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		used := map[int]bool{}
		for _, e := range ents {
			n, _ := strconv.Atoi(e.Name())
			used[n] = true
		}
		free := 0
		for used[free] {
			free++
		}
		if least < 0 || free < least {
			least = free
		}
	}
	return least
}

// sum adds the values of every series of name (0 if there is none).
func sum(fams map[string]*dto.MetricFamily, name string) float64 {
	var s float64
	if f, ok := fams[name]; ok {
		for _, m := range f.Metric {
			s += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return s
}

// nonZero lists the series of name with a value other than 0, for messages.
func nonZero(fams map[string]*dto.MetricFamily, name string) string {
	var out []string
	if f, ok := fams[name]; ok {
		for _, m := range f.Metric {
			if v := m.GetGauge().GetValue() + m.GetCounter().GetValue(); v != 0 {
				var ls []string
				for _, l := range m.Label {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				out = append(out, fmt.Sprintf("{%s} %v", strings.Join(ls, ","), v))
			}
		}
	}
	return strings.Join(out, " ")
}

// perKind is bpftool's view by kind: objects and memlock.
type perKind struct {
	objects [3]int
	memory  [3]uint64
}

func bpftoolPerKind(t *testing.T) perKind {
	var p perKind
	for i, k := range kinds {
		p.objects[i], p.memory[i] = testutil.BpftoolTotals(t, k.bpf)
	}
	return p
}

// whenStable calls check with a scrape taken while bpftool's view held
// still around it, until check returns nil or 20 s have passed.
func (a *agent) whenStable(t *testing.T, check func(map[string]*dto.MetricFamily, perKind) error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		before := bpftoolPerKind(t)
		time.Sleep(300 * time.Millisecond) // at least two cycles at 100ms
		fams, _ := a.scrape(t)
		if after := bpftoolPerKind(t); after == before {
			if err = check(fams, after); err == nil {
				return
			}
		}
	}
	t.Fatalf("never true while the kernel held still: %v", err)
}

// TestChurnEndToEnd runs the agent at a 100 ms interval, in each mode, while
// this process creates and releases maps, programs and links as fast as it
// can for five seconds, and attaches raw tracepoint links (which the kernel
// lists before they can be opened): the agent keeps serving, counts no error
// (objects released while being read, links not yet attached, are not
// errors), and once the churn stops its counts and memory equal bpftool's,
// its fds and goroutines are what they were before.
func TestChurnEndToEnd(t *testing.T) {
	testutil.RequireBPF(t)
	for _, mode := range []string{"iterator", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			a := startAgentWeb(t, plainWeb, "--collection.interval=100ms", "--collection.mode="+mode, "--config.file="+fastConfig(t, bigTables))
			pid := a.cmd.Process.Pid
			a.waitAgrees(t, func(totals) bool { return true })
			fdsBefore := settledFDs(t, pid)
			gBefore := a.settledGoroutines(t)
			before, _ := a.scrape(t)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var (
				st                loadgen.ChurnStats
				slow              int
				churnErr, slowErr error
				done              = make(chan struct{})
				slowDone          = make(chan struct{})
			)
			go func() {
				defer close(done)
				st, churnErr = loadgen.Churn(ctx, 0)
			}()
			go func() {
				defer close(slowDone)
				slow, slowErr = loadgen.ChurnSlowLinks(ctx, 20*time.Millisecond)
			}()
			scrapes := 0
			for ctx.Err() == nil {
				fams, _ := a.scrape(t)
				scrapes++
				if n := sum(fams, "odigos_ebpf_collection_errors_total"); n != 0 {
					t.Errorf("during churn: errors %s", nonZero(fams, "odigos_ebpf_collection_errors_total"))
					break
				}
				if value(t, fams, "odigos_ebpf_collection_active") != 1 {
					t.Error("during churn: collection not active")
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			cancel()
			<-done
			<-slowDone
			if churnErr != nil || slowErr != nil {
				t.Fatal(churnErr, slowErr)
			}
			after, _ := a.scrape(t)
			cycles := value(t, after, "odigos_ebpf_collection_cycles_total") - value(t, before, "odigos_ebpf_collection_cycles_total")
			delta := func(name, kind string) float64 {
				return value(t, after, name, "type", kind) - value(t, before, name, "type", kind)
			}
			t.Logf("%s: churn of %d maps, %d programs, %d links in %v: %.0f objects/s, and %d raw tracepoint links; %v cycles, %d scrapes; "+
				"seen created/removed: maps %v/%v, programs %v/%v, links %v/%v",
				mode, st.Maps, st.Programs, st.Links, st.Elapsed.Round(time.Millisecond), st.Rate(), slow, cycles, scrapes,
				delta("odigos_ebpf_objects_created_total", "map"), delta("odigos_ebpf_objects_removed_total", "map"),
				delta("odigos_ebpf_objects_created_total", "program"), delta("odigos_ebpf_objects_removed_total", "program"),
				delta("odigos_ebpf_objects_created_total", "link"), delta("odigos_ebpf_objects_removed_total", "link"))
			if st.Rate() < 1000 {
				t.Errorf("churn of %.0f objects/s, want at least 1000", st.Rate())
			}
			if cycles < 10 {
				t.Errorf("%v cycles in 5s at a 100ms interval", cycles)
			}
			for _, k := range kinds {
				if delta("odigos_ebpf_objects_created_total", k.label) == 0 || delta("odigos_ebpf_objects_removed_total", k.label) == 0 {
					t.Errorf("no %s seen created and removed during the churn", k.label)
				}
			}

			// Once the churn stops: exact again, nothing counted as an
			// error, nothing held.
			a.waitAgrees(t, func(totals) bool { return true })
			final, _ := a.scrape(t)
			if n := sum(final, "odigos_ebpf_collection_errors_total"); n != 0 {
				t.Errorf("errors: %s", nonZero(final, "odigos_ebpf_collection_errors_total"))
			}
			if n := sum(final, "odigos_ebpf_unreadable_objects"); n != 0 {
				t.Errorf("unreadable objects: %s", nonZero(final, "odigos_ebpf_unreadable_objects"))
			}
			var fds int
			for try := 0; try < 10; try++ {
				if fds = settledFDs(t, pid); fds == fdsBefore {
					break
				}
			}
			if fds != fdsBefore {
				t.Errorf("the agent holds %d fds after the churn, %d before", fds, fdsBefore)
			}
			// Transient goroutines only add to a sample: more after
			// than before, every time, is a leak.
			var g float64
			for try := 0; try < 5; try++ {
				if g = a.settledGoroutines(t); g <= gBefore {
					break
				}
			}
			if g > gBefore {
				t.Errorf("the agent runs %v goroutines after the churn, %v before", g, gBefore)
			}
			t.Logf("%s: fds %d before and after; goroutines %v; RSS %.1f MiB before, %.1f MiB after", mode, fdsBefore, g,
				value(t, before, "process_resident_memory_bytes")/(1<<20), value(t, final, "process_resident_memory_bytes")/(1<<20))
		})
	}
}

// TestIteratorsRefused runs the agent where the kernel refuses to load BPF
// programs (a seccomp filter denies BPF_PROG_LOAD, as a container's profile
// may): in iterator mode it exits 1 saying why; in auto mode it reads every
// kind with system calls, logs it and exports it, and is exact.
func TestIteratorsRefused(t *testing.T) {
	testutil.RequireBPF(t)
	wrap, env := wrapDenyBPF(bpfProgLoad)
	fast := fastConfig(t, bigTables)

	var stderr bytes.Buffer
	cmd := exec.Command(wrap[0], agentBin, "--once", "--collection.mode=iterator", "--config.file="+fast)
	cmd.Env, cmd.Stderr = append(os.Environ(), env...), &stderr
	if code := exitCode(cmd.Run()); code != 1 || !strings.Contains(stderr.String(), "collection mode iterator") ||
		!strings.Contains(stderr.String(), "operation not permitted") {
		t.Fatalf("iterator mode without BPF_PROG_LOAD: exit %d, want 1 with the reason:\n%s", code, stderr.String())
	}
	t.Logf("iterator mode: %s", strings.TrimSpace(stderr.String()))

	a := startAgentVia(t, plainWeb, wrap, env, "--collection.interval=100ms", "--config.file="+fast)
	a.waitAgrees(t, func(totals) bool { return true })
	fams, _ := a.scrape(t)
	for _, k := range kinds {
		if value(t, fams, "odigos_ebpf_collection_mode", "type", k.label, "mode", "syscall") != 1 {
			t.Errorf("auto mode without iterators: %ss not read with system calls", k.label)
		}
	}
	for _, f := range []string{"map_iterator", "program_iterator", "link_iterator", "element_counts"} {
		if value(t, fams, "odigos_ebpf_feature_enabled", "feature", f) != 0 {
			t.Errorf("feature %s enabled", f)
		}
	}
	if value(t, fams, "odigos_ebpf_collection_active") != 1 || sum(fams, "odigos_ebpf_collection_errors_total") != 0 {
		t.Errorf("active %v, errors %s", value(t, fams, "odigos_ebpf_collection_active"), nonZero(fams, "odigos_ebpf_collection_errors_total"))
	}
	if err, _ := a.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.stderr.String(), "BPF iterators unavailable") {
		t.Errorf("the fallback is not logged:\n%s", a.stderr)
	}
}

// TestEPERMOnMaps runs the agent in syscall mode where opening maps by ID is
// refused (seccomp denies BPF_MAP_GET_FD_BY_ID): every map is still counted,
// each is unreadable and its memory unknown, the refusals are counted under
// get_fd_by_id, programs and links are exact, and the agent serves.
func TestEPERMOnMaps(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 10, Programs: 3, Links: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	wrap, env := wrapDenyBPF(bpfMapGetFDByID)
	a := startAgentVia(t, plainWeb, wrap, env, "--collection.interval=100ms", "--collection.mode=syscall", "--config.file="+fastConfig(t, bigTables))
	a.whenStable(t, func(fams map[string]*dto.MetricFamily, bt perKind) error {
		maps := value(t, fams, "odigos_ebpf_objects", "type", "map")
		switch {
		case maps != float64(bt.objects[0]) || maps < 10:
			return fmt.Errorf("%v maps, bpftool %d", maps, bt.objects[0])
		case value(t, fams, "odigos_ebpf_unreadable_objects", "type", "map") != maps:
			return fmt.Errorf("%v maps unreadable of %v", value(t, fams, "odigos_ebpf_unreadable_objects", "type", "map"), maps)
		case value(t, fams, "odigos_ebpf_memory_bytes", "type", "map") != 0:
			return fmt.Errorf("map memory %v, want 0 (unknown)", value(t, fams, "odigos_ebpf_memory_bytes", "type", "map"))
		case value(t, fams, "odigos_ebpf_collection_errors_total", "op", "get_fd_by_id") < maps:
			return fmt.Errorf("get_fd_by_id errors %v", value(t, fams, "odigos_ebpf_collection_errors_total", "op", "get_fd_by_id"))
		case value(t, fams, "odigos_ebpf_objects", "type", "program") != float64(bt.objects[1]) ||
			value(t, fams, "odigos_ebpf_objects", "type", "link") != float64(bt.objects[2]) ||
			value(t, fams, "odigos_ebpf_total_memory_bytes") != float64(bt.memory[1]):
			return fmt.Errorf("programs and links: %v / %v, %v bytes; bpftool %+v", value(t, fams, "odigos_ebpf_objects", "type", "program"),
				value(t, fams, "odigos_ebpf_objects", "type", "link"), value(t, fams, "odigos_ebpf_total_memory_bytes"), bt)
		case sum(fams, "odigos_ebpf_unreadable_objects") != maps || value(t, fams, "odigos_ebpf_collection_active") != 1:
			return fmt.Errorf("unreadable %s, active %v", nonZero(fams, "odigos_ebpf_unreadable_objects"), value(t, fams, "odigos_ebpf_collection_active"))
		}
		t.Logf("EPERM on every map: %v maps counted, all unreadable; errors %s", maps, nonZero(fams, "odigos_ebpf_collection_errors_total"))
		return nil
	})
}

// TestEMFILE lowers the fd limit of a running agent to the fds it holds, in
// each mode: no object, fdinfo file or iterator can be opened any more. It
// keeps serving (over a connection opened before), counts the failures
// under their operation, and in syscall mode still counts every object,
// new ones unreadable; in iterator mode cycles fail and the picture ages.
// With the limit restored it is exact again and holds the fds it held.
func TestEMFILE(t *testing.T) {
	testutil.RequireBPF(t)
	for _, mode := range []string{"iterator", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			// One connection, kept open: the agent cannot accept another.
			tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			web := webClient{client: &http.Client{Timeout: 10 * time.Second, Transport: tr}}
			pop, err := loadgen.Create(loadgen.Spec{Maps: 20, Programs: 2, Fill: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			defer pop.Close()
			a := startAgentWeb(t, web, "--collection.interval=100ms", "--collection.mode="+mode, "--config.file="+fastConfig(t, bigTables))
			pid := a.cmd.Process.Pid
			a.waitAgrees(t, func(totals) bool { return true })
			before, _ := a.scrape(t)
			fds := settledFDs(t, pid)
			limit := lowestFreeFD(t, pid)
			var old unix.Rlimit
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
				t.Fatal(err)
			}
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(limit), Max: old.Max}, nil); err != nil {
				t.Fatal(err)
			}
			limited := time.Now()
			restored := false
			restore := func() {
				if !restored {
					if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
						t.Fatal(err)
					}
					restored = true
				}
			}
			defer restore()

			// New maps the agent cannot open.
			more, err := loadgen.Create(loadgen.Spec{Maps: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer more.Close()
			time.Sleep(time.Second)
			during, _ := a.scrape(t)
			errs := func(fams map[string]*dto.MetricFamily, op string) float64 {
				return value(t, fams, "odigos_ebpf_collection_errors_total", "op", op)
			}
			t.Logf("%s: %d fds, limit %d; during: errors %s; unreadable %s; cycles %v -> %v", mode, fds, limit,
				nonZero(during, "odigos_ebpf_collection_errors_total"), nonZero(during, "odigos_ebpf_unreadable_objects"),
				value(t, before, "odigos_ebpf_collection_cycles_total"), value(t, during, "odigos_ebpf_collection_cycles_total"))
			if value(t, during, "odigos_ebpf_collection_active") != 1 {
				t.Error("collection not active")
			}
			switch mode {
			case "iterator":
				if errs(during, "iter_create") <= errs(before, "iter_create") {
					t.Error("no iter_create failure counted")
				}
				// A cycle in flight when the limit fell may end; no other.
				if last := value(t, during, "odigos_ebpf_last_success_timestamp_seconds"); last > float64(limited.Add(200*time.Millisecond).UnixNano())/1e9 {
					t.Errorf("cycles kept completing without fds: the last ended %v after the limit", time.Unix(0, int64(last*1e9)).Sub(limited))
				}
			case "syscall":
				if errs(during, "get_fd_by_id") <= errs(before, "get_fd_by_id") {
					t.Error("no get_fd_by_id failure counted")
				}
				if value(t, during, "odigos_ebpf_unreadable_objects", "type", "map") < 10 {
					t.Errorf("new maps not unreadable: %s", nonZero(during, "odigos_ebpf_unreadable_objects"))
				}
				if value(t, during, "odigos_ebpf_objects", "type", "map") < value(t, before, "odigos_ebpf_objects", "type", "map")+10 {
					t.Error("new maps not counted")
				}
				if last := value(t, during, "odigos_ebpf_last_success_timestamp_seconds"); last < float64(limited.Add(500*time.Millisecond).UnixNano())/1e9 {
					t.Error("cycles stopped completing")
				}
			}

			restore()
			a.waitAgrees(t, func(totals) bool { return true })
			e1, _ := a.scrape(t)
			time.Sleep(500 * time.Millisecond)
			e2, _ := a.scrape(t)
			if sum(e2, "odigos_ebpf_collection_errors_total") != sum(e1, "odigos_ebpf_collection_errors_total") {
				t.Errorf("errors still growing with the limit restored: %s", nonZero(e2, "odigos_ebpf_collection_errors_total"))
			}
			if n := sum(e2, "odigos_ebpf_unreadable_objects"); n != 0 {
				t.Errorf("unreadable objects with the limit restored: %s", nonZero(e2, "odigos_ebpf_unreadable_objects"))
			}
			if got := settledFDs(t, pid); got != fds {
				t.Errorf("the agent holds %d fds after the fault, %d before", got, fds)
			}
		})
	}
}

// TestEMFILEAtStart starts the agent with too few fds to load its iterators
// (prlimit --nofile=12): in iterator mode it exits 1 saying so; in auto
// mode it falls back to system calls, and in syscall mode it starts as
// usual. Both then serve /metrics with every object counted: the readers
// share one fdinfo directory fd, so the agent itself fits, and an object it
// cannot open is unreadable and its failure counted, not hidden.
func TestEMFILEAtStart(t *testing.T) {
	testutil.RequireBPF(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("prlimit not found; CI installs util-linux")
		}
		t.Skip("prlimit (util-linux) not found")
	}
	pop, err := loadgen.Create(loadgen.Spec{Maps: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	fast := fastConfig(t, "")
	wrap := []string{prlimit, "--nofile=12:12"}

	var stderr bytes.Buffer
	cmd := exec.Command(prlimit, "--nofile=12:12", agentBin, "--web.listen-address="+freeAddr(t), "--collection.mode=iterator", "--config.file="+fast)
	cmd.Stderr = &stderr
	err = cmd.Run()
	if code := exitCode(err); code != 1 || !strings.Contains(stderr.String(), "collection mode iterator") ||
		!strings.Contains(stderr.String(), "too many open files") {
		t.Errorf("iterator with 12 fds: exit %d, want 1 naming the mode and the errno:\n%s", code, stderr.String())
	}

	for _, mode := range []string{"auto", "syscall"} {
		a := startAgentVia(t, webClient{}, wrap, nil, "--collection.mode="+mode, "--config.file="+fast)
		fams, _ := a.scrape(t)
		if got := value(t, fams, "odigos_ebpf_collection_mode", "type", "map", "mode", "syscall"); got != 1 {
			t.Errorf("%s with 12 fds: maps not read with system calls", mode)
		}
		// Listing takes no fd: every map is counted. Reading one takes an
		// fd, which may be there or not: a map that could not be read is
		// unreadable, and its failure counted.
		maps := value(t, fams, "odigos_ebpf_objects", "type", "map")
		unreadable := value(t, fams, "odigos_ebpf_unreadable_objects", "type", "map")
		errs := sum(fams, "odigos_ebpf_collection_errors_total")
		t.Logf("%s with 12 fds: %v maps, %v unreadable, %v errors", mode, maps, unreadable, errs)
		if maps < 20 || unreadable > 0 && errs == 0 {
			t.Errorf("%s with 12 fds: %v maps (want at least the 20 created), %v unreadable, %v errors", mode, maps, unreadable, errs)
		}
		if err, _ := a.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("%s with 12 fds: %v", mode, err)
		}
	}
}

// mapDigest is a map's contents as the test reads them: a SHA-256 over
// every key and value, in iteration order (which, for these maps, depends
// only on their contents), and the number of elements.
type mapDigest struct {
	sum [32]byte
	n   int
}

func digestMap(t *testing.T, id uint32) mapDigest {
	t.Helper()
	m, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		t.Fatalf("map %d: %v", id, err)
	}
	defer m.Close()
	h := sha256.New()
	var d mapDigest
	it := m.Iterate()
	var k []byte
	if m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.PerCPUArray {
		var v [][]byte
		for it.Next(&k, &v) {
			h.Write(k)
			for _, cpu := range v {
				h.Write(cpu)
			}
			d.n++
		}
	} else {
		var v []byte
		for it.Next(&k, &v) {
			h.Write(k)
			h.Write(v)
			d.n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating map %d: %v", id, err)
	}
	copy(d.sum[:], h.Sum(nil))
	return d
}

// kernelState is what the agent must leave as it found it.
type kernelState struct {
	maps       map[uint32]mapDigest // the population's maps with contents
	links      map[uint32]uint32    // the population's links and their programs
	progLinks  map[uint32]int       // links per program of the population
	progs      []uint32             // the population's programs, still loaded
	pins       []string             // everything under /sys/fs/bpf
	statsCtl   string               // kernel.bpf_stats_enabled
	linkExists map[uint32]bool
}

func captureState(t *testing.T, pop *loadgen.Population) kernelState {
	t.Helper()
	st := kernelState{maps: map[uint32]mapDigest{}, links: map[uint32]uint32{}, progLinks: map[uint32]int{}, linkExists: map[uint32]bool{}}
	for _, d := range pop.Maps() {
		switch d.Type {
		case ebpf.Queue, ebpf.RingBuf, ebpf.BloomFilter: // no keys to iterate
			continue
		}
		st.maps[d.ID] = digestMap(t, d.ID)
	}
	links := testutil.Bpftool(t, bpftool.Link)
	for _, id := range pop.LinkIDs() {
		l, ok := links[id]
		st.linkExists[id] = ok
		st.links[id] = l.ProgID
	}
	ours := append(pop.ProgramIDs(), pop.HelperProgramIDs()...)
	for _, l := range links {
		if slices.Contains(ours, l.ProgID) {
			st.progLinks[l.ProgID]++
		}
	}
	progs := testutil.Bpftool(t, bpftool.Program)
	for _, id := range ours {
		if _, ok := progs[id]; ok {
			st.progs = append(st.progs, id)
		}
	}
	slices.Sort(st.progs)
	filepath.WalkDir("/sys/fs/bpf", func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			st.pins = append(st.pins, path)
		}
		return nil
	})
	st.statsCtl = readSysctl(t, "kernel.bpf_stats_enabled")
	return st
}

func (st kernelState) diff(o kernelState) []string {
	var d []string
	for id, m := range st.maps {
		if o.maps[id] != m {
			d = append(d, fmt.Sprintf("map %d: contents changed (%d elements, now %d)", id, m.n, o.maps[id].n))
		}
	}
	for id, prog := range st.links {
		if !o.linkExists[id] || o.links[id] != prog {
			d = append(d, fmt.Sprintf("link %d of program %d: now present %v, program %d", id, prog, o.linkExists[id], o.links[id]))
		}
	}
	for prog, n := range st.progLinks {
		if o.progLinks[prog] != n {
			d = append(d, fmt.Sprintf("program %d: %d links, now %d", prog, n, o.progLinks[prog]))
		}
	}
	if !slices.Equal(st.progs, o.progs) {
		d = append(d, fmt.Sprintf("programs %v, now %v", st.progs, o.progs))
	}
	if !slices.Equal(st.pins, o.pins) {
		d = append(d, fmt.Sprintf("bpffs %v, now %v", st.pins, o.pins))
	}
	if st.statsCtl != o.statsCtl {
		d = append(d, fmt.Sprintf("kernel.bpf_stats_enabled %s, now %s", st.statsCtl, o.statsCtl))
	}
	return d
}

func readSysctl(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mountBPFFS mounts bpffs at /sys/fs/bpf for the test if nothing is mounted
// there, so that a pin would show.
func mountBPFFS(t *testing.T) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mounting bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount("/sys/fs/bpf", unix.MNT_DETACH) })
}

// statsHolders lists the processes other than except holding a
// BPF_ENABLE_STATS fd.
func statsHolders(except int) []string {
	var pids []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == "anon_inode:bpf-stats" {
			if pid := strings.Split(fd, "/")[2]; pid != strconv.Itoa(except) && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// runsCounted runs prog 10 times and returns by how much its run count grew.
func runsCounted(t *testing.T, prog *ebpf.Program) uint64 {
	t.Helper()
	before, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14), Repeat: 10}); err != nil {
		t.Fatal(err)
	}
	after, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return after.RunCount - before.RunCount
}

// TestReadOnly runs the agent, in each mode, over a population whose maps
// hold known contents, links and pins, twice: without run-time statistics,
// stopped with SIGTERM; with them, killed with SIGKILL. Afterwards every
// map's contents are what they were, every link is there, attached to its
// program, nothing is pinned in bpffs, the bpf_stats_enabled sysctl is as
// it was, and statistics, on while the agent ran, are off again.
func TestReadOnly(t *testing.T) {
	testutil.RequireBPF(t)
	mountBPFFS(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 30, Programs: 4, Links: 3, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(pop.ProgramIDs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	// Statistics must be off to tell whether the agent turns them on and
	// off: wait for other processes (other tests) holding them on to end.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if len(statsHolders(0)) == 0 && runsCounted(t, prog) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if testutil.InCI() {
				t.Fatalf("run-time statistics stay on (held by %v, sysctl %s)", statsHolders(0), readSysctl(t, "kernel.bpf_stats_enabled"))
			}
			t.Skipf("run-time statistics stay on (held by %v, sysctl %s): cannot tell", statsHolders(0), readSysctl(t, "kernel.bpf_stats_enabled"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	start := captureState(t, pop)
	if len(start.maps) < 20 || len(start.links) != 3 || len(start.progs) != 5 {
		t.Fatalf("population: %d maps with contents, %d links, %d programs", len(start.maps), len(start.links), len(start.progs))
	}
	for _, mode := range []string{"iterator", "syscall"} {
		for _, run := range []struct {
			stats bool
			sig   os.Signal
		}{{false, syscall.SIGTERM}, {true, syscall.SIGKILL}} {
			name := fmt.Sprintf("%s/stats=%v/%v", mode, run.stats, run.sig)
			cfg := bigTables
			if run.stats {
				cfg += "enable_system_stats: true\n"
			}
			a := startAgentWeb(t, plainWeb, "--collection.interval=100ms", "--collection.mode="+mode, "--config.file="+fastConfig(t, cfg))
			for range 5 {
				a.scrape(t)
				time.Sleep(100 * time.Millisecond)
			}
			fams, _ := a.scrape(t)
			if got := value(t, fams, "odigos_ebpf_system_stats_enabled"); got != map[bool]float64{false: 0, true: 1}[run.stats] {
				t.Errorf("%s: system_stats_enabled %v", name, got)
			}
			if counted := runsCounted(t, prog); run.stats != (counted == 10) || (!run.stats && counted != 0) {
				t.Errorf("%s: while the agent runs, 10 runs counted as %d", name, counted)
			}
			if err, _ := a.stop(t, run.sig); run.sig == syscall.SIGTERM && err != nil {
				t.Errorf("%s: exit %v", name, err)
			}
			if counted := runsCounted(t, prog); counted != 0 {
				t.Errorf("%s: after the agent exited, statistics still on: 10 runs counted as %d (holders %v)", name, counted, statsHolders(0))
			}
			if d := start.diff(captureState(t, pop)); len(d) > 0 {
				t.Errorf("%s: the agent changed the kernel:\n%s", name, strings.Join(d, "\n"))
			}
		}
	}
	t.Logf("%d maps checksummed (%d elements), %d links, %d programs, %d bpffs entries, bpf_stats_enabled=%s: unchanged after 4 agent runs",
		len(start.maps), func() (n int) {
			for _, m := range start.maps {
				n += m.n
			}
			return n
		}(), len(start.links), len(start.progs), len(start.pins), start.statsCtl)
}

// ownObjects returns the eBPF objects the agent holds throughout, by kind,
// from its fdinfo: its iterator programs and links, and the maps of those
// programs. An object the agent opens for a moment while reading it (in
// syscall mode, anyone's) is not among them: only what every one of five
// samples, 20 ms apart, shows is kept.
func ownObjects(t *testing.T, pid int) (mapIDs, progIDs, linkIDs []uint32) {
	t.Helper()
	held := func() (progs, links map[uint32]bool) {
		progs, links = map[uint32]bool{}, map[uint32]bool{}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
			if err != nil {
				continue // closed meanwhile
			}
			for _, line := range strings.Split(string(b), "\n") {
				key, val, _ := strings.Cut(line, ":")
				n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32)
				switch {
				case err != nil:
				case key == "prog_id": // a program's fd, or a link's program
					progs[uint32(n)] = true
				case key == "link_id":
					links[uint32(n)] = true
				}
			}
		}
		return progs, links
	}
	p, l := held()
	for range 4 {
		time.Sleep(20 * time.Millisecond)
		p2, l2 := held()
		maps.DeleteFunc(p, func(id uint32, _ bool) bool { return !p2[id] })
		maps.DeleteFunc(l, func(id uint32, _ bool) bool { return !l2[id] })
	}
	progIDs, linkIDs = slices.Sorted(maps.Keys(p)), slices.Sorted(maps.Keys(l))
	for _, id := range progIDs {
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			t.Fatal(err)
		}
		info, err := prog.Info()
		prog.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := info.MapIDs()
		for _, m := range ids {
			mapIDs = append(mapIDs, uint32(m))
		}
	}
	slices.Sort(mapIDs)
	return slices.Compact(mapIDs), progIDs, linkIDs
}

// picture is what a scrape shows of the objects.
type picture struct {
	objects, memory, typeObjects, typeMemory [3]float64
	total                                    float64
}

func pictureOf(t *testing.T, fams map[string]*dto.MetricFamily) (picture, bool) {
	if _, ok := fams["odigos_ebpf_objects"]; !ok {
		return picture{}, false
	}
	var p picture
	for i, k := range kinds {
		p.objects[i] = value(t, fams, "odigos_ebpf_objects", "type", k.label)
		p.typeObjects[i] = sum(fams, "odigos_ebpf_"+k.label+"_objects")
		if k.label != "link" {
			p.memory[i] = value(t, fams, "odigos_ebpf_memory_bytes", "type", k.label)
			p.typeMemory[i] = sum(fams, "odigos_ebpf_"+k.label+"_memory_bytes")
		}
	}
	p.total = value(t, fams, "odigos_ebpf_total_memory_bytes")
	return p, true
}

// TestShutdownMidCycle slows cycles down with the rate limit, in each mode,
// and scrapes continuously: every scrape shows a complete picture (the
// population that exists throughout is all there, the per-type series add
// up to the totals, and every scrape of one cycle shows the same values),
// scrapes are answered while cycles run, overruns are counted; then SIGTERM
// in the middle of a cycle: the agent exits 0 within a second, and the
// eBPF objects it held (its iterators) are released.
func TestShutdownMidCycle(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 60, Programs: 10, Links: 4, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	for _, mode := range []string{"iterator", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			// Cycles of a few tenths of a second: an iterator cycle is a
			// few dozen system calls, at 30 per second. A steady syscall
			// cycle is about one per object, at twice the objects per
			// second (plus a wait per call once the bucket is empty); the
			// burst lets the first cycle, seven per object, through at once.
			rate, burst := 30, 1
			if mode == "syscall" {
				var n int
				for _, c := range bpftoolPerKind(t).objects {
					n += c
				}
				rate, burst = max(300, 2*n), 8*n+100
			}
			cfg := fmt.Sprintf("%smax_syscalls_per_second: %d\nsyscall_burst: %d\n", bigTables, rate, burst)
			f := filepath.Join(t.TempDir(), "slow.yaml")
			if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			a := startAgentWeb(t, plainWeb, "--collection.interval=100ms", "--collection.mode="+mode, "--config.file="+f)
			pid := a.cmd.Process.Pid
			seen := map[float64]picture{} // by last success timestamp
			var slowest time.Duration
			var last map[string]*dto.MetricFamily
			scrapes := 0
			// Three seconds, and at least two complete cycles (on a busy
			// kernel a syscall cycle can take seconds), but 20 s at most.
			for start := time.Now(); time.Since(start) < 3*time.Second || len(seen) < 2 && time.Since(start) < 20*time.Second; scrapes++ {
				start := time.Now()
				fams, _ := a.scrape(t)
				slowest = max(slowest, time.Since(start))
				p, ok := pictureOf(t, fams)
				if !ok {
					// /-/ready follows the snapshot, /metrics the cache
					// refreshed just after it: right after ready, the cache
					// may not have the first picture yet. Never after.
					if len(seen) > 0 {
						t.Fatal("a picture served, then none")
					}
					continue
				}
				ts := value(t, fams, "odigos_ebpf_last_success_timestamp_seconds")
				if prev, ok := seen[ts]; ok && prev != p {
					t.Fatalf("two pictures for the cycle that ended at %v:\n%+v\n%+v", ts, prev, p)
				}
				seen[ts] = p
				for i, want := range []float64{60, 10 + 1, 4} {
					if p.objects[i] < want {
						t.Fatalf("partial picture: %v %ss, the population alone has %v", p.objects[i], kinds[i].label, want)
					}
				}
				if p.typeObjects != p.objects || p.typeMemory != p.memory || p.memory[0]+p.memory[1] != p.total {
					t.Fatalf("picture does not add up: %+v", p)
				}
				if last != nil && value(t, fams, "odigos_ebpf_collection_cycles_total") < value(t, last, "odigos_ebpf_collection_cycles_total") {
					t.Fatal("cycles went backwards")
				}
				last = fams
				time.Sleep(20 * time.Millisecond)
			}
			overruns := value(t, last, "odigos_ebpf_collection_overruns_total")
			cycleTime := value(t, last, "odigos_ebpf_last_collection_duration_seconds")
			t.Logf("%s: %d scrapes (slowest %v) over %d complete cycles of %.0f ms; %v overruns", mode, scrapes,
				slowest.Round(time.Millisecond), len(seen), cycleTime*1000, overruns)
			if len(seen) < 2 || scrapes < 3*len(seen) {
				t.Errorf("%d scrapes over %d cycles: not enough scrapes during cycles", scrapes, len(seen))
			}
			if overruns == 0 || cycleTime < 0.1 {
				t.Errorf("cycles of %v s, %v overruns: not slower than the interval", cycleTime, overruns)
			}
			if slowest > time.Second {
				t.Errorf("a scrape took %v: scrapes wait for cycles", slowest)
			}

			// SIGTERM in the middle of a cycle: the next cycle starts one
			// interval after the last one ended and lasts about as long.
			maps, progs, links := ownObjects(t, pid)
			// Its three object iterators and the holders iterator.
			if mode == "iterator" && (len(progs) != 4 || len(links) != 4) {
				t.Fatalf("the agent holds programs %v, links %v: want its 4 iterators", progs, links)
			}
			var ended time.Time
			for deadline := time.Now().Add(10 * time.Second); ; {
				fams, _ := a.scrape(t)
				ended = time.Unix(0, int64(value(t, fams, "odigos_ebpf_last_success_timestamp_seconds")*1e9))
				cycleTime = value(t, fams, "odigos_ebpf_last_collection_duration_seconds")
				mid := ended.Add(100*time.Millisecond + time.Duration(cycleTime*float64(time.Second)/2))
				if d := time.Until(mid); d > 0 {
					time.Sleep(d)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no cycle ended in 10s")
				}
				time.Sleep(10 * time.Millisecond) // past the middle: wait for the next cycle
			}
			err, took := a.stop(t, syscall.SIGTERM)
			t.Logf("%s: SIGTERM %v after the last cycle ended (cycles of %.0f ms, 100 ms apart): exit %v in %v; then %d maps, %d programs, %d links of the agent's released",
				mode, (time.Since(ended) - took).Round(time.Millisecond), cycleTime*1000, err, took.Round(time.Millisecond), len(maps), len(progs), len(links))
			if err != nil || took > time.Second {
				t.Fatalf("exit %v after %v, want 0 within 1s", err, took)
			}
			if out := a.stderr.String(); strings.Contains(out, "did not stop in time") || !strings.Contains(out, "shutting down") {
				t.Errorf("shutdown log:\n%s", out)
			}
			waitReleased(t, maps, progs, links)
		})
	}
}

// waitReleased waits until the objects are gone from the kernel.
func waitReleased(t *testing.T, maps, progs, links []uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range maps {
		for m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil; m, err = ebpf.NewMapFromID(ebpf.MapID(id)) {
			m.Close()
			if time.Now().After(deadline) {
				t.Fatalf("map %d still exists after the agent exited", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, id := range progs {
		for p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil; p, err = ebpf.NewProgramFromID(ebpf.ProgramID(id)) {
			p.Close()
			if time.Now().After(deadline) {
				t.Fatalf("program %d still exists after the agent exited", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, id := range links {
		for l, err := link.NewFromID(link.ID(id)); err == nil; l, err = link.NewFromID(link.ID(id)) {
			l.Close()
			if time.Now().After(deadline) {
				t.Fatalf("link %d still exists after the agent exited", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestMemoryBudgetEndToEnd gives the agent a budget its own tables and
// runtime already fill past 90% (2 MiB, tables of 4,800 objects: about
// 1 MiB): every cycle is stopped before it starts, and the agent says so
// — collection_active 0, memory_limit_hit_total counting, no picture made
// up, not ready — while it keeps serving. (Recovery, which needs the
// agent's memory to fall, is shown in-process by TestKernelMemoryBudget.)
func TestMemoryBudgetEndToEnd(t *testing.T) {
	testutil.RequireBPF(t)
	// No history: its 256 KiB would count in the half of the budget that
	// these tables fill.
	cfg := fastConfig(t, "max_memory_bytes: 2MiB\nmax_tracked_maps: 4000\nmax_tracked_programs: 500\nmax_tracked_links: 300\nhistory_bytes: 0\n")
	a := &agent{addr: freeAddr(t), stderr: &bytes.Buffer{}, done: make(chan error, 1), web: plainWeb}
	a.cmd = exec.Command(agentBin, "--web.listen-address="+a.addr, "--collection.interval=100ms", "--config.file="+cfg)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
	})
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := a.web.get(a.addr, "/metrics"); err == nil {
			resp.Body.Close()
			if fams, _ = a.scrape(t); value(t, fams, "odigos_ebpf_collection_memory_limit_hit_total") >= 5 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no memory limit hits after 15s:\n%s", a.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	usage, budget := value(t, fams, "odigos_ebpf_collector_memory_usage_bytes"), value(t, fams, "odigos_ebpf_collector_memory_budget_bytes")
	t.Logf("budget %v bytes, usage %v (%.0f%%), %v cycles stopped", budget, usage, usage/budget*100,
		value(t, fams, "odigos_ebpf_collection_memory_limit_hit_total"))
	if value(t, fams, "odigos_ebpf_collection_active") != 0 || budget != 2<<20 || usage < 0.9*budget {
		t.Errorf("active %v, usage %v of %v", value(t, fams, "odigos_ebpf_collection_active"), usage, budget)
	}
	if _, ok := fams["odigos_ebpf_objects"]; ok || value(t, fams, "odigos_ebpf_collection_cycles_total") != 0 {
		t.Error("a picture was served without a complete cycle")
	}
	if resp, err := a.web.get(a.addr, "/-/ready"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/-/ready: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	if err, _ := a.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(a.stderr.String(), "collection suspended"); n != 1 {
		t.Errorf("suspension logged %d times, want once:\n%s", n, a.stderr)
	}
}
