package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.uber.org/goleak"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bpftoolMapType is bpftool's name of each map type in the mix.
var bpftoolMapType = map[ebpf.MapType]string{
	ebpf.Hash:        "hash",
	ebpf.Array:       "array",
	ebpf.PerCPUHash:  "percpu_hash",
	ebpf.PerCPUArray: "percpu_array",
	ebpf.LRUHash:     "lru_hash",
	ebpf.LPMTrie:     "lpm_trie",
	ebpf.Queue:       "queue",
	ebpf.RingBuf:     "ringbuf",
	ebpf.BloomFilter: "bloom_filter",
}

// releaseTimeout bounds the wait for the kernel to free released objects.
const releaseTimeout = 5 * time.Second

func TestCreate(t *testing.T) {
	testutil.RequireBPF(t)
	fdsBefore, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Maps: 30, Programs: 10, Links: 5, Fill: 0.5}
	p, err := Create(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	if got := len(p.MapIDs()); got != spec.Maps {
		t.Errorf("%d map IDs, want %d", got, spec.Maps)
	}
	if got := len(p.ProgramIDs()); got != spec.Programs {
		t.Errorf("%d program IDs, want %d", got, spec.Programs)
	}
	if got := len(p.HelperProgramIDs()); got != 1 {
		t.Errorf("%d helper program IDs, want 1", got)
	}
	if got := len(p.LinkIDs()); got != spec.Links {
		t.Errorf("%d link IDs, want %d", got, spec.Links)
	}
	for what, ids := range map[string][]uint32{
		"map": p.MapIDs(), "program": p.ProgramIDs(), "link": p.LinkIDs(),
	} {
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Errorf("%s IDs not sorted and unique: %v", what, ids)
		}
	}

	maps, err := bpftool.Show(bpftool.Map)
	if err != nil {
		t.Fatal(err)
	}
	progs, err := bpftool.Show(bpftool.Program)
	if err != nil {
		t.Fatal(err)
	}
	links, err := bpftool.Show(bpftool.Link)
	if err != nil {
		t.Fatal(err)
	}

	var wantMemlock uint64
	kinds := map[string]int{}
	for _, d := range p.Maps() {
		o, ok := maps[d.ID]
		if !ok {
			t.Errorf("map %d (%s) not listed by bpftool", d.ID, d.Name)
			continue
		}
		wantMemlock += o.BytesMemlock
		kinds[o.Type]++
		if o.Type != bpftoolMapType[d.Type] || o.Name != d.Name || o.Flags != d.Flags ||
			o.KeySize != d.KeySize || o.ValueSize != d.ValueSize || o.MaxEntries != d.MaxEntries {
			t.Errorf("map %d: bpftool has %+v, loadgen says %+v", d.ID, o, d)
		}
		var n int
		if _, err := fmt.Sscanf(d.Name, "lg_m_%d", &n); err != nil {
			t.Errorf("map %d: name %q: %v", d.ID, d.Name, err)
		} else if kind := MapKinds[n%len(MapKinds)]; kind.Type != d.Type || kind.Flags != d.Flags {
			t.Errorf("map %s is %s flags %#x, want the cycle's %s flags %#x", d.Name, d.Type, d.Flags, kind.Type, kind.Flags)
		}
	}
	for _, typ := range bpftoolMapType {
		if want := spec.Maps / len(MapKinds); kinds[typ] < want {
			t.Errorf("%d maps of type %s, want at least %d", kinds[typ], typ, want)
		}
	}

	var names []string
	for _, id := range p.ProgramIDs() {
		o, ok := progs[id]
		if !ok {
			t.Errorf("program %d not listed by bpftool", id)
			continue
		}
		wantMemlock += o.BytesMemlock
		names = append(names, o.Name)
		if o.Type != "socket_filter" {
			t.Errorf("program %d has type %q, want socket_filter", id, o.Type)
		}
	}
	slices.Sort(names)
	var wantNames []string
	for n := range spec.Programs {
		wantNames = append(wantNames, fmt.Sprintf("lg_p_%d", n))
	}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("program names %v, want %v", names, wantNames)
	}
	helper := p.HelperProgramIDs()[0]
	if o, ok := progs[helper]; !ok || o.Type != "tracing" || o.Name != "lg_iter" {
		t.Errorf("helper program %d: bpftool has %+v (listed: %v), want tracing lg_iter", helper, o, ok)
	} else {
		wantMemlock += o.BytesMemlock
	}
	for _, id := range p.LinkIDs() {
		o, ok := links[id]
		if !ok {
			t.Errorf("link %d not listed by bpftool", id)
			continue
		}
		if o.Type != "iter" || o.ProgID != helper || o.TargetName != "bpf_map" {
			t.Errorf("link %d: bpftool has %+v, want an iter link of program %d on bpf_map", id, o, helper)
		}
	}

	memlock, err := p.MemlockBytes()
	if err != nil {
		t.Fatal(err)
	}
	if memlock != wantMemlock || memlock == 0 {
		t.Errorf("MemlockBytes() = %d, bpftool's bytes_memlock sum = %d", memlock, wantMemlock)
	}

	checkElements(t, p, spec.Fill)

	mapIDs, progIDs, linkIDs := p.MapIDs(), append(p.ProgramIDs(), helper), p.LinkIDs()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Right after Close, before the garbage collector may close leaked fds.
	if fdsAfter, err := openFDs(); err != nil {
		t.Error(err)
	} else if fdsAfter > fdsBefore {
		t.Errorf("%d file descriptors open after Close, %d before Create", fdsAfter, fdsBefore)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.MemlockBytes(); err == nil {
		t.Error("MemlockBytes after Close: no error")
	}
	waitGone(t, bpftool.Link, linkIDs)
	waitGone(t, bpftool.Program, progIDs)
	waitGone(t, bpftool.Map, mapIDs)
}

