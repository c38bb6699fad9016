package kernel

import (
	"bytes"
	"fmt"
	"github.com/cilium/ebpf/btf"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

// holderPass is what one pass of Holders saw.
type holderPass struct {
	procs   map[uint32][]HolderProcessInfo // by TGID: a process record per file table
	objects map[uint32]map[OwnObject]int   // by TGID: descriptors of each object
	byTask  map[uint32]map[OwnObject]int   // by PID: the same, per file table
	cgroups map[uint64]HolderCgroupInfo    // paths copied, default hierarchy
	cgroup1 map[uint64]HolderCgroupInfo    // v1 cpuset hierarchy
	records int
}

func runHolders(t *testing.T, h *Holders) holderPass {
	t.Helper()
	p := holderPass{procs: map[uint32][]HolderProcessInfo{}, objects: map[uint32]map[OwnObject]int{},
		byTask:  map[uint32]map[OwnObject]int{},
		cgroups: map[uint64]HolderCgroupInfo{}, cgroup1: map[uint64]HolderCgroupInfo{}}
	if err := h.Begin(); err != nil {
		t.Fatal(err)
	}
	defer h.End()
	var rec HolderRecord
	cur, task := uint32(0), uint32(0)
	for {
		err := h.Next(&rec)
		if err == ErrEndOfList {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p.records++
		switch rec.Type {
		case HolderCgroup:
			c := rec.Cgroup
			c.Path = bytes.Clone(c.Path)
			if c.V1 {
				p.cgroup1[c.ID] = c
			} else {
				p.cgroups[c.ID] = c
			}
		case HolderProcess:
			cur, task = rec.Process.TGID, rec.Process.PID
			p.procs[cur] = append(p.procs[cur], rec.Process)
			if p.objects[cur] == nil {
				p.objects[cur] = map[OwnObject]int{}
			}
			if p.byTask[task] == nil {
				p.byTask[task] = map[OwnObject]int{}
			}
		case HolderFD:
			if p.objects[cur] == nil {
				t.Fatalf("%s %d before any process", rec.Kind, rec.ID)
			}
			p.objects[cur][OwnObject{rec.Kind, rec.ID}]++
			p.byTask[task][OwnObject{rec.Kind, rec.ID}]++
		}
	}
	return p
}

// childObjects is what a holder created, as a set.
func childObjects(c *holder.Child) map[OwnObject]int {
	m := map[OwnObject]int{}
	for _, id := range c.Maps {
		m[OwnObject{KindMap, id}] = 1
	}
	for _, ids := range [][]uint32{c.Programs, c.Helpers} {
		for _, id := range ids {
			m[OwnObject{KindProg, id}] = 1
		}
	}
	for _, id := range c.Links {
		m[OwnObject{KindLink, id}] = 1
	}
	return m
}

func commOf(p HolderProcessInfo) string {
	return string(bytes.TrimRight(p.Comm[:], "\x00"))
}

// TestHoldersFindsAHolderAndItsCgroup: a process holding maps, programs
// and links in a cgroup named like a containerd container of a kubelet pod
// is reported with its TGID, comm, cgroup and exactly its objects; the
// agent's own descriptors are reported as its own.
func TestHoldersFindsAHolderAndItsCgroup(t *testing.T) {
	testutil.RequireBPF(t)
	child := holder.Start(t, holder.Spec{Maps: 7, Programs: 3, Links: 2})
	g := &countingGate{}
	h, err := LoadHolders(g, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.CgroupsErr(); err != nil {
		t.Errorf("the kernel refused the iterator's cgroup reads: %v", err)
	}
	p := runHolders(t, h)

	procs := p.procs[uint32(child.PID)]
	if len(procs) != 1 {
		t.Fatalf("holder %d: %d process records, want 1 (%v)", child.PID, len(procs), procs)
	}
	proc := procs[0]
	if proc.PID != uint32(child.PID) || commOf(proc) != child.Comm || proc.Self || proc.StartNs == 0 {
		t.Errorf("holder %d (%s): record %+v", child.PID, child.Comm, proc)
	}
	if got, want := p.objects[uint32(child.PID)], childObjects(child); !mapsEqual(got, want) {
		t.Errorf("holder %d holds %v, want %v", child.PID, got, want)
	}
	if h.CgroupsErr() == nil {
		if proc.Cgroup != child.CgroupID || proc.Cgroup1 != 0 {
			t.Errorf("cgroups %d, %d; want %d (%s), 0", proc.Cgroup, proc.Cgroup1, child.CgroupID, child.Cgroup)
		}
		cg, ok := p.cgroups[proc.Cgroup]
		if !ok {
			t.Fatalf("no path for cgroup %d", proc.Cgroup)
		}
		// The last 8 components of the path under the mount.
		want := strings.Split(strings.TrimPrefix(child.Cgroup, testutil.Cgroup2Mount(t)), "/")
		complete := len(want) <= 9 // "" and 8 names
		if !complete {
			want = want[len(want)-8:]
		} else {
			want = want[1:]
		}
		t.Logf("holder %+v\ncgroup %d %q complete %v", proc, cg.ID, cg.Path, cg.Complete)
		if string(cg.Path) != "/"+strings.Join(want, "/") || cg.Complete != complete {
			t.Errorf("cgroup %d: path %q (complete %v), want %q (complete %v)", cg.ID, cg.Path, cg.Complete, "/"+strings.Join(want, "/"), complete)
		}
	}

	// The agent: itself, with its own descriptors among its objects.
	var self []HolderProcessInfo
	for _, ps := range p.procs {
		for _, pr := range ps {
			if pr.Self {
				self = append(self, pr)
			}
		}
	}
	if len(self) != 1 {
		t.Fatalf("%d records of the agent itself, want 1", len(self))
	}
	mine := p.objects[self[0].TGID]
	for _, o := range []OwnObject{{KindProg, ownID(h, KindProg)}, {KindLink, ownID(h, KindLink)}} {
		if mine[o] == 0 {
			t.Errorf("the agent's own %s %d not among its holdings %v", o.Kind, o.ID, mine)
		}
	}
	if g.calls[OpIterCreate] != 1 || g.calls[OpClose] != 1 || g.calls[OpIterRead] < 2 {
		t.Errorf("calls %v: want one iterator created, read to its end, and closed", g.calls)
	}

	// A steady pass allocates nothing.
	var rec HolderRecord
	if a := testing.AllocsPerRun(5, func() {
		if err := h.Begin(); err != nil {
			t.Fatal(err)
		}
		for h.Next(&rec) == nil {
		}
		h.End()
	}); a != 0 {
		t.Errorf("a pass allocates %v times", a)
	}
}

func ownID(h *Holders, k Kind) uint32 {
	for _, o := range h.Own() {
		if o.Kind == k {
			return o.ID
		}
	}
	return 0
}

func mapsEqual(a, b map[OwnObject]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestHoldersSendEachCgroupOnce: a cgroup's path comes in the first pass
// that meets it, not in the next, and again after ResendCgroups.
func TestHoldersSendEachCgroupOnce(t *testing.T) {
	testutil.RequireBPF(t)
	child := holder.Start(t, holder.Spec{Maps: 1})
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.CgroupsErr() != nil {
		t.Fatalf("the kernel refused the iterator's cgroup reads: %v", h.CgroupsErr())
	}
	if p := runHolders(t, h); p.cgroups[child.CgroupID].ID == 0 {
		t.Fatalf("first pass: no path for the holder's cgroup %d", child.CgroupID)
	}
	if p := runHolders(t, h); p.cgroups[child.CgroupID].ID != 0 {
		t.Errorf("second pass: the holder's cgroup sent again")
	}
	h.ResendCgroups()
	if p := runHolders(t, h); p.cgroups[child.CgroupID].ID == 0 {
		t.Errorf("after ResendCgroups: no path for the holder's cgroup")
	}
	// A pass ended half-way may have lost paths: the next sends them.
	if err := h.Begin(); err != nil {
		t.Fatal(err)
	}
	var rec HolderRecord
	h.Next(&rec)
	h.End()
	if p := runHolders(t, h); p.cgroups[child.CgroupID].ID == 0 {
		t.Errorf("after a pass ended early: no path for the holder's cgroup")
	}
}

// TestHoldersWithoutKernelCgroups: loaded without its cgroup code, the
// iterator reports processes without cgroups.
func TestHoldersWithoutKernelCgroups(t *testing.T) {
	testutil.RequireBPF(t)
	child := holder.Start(t, holder.Spec{Maps: 2, Programs: 1})
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{NoKernelCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.CgroupsErr() == nil {
		t.Error("CgroupsErr is nil")
	}
	p := runHolders(t, h)
	if len(p.cgroups) != 0 {
		t.Errorf("cgroup records %v", p.cgroups)
	}
	procs := p.procs[uint32(child.PID)]
	if len(procs) != 1 || procs[0].Cgroup != 0 || procs[0].Cgroup1 != 0 {
		t.Errorf("holder: %+v", procs)
	}
	if got, want := p.objects[uint32(child.PID)], childObjects(child); !mapsEqual(got, want) {
		t.Errorf("holder %d holds %v, want %v", child.PID, got, want)
	}
}

// TestHoldersLearnAnotherFileOperations: a BPF file whose file_operations
// is not the calibrated one (bpf_link_fops_poll, for struct_ops links) is
// known by the name of its anonymous inode, and its file_operations
// learned. Shown by making the iterator forget the links' calibrated one.
func TestHoldersLearnAnotherFileOperations(t *testing.T) {
	testutil.RequireBPF(t)
	child := holder.Start(t, holder.Spec{Links: 3})
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fops, err := h.FileOps()
	if err != nil {
		t.Fatal(err)
	}
	calibrated := fops[KindLink][0]
	fops[KindLink][0] = 1 // no file has it
	if err := h.objs.Fops.Set(fops); err != nil {
		t.Fatal(err)
	}
	p := runHolders(t, h)
	if got, want := p.objects[uint32(child.PID)], childObjects(child); !mapsEqual(got, want) {
		t.Errorf("holder %d holds %v, want %v", child.PID, got, want)
	}
	if fops, _ = h.FileOps(); fops[KindLink][1] != calibrated {
		t.Errorf("learned %#x for links, want %#x", fops[KindLink][1], calibrated)
	}
}

// TestHoldersIgnoreObjectsWithoutDescriptor: a pinned map, a map held only
// by a program and a program held only by a link have no holder; the
// program and the link holding them have.
func TestHoldersIgnoreObjectsWithoutDescriptor(t *testing.T) {
	testutil.RequireBPF(t)
	pinned := newHash(t, 0, 4)
	pin := fmt.Sprintf("/sys/fs/bpf/ebpf_metrics_test_%d", os.Getpid())
	if err := pinned.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	pinnedID := mapID(t, pinned)
	pinned.Close()

	// A program whose instructions use a map holds it.
	used := newHash(t, 0, 4)
	usedID := mapID(t, used)
	user, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "MIT", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, used.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	used.Close()
	userID := progID(t, user)

	// A link holds its program.
	iter, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
		AttachTo: "bpf_map", License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	linked, err := link.AttachIter(link.IterOptions{Program: iter})
	if err != nil {
		t.Fatal(err)
	}
	defer linked.Close()
	iterID := progID(t, iter)
	iter.Close()
	linfo, err := linked.Info()
	if err != nil {
		t.Fatal(err)
	}

	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	unheld := []OwnObject{{KindMap, pinnedID}, {KindMap, usedID}, {KindProg, iterID}}
	// Someone listing objects (bpftool) opens each of them a moment, and a
	// pass reports the holders of its moment: some pass sees none.
	for try := 0; ; try++ {
		p := runHolders(t, h)
		var held []string
		var self map[OwnObject]int
		for tgid, objs := range p.objects {
			for _, o := range unheld {
				if objs[o] > 0 {
					held = append(held, fmt.Sprintf("%s %d held by %d", o.Kind, o.ID, tgid))
				}
			}
			if p.procs[tgid][0].Self {
				self = objs
			}
		}
		if self[OwnObject{KindProg, userID}] == 0 || self[OwnObject{KindLink, uint32(linfo.ID)}] == 0 {
			t.Fatalf("the program %d and link %d this process holds are not among its holdings %v", userID, linfo.ID, self)
		}
		if len(held) == 0 {
			break
		}
		if try == 20 {
			t.Fatalf("objects with no descriptor have holders: %v", held)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mapID(tb testing.TB, m *ebpf.Map) uint32 {
	tb.Helper()
	info, err := m.Info()
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

func progID(tb testing.TB, p *ebpf.Program) uint32 {
	tb.Helper()
	info, err := p.Info()
	if err != nil {
		tb.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// TestHoldersReadTheV1Cpuset: on a hybrid host, a process that a runtime
// put in a v1 cpuset cgroup comes with that cgroup too, its path marked as
// v1's (IDs are unique within a hierarchy only).
func TestHoldersReadTheV1Cpuset(t *testing.T) {
	testutil.RequireBPF(t)
	mnt := testutil.CpusetV1Mount()
	if mnt == "" {
		t.Log("no cgroup v1 cpuset hierarchy is mounted: a v2-only host has no hybrid layout")
		return
	}
	child := holder.Start(t, holder.Spec{Maps: 1, Layout: holder.LayoutKubeletCgroupfsV1})
	var st unix.Stat_t
	if err := unix.Stat(child.Cgroup1, &st); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := runHolders(t, h)
	procs := p.procs[uint32(child.PID)]
	if len(procs) != 1 || procs[0].Cgroup != child.CgroupID || procs[0].Cgroup1 != st.Ino {
		t.Fatalf("holder: %+v; want cgroups %d and %d", procs, child.CgroupID, st.Ino)
	}
	cg, ok := p.cgroup1[st.Ino]
	want := strings.TrimPrefix(child.Cgroup1, mnt)
	if !ok || !cg.V1 || string(cg.Path) != want || !cg.Complete {
		t.Errorf("v1 cgroup %d: %+v (path %q), want path %q", st.Ino, cg, cg.Path, want)
	}
	if c, ok := p.cgroups[child.CgroupID]; !ok || c.V1 || !strings.HasSuffix(string(c.Path), "/system.slice/containerd.service") {
		t.Errorf("v2 cgroup %d: %+v (path %q)", child.CgroupID, c, c.Path)
	}
}

// TestHoldersThreadWithItsOwnFileTable: the iterator walks one file table
// per process, skipping the threads that share their leader's; a thread
// with a table of its own (unshare(CLONE_FILES)) comes as a second record
// of the same TGID, named by the group leader's comm.
func TestHoldersThreadWithItsOwnFileTable(t *testing.T) {
	testutil.RequireBPF(t)
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	type thread struct {
		tid   int
		mapID uint32
		err   error
	}
	ready, release, done := make(chan thread), make(chan struct{}), make(chan struct{})
	own := func() {
		defer close(done)
		// Never unlocked: the thread, and its file table, end with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			ready <- thread{err: err}
			return
		}
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("own-files\x00")[0])), 0, 0, 0); err != nil {
			ready <- thread{err: err}
			return
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			ready <- thread{err: err}
			return
		}
		defer m.Close() // on this thread, in its table
		// Not m.Info(), which reads /proc/self/fdinfo: the leader's table.
		info := new(MapInfo)
		if err := MapInfoByFD(m.FD(), info); err != nil {
			ready <- thread{err: err}
			return
		}
		ready <- thread{tid: unix.Gettid(), mapID: info.ID}
		<-release
	}
	// Not on the main thread, which is the group leader and never ends:
	// while one goroutine holds it, another gets a thread of its own.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if unix.Gettid() != unix.Getpid() {
			own()
			return
		}
		inner := make(chan struct{})
		go func() {
			defer close(inner)
			own()
		}()
		<-inner
	}()
	th := <-ready
	if th.err != nil {
		t.Fatal(th.err)
	}
	p := runHolders(t, h)
	close(release)
	<-done

	pid := uint32(os.Getpid())
	procs := p.procs[pid]
	if len(procs) != 2 {
		t.Fatalf("%d records for this process (%+v), want 2: its leader's table and the thread's", len(procs), procs)
	}
	for _, pr := range procs {
		if pr.PID != pid && pr.PID != uint32(th.tid) || !pr.Self || pr.Comm != procs[0].Comm {
			t.Errorf("record %+v: want PID %d or %d, self, the leader's comm", pr, pid, th.tid)
		}
	}
	o := OwnObject{KindMap, th.mapID}
	if p.byTask[uint32(th.tid)][o] != 1 || p.byTask[pid][o] != 0 {
		t.Errorf("map %d: held %d times by thread %d, %d times by the leader; want once, by the thread",
			th.mapID, p.byTask[uint32(th.tid)][o], th.tid, p.byTask[pid][o])
	}
}

// TestHoldersFindReopenedLinksByName: a link's descriptor opened from
// bpffs is named bpf-link, not bpf_link; with neither file_operations of
// links known (nor learned), both are still known by name.
func TestHoldersFindReopenedLinksByName(t *testing.T) {
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
	pin := fmt.Sprintf("/sys/fs/bpf/ebpf_metrics_test_link_%d", os.Getpid())
	if err := created.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	cinfo, err := created.Info()
	if err != nil {
		t.Fatal(err)
	}
	reopened, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	created.Close() // the pin holds the link
	if target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", reopened.(interface{ FD() int }).FD())); target != "anon_inode:"+reopenedLinkName {
		t.Fatalf("the reopened link's descriptor reads %q", target)
	}

	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fops, err := h.FileOps()
	if err != nil {
		t.Fatal(err)
	}
	fops[KindLink] = [2]uint64{1, 2} // no file has them; and nothing to learn
	if err := h.objs.Fops.Set(fops); err != nil {
		t.Fatal(err)
	}
	p := runHolders(t, h)
	mine := p.objects[uint32(os.Getpid())]
	if n := mine[OwnObject{KindLink, uint32(cinfo.ID)}]; n != 1 {
		t.Errorf("link %d, reopened (bpf-link): %d descriptors found in this process, want 1", cinfo.ID, n)
	}
	if own := (OwnObject{KindLink, ownID(h, KindLink)}); mine[own] != 1 {
		t.Errorf("the iterator's own link %d (bpf_link): %d descriptors found, want 1", own.ID, mine[own])
	}
}

func TestHoldersCloseTwiceThenBegin(t *testing.T) {
	testutil.RequireBPF(t)
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Begin(); err != errHoldersClosed {
		t.Errorf("Begin after Close: %v, want %v", err, errHoldersClosed)
	}
}

// TestHoldersCalibrateOnTheAgentsFilesOnly: where the kernel can limit a
// task iterator to one process (union bpf_iter_link_info has its task
// member, Linux 6.1), calibrating walks the agent's own files only, not
// every descriptor on the node; elsewhere it walks them all, as before.
func TestHoldersCalibrateOnTheAgentsFilesOnly(t *testing.T) {
	testutil.RequireBPF(t)
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var linfo *btf.Union
	if err := spec.TypeByName("bpf_iter_link_info", &linfo); err != nil {
		t.Fatal(err)
	}
	want := CalibrationEveryProcess
	for _, m := range linfo.Members {
		if m.Name == "task" {
			want = CalibrationOwnProcess
		}
	}
	child := holder.Start(t, holder.Spec{Maps: 1, Programs: 1})
	h, err := LoadHolders(&countingGate{}, "/proc", HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.CalibrationScope(); got != want {
		t.Errorf("calibration walked %q, want %q", got, want)
	}
	// Calibrated on its own files, the iterator still finds another
	// process's.
	if got, want := runHolders(t, h).objects[uint32(child.PID)], childObjects(child); !mapsEqual(got, want) {
		t.Errorf("holder %d holds %v, want %v", child.PID, got, want)
	}
}
