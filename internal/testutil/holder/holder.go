// Package holder starts holders for tests: child processes, the test
// binary run again, that create maps, programs and links with loadgen and
// hold them, in a cgroup named like a container of a kubelet pod. A test
// package that starts holders calls RunIfChild first thing in its TestMain.
package holder

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// holderEnv carries "maps,programs,links" to the child.
const holderEnv = "EBPF_METRICS_TEST_HOLDER"

// RunIfChild makes the process a holder, and exits with it, when it
// was started as one by Start; otherwise it returns at once.
func RunIfChild() {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		return
	}
	os.Exit(holderChild(spec))
}

// holderReady is the line a holder prints once its objects exist.
type holderReady struct {
	PID      int      `json:"pid"`
	Maps     []uint32 `json:"maps"`
	Programs []uint32 `json:"programs"`
	Helpers  []uint32 `json:"helpers"`
	Links    []uint32 `json:"links"`
}

func holderChild(spec string) int {
	var s loadgen.Spec
	if _, err := fmt.Sscanf(spec, "%d,%d,%d", &s.Maps, &s.Programs, &s.Links); err != nil {
		fmt.Fprintf(os.Stderr, "holder: bad %s=%q: %v\n", holderEnv, spec, err)
		return 2
	}
	pop, err := loadgen.Create(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "holder: %v\n", err)
		return 1
	}
	defer pop.Close()
	err = json.NewEncoder(os.Stdout).Encode(holderReady{
		PID: os.Getpid(), Maps: pop.MapIDs(), Programs: pop.ProgramIDs(),
		Helpers: pop.HelperProgramIDs(), Links: pop.LinkIDs(),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "holder: %v\n", err)
		return 1
	}
	// Hold until the test closes stdin (or dies).
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// Layout is where Start puts its child.
type Layout int

const (
	// LayoutKubeletSystemd: a cgroup v2 named as containerd names a
	// container of a pod under kubelet's systemd driver:
	// .../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid with underscores>.slice/cri-containerd-<id>.scope
	LayoutKubeletSystemd Layout = iota
	// LayoutKubeletCgroupfsV1: a hybrid host with kubelet's cgroupfs
	// driver: in v1's cpuset hierarchy .../kubepods/besteffort/pod<uid>/<id>,
	// in v2 the runtime's own service, .../system.slice/containerd.service.
	LayoutKubeletCgroupfsV1
)

// Spec says what Start's child holds and where it runs.
type Spec struct {
	Maps, Programs, Links int
	Layout                Layout
}

// Child is a running holder.
type Child struct {
	PID  int
	Comm string // what the kernel calls it: the test binary's name, 15 bytes at most
	// The objects it created: Programs are the socket filters asked for;
	// Helpers the iterator program its links share.
	Maps, Programs, Helpers, Links []uint32
	ContainerID, PodUID            string
	// Cgroup is its cgroup v2 directory and CgroupID that directory's
	// inode number, the kernel's cgroup ID; Cgroup1 its v1 cpuset
	// directory, for LayoutKubeletCgroupfsV1.
	Cgroup   string
	CgroupID uint64
	Cgroup1  string
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Start starts a holder in a new cgroup laid out as spec says; the
// child is stopped and the cgroups removed at the end of the test. It
// needs root.
func Start(tb testing.TB, spec Spec) *Child {
	tb.Helper()
	testutil.RequireBPF(tb)
	u := randomHex(tb, 16)
	h := &Child{
		ContainerID: randomHex(tb, 32),
		PodUID:      u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:],
	}
	top := "ebpf-metrics-test-" + randomHex(tb, 4)
	var v2 []string
	switch spec.Layout {
	case LayoutKubeletSystemd:
		v2 = []string{top, "kubepods.slice", "kubepods-besteffort.slice",
			"kubepods-besteffort-pod" + strings.ReplaceAll(h.PodUID, "-", "_") + ".slice",
			"cri-containerd-" + h.ContainerID + ".scope"}
	case LayoutKubeletCgroupfsV1:
		v2 = []string{top, "system.slice", "containerd.service"}
	}
	h.Cgroup = testutil.MakeCgroup(tb, testutil.Cgroup2Mount(tb), v2, false)
	var st unix.Stat_t
	if err := unix.Stat(h.Cgroup, &st); err != nil {
		tb.Fatal(err)
	}
	h.CgroupID = st.Ino
	if spec.Layout == LayoutKubeletCgroupfsV1 {
		mnt := testutil.CpusetV1Mount()
		if mnt == "" {
			tb.Fatal("no cgroup v1 cpuset hierarchy is mounted")
		}
		h.Cgroup1 = testutil.MakeCgroup(tb, mnt, []string{top, "kubepods", "besteffort", "pod" + h.PodUID, h.ContainerID}, true)
	}

	cg, err := os.Open(h.Cgroup)
	if err != nil {
		tb.Fatal(err)
	}
	defer cg.Close()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%d", holderEnv, spec.Maps, spec.Programs, spec.Links))
	cmd.Stderr = os.Stderr
	// Born in its cgroup (clone3's CLONE_INTO_CGROUP), killed with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting a holder in %s: %v", h.Cgroup, err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	var ready holderReady
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		tb.Fatalf("holder: no ready line: %v", err)
	}
	if err := json.Unmarshal(line, &ready); err != nil {
		tb.Fatalf("holder: %q: %v", line, err)
	}
	h.PID, h.Maps, h.Programs, h.Helpers, h.Links = ready.PID, ready.Maps, ready.Programs, ready.Helpers, ready.Links
	h.Comm = filepath.Base(exe)
	if len(h.Comm) > 15 {
		h.Comm = h.Comm[:15]
	}
	if h.Cgroup1 != "" {
		if err := os.WriteFile(filepath.Join(h.Cgroup1, "cgroup.procs"), []byte(fmt.Sprint(h.PID)), 0); err != nil {
			tb.Fatalf("moving the holder into %s: %v", h.Cgroup1, err)
		}
	}
	return h
}
