package floor

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// ownBPFDescriptors counts this process's descriptors of maps, programs
// and links.
func ownBPFDescriptors(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		switch strings.TrimPrefix(target, "anon_inode:") {
		case "bpf-map", "bpf-prog", "bpf_link":
			n++
		}
	}
	return n
}

func TestTaskFilesCountsDescriptors(t *testing.T) {
	testutil.RequireBPF(t)
	h, err := kernel.LoadHolders(&nopGate{}, "/proc", kernel.HolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fops, err := h.FileOps()
	if err != nil {
		t.Fatal(err)
	}
	f, err := LoadTaskFiles(fops)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 5 {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
	}
	// Other processes may hold more; this one's are there.
	own := ownBPFDescriptors(t)
	ids, calls, err := f.Read()
	if err != nil {
		t.Fatal(err)
	}
	if ids < own || calls < 3 {
		t.Errorf("%d descriptors in %d calls; this process alone holds %d", ids, calls, own)
	}
	if a := testing.AllocsPerRun(10, func() {
		if _, _, err := f.Read(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Read allocates %v times, want 0", a)
	}
}

type nopGate struct{}

func (nopGate) Acquire(kernel.Op) error                       { return nil }
func (nopGate) Release(kernel.Op, kernel.Kind, uint32, error) {}
