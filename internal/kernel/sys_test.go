package kernel

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

func newHash(tb testing.TB, flags uint32, max uint32) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_hash", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: max, Flags: flags})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

func newProg(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_prog", Type: ebpf.SocketFilter, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func ids(tb testing.TB, k Kind) []uint32 {
	var out []uint32
	var id uint32
	for {
		next, err := NextID(k, id)
		if err == ErrEndOfList {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, next)
		id = next
	}
}

func TestNextIDListsNewMapAndInfoMatches(t *testing.T) {
	testutil.RequireBPF(t)
	m := newHash(t, 0, 16)
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := info.ID()
	found := false
	for _, id := range ids(t, KindMap) {
		found = found || id == uint32(want)
	}
	if !found {
		t.Fatalf("map %d not listed", want)
	}
	fd, err := FDByID(KindMap, uint32(want))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	var mi MapInfo
	if err := MapInfoByFD(fd, &mi); err != nil {
		t.Fatal(err)
	}
	if mi.ID != uint32(want) || MapType(mi.Type) != MapTypeHash || mi.KeySize != 4 || mi.ValueSize != 8 || mi.MaxEntries != 16 {
		t.Fatalf("info %+v", mi)
	}
	r := fdinfoReader(t)
	var fi FDInfo
	if err := r.Read(fd, &fi); err != nil {
		t.Fatal(err)
	}
	if fi.Has&HasMemlock == 0 || fi.Memlock == 0 {
		t.Fatalf("no memlock: %+v", fi)
	}
	// The fd we opened read-only must refuse writes.
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDONLY {
		t.Fatalf("map fd opened with flags %#x, want read-only", fl)
	}
}

func TestGoneAndEndOfList(t *testing.T) {
	testutil.RequireBPF(t)
	m := newHash(t, 0, 1)
	info, _ := m.Info()
	id, _ := info.ID()
	m.Close()
	// The map is released asynchronously (RCU); wait until its ID is gone.
	for i := 0; ; i++ {
		fd, err := FDByID(KindMap, uint32(id))
		if err == nil {
			Close(fd)
			if i > 1000 {
				t.Fatal("closed map still reachable")
			}
			continue
		}
		if !Gone(err) {
			t.Fatalf("got %v, want ENOENT", err)
		}
		break
	}
	if _, err := NextID(KindMap, 1<<31-2); !errors.Is(err, ErrEndOfList) {
		t.Fatalf("NextID past the end: %v", err)
	}
}

func TestProgAndLinkInfo(t *testing.T) {
	testutil.RequireBPF(t)
	p := newProg(t)
	info, _ := p.Info()
	id, _ := info.ID()
	fd, err := FDByID(KindProg, uint32(id))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	var pi ProgInfo
	if err := ProgInfoByFD(fd, &pi, nil); err != nil {
		t.Fatal(err)
	}
	if ProgType(pi.Type) != ProgTypeSocketFilter || pi.ID != uint32(id) || TypeName(KindProg, pi.Type) != "socket_filter" {
		t.Fatalf("prog info %+v", pi)
	}
	var fi FDInfo
	if err := fdinfoReader(t).Read(fd, &fi); err != nil || fi.Memlock != uint64(os.Getpagesize()) {
		t.Fatalf("prog memlock %d (err %v), want one page", fi.Memlock, err)
	}
}

func TestCyclePathsAllocateNothing(t *testing.T) {
	testutil.RequireBPF(t)
	m := newHash(t, 0, 16)
	info, _ := m.Info()
	id, _ := info.ID()
	mi := new(MapInfo)
	r := fdinfoReader(t)
	fi := new(FDInfo)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := NextID(KindMap, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := NextID(KindMap, 1<<31-2); err != ErrEndOfList {
			t.Fatal(err)
		}
		fd, err := FDByID(KindMap, uint32(id))
		if err != nil {
			t.Fatal(err)
		}
		if err := MapInfoByFD(fd, mi); err != nil {
			t.Fatal(err)
		}
		if err := r.Read(fd, fi); err != nil {
			t.Fatal(err)
		}
		Close(fd)
		if _, err := FDByID(KindMap, 1<<31-2); !Gone(err) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per object, want 0", allocs)
	}
}