func waitGone(t *testing.T, kind bpftool.Kind, ids []uint32) {
	t.Helper()
	left, err := bpftool.WaitGone(kind, ids, releaseTimeout)
	if err != nil {
		t.Error(err)
	} else if len(left) > 0 {
		t.Errorf("%d %s objects still present %v after Close: %v", len(left), kind, releaseTimeout, left)
	}
}

// checkElements iterates one map of each fillable kind and compares its
// content with what Fill promises: keys 0..n-1 hold values 1..n.
func checkElements(t *testing.T, p *Population, fill float64) {
	t.Helper()
	seen := map[MapKind]bool{}
	for _, d := range p.Maps() {
		kind := MapKind{Type: d.Type, Flags: d.Flags, Fillable: true}
		if !slices.Contains(MapKinds[:], kind) || seen[kind] {
			continue
		}
		seen[kind] = true
		wantFilled := uint32(fill * float64(d.MaxEntries))
		if d.Filled != wantFilled || wantFilled == 0 {
			t.Errorf("map %s: Filled = %d, want %d", d.Name, d.Filled, wantFilled)
		}
		t.Run(fmt.Sprintf("%s_flags%d", d.Type, d.Flags), func(t *testing.T) {
			m, err := ebpf.NewMapFromID(ebpf.MapID(d.ID))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got := iterate(t, m)
			wantLen := int(d.Filled)
			if d.Type == ebpf.Array || d.Type == ebpf.PerCPUArray {
				wantLen = int(d.MaxEntries) // arrays always hold every element
			}
			if len(got) != wantLen {
				t.Errorf("%d elements, want %d", len(got), wantLen)
			}
			for k, v := range got {
				want := uint64(k) + 1
				if k >= d.Filled {
					want = 0 // array elements past the fill
				}
				if v != want {
					t.Errorf("key %d holds %d, want %d", k, v, want)
				}
			}
		})
	}
	for _, kind := range MapKinds {
		if kind.Fillable && !seen[kind] {
			t.Errorf("no map of fillable kind %+v", kind)
		}
	}
}

