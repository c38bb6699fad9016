package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// build compiles ebpf-loadgen into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "ebpf-loadgen")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lineWriter collects the output of a running process, readable while it
// runs, and closes ready at the first end of line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	done  bool
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if !w.done && bytes.IndexByte(w.buf.Bytes(), '\n') >= 0 {
		w.done = true
		close(w.ready)
	}
	return len(b), nil
}

// String returns everything written so far.
func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// exitCode runs bin with args and returns its exit status and stderr.
func exitCode(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func TestHoldAndRelease(t *testing.T) {
	testutil.RequireBPF(t)
	bin := build(t)

	stdout := &lineWriter{ready: make(chan struct{})}
	stderr := &lineWriter{ready: make(chan struct{})} // read while it runs: needs the lock
	cmd := exec.Command(bin, "--maps", "12", "--programs", "4", "--links", "3", "--fill", "0.25")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // fails harmlessly once it has exited
		<-exited
	})

	select {
	case <-stdout.ready:
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("exited before the ready line: %v; stderr: %s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line within 30s; stderr: %s", stderr.String())
	}
	line, _, _ := strings.Cut(stdout.String(), "\n")
	line += "\n"

	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &keys); err != nil {
		t.Fatalf("ready line %q: %v (stderr: %s)", line, err, stderr.String())
	}
	for _, k := range []string{"ready", "pid", "maps", "programs", "links", "helper_programs", "fill",
		"memlock_bytes", "map_ids", "program_ids", "helper_program_ids", "link_ids", "create_seconds"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("ready line has no %q: %s", k, line)
		}
	}
	var got ready
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Ready || got.PID != cmd.Process.Pid || got.Maps != 12 || got.Programs != 4 || got.Links != 3 ||
		got.HelperPrograms != 1 || got.Fill != 0.25 || got.MemlockBytes == 0 || got.CreateSeconds <= 0 ||
		len(got.MapIDs) != 12 || len(got.ProgramIDs) != 4 || len(got.HelperProgramIDs) != 1 || len(got.LinkIDs) != 3 {
		t.Errorf("ready line %s does not describe the population asked for (pid %d)", line, cmd.Process.Pid)
	}

	progIDs := append(slices.Clone(got.ProgramIDs), got.HelperProgramIDs...)
	var memlock uint64
	for _, c := range []struct {
		kind  bpftool.Kind
		ids   []uint32
		check func(bpftool.Object) bool
	}{
		{bpftool.Map, got.MapIDs, func(o bpftool.Object) bool { return strings.HasPrefix(o.Name, "lg_m_") }},
		{bpftool.Program, got.ProgramIDs, func(o bpftool.Object) bool {
			return o.Type == "socket_filter" && strings.HasPrefix(o.Name, "lg_p_")
		}},
		{bpftool.Program, got.HelperProgramIDs, func(o bpftool.Object) bool { return o.Type == "tracing" }},
		{bpftool.Link, got.LinkIDs, func(o bpftool.Object) bool {
			return o.Type == "iter" && slices.Contains(got.HelperProgramIDs, o.ProgID)
		}},
	} {
		objs, err := bpftool.Show(c.kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range c.ids {
			o, ok := objs[id]
			if !ok || !c.check(o) {
				t.Errorf("%s %d: bpftool has %+v (listed: %v)", c.kind, id, o, ok)
			}
			memlock += o.BytesMemlock
		}
	}
	if memlock != got.MemlockBytes {
		t.Errorf("memlock_bytes = %d, bpftool's bytes_memlock sum = %d", got.MemlockBytes, memlock)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("after SIGTERM: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM; stderr: %s", stderr.String())
	}
	if all := stdout.String(); all != line {
		t.Errorf("stdout has more than the ready line: %q", all)
	}
	for _, c := range []struct {
		kind bpftool.Kind
		ids  []uint32
	}{{bpftool.Link, got.LinkIDs}, {bpftool.Program, progIDs}, {bpftool.Map, got.MapIDs}} {
		left, err := bpftool.WaitGone(c.kind, c.ids, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("%s IDs %v still present after exit", c.kind, left)
		}
	}
}

func TestBadFlags(t *testing.T) {
	bin := build(t)
	for _, args := range [][]string{
		{"--maps", "-1"},
		{"--maps=-1"},
		{"--programs=-5"},
		{"--links", "many"},
		{"--maps", "1.5"},
		{"--fill", "1.5"},
		{"--fill=-0.1"},
		{"--fill", "NaN"},
		{"--fill", "half"},
	} {
		code, stderr := exitCode(t, bin, args...)
		flag, _, _ := strings.Cut(strings.TrimPrefix(args[0], "--"), "=")
		if code != 2 || !strings.Contains(stderr, "--"+flag) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and a message naming --%s", args, code, stderr, flag)
		}
	}
	for _, args := range [][]string{{"--no-such-flag"}, {"extra-argument"}} {
		if code, stderr := exitCode(t, bin, args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and a message", args, code, stderr)
		}
	}
	if code, stderr := exitCode(t, bin, "--help"); code != 0 || !strings.Contains(stderr, "--maps") {
		t.Errorf("--help: exit %d, stderr %q; want exit 0 and the usage", code, stderr)
	}
}

// TestTooManyObjects checks that a population over RLIMIT_NOFILE fails early
// (before any bpf call) with exit 1 and a message naming the limit.
func TestTooManyObjects(t *testing.T) {
	bin := build(t)
	code, stderr := exitCode(t, bin, "--maps", "1073741824")
	if code != 1 || !strings.Contains(stderr, "RLIMIT_NOFILE") {
		t.Errorf("exit %d, stderr %q; want exit 1 and a message naming RLIMIT_NOFILE", code, stderr)
	}
}
