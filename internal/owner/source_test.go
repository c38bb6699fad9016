package owner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

type object struct {
	Kind kernel.Kind
	ID   uint32
}

// created is what a holder created.
func created(c *holder.Child) map[object]bool {
	m := map[object]bool{}
	for _, id := range c.Maps {
		m[object{kernel.KindMap, id}] = true
	}
	for _, ids := range [][]uint32{c.Programs, c.Helpers} {
		for _, id := range ids {
			m[object{kernel.KindProg, id}] = true
		}
	}
	for _, id := range c.Links {
		m[object{kernel.KindLink, id}] = true
	}
	return m
}

// checkHolder checks that the holdings of c's process are exactly what it
// created, each with its comm, container and pod.
func checkHolder(t *testing.T, hs []*reportedHolding, c *holder.Child) {
	t.Helper()
	want := created(c)
	got := map[object]bool{}
	for _, h := range hs {
		if h.PID != uint32(c.PID) {
			continue
		}
		o := object{h.Kind, h.ID}
		if got[o] {
			t.Errorf("%s %d held twice", o.Kind, o.ID)
		}
		got[o] = true
		if h.Comm != c.Comm || h.Container != c.ContainerID || h.Pod != c.PodUID || h.Self {
			t.Errorf("%s %d held by %+v; want comm %q, container %q, pod %q", o.Kind, o.ID, *h, c.Comm, c.ContainerID, c.PodUID)
		}
	}
	for o := range want {
		if !got[o] {
			t.Errorf("%s %d that the holder created is not among its holdings", o.Kind, o.ID)
		}
	}
	for o := range got {
		if !want[o] {
			t.Errorf("%s %d among the holder's holdings was not created by it", o.Kind, o.ID)
		}
	}
}

func reportedOf(hs []Holding) []*reportedHolding {
	out := make([]*reportedHolding, len(hs))
	for i, h := range hs {
		out[i] = toReported(h)
	}
	return out
}

// layouts are the cgroups a holder is tested in. The hybrid one needs a
// v1 cpuset hierarchy (this kind of host has one; the kernel matrix's
// guests mount cgroup2 alone).
var layouts = []struct {
	name   string
	layout holder.Layout
}{
	{"kubelet_systemd_v2", holder.LayoutKubeletSystemd},
	{"kubelet_cgroupfs_v1_hybrid", holder.LayoutKubeletCgroupfsV1},
}

func startHolder(t *testing.T, layout holder.Layout) *holder.Child {
	t.Helper()
	testutil.RequireBPF(t)
	if layout == holder.LayoutKubeletCgroupfsV1 && testutil.CpusetV1Mount() == "" {
		t.Log("no cgroup v1 cpuset hierarchy is mounted: a v2-only host has no hybrid layout")
		return nil
	}
	return holder.Start(t, holder.Spec{Maps: 12, Programs: 4, Links: 3, Layout: layout})
}

// TestIterFindsHolderContainerAndPod: the iterator source reports a
// process holding maps, programs and links in a cgroup named like a
// containerd container of a kubelet pod with its PID, comm, container and
// pod, and exactly its objects; with the cgroups read in the kernel and
// from procfs.
func TestIterFindsHolderContainerAndPod(t *testing.T) {
	for _, l := range layouts {
		for _, kernelCgroups := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/kernel_cgroups=%v", l.name, kernelCgroups), func(t *testing.T) {
				c := startHolder(t, l.layout)
				if c == nil {
					return
				}
				h, err := kernel.LoadHolders(&countingGate{}, "/proc", kernel.HolderOptions{NoKernelCgroups: !kernelCgroups})
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				g := &countingGate{}
				src, err := NewIter(h, procfsElsewhere(t), g)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				hs, pass, err := collect(src)
				if err != nil {
					t.Fatal(err)
				}
				checkHolder(t, reportedOf(hs), c)
				if pass.Processes < 2 || pass.Unreadable != 0 || pass.CgroupUnknown != 0 {
					t.Errorf("pass %+v: want the holder and this process, every cgroup known", pass)
				}
				// With the cgroups read in the kernel, no procfs file is.
				if reads := g.calls[kernel.OpProcfsRead]; kernelCgroups && reads != 0 || !kernelCgroups && reads == 0 {
					t.Errorf("kernel cgroups %v: %d procfs reads", kernelCgroups, reads)
				}
				// The agent's own iterator, held by this process.
				self := map[object]bool{}
				for _, x := range hs {
					if x.Process.Self {
						if x.Process.PID != uint32(os.Getpid()) {
							t.Errorf("self is PID %d, this process %d", x.Process.PID, os.Getpid())
						}
						self[object{x.Kind, x.ID}] = true
					}
				}
				for _, o := range h.Own() {
					if o.Kind != kernel.KindMap && !self[object{o.Kind, o.ID}] {
						t.Errorf("the holders iterator's %s %d is not among this process's holdings", o.Kind, o.ID)
					}
				}
				bpftoolAgrees(t, c)

				// A steady pass allocates nothing.
				var x Holding
				if a := testing.AllocsPerRun(5, func() {
					if err := src.Begin(); err != nil {
						t.Fatal(err)
					}
					for src.Next(&x) == nil {
					}
					src.End()
				}); a != 0 {
					t.Errorf("a steady pass allocates %v times", a)
				}
			})
		}
	}
}

