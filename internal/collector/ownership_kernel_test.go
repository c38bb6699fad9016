package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

// ownerOf is the owner the last cycle gave object (k, id): its comm, or
// "" for no one, or "other".
func ownerOf(c *Collector, k kernel.Kind, id uint32) string {
	o := &c.attr
	ref, ok := o.held[k].Lookup(id)
	if !ok && k == kernel.KindProg {
		ref, ok = o.viaProg.Lookup(id)
	}
	if !ok && k == kernel.KindMap {
		ref, ok = o.viaMap.Lookup(id)
	}
	switch {
	case !ok:
		return ""
	case ref.Owner < 0:
		return "other"
	}
	key := o.owners.Key(ref.Owner)
	return string(trimNUL(key.Comm[:]))
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// TestKernelOwnership: a process holding maps, programs and links in a
// cgroup named like a containerd container of a kubelet pod owns exactly
// them, with its comm, container ID and pod UID, and their memory as
// bpftool has it; a map held only through a program goes to the program's
// holder, a program held only through a link to the link's holder; a
// pinned map no process holds has no owner; and the owners sum exactly to
// the totals. In each collection mode (holders from the iterator, or from
// procfs in syscall mode).
func TestKernelOwnership(t *testing.T) {
	testutil.RequireBPF(t)
	child := holder.Start(t, holder.Spec{Maps: 6, Programs: 3, Links: 2})

	// A map held only through a program of this process.
	inner, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_via_prog", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_uses_map", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.LoadMapPtr(asm.R1, inner.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	viaProg := objectID(t, inner)
	inner.Close()

	// A program held only through a link of this process.
	iter, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_via_link", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter,
		AttachTo: "bpf_map", License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachIter(link.IterOptions{Program: iter})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	viaLink := programID(t, iter)
	iter.Close()

	// A pinned map no process holds.
	pin := pinnedMap(t)

	self := filepath.Base(os.Args[0])
	if len(self) > 15 {
		self = self[:15]
	}
	for _, mode := range []string{config.ModeAuto, config.ModeSyscall} {
		t.Run(mode, func(t *testing.T) {
			opts := kernelConfig(t, mode)
			c, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, _, _ := cycleMatchingBpftool(t, c)
			if !s.Features[snapshot.FeatureOwnership] {
				t.Fatal("no ownership")
			}
			maps, progs := testutil.Bpftool(t, bpftool.Map), testutil.Bpftool(t, bpftool.Program)
			var want snapshot.Owner
			want.Objects = [kernel.NumKinds]uint64{uint64(len(child.Maps)), uint64(len(child.Programs) + len(child.Helpers)), uint64(len(child.Links))}
			for _, id := range child.Maps {
				want.MemoryBytes += maps[id].BytesMemlock
			}
			for _, id := range append(append([]uint32{}, child.Programs...), child.Helpers...) {
				want.MemoryBytes += progs[id].BytesMemlock
			}
			got, ok := findOwner(&s.Owners, child.Comm, child.ContainerID, child.PodUID)
			if !ok {
				t.Fatalf("no owner %q in container %s of pod %s among %d", child.Comm, child.ContainerID, child.PodUID, s.Owners.N)
			}
			if got.Objects != want.Objects || got.MemoryBytes != want.MemoryBytes {
				t.Errorf("the holder owns %v objects, %d bytes; it created %v, %d bytes", got.Objects, got.MemoryBytes, want.Objects, want.MemoryBytes)
			}
			for _, tc := range []struct {
				what string
				k    kernel.Kind
				id   uint32
				want string
			}{
				{"a map held through a program", kernel.KindMap, viaProg, self},
				{"a program held through a link", kernel.KindProg, viaLink, self},
				{"a pinned map", kernel.KindMap, pin, ""},
				{"the holder's map", kernel.KindMap, child.Maps[0], child.Comm},
			} {
				if got := ownerOf(c, tc.k, tc.id); got != tc.want {
					t.Errorf("%s (%s %d): owner %q, want %q", tc.what, tc.k, tc.id, got, tc.want)
				}
			}
			checkOwnersSum(t, &s)
		})
	}
}

// checkOwnersSum: the owners' rows, other and no one sum to the kinds'
// objects and memory exactly.
func checkOwnersSum(t *testing.T, s *snapshot.Snapshot) {
	t.Helper()
	var sum snapshot.Owner
	add := func(w *snapshot.Owner) {
		for k := range w.Objects {
			sum.Objects[k] += w.Objects[k]
		}
		sum.MemoryBytes += w.MemoryBytes
	}
	for i := range s.Owners.N {
		add(&s.Owners.Rows[i])
	}
	add(&s.Owners.Other)
	add(&s.Owners.None)
	var memory uint64
	for k := range kernel.NumKinds {
		memory += s.Kinds[k].MemoryBytes
		if sum.Objects[k] != s.Kinds[k].Objects {
			t.Errorf("%ss: owners sum to %d, the kind has %d", kernel.Kind(k), sum.Objects[k], s.Kinds[k].Objects)
		}
	}
	if sum.MemoryBytes != memory {
		t.Errorf("owners' memory sums to %d, total %d", sum.MemoryBytes, memory)
	}
}

func findOwner(o *snapshot.Owners, comm, container, pod string) (snapshot.Owner, bool) {
	for i := range o.N {
		w := &o.Rows[i]
		if string(trimNUL(w.Comm[:])) == comm && string(trimNUL(w.ContainerID[:])) == container &&
			string(trimNUL(w.PodUID[:])) == pod {
			return *w, true
		}
	}
	return snapshot.Owner{}, false
}

func objectID(t *testing.T, m *ebpf.Map) uint32 {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

func programID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// pinnedMap pins a map in a bpffs of the test's own, closes it, and
// returns its ID; the pin, hence the map, goes at the end of the test.
func pinnedMap(t *testing.T) uint32 {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mounting a bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_pinned", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(filepath.Join(dir, "t_pinned")); err != nil {
		t.Fatal(err)
	}
	id := objectID(t, m)
	m.Close()
	return id
}

// TestKernelFirstCycleHoldersPassWhileLoading: with Options.FirstCycle, New
// takes the first cycle's holders pass as soon as the holders iterator is
// loaded, the first cycle uses it and attributes exactly, and the next
// cycle takes a pass of its own (a holder started after the first cycle
// owns its objects).
func TestKernelFirstCycleHoldersPassWhileLoading(t *testing.T) {
	testutil.RequireBPF(t)
	first := holder.Start(t, holder.Spec{Maps: 2, Programs: 1, Links: 1})
	opts := kernelConfig(t, config.ModeAuto)
	opts.FirstCycle = true
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.attr.src == nil || c.attr.src.Mode() != "iterator" {
		t.Fatalf("holders not read by the iterator: %v", c.attr.src)
	}
	if !c.attr.taken {
		t.Fatal("New did not take the first cycle's holders pass")
	}
	owns := func(h *holder.Child) {
		t.Helper()
		s := new(snapshot.Snapshot)
		c.Publisher().Load(s)
		got, ok := findOwner(&s.Owners, h.Comm, h.ContainerID, h.PodUID)
		want := [kernel.NumKinds]uint64{uint64(len(h.Maps)), uint64(len(h.Programs) + len(h.Helpers)), uint64(len(h.Links))}
		if !ok || got.Objects != want {
			t.Errorf("holder %d: owner found %v, objects %v; want %v", h.PID, ok, got.Objects, want)
		}
	}
	if err := c.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.attr.taken {
		t.Error("the first cycle left the pass taken while loading for the next")
	}
	owns(first)
	second := holder.Start(t, holder.Spec{Maps: 1, Programs: 1})
	if err := c.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	owns(first)
	owns(second)
}
