package floor

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

func TestFloorCountsWhatTheKernelHas(t *testing.T) {
	testutil.RequireBPF(t)
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	before, err := f.Read()
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for range n {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
	}
	after, err := f.Read()
	if err != nil {
		t.Fatal(err)
	}
	// Other tests may create or release objects meanwhile; ours are there.
	if after.Objects[0] < n || after.Objects[1] < 3 || after.Objects[2] < 3 {
		t.Errorf("counts %v before, %v after creating %d maps; want at least the floor's own 3 programs and links", before.Objects, after.Objects, n)
	}
	if after.Syscalls < 9 || after.Bytes != 4*after.Total() {
		t.Errorf("pass %+v: want at least 3 calls per kind and 4 bytes per object", after)
	}
	if a := testing.AllocsPerRun(10, func() {
		if _, err := f.Read(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Read allocates %v times, want 0", a)
	}
}

func TestCloseTwice(t *testing.T) {
	testutil.RequireBPF(t)
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
