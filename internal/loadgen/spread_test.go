package loadgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// heldBy returns the BPF objects process pid holds a descriptor of, as
// "map 12", "prog 7", "link 3", read from procfs.
func heldBy(t *testing.T, pid int) map[string]int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d", pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, "fd", e.Name()))
		if err != nil || !strings.HasPrefix(target, "anon_inode:bpf") {
			continue
		}
		info, err := os.ReadFile(filepath.Join(dir, "fdinfo", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(info), "\n") {
			key, val, _ := strings.Cut(line, ":\t")
			switch {
			case key == "map_id" && target == "anon_inode:bpf-map",
				key == "prog_id" && target == "anon_inode:bpf-prog",
				key == "link_id" && target == "anon_inode:bpf_link":
				held[strings.TrimSuffix(key, "_id")+" "+val]++
			}
		}
	}
	return held
}

func TestSpreadOverProcesses(t *testing.T) {
	testutil.RequireBPF(t)
	p, err := Create(Spec{Maps: 10, Programs: 4, Links: 3, Processes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	want := map[string]int{}
	for _, id := range p.MapIDs() {
		want["map "+strconv.Itoa(int(id))] = 1
	}
	for _, id := range append(p.ProgramIDs(), p.HelperProgramIDs()...) {
		want["prog "+strconv.Itoa(int(id))] = 1
	}
	for _, id := range p.LinkIDs() {
		want["link "+strconv.Itoa(int(id))] = 1
	}
	pids := p.HolderPIDs()
	if len(pids) != 4 {
		t.Fatalf("holders %v, want 4", pids)
	}
	got := map[string]int{}
	for _, pid := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != HolderComm {
			t.Errorf("holder %d: comm %q, %v", pid, comm, err)
		}
		held := heldBy(t, pid)
		// 18 objects over 4 processes: 4 or 5 each.
		if n := len(held); n < 4 || n > 5 {
			t.Errorf("holder %d holds %d objects: %v", pid, n, held)
		}
		for o, n := range held {
			got[o] += n
		}
	}
	for o := range want {
		if got[o] != 1 {
			t.Errorf("%s held %d times by the holders, want once", o, got[o])
		}
	}
	for o := range heldBy(t, os.Getpid()) {
		if want[o] > 0 {
			t.Errorf("%s still held by this process", o)
		}
	}
	if m, err := p.MemlockBytes(); err != nil || m == 0 {
		t.Errorf("MemlockBytes after spreading: %d, %v", m, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); err != unix.ESRCH {
			t.Errorf("holder %d still there after Close: %v", pid, err)
		}
	}
}