// bpftoolAgrees checks bpftool's holders of c's objects, where bpftool
// finds holders at all: built with its skeletons, on a kernel with
// bpf_map_fops and the others in kallsyms (CONFIG_KALLSYMS_ALL).
func bpftoolAgrees(t *testing.T, c *holder.Child) {
	t.Helper()
	testutil.Bpftool(t, bpftool.Map) // fails in CI without bpftool
	if ok, err := bpftool.Skeletons(); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Log("bpftool was built without its skeletons (as Debian's): it reports no holders; not compared")
		return
	}
	compared := 0
	for _, k := range []struct {
		kind kernel.Kind
		tool bpftool.Kind
	}{{kernel.KindMap, bpftool.Map}, {kernel.KindProg, bpftool.Program}, {kernel.KindLink, bpftool.Link}} {
		objs := testutil.Bpftool(t, k.tool)
		for o := range created(c) {
			if o.Kind != k.kind {
				continue
			}
			b, ok := objs[o.ID]
			if !ok || b.Pids == nil {
				continue
			}
			compared++
			found := false
			for _, p := range b.Pids {
				found = found || p.PID == uint32(c.PID) && p.Comm == c.Comm
			}
			if !found {
				t.Errorf("bpftool: %s %d held by %v, not by %d (%s)", o.Kind, o.ID, b.Pids, c.PID, c.Comm)
			}
		}
	}
	if compared == 0 {
		t.Logf("bpftool reports no holders on this kernel (its iterator needs bpf_map_fops in kallsyms): not compared")
	}
}

// procfsElsewhere mounts a procfs instance on a temporary directory, as
// --path.procfs names one where a container mounts the host's.
func procfsElsewhere(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("proc", dir, "proc", 0, ""); err != nil {
		t.Fatalf("mounting procfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestProcFindsHolderContainerAndPod: the procfs source reports the same,
// from the procfs it is given.
func TestProcFindsHolderContainerAndPod(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			c := startHolder(t, l.layout)
			if c == nil {
				return
			}
			src, err := NewProc(procfsElsewhere(t), &countingGate{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			hs, pass, err := collect(src)
			if err != nil {
				t.Fatal(err)
			}
			checkHolder(t, reportedOf(hs), c)
			if pass.Processes < 1 || pass.CgroupUnknown != 0 {
				t.Errorf("pass %+v", pass)
			}
			var x Holding
			if a := testing.AllocsPerRun(5, func() {
				if err := src.Begin(); err != nil {
					t.Fatal(err)
				}
				for src.Next(&x) == nil {
				}
				src.End()
			}); a != 0 {
				t.Errorf("a steady pass allocates %v times", a)
			}
		})
	}
}

// TestLeastPrivilege: as user nobody with CAP_BPF and CAP_PERFMON only,
// the iterator source finds the holder (root's), its container and pod;
// the procfs source cannot read root's descriptors, and says so.
func TestLeastPrivilege(t *testing.T) {
	c := startHolder(t, holder.LayoutKubeletSystemd)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("setpriv not found; CI installs util-linux")
		}
		t.Skip("setpriv (util-linux) not found")
	}
	// This binary, where nobody may run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ebpf-metrics-owner")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, filepath.Base(exe))
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(mode string) ([]*reportedHolding, Pass) {
		const caps = "-all,+bpf,+perfmon"
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set="+caps, "--", bin)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", reportEnv, mode, c.PID))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s source as nobody with CAP_BPF and CAP_PERFMON: %v\n%s", mode, err, stderr.String())
		}
		var hs []*reportedHolding
		var pass Pass
		dec := json.NewDecoder(&stdout)
		for dec.More() {
			var r reported
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			if r.Holding != nil {
				hs = append(hs, r.Holding)
			}
			if r.Pass != nil {
				pass = *r.Pass
			}
		}
		return hs, pass
	}
	hs, pass := run("iter")
	checkHolder(t, hs, c)
	if pass.CgroupUnknown != 0 {
		t.Errorf("iterator as nobody: pass %+v", pass)
	}
	hs, pass = run("proc")
	if len(hs) != 0 || pass.Unreadable == 0 {
		t.Errorf("procfs as nobody: %d holdings of root's holder, pass %+v; want none, and unreadable processes counted", len(hs), pass)
	}
}

// TestProcFindsReopenedLinks: a link's descriptor opened from bpffs reads
// anon_inode:bpf-link, not bpf_link; the procfs source knows both.
func TestProcFindsReopenedLinks(t *testing.T) {
	testutil.RequireBPF(t)
	iter, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
		AttachTo: "bpf_map", License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer iter.Close()
	created, err := link.AttachIter(link.IterOptions{Program: iter})
	if err != nil {
		t.Fatal(err)
	}
	defer created.Close()
	pin := fmt.Sprintf("/sys/fs/bpf/ebpf_metrics_owner_test_%d", os.Getpid())
	if err := created.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	reopened, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	info, err := created.Info()
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewProc("/proc", &countingGate{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hs, _, err := collect(src)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range hs {
		if h.Process.Self && h.Kind == kernel.KindLink && h.ID == uint32(info.ID) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("link %d: %d holdings by this process, want 2 (created and reopened)", info.ID, n)
	}
}