// iterate returns the content of a map of a fillable kind, by key; per-CPU
// values must be the same on every CPU.
func iterate(t *testing.T, m *ebpf.Map) map[uint32]uint64 {
	t.Helper()
	got := map[uint32]uint64{}
	it := m.Iterate()
	switch m.Type() {
	case ebpf.LPMTrie:
		var k lpmKey
		var v uint64
		for it.Next(&k, &v) {
			if k.PrefixLen != 32 {
				t.Errorf("key %+v: prefix length %d, want 32", k, k.PrefixLen)
			}
			got[binary.BigEndian.Uint32(k.Addr[:])] = v
		}
	case ebpf.PerCPUHash, ebpf.PerCPUArray:
		var k uint32
		var v []uint64
		for it.Next(&k, &v) {
			for cpu := range v {
				if v[cpu] != v[0] {
					t.Errorf("key %d: per-CPU values %v differ", k, v)
					break
				}
			}
			got[k] = v[0]
		}
	default:
		var k uint32
		var v uint64
		for it.Next(&k, &v) {
			got[k] = v
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating: %v", err)
	}
	return got
}

func TestCreateEmpty(t *testing.T) {
	testutil.RequireBPF(t)
	p, err := Create(Spec{})
	if err != nil {
		t.Fatal(err)
	}
	for what, ids := range map[string][]uint32{
		"map": p.MapIDs(), "program": p.ProgramIDs(), "helper": p.HelperProgramIDs(), "link": p.LinkIDs(),
	} {
		if ids == nil || len(ids) != 0 {
			t.Errorf("%s IDs = %#v, want empty and non-nil", what, ids)
		}
	}
	if m, err := p.MemlockBytes(); m != 0 || err != nil {
		t.Errorf("MemlockBytes() = %d, %v; want 0, nil", m, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCreateFailureReleases makes Create fail after it made some of every
// kind of object, and checks that all of them are released.
func TestCreateFailureReleases(t *testing.T) {
	testutil.RequireBPF(t)
	var mapIDs, progIDs, linkIDs []uint32
	errInjected := errors.New("injected")
	failpoint = func(p *Population, n int) error {
		if n < 2 {
			return nil
		}
		for _, d := range p.mapInfo {
			mapIDs = append(mapIDs, d.ID)
		}
		progIDs = append(slices.Clone(p.progIDs), p.helpIDs...)
		linkIDs = slices.Clone(p.linkIDs)
		return errInjected
	}
	t.Cleanup(func() { failpoint = nil })

	p, err := Create(Spec{Maps: 12, Programs: 3, Links: 4, Fill: 1})
	if !errors.Is(err, errInjected) || p != nil {
		t.Fatalf("Create = %v, %v; want nil, the injected error", p, err)
	}
	if len(mapIDs) != 12 || len(progIDs) != 4 || len(linkIDs) != 2 {
		t.Fatalf("made %d maps, %d programs, %d links before failing; want 12, 4, 2",
			len(mapIDs), len(progIDs), len(linkIDs))
	}
	waitGone(t, bpftool.Link, linkIDs)
	waitGone(t, bpftool.Program, progIDs)
	waitGone(t, bpftool.Map, mapIDs)
}

func TestCreateRejects(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Maps: -1}, "negative"},
		{Spec{Programs: -1}, "negative"},
		{Spec{Links: -1}, "negative"},
		{Spec{Fill: -0.1}, "fill"},
		{Spec{Fill: 1.5}, "fill"},
		{Spec{Maps: 1 << 20}, "RLIMIT_NOFILE"},
		{Spec{Maps: 10, Programs: 10, Links: 1 << 20}, "RLIMIT_NOFILE"},
	} {
		p, err := Create(tc.spec)
		if err == nil {
			p.Close()
			t.Errorf("Create(%+v): no error", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%+v) = %v, want an error naming %q", tc.spec, err, tc.want)
		}
	}
}

func TestMemlockReader(t *testing.T) {
	dir := t.TempDir() + "/"
	write := func(name, content string) {
		if err := os.WriteFile(dir+name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("3", "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nmap_type:\t1\nmemlock:\t11280\nmap_id:\t7\n")
	write("4", "pos:\t0\nflags:\t02000002\n")
	write("5", "memlock:\tlots\n")
	write("6", strings.Repeat("x:\t1\n", 2000)+"memlock:\t4096\n") // longer than one read
	r := memlockReader{dir: dir}
	for _, tc := range []struct {
		fd   int
		want uint64
		err  bool
	}{
		{3, 11280, false}, {4, 0, true}, {5, 0, true}, {6, 4096, false}, {7, 0, true}, {3, 11280, false},
	} {
		got, err := r.read(tc.fd)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("read(%d) = %d, %v; want %d, error %v", tc.fd, got, err, tc.want, tc.err)
		}
	}
}

// BenchmarkCreate measures Create and Close of the population the design
// measures the agent with: 10,000 maps, 5,000 programs, 2,000 links.
func BenchmarkCreate(b *testing.B) {
	testutil.RequireBPF(b)
	spec := Spec{Maps: 10000, Programs: 5000, Links: 2000, Fill: 0.5}
	var create, release time.Duration
	for b.Loop() {
		start := time.Now()
		p, err := Create(spec)
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		start = time.Now()
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		release += time.Since(start)
	}
	b.ReportMetric(create.Seconds()/float64(b.N), "create-s/op")
	b.ReportMetric(release.Seconds()/float64(b.N), "close-s/op")
}

// TestFillOneByOne checks the fallback that writes one element at a time,
// which kernels without batch operations for a map type take.
func TestFillOneByOne(t *testing.T) {
	testutil.RequireBPF(t)
	f := filler{noBatch: true}
	for n, kind := range MapKinds {
		if !kind.Fillable {
			continue
		}
		s := mapSpec(n, kind)
		t.Run(fmt.Sprintf("%s_flags%d", s.Type, s.Flags), func(t *testing.T) {
			m, err := ebpf.NewMap(s)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			const filled = 37
			if err := f.fill(m, filled); err != nil {
				t.Fatal(err)
			}
			got := iterate(t, m)
			for k := range uint32(s.MaxEntries) {
				want, ok := uint64(k)+1, k < filled
				if s.Type == ebpf.Array || s.Type == ebpf.PerCPUArray {
					if !ok {
						want, ok = 0, true
					}
				}
				if v, has := got[k]; has != ok || (ok && v != want) {
					t.Errorf("key %d: holds %d (present %v), want %d (present %v)", k, v, has, want, ok)
				}
			}
		})
	}
}
