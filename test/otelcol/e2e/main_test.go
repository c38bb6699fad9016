// Package e2e runs the agent against a real OpenTelemetry Collector (the
// one of the module above, built from the upstream receiver and pipeline)
// and checks that what the Collector receives is what /metrics shows and
// what bpftool reports.
//
// It does not import the agent's module: it builds its binaries with the
// agent's own go.mod, so that neither module's dependencies constrain the
// other's. The few helpers it shares with the agent's tests (the CI rule,
// the bpftool oracle) are small enough to repeat here.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testVersion is linked into the agent as its version: build_info's version
// label, and service.version in OTLP.
const testVersion = "0.0.0-otlp-test"

var bin struct{ agent, loadgen, otelcol string }

// buildErr is why the binaries could not be built; every test fails with it.
var buildErr error

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ebpf-metrics-otelcol")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.agent = filepath.Join(dir, "ebpf-metrics")
	bin.loadgen = filepath.Join(dir, "ebpf-loadgen")
	bin.otelcol = filepath.Join(dir, "otelcol")
	root := repoRoot()
	buildErr = build(root, "-o", bin.agent, "-ldflags=-X github.com/prometheus/common/version.Version="+testVersion, "./cmd/ebpf-metrics")
	if buildErr == nil {
		buildErr = build(root, "-o", bin.loadgen, "./cmd/ebpf-loadgen")
	}
	if buildErr == nil {
		buildErr = build(filepath.Join(root, "test", "otelcol"), "-o", bin.otelcol, ".")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string, args ...string) error {
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

// repoRoot is the agent's repository: three directories above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// inCI reports whether the tests run in CI, where a test that needs root
// or bpftool must fail rather than skip.
func inCI() bool { return os.Getenv("CI") != "" }

// requireRoot skips, or fails in CI, a test that runs the agent: it loads
// BPF iterators, which needs CAP_BPF and CAP_PERFMON.
func requireRoot(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if os.Geteuid() != 0 {
		if inCI() {
			t.Fatal("CI: this test runs the agent, which needs root, and must not be skipped")
		}
		t.Skip("needs root: the agent loads BPF iterators")
	}
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// process is a command started by a test and stopped at its end.
type process struct {
	cmd    *exec.Cmd
	output *lockedBuffer
	done   chan error
}

// start runs argv with env added, and stops it (SIGKILL) at the test's end,
// logging its output if the test failed.
func start(t testing.TB, env []string, argv ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(argv[0], argv[1:]...), output: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(argv[0]), p.output)
		}
	})
	return p
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// collector is a running Collector: OTLP on gRPC and HTTP, every request
// appended to out as a line of OTLP JSON.
type collector struct {
	grpcAddr, httpAddr string
	out                string
}

func startCollector(t testing.TB) *collector {
	t.Helper()
	dir := t.TempDir()
	c := &collector{grpcAddr: freeAddr(t), httpAddr: freeAddr(t), out: filepath.Join(dir, "metrics.jsonl")}
	config := filepath.Join(dir, "config.yaml")
	// The Collector's own telemetry is off: it would listen on :8888.
	err := os.WriteFile(config, []byte(fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: %q}
      http: {endpoint: %q}
exporters:
  jsonfile: {path: %q}
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    metrics: {receivers: [otlp], exporters: [jsonfile]}
`, c.grpcAddr, c.httpAddr, c.out)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, bin.otelcol, "--config="+config)
	for _, addr := range []string{c.grpcAddr, c.httpAddr} {
		waitListening(t, p, addr)
	}
	return c
}

// waitListening waits until addr accepts connections, or p exits.
func waitListening(t testing.TB, p *process, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited: %v\n%s", p.cmd.Path, err, p.output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 30s\n%s", addr, p.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agent is a running ebpf-metrics.
type agent struct {
	*process
	addr string
}

// fastConfig lifts the default rate limit so that the cycles take
// milliseconds.
func fastConfig(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte("max_syscalls_per_second: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// startAgent runs the agent on a loopback port with args and env, and waits
// until it has completed a cycle (/-/ready).
func startAgent(t testing.TB, env []string, args ...string) *agent {
	t.Helper()
	a := &agent{addr: freeAddr(t)}
	a.process = start(t, env, append([]string{bin.agent, "--web.listen-address=" + a.addr,
		"--config.file=" + fastConfig(t)}, args...)...)
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + a.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		select {
		case err := <-a.done:
			a.done <- err
			t.Fatalf("agent exited: %v\n%s", err, a.output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after 30s\n%s", a.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startLoadgen holds a population of maps, programs and links until the
// test's end.
func startLoadgen(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(bin.loadgen, args...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	line := make(chan []byte, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadBytes('\n')
		line <- l
		io.Copy(io.Discard, r)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			t.Errorf("ebpf-loadgen: %v\n%s", err, stderr.String())
		}
	})
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := json.Unmarshal(<-line, &ready); err != nil || !ready.Ready {
		t.Fatalf("ebpf-loadgen not ready: %v\n%s", err, stderr.String())
	}
}

// bpftoolTotals is the kernel's picture as bpftool, an implementation
// independent of the agent, shows it: objects of each kind and the memory
// of maps and programs.
type bpftoolTotals struct {
	maps, programs, links int
	memory                uint64 // bytes_memlock of every map and program
}

func bpftool(t testing.TB) bpftoolTotals {
	t.Helper()
	path, err := exec.LookPath("bpftool")
	if err != nil {
		path = "/usr/sbin/bpftool"
		if _, err := os.Stat(path); err != nil {
			if inCI() {
				t.Fatal("bpftool not found; CI installs Debian's bpftool package")
			}
			t.Skip("bpftool not found (Debian package bpftool)")
		}
	}
	var totals bpftoolTotals
	for _, kind := range []string{"map", "prog", "link"} {
		var objs []struct {
			Memlock uint64 `json:"bytes_memlock"`
		}
		// bpftool fails while another process holds a link that the
		// kernel lists but lets no one open yet: retry.
		for try := 0; ; try++ {
			out, err := exec.Command(path, "-j", kind, "show").Output()
			if err == nil {
				if err = json.Unmarshal(out, &objs); err == nil {
					break
				}
			}
			if try == 20 {
				t.Fatalf("bpftool -j %s show: %v", kind, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, o := range objs {
			totals.memory += o.Memlock
		}
		switch kind {
		case "map":
			totals.maps = len(objs)
		case "prog":
			totals.programs = len(objs)
		case "link":
			totals.links = len(objs)
		}
	}
	return totals
}
