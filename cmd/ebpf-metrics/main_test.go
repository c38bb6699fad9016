package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

var agentBin string

func TestMain(m *testing.M) {
	holder.RunIfChild() // returns only when this process is not a holder
	execWrapped()       // returns only when this process is not an agent's wrapper
	faultChildIfAsked() // returns only when this process is not measuring its page faults
	dir, err := os.MkdirTemp("", "ebpf-metrics-test")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "ebpf-metrics")
	if out, err := exec.Command("go", "build", "-o", agentBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		code = checkGoroutines()
	}
	os.Exit(code)
}

// fastConfig lifts the default rate limit so that the tests' cycles take
// milliseconds.
func fastConfig(t *testing.T, extra string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte("max_syscalls_per_second: 0\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type agent struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	done   chan error
	// web is how the test reaches the agent's HTTP server.
	web webClient
}

// webClient makes the test's requests to an agent: plain HTTP by default;
// with a web configuration file, HTTPS and basic auth.
type webClient struct {
	scheme         string // "http" when empty
	client         *http.Client
	user, password string
}

func (w webClient) get(addr, path string) (*http.Response, error) {
	scheme, client := cmp.Or(w.scheme, "http"), cmp.Or(w.client, http.DefaultClient)
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	if w.user != "" {
		req.SetBasicAuth(w.user, w.password)
	}
	return client.Do(req)
}

// startAgent runs the agent on a loopback port and waits until it has
// completed a cycle (/-/ready).
func startAgent(t *testing.T, args ...string) *agent {
	t.Helper()
	return startAgentWeb(t, webClient{}, args...)
}

// startAgentWeb is startAgent for an agent reached through web (for
// instance with a --web.config.file among args).
func startAgentWeb(t *testing.T, web webClient, args ...string) *agent {
	t.Helper()
	return startAgentVia(t, web, nil, nil, args...)
}

// startAgentVia is startAgentWeb for an agent started through a wrapper:
// wrap is the wrapper's command line, which ends with the agent's path and
// arguments (for instance prlimit, or wrapDenyBPF's seccomp wrapper); env is
// added to the environment.
func startAgentVia(t *testing.T, web webClient, wrap, env []string, args ...string) *agent {
	t.Helper()
	a := &agent{addr: freeAddr(t), stderr: &bytes.Buffer{}, done: make(chan error, 1), web: web}
	argv := append(append(append([]string{}, wrap...), agentBin, "--web.listen-address="+a.addr), args...)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := a.web.get(a.addr, "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		select {
		case err := <-a.done:
			// Put the status back for the cleanup, which waits for it.
			a.done <- err
			t.Fatalf("agent exited: %v\n%s", err, a.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after 15s\n%s", a.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agent) scrape(t *testing.T) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	resp, err := a.web.get(a.addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams, body
}

// value returns the value of the series of name whose labels include the
// given pairs.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

type totals struct {
	objects [3]int
	memory  uint64 // maps and programs
}

var kinds = [3]struct {
	label string
	bpf   bpftool.Kind
}{{"map", bpftool.Map}, {"program", bpftool.Program}, {"link", bpftool.Link}}

func bpftoolNow(t *testing.T) totals {
	var tt totals
	for i, k := range kinds {
		n, m := testutil.BpftoolTotals(t, k.bpf)
		tt.objects[i] = n
		tt.memory += m
	}
	return tt
}

// bpftoolSettled waits until bpftool's view stops changing (objects of
// exited processes are freed after an RCU grace period) and returns it.
func bpftoolSettled(t *testing.T) totals {
	last := bpftoolNow(t)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		now := bpftoolNow(t)
		if now == last {
			return now
		}
		last = now
	}
	return last
}

func (a *agent) totals(t *testing.T) totals {
	fams, _ := a.scrape(t)
	var tt totals
	for i, k := range kinds {
		tt.objects[i] = int(value(t, fams, "odigos_ebpf_objects", "type", k.label))
	}
	tt.memory = uint64(value(t, fams, "odigos_ebpf_total_memory_bytes"))
	return tt
}

// waitAgrees waits until the agent's last cycle and bpftool agree and the
// kernel held still around that cycle, then returns the agreed totals.
func (a *agent) waitAgrees(t *testing.T, want func(totals) bool) totals {
	t.Helper()
	var last, seen totals
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		before := bpftoolNow(t)
		time.Sleep(300 * time.Millisecond) // at least two cycles at 100ms
		seen = a.totals(t)
		after := bpftoolNow(t)
		last = after
		if before == after && seen == after && want(after) {
			return after
		}
	}
	t.Fatalf("agent %+v, bpftool %+v: never agreed", seen, last)
	return totals{}
}

func TestEndToEndMatchesBpftool(t *testing.T) {
	testutil.RequireBPF(t)
	a := startAgent(t, "--collection.interval=100ms", "--collection.mode=syscall", "--config.file="+fastConfig(t, ""))
	base := a.waitAgrees(t, func(totals) bool { return true })

	pop, err := loadgen.Create(loadgen.Spec{Maps: 40, Programs: 12, Links: 6, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	created, err := pop.MemlockBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := totals{memory: base.memory + created}
	want.objects = [3]int{base.objects[0] + 40, base.objects[1] + 13, base.objects[2] + 6} // + the iterator program
	with := a.waitAgrees(t, func(tt totals) bool { return tt.objects == want.objects })
	if with != want {
		t.Fatalf("with the population: %+v, want %+v", with, want)
	}

	if err := pop.Close(); err != nil {
		t.Fatal(err)
	}
	after := a.waitAgrees(t, func(tt totals) bool { return tt.objects == base.objects })
	if after != base {
		t.Fatalf("after release: %+v, want %+v", after, base)
	}

	fams, _ := a.scrape(t)
	if got := value(t, fams, "odigos_ebpf_objects_created_total", "type", "map"); got < 40 {
		t.Errorf("maps created: %v", got)
	}
	if got := value(t, fams, "odigos_ebpf_objects_removed_total", "type", "map"); got < 40 {
		t.Errorf("maps removed: %v", got)
	}
	if value(t, fams, "odigos_ebpf_collection_active") != 1 || value(t, fams, "odigos_ebpf_collection_duration_seconds") < 3 {
		t.Error("collection not active or too few cycles")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "odigos_ebpf_build_info"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("missing %s", name)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("promtool not found; CI installs Debian's prometheus package")
		}
		t.Skip("promtool not found")
	}
	return p
}

func checkMetrics(t *testing.T, body []byte) {
	t.Helper()
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestPromtoolAcceptsRealScrape(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 20, Programs: 3, Links: 2, Fill: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	a := startAgent(t, "--collection.interval=100ms", "--config.file="+fastConfig(t, "enable_system_stats: true\n"))
	_, body := a.scrape(t)
	if !bytes.Contains(body, []byte("odigos_ebpf_program_run_time_seconds")) {
		t.Fatal("system stats not exported")
	}
	checkMetrics(t, body)
}

func TestOnce(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 5, Programs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	for try := 0; ; try++ {
		before, _ := testutil.BpftoolTotals(t, bpftool.Map)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(agentBin, "--once", "--config.file="+fastConfig(t, ""), "--collection.mode=syscall")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("--once: %v\n%s", err, stderr.String())
		}
		after, _ := testutil.BpftoolTotals(t, bpftool.Map)
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(stdout.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got := value(t, fams, "odigos_ebpf_objects", "type", "map")
		if before != after && try < 20 {
			continue // someone else changed the kernel meanwhile
		}
		if got != float64(after) {
			t.Fatalf("--once counted %v maps, bpftool %d", got, after)
		}
		if value(t, fams, "odigos_ebpf_collection_mode", "type", "map", "mode", "syscall") != 1 {
			t.Fatal("mode not reported")
		}
		checkMetrics(t, stdout.Bytes())
		return
	}
}

func TestSignalsStopWithinOneSecond(t *testing.T) {
	testutil.RequireBPF(t)
	// A slow cycle (a tight rate limit over a few hundred objects) so that
	// the signal arrives in the middle of one.
	pop, err := loadgen.Create(loadgen.Spec{Maps: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	slow := filepath.Join(t.TempDir(), "slow.yaml")
	if err := os.WriteFile(slow, []byte("max_syscalls_per_second: 200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An iterator cycle is a few dozen system calls: at 2 per second, the
	// first one lasts seconds too.
	slower := filepath.Join(t.TempDir(), "slower.yaml")
	if err := os.WriteFile(slower, []byte("max_syscalls_per_second: 2\nsyscall_burst: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		mode, config string
		sig          syscall.Signal
	}{{"syscall", slow, syscall.SIGTERM}, {"syscall", slow, syscall.SIGINT}, {"iterator", slower, syscall.SIGTERM}, {"iterator", slower, syscall.SIGINT}} {
		sig := run.sig
		a := &agent{addr: freeAddr(t), stderr: &bytes.Buffer{}}
		a.cmd = exec.Command(agentBin, "--web.listen-address="+a.addr, "--collection.mode="+run.mode, "--config.file="+run.config)
		a.cmd.Stderr = a.stderr
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until it serves (the first cycle is still running).
		for i := 0; ; i++ {
			if c, err := net.Dial("tcp", a.addr); err == nil {
				c.Close()
				break
			}
			if i > 200 {
				t.Fatalf("agent does not listen:\n%s", a.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		if resp, err := http.Get("http://" + a.addr + "/-/ready"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("the first cycle should still be running: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		start := time.Now()
		a.cmd.Process.Signal(sig)
		err := a.cmd.Wait()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s, %v: exit %v\n%s", run.mode, sig, err, a.stderr)
		}
		if took > time.Second {
			t.Fatalf("%s, %v: exit took %v", run.mode, sig, took)
		}
		if strings.Contains(a.stderr.String(), "did not stop in time") || !strings.Contains(a.stderr.String(), "shutting down") {
			t.Fatalf("%s, %v: %s", run.mode, sig, a.stderr)
		}
		t.Logf("%s, %v in the first cycle: exit 0 in %v", run.mode, sig, took.Round(time.Millisecond))
	}
}

func TestBadConfigurationExitsTwo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown profile", []string{"--profile=fast"}, "profile"},
		{"unknown mode", []string{"--collection.mode=magic"}, "collection_mode"},
		{"interval too short", []string{"--collection.interval=50ms"}, "collection_interval"},
		{"zero interval", []string{"--collection.interval=0s", "--config.file=" + write("zero.yaml", "collection_interval: 0s\n")}, "collection_interval"},
		{"negative rate", []string{"--config.file=" + write("neg.yaml", "max_syscalls_per_second: -1\n")}, "max_syscalls_per_second"},
		{"negative batch", []string{"--config.file=" + write("batch.yaml", "batch_size: -5\n")}, "batch_size"},
		{"unknown key", []string{"--config.file=" + write("unknown.yaml", "max_maps: 5\n")}, "max_maps"},
		{"malformed file", []string{"--config.file=" + write("bad.yaml", "max_tracked_maps: [1\n")}, "bad.yaml"},
		{"missing file", []string{"--config.file=/nonexistent/ebpf.yaml"}, "/nonexistent/ebpf.yaml"},
		{"tables do not fit", []string{"--config.file=" + write("big.yaml", "max_tracked_maps: 1000000\n")}, "max_tracked_maps"},
		{"bad web config", []string{"--web.config.file=" + write("web.yml", "tls_server_config: {cert_file: /nope}\n")}, "web.config.file"},
		{"bad namespace", []string{"--metrics.namespace=a-b"}, "metrics.namespace"},
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"malformed interval", []string{"--collection.interval=soon"}, "collection.interval"},
		// Before: exit 0 and 0 maps, fdinfo's ENOENT read as "gone".
		{"procfs missing", []string{"--collection.mode=syscall", "--path.procfs=/nonexistent/proc"}, "--path.procfs: /nonexistent/proc"},
		{"procfs not a procfs", []string{"--path.procfs=" + dir}, "is not a procfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, check := range []bool{false, true} {
				args := tc.args
				if check {
					args = append(args, "--config.check")
				}
				var stdout, stderr bytes.Buffer
				cmd := exec.Command(agentBin, args...)
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if code := exitCode(err); code != 2 {
					t.Fatalf("%v: exit %d, want 2\n%s", args, code, stderr.String())
				}
				if !strings.Contains(stderr.String(), tc.want) {
					t.Fatalf("%v: message does not name %q:\n%s", args, tc.want, stderr.String())
				}
			}
		})
	}
}

// TestConfigCheckReportsEveryProblem: a bad file, a bad flag and bad
// values are reported together, not the first alone.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("max_maps: 5\nbatch_size: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(agentBin, "--config.check", "--config.file="+file, "--collection.interval=soon",
		"--collection.mode=magic", "--path.procfs=/nonexistent", "--web.max-requests=-1")
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, stderr.String())
	}
	for _, want := range []string{`unknown key "max_maps"`, "batch_size: must be", "--collection.interval", "collection_mode",
		"--path.procfs", "--web.max-requests"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the message lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestOnceUnderALongProcfsPath: --path.procfs is honoured however long the
// path (a fixed 80-byte buffer once panicked past 48 characters).
func TestOnceUnderALongProcfsPath(t *testing.T) {
	testutil.RequireBPF(t)
	procfs := filepath.Join(t.TempDir(), strings.Repeat("p", 60), strings.Repeat("q", 60))
	if err := os.MkdirAll(procfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", procfs, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(procfs, unix.MNT_DETACH)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	for try := 0; ; try++ {
		before, mem := testutil.BpftoolTotals(t, bpftool.Map)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(agentBin, "--once", "--config.file="+fastConfig(t, ""), "--collection.mode=syscall",
			"--path.procfs="+procfs)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("--once: %v\n%s", err, stderr.String())
		}
		after, _ := testutil.BpftoolTotals(t, bpftool.Map)
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(stdout.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if before != after && try < 20 {
			continue
		}
		got := value(t, fams, "odigos_ebpf_objects", "type", "map")
		gotMem := value(t, fams, "odigos_ebpf_memory_bytes", "type", "map")
		if got != float64(after) || gotMem != float64(mem) {
			t.Fatalf("--once under %s: %v maps, %v bytes; bpftool %d, %d", procfs, got, gotMem, after, mem)
		}
		if value(t, fams, "process_open_fds") == 0 {
			t.Fatal("no process metrics read from the procfs given")
		}
		return
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestConfigCheckPrintsEffectiveConfiguration(t *testing.T) {
	var stdout bytes.Buffer
	cmd := exec.Command(agentBin, "--config.check", "--profile=high-traffic", "--collection.interval=5s",
		"--config.file="+fastConfig(t, "batch_size: 7\n"))
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	for _, want := range []string{"# profile: high-traffic", "collection_interval: 5s", "batch_size: 7", "max_tracked_maps: 50", "max_syscalls_per_second: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("--config.check output lacks %q:\n%s", want, out)
		}
	}
}

// runWithCaps runs the agent with only the given capabilities in its
// bounding, inheritable and ambient sets, as root.
func runWithCaps(t *testing.T, caps string, args ...string) (int, string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("setpriv not found; CI installs util-linux")
		}
		t.Skip("setpriv (util-linux) not found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, setpriv, append([]string{"--bounding-set=-all" + caps, "--inh-caps=-all" + caps, "--",
		agentBin}, args...)...)
	cmd.Stderr = &stderr
	err = cmd.Run()
	return exitCode(err), stderr.String()
}

// TestWithoutCapabilityExitsOne runs the agent with each set of capabilities
// that matters: with too few for its mode it exits 1 naming the missing
// one; with enough it runs, and warns, naming them, when it holds
// capabilities beyond what its mode and configuration need.
func TestWithoutCapabilityExitsOne(t *testing.T) {
	testutil.RequireBPF(t) // to be able to drop the capabilities
	for _, tc := range []struct {
		caps, mode, want string
		unneeded         string // the warning's list when it runs, "" for no warning
	}{
		{",+bpf,+perfmon", "syscall", "CAP_SYS_ADMIN", ""},
		{",+sys_admin", "iterator", "", "CAP_SYS_ADMIN"}, // it covers both, and is more than they allow
		{"", "auto", "CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON)", ""},
		{",+bpf", "iterator", "CAP_BPF and CAP_PERFMON", ""},
		{",+perfmon", "iterator", "CAP_BPF and CAP_PERFMON", ""},
		{",+bpf,+perfmon", "iterator", "", ""},
		{",+bpf,+perfmon", "auto", "", ""},
		{",+sys_admin", "syscall", "", ""},
		{",+sys_admin,+bpf,+perfmon", "syscall", "", "CAP_PERFMON,CAP_BPF"},
		{",+sys_admin,+bpf,+perfmon,+net_admin", "auto", "", "CAP_NET_ADMIN,CAP_SYS_ADMIN"},
	} {
		code, stderr := runWithCaps(t, tc.caps, "--once", "--collection.mode="+tc.mode, "--config.file="+fastConfig(t, ""))
		if tc.want == "" {
			warned := strings.Contains(stderr, "capabilities that its collection does not need")
			switch {
			case code != 0:
				t.Errorf("caps %q, mode %s: exit %d, want 0\n%s", tc.caps, tc.mode, code, stderr)
			case tc.unneeded == "" && warned:
				t.Errorf("caps %q, mode %s: warned of unneeded capabilities:\n%s", tc.caps, tc.mode, stderr)
			case tc.unneeded != "" && !strings.Contains(stderr, "unneeded="+tc.unneeded+" "):
				t.Errorf("caps %q, mode %s: no warning naming %s:\n%s", tc.caps, tc.mode, tc.unneeded, stderr)
			}
			continue
		}
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("caps %q, mode %s: exit %d, want 1 naming %s\n%s", tc.caps, tc.mode, code, tc.want, stderr)
		}
	}

	// As root with every capability, in iterator mode: one warning, which
	// names CAP_SYS_ADMIN among what it does not need.
	var stderr bytes.Buffer
	cmd := exec.Command(agentBin, "--once", "--collection.mode=iterator", "--config.file="+fastConfig(t, ""))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("as root: %v\n%s", err, stderr.String())
	}
	out := stderr.String()
	if strings.Count(out, "capabilities that its collection does not need") != 1 || !strings.Contains(out, "needs=CAP_BPF,CAP_PERFMON ") ||
		!strings.Contains(out, ",CAP_SYS_ADMIN,") || !strings.Contains(out, "uid=0") {
		t.Errorf("as root in iterator mode: want one warning naming CAP_SYS_ADMIN:\n%s", out)
	}
}

// TestLeastPrivilegeIterator runs the agent as an unprivileged user holding
// only CAP_BPF and CAP_PERFMON: BPF iterators see every object without
// CAP_SYS_ADMIN, so counts and memory must still be exact.
func TestLeastPrivilegeIterator(t *testing.T) {
	leastPrivilege(t, "iterator", "bpf,+perfmon")
}

// TestLeastPrivilegeSyscall runs the agent as an unprivileged user holding
// only CAP_SYS_ADMIN, what the README names for syscall mode: exact too.
func TestLeastPrivilegeSyscall(t *testing.T) {
	leastPrivilege(t, "syscall", "sys_admin")
}

// leastPrivilege runs the agent once in mode as user nobody with only caps
// (setpriv's list without the first "+") and compares it with bpftool. It
// must not warn about capabilities it does not need.
func leastPrivilege(t *testing.T, mode, caps string) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 60, Programs: 10, Links: 4, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("setpriv not found; CI installs util-linux")
		}
		t.Skip("setpriv (util-linux) not found")
	}
	// The binary and its configuration must be readable by nobody.
	dir, err := os.MkdirTemp("", "ebpf-metrics-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin, cfg := filepath.Join(dir, "ebpf-metrics"), filepath.Join(dir, "config.yaml")
	data, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("max_syscalls_per_second: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	for try := 0; ; try++ {
		before := bpftoolSettled(t)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all,+"+caps, "--ambient-caps=-all,+"+caps, "--bounding-set=-all,+"+caps,
			"--", bin, "--once", "--collection.mode="+mode, "--config.file="+cfg)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("agent in %s mode with +%s only: %v\n%s", mode, caps, err, stderr.String())
		}
		if strings.Contains(stderr.String(), "capabilities that its collection does not need") {
			t.Errorf("least privilege, yet warned:\n%s", stderr.String())
		}
		// The agent's own iterators are released after it exits, partly
		// asynchronously; wait for them to go.
		after := bpftoolSettled(t)
		if before != after && try < 20 {
			continue
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(stdout.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		// The agent's own iterators exist only while it runs: bpftool,
		// before and after, does not see them.
		var got totals
		for i, k := range kinds {
			got.objects[i] = int(value(t, fams, "odigos_ebpf_objects", "type", k.label) - value(t, fams, "odigos_ebpf_own_objects", "type", k.label))
			if k.label != "link" {
				got.memory -= uint64(value(t, fams, "odigos_ebpf_own_memory_bytes", "type", k.label))
				if n := value(t, fams, "odigos_ebpf_memory_unknown_objects", "type", k.label); n != 0 {
					t.Errorf("%ss with unknown memory: %v", k.label, n)
				}
			}
			if n := value(t, fams, "odigos_ebpf_unreadable_objects", "type", k.label); n != 0 {
				t.Errorf("%ss unreadable: %v", k.label, n)
			}
		}
		got.memory += uint64(value(t, fams, "odigos_ebpf_total_memory_bytes"))
		if got != after {
			t.Fatalf("least privilege: agent %+v, bpftool %+v", got, after)
		}
		for _, k := range kinds {
			if value(t, fams, "odigos_ebpf_collection_mode", "type", k.label, "mode", mode) != 1 {
				t.Errorf("%s not read in %s mode", k.label, mode)
			}
		}
		return
	}
}
