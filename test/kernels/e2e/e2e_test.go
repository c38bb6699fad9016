// Package e2e checks the agent binary end to end against bpftool on the
// running kernel: `ebpf-metrics --once` in each collection mode, its counts
// and memory per kind (and per map type where it loads nothing itself), the
// features it says are active, and the least-privilege iterator mode. The
// kernel matrix (test/kernels/run.sh) runs it inside each guest kernel with
// EBPF_METRICS_AGENT naming the agent binary; elsewhere it builds the agent.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

var agentBin string

func TestMain(m *testing.M) {
	agentBin = os.Getenv("EBPF_METRICS_AGENT")
	dir := ""
	if agentBin == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ebpf-metrics-e2e"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Readable by nobody, for the least-privilege run.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		agentBin = filepath.Join(dir, "ebpf-metrics")
		if out, err := exec.Command("go", "build", "-o", agentBin, "../../../cmd/ebpf-metrics").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the agent: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

var kinds = []struct {
	label string
	tool  bpftool.Kind
}{{"map", bpftool.Map}, {"program", bpftool.Program}, {"link", bpftool.Link}}

// view is what bpftool lists: objects per kind, memlock of maps and
// programs, and maps and memlock per map type.
type view struct {
	objects  [3]int
	memory   uint64
	mapTypes map[string][2]uint64 // type: objects, memlock
}

func (v view) equal(w view) bool {
	if v.objects != w.objects || v.memory != w.memory || len(v.mapTypes) != len(w.mapTypes) {
		return false
	}
	for t, x := range v.mapTypes {
		if w.mapTypes[t] != x {
			return false
		}
	}
	return true
}

func bpftoolView(t *testing.T) view {
	t.Helper()
	v := view{mapTypes: map[string][2]uint64{}}
	for i, k := range kinds {
		objs := testutil.Bpftool(t, k.tool)
		v.objects[i] = len(objs)
		for _, o := range objs {
			v.memory += o.BytesMemlock
			if k.tool == bpftool.Map {
				x := v.mapTypes[o.Type]
				v.mapTypes[o.Type] = [2]uint64{x[0] + 1, x[1] + o.BytesMemlock}
			}
		}
	}
	return v
}

// settled waits until bpftool's view stops changing: what an earlier run
// left is released asynchronously.
func settled(t *testing.T) view {
	t.Helper()
	last := bpftoolView(t)
	for range 30 {
		time.Sleep(100 * time.Millisecond)
		now := bpftoolView(t)
		if now.equal(last) {
			return now
		}
		last = now
	}
	return last
}

// back waits up to ten seconds for bpftool's view to be before again: the
// objects of an agent that exited (its iterators) go asynchronously, after
// an RCU grace period, slow under emulation.
func back(t *testing.T, before view) view {
	t.Helper()
	var now view
	for range 100 {
		if now = bpftoolView(t); now.equal(before) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return now
}

// run is one way to run the agent.
type run struct {
	name   string
	mode   string   // --collection.mode
	config string   // YAML
	wrap   []string // command before the agent's (setpriv)
}

// once runs the agent with --once between two equal bpftool views, and
// returns the metrics it printed and the view.
func once(t *testing.T, r run) (map[string]*dto.MetricFamily, view) {
	t.Helper()
	// Not t.TempDir(), whose parent only root may enter: the least
	// privileged agent runs as nobody and must read its configuration.
	dir, err := os.MkdirTemp("", "ebpf-metrics-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("max_syscalls_per_second: 0\n"+r.config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, r.wrap...), agentBin, "--once", "--collection.mode="+r.mode, "--config.file="+cfg)
	for try := 0; ; try++ {
		before := settled(t)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		after := back(t, before)
		if !before.equal(after) && try < 10 {
			t.Logf("try %d: the kernel's objects changed meanwhile", try)
			continue // someone else changed the kernel meanwhile
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(&stdout)
		if err != nil {
			t.Fatal(err)
		}
		return fams, after
	}
}

// value returns the value of the series of name with the given labels
// (pairs), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func must(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(fams, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// TestAgentMatchesBpftool runs the agent once per collection mode over a
// population of every kind and checks, against bpftool: objects per kind
// and total memory (the agent's own iterator objects, which bpftool never
// sees since they go with the agent, subtracted), no memory unknown, and,
// in syscall mode (no objects of its own), objects and memory per map type.
// It checks the features it exports against the kernel's: iterators for
// every kind, element counts from Linux 6.6 (and their series only then),
// run-time statistics when asked for.
func TestAgentMatchesBpftool(t *testing.T) {
	testutil.RequireBPF(t)
	pop, err := loadgen.Create(loadgen.Spec{Maps: 40, Programs: 8, Links: 4, Fill: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	elements := testutil.HasFeature(t, testutil.FeatureElementCounts)
	links := testutil.HasFeature(t, testutil.FeatureLinkIterator)

	runs := []run{
		{name: "auto", mode: "auto"},
		{name: "syscall", mode: "syscall"},
		{name: "auto_with_stats", mode: "auto", config: "enable_system_stats: true\n"},
		{name: "iterator_least_privilege", mode: "iterator"},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			if r.name == "iterator_least_privilege" {
				setpriv, err := exec.LookPath("setpriv")
				if err != nil {
					if testutil.InCI() {
						t.Fatal("setpriv not found; CI installs util-linux")
					}
					t.Skip("setpriv (util-linux) not found")
				}
				r.wrap = []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
					"--inh-caps=-all,+bpf,+perfmon", "--ambient-caps=-all,+bpf,+perfmon", "--bounding-set=-all,+bpf,+perfmon", "--"}
			}
			fams, want := once(t, r)
			iter := r.mode != "syscall"
			byIter := map[string]bool{"map": iter, "program": iter, "link": iter && links}
			if r.mode == "iterator" {
				testutil.RequireFeature(t, testutil.FeatureLinkIterator) // iterator mode insists on it
			}

			var got view
			for i, k := range kinds {
				got.objects[i] = int(must(t, fams, "odigos_ebpf_objects", "type", k.label) - must(t, fams, "odigos_ebpf_own_objects", "type", k.label))
				if k.label != "link" {
					got.memory -= uint64(must(t, fams, "odigos_ebpf_own_memory_bytes", "type", k.label))
					if n := must(t, fams, "odigos_ebpf_memory_unknown_objects", "type", k.label); n != 0 {
						t.Errorf("%ss with unknown memory: %v", k.label, n)
					}
				}
				mode := map[bool]string{true: "iterator", false: "syscall"}[byIter[k.label]]
				if must(t, fams, "odigos_ebpf_collection_mode", "type", k.label, "mode", mode) != 1 {
					t.Errorf("%ss not read in %s mode", k.label, mode)
				}
			}
			got.memory += uint64(must(t, fams, "odigos_ebpf_total_memory_bytes"))
			t.Logf("agent: objects %v, memory %d; bpftool: objects %v, memory %d", got.objects, got.memory, want.objects, want.memory)
			if got.objects != want.objects || got.memory != want.memory {
				t.Errorf("agent: objects (map, program, link) %v, memory %d bytes; bpftool: %v, %d bytes",
					got.objects, got.memory, want.objects, want.memory)
			}
			if !iter {
				for typ, w := range want.mapTypes {
					n, _ := value(fams, "odigos_ebpf_map_objects", "map_type", typ)
					b, _ := value(fams, "odigos_ebpf_map_memory_bytes", "map_type", typ)
					if uint64(n) != w[0] || uint64(b) != w[1] {
						t.Errorf("%s maps: agent %v, %v bytes; bpftool %d, %d bytes", typ, n, b, w[0], w[1])
					}
				}
			}

			features := map[string]bool{
				"map_iterator":     iter,
				"program_iterator": iter,
				"link_iterator":    byIter["link"],
				"element_counts":   iter && elements,
				"run_time_stats":   r.config != "",
				// fdinfo readable (CAP_SYS_ADMIN) and a map iterator.
				"memory_formula_check": iter && r.name != "iterator_least_privilege",
				// The holders iterator, or procfs in syscall mode.
				"ownership": true,
			}
			for f, on := range features {
				if got := must(t, fams, "odigos_ebpf_feature_enabled", "feature", f); (got == 1) != on {
					t.Errorf("feature %s: %v, want %v on %s", f, got, on, testutil.KernelRelease())
				}
			}
			// loadgen fills half of each hash map: their elements are
			// exported exactly when element counts are on.
			n, has := value(fams, "odigos_ebpf_map_elements", "map_type", "hash")
			max, _ := value(fams, "odigos_ebpf_map_max_entries", "map_type", "hash")
			switch {
			case features["element_counts"] && (!has || n == 0 || n > max):
				t.Errorf("hash maps: %v elements (present %v) of %v", n, has, max)
			case !features["element_counts"] && has:
				t.Errorf("hash map elements exported without element counts: %v", n)
			}
			if features["run_time_stats"] {
				if _, ok := value(fams, "odigos_ebpf_program_runs", "program_type", "socket_filter"); !ok {
					t.Error("run-time statistics on, but no odigos_ebpf_program_runs")
				}
			}
		})
	}
}
