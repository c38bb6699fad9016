package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

// TestOwnershipEndToEnd: `ebpf-metrics --once` reports a process holding
// maps, programs and links in a cgroup named like a containerd container
// of a kubelet pod with its comm, container ID and pod UID, and owning
// exactly what it created (bpftool as the oracle), both as root and as
// nobody with only CAP_BPF and CAP_PERFMON; the owners sum to the totals;
// and its largest map is in the top maps with its name and owner.
func TestOwnershipEndToEnd(t *testing.T) {
	testutil.RequireBPF(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if testutil.InCI() {
			t.Fatal("setpriv not found; CI installs util-linux")
		}
		t.Skip("setpriv (util-linux) not found")
	}
	child := holder.Start(t, holder.Spec{Maps: 8, Programs: 3, Links: 2})
	maps, progs := testutil.Bpftool(t, bpftool.Map), testutil.Bpftool(t, bpftool.Program)
	var memory uint64
	for _, id := range child.Maps {
		memory += maps[id].BytesMemlock
	}
	for _, id := range append(append([]uint32{}, child.Programs...), child.Helpers...) {
		memory += progs[id].BytesMemlock
	}
	want := map[string]float64{
		"map": float64(len(child.Maps)), "program": float64(len(child.Programs) + len(child.Helpers)),
		"link": float64(len(child.Links)),
	}

	// The binary and its configuration must be readable by nobody.
	dir, err := os.MkdirTemp("", "ebpf-metrics-owners")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin, cfg := filepath.Join(dir, "ebpf-metrics"), filepath.Join(dir, "config.yaml")
	data, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("max_syscalls_per_second: 0\ntop_k: 50\nmax_owners: 200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		wrap []string
	}{
		{"root, syscall mode", []string{"--collection.mode=syscall"}},
		{"root, auto mode", nil},
		{"nobody with CAP_BPF and CAP_PERFMON", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--once", "--config.file=" + cfg}, tc.wrap...)
			cmd := exec.Command(bin, args...)
			if strings.HasPrefix(tc.name, "nobody") {
				caps := "bpf,+perfmon"
				cmd = exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
					"--inh-caps=-all,+" + caps, "--ambient-caps=-all,+" + caps, "--bounding-set=-all,+" + caps, "--", bin}, args...)...)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(stdout.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			labels := []string{"owner", child.Comm, "container_id", child.ContainerID, "pod_uid", child.PodUID}
			for kind, n := range want {
				if got := value(t, fams, "odigos_ebpf_owner_objects", append([]string{"type", kind}, labels...)...); got != n {
					t.Errorf("the holder owns %v %ss, created %v", got, kind, n)
				}
			}
			if got := value(t, fams, "odigos_ebpf_owner_memory_bytes", labels...); got != float64(memory) {
				t.Errorf("the holder owns %v bytes, bpftool says %d", got, memory)
			}
			if got, total := sum(fams, "odigos_ebpf_owner_memory_bytes"), value(t, fams, "odigos_ebpf_total_memory_bytes"); got != total {
				t.Errorf("owners sum to %v bytes, total %v", got, total)
			}
			for _, kind := range []string{"map", "program", "link"} {
				if got, total := sumWhere(fams, "odigos_ebpf_owner_objects", "type", kind), value(t, fams, "odigos_ebpf_objects", "type", kind); got != total {
					t.Errorf("owners sum to %v %ss, the kernel has %v", got, kind, total)
				}
			}
			var biggest uint32
			for _, id := range child.Maps {
				if maps[id].BytesMemlock > maps[biggest].BytesMemlock {
					biggest = id
				}
			}
			id := strconv.FormatUint(uint64(biggest), 10)
			if !hasSeries(fams, "odigos_ebpf_top_map_memory_bytes", "id", id, "owner", child.Comm, "container_id", child.ContainerID) {
				t.Errorf("the holder's largest map, %d (%d bytes), is not among the top maps with its owner", biggest, maps[biggest].BytesMemlock)
			}
		})
	}
}

// sumWhere sums the series of name with the label name=value.
func sumWhere(fams map[string]*dto.MetricFamily, name, label, val string) float64 {
	var s float64
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == val {
				s += m.GetGauge().GetValue()
			}
		}
	}
	return s
}

// hasSeries reports whether name has a series with every label pair given.
func hasSeries(fams map[string]*dto.MetricFamily, name string, pairs ...string) bool {
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(pairs); i += 2 {
			ok = ok && got[pairs[i]] == pairs[i+1]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestTopSeriesGoWithTheirMap: a map among the top maps by memory has its
// series, with its ID and name, while it exists; once it is deleted, its
// series leave the exposition at the next cycle instead of going stale.
func TestTopSeriesGoWithTheirMap(t *testing.T) {
	testutil.RequireBPF(t)
	a := startAgent(t, "--collection.interval=200ms", "--config.file="+fastConfig(t, "top_k: 5\n"))
	// Far larger than anything a test or the agent makes: first by memory.
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_top_big", Type: ebpf.Array, KeySize: 4, ValueSize: 1 << 16, MaxEntries: 2048})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := m.Info()
	mid, _ := info.ID()
	id := strconv.FormatUint(uint64(mid), 10)
	present := func() bool {
		fams, _ := a.scrape(t)
		return hasSeries(fams, "odigos_ebpf_top_map_memory_bytes", "id", id, "name", "t_top_big", "map_type", "array")
	}
	waitFor(t, "the map among the top maps", present)
	m.Close()
	waitFor(t, "the deleted map's series gone", func() bool { return !present() })
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%s: not within 15 s", what)
		}
	}
}
