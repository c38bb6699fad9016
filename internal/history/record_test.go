package history

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

const ns = "odigos_ebpf"

// steadyNode returns the snapshot of a node whose objects do not change:
// the types a busy node shows (a dozen map types, half a dozen program
// types, three link types) and, from cycle to cycle, only what a real
// agent's snapshot changes: the cycle's end, jittered by milliseconds, its
// duration to the nanosecond and the agent's measured memory.
type steadyNode struct {
	rng  *rand.Rand
	snap snapshot.Snapshot
}

func newSteadyNode() *steadyNode {
	n := &steadyNode{rng: rand.New(rand.NewPCG(3, 4))}
	s := &n.snap
	s.Valid = true
	s.LastSuccessUnixNano = 1_800_000_000_000_000_000
	typesOf := [kernel.NumKinds][]int{
		kernel.KindMap:  {1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 25, 27},
		kernel.KindProg: {1, 2, 5, 8, 26, 30},
		kernel.KindLink: {1, 2, 11},
	}
	for k := range kernel.NumKinds {
		ks := &s.Kinds[k]
		for j, i := range typesOf[k] {
			t := &ks.Types[i]
			t.Objects = uint64(3 + 7*j)
			if k != kernel.KindLink {
				t.MemoryBytes = t.Objects * uint64(4096+j*1000)
			}
			ks.Objects += t.Objects
			ks.MemoryBytes += t.MemoryBytes
			ks.TypesSeen[i/64] |= 1 << (i % 64)
		}
		ks.Created, ks.Removed = ks.Objects+20, 20
	}
	// Three owners with series of their own, and the objects no one holds.
	s.Features[snapshot.FeatureOwnership] = true
	for i, comm := range []string{"cilium-agent", "odigos-odiglet", "ebpf-metrics"} {
		w := &s.Owners.Rows[i]
		copy(w.Comm[:], comm)
		w.MemoryBytes = uint64(1+i) << 20
	}
	s.Owners.N = 3
	s.Owners.None.MemoryBytes = 4096
	return n
}

func (n *steadyNode) next() *snapshot.Snapshot {
	s := &n.snap
	s.Cycles++
	s.LastDurationNs = 2_000_000 + n.rng.Int64N(1_000_000)
	s.LastSuccessUnixNano += 60e9 + n.rng.Int64N(10e6) - 5e6
	s.MemoryUsageBytes = 1_500_000 + uint64(n.rng.IntN(64<<10))
	return s
}

// The goal of the issue: at most 2 bytes per sample on a steady node.
func TestSteadyNodeBytesPerSample(t *testing.T) {
	h := newHistory(t, 256<<10)
	r := NewRecorder(h, ns)
	n := newSteadyNode()
	for range 20000 { // fills the ring more than once
		if !r.Append(n.next()) {
			t.Fatal("a new cycle was not recorded")
		}
	}
	st := h.Stats()
	bps := float64(st.Bytes) / float64(st.Samples)
	t.Logf("%d series, %d rows, %d samples in %d bytes: %.3f bytes per sample; %d bytes held of %d",
		st.Series, st.Rows, st.Samples, st.Bytes, bps, st.MemoryBytes, st.Limit)
	if bps > 2 {
		t.Errorf("%.3f bytes per sample, goal 2", bps)
	}
	if st.MemoryBytes > st.Limit || st.Dropped != 0 {
		t.Errorf("%+v", st)
	}
}

// Recording a cycle allocates nothing once its series are known.
func TestRecordAllocatesNothing(t *testing.T) {
	h := newHistory(t, 256<<10)
	pub := new(snapshot.Publisher)
	r := NewRecorder(h, ns)
	n := newSteadyNode()
	s := n.next()
	pub.Publish(s)
	r.Record(s)
	allocs := testing.AllocsPerRun(2000, func() {
		s = n.next()
		pub.Publish(s)
		r.Record(s)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per cycle", allocs)
	}
	// A snapshot published again without a new cycle (a failed cycle
	// publishes its counters) adds no row.
	rows := h.Stats().Rows
	r.Record(s)
	if h.Stats().Rows != rows {
		t.Error("the same cycle was recorded twice")
	}
}

// The history's series are /metrics' series: same names, same labels, and
// the last point equal to what the exposition's collector serves for the
// same snapshot. A type that appears later gets its series from then on.
func TestRecordMatchesMetrics(t *testing.T) {
	h := newHistory(t, 256<<10)
	pub := new(snapshot.Publisher)
	r := NewRecorder(h, ns)
	n := newSteadyNode()
	for i := range 30 {
		s := n.next()
		if i == 20 { // a new map type
			ks := &s.Kinds[kernel.KindMap]
			ks.Types[kernel.MapTypeQueue] = snapshot.TypeStats{Objects: 1, MemoryBytes: 70000}
			ks.TypesSeen[0] |= 1 << kernel.MapTypeQueue
			ks.Objects++
			ks.MemoryBytes += 70000
		}
		pub.Publish(s)
		r.Record(s)
	}
	served := servedSeries(t, pub)
	seriesCount := 0
	err := h.Query(Query{}, func(p *Points) error {
		seriesCount++
		k := key(p.Name, p.Labels)
		want, ok := served[k]
		if !ok {
			t.Errorf("%s: in the history, not in /metrics", k)
			return nil
		}
		last := len(p.V) - 1
		if p.V[last] != want {
			t.Errorf("%s: last point %v, /metrics %v", k, p.V[last], want)
		}
		if p.T[last] != n.snap.LastSuccessUnixNano/1e6 {
			t.Errorf("%s: last point at %d, cycle ended at %d ms", k, p.T[last], n.snap.LastSuccessUnixNano/1e6)
		}
		wantPoints := 30
		if slices.Contains(p.Labels, Label{"map_type", "queue"}) {
			wantPoints = 10
		}
		if len(p.T) != wantPoints {
			t.Errorf("%s: %d points, want %d", k, len(p.T), wantPoints)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 3 kinds × (objects, created, removed), 2 × memory, total, agent,
	// cycle; 13 map types × 2, 6 program types × 2, 3 link types; the
	// memory of 3 owners and of no one.
	if want := 9 + 2 + 3 + 26 + 12 + 3 + 4; seriesCount != want {
		t.Errorf("%d series, want %d", seriesCount, want)
	}
}

// How far back each profile's history goes on the steady node (53
// series): what docs/tuning.md quotes. Every profile keeps at least a day.
func TestRetentionByProfile(t *testing.T) {
	for _, name := range config.Profiles() {
		cfg, err := config.ForProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		h := newHistory(t, int(cfg.HistoryBytes))
		r := NewRecorder(h, ns)
		n := newSteadyNode()
		r.Append(n.next())
		first := h.Stats().Oldest
		for h.Stats().Oldest == first { // until the ring drops its first block
			if !r.Append(n.next()) {
				t.Fatal("not recorded")
			}
		}
		st := h.Stats()
		keep := time.Duration(st.Rows) * cfg.CollectionInterval
		t.Logf("%s: history_bytes %d, %d rows after the ring wrapped: %.1f days at %s; %.3f bytes per sample",
			name, cfg.HistoryBytes, st.Rows, keep.Hours()/24, cfg.CollectionInterval, float64(st.Bytes)/float64(st.Samples))
		if keep < 24*time.Hour {
			t.Errorf("%s keeps %s", name, keep)
		}
	}
}

// An owner's labels in the history are those of /metrics, down to a comm
// or container the kernel holds as bytes that are not UTF-8 (both replace
// them with U+FFFD), and "other" when it holds only lost attributions.
func TestRecordOwnerLabelsMatchMetrics(t *testing.T) {
	h := newHistory(t, 256<<10)
	pub := new(snapshot.Publisher)
	r := NewRecorder(h, ns)
	s := newSteadyNode().next()
	w := &s.Owners.Rows[0]
	w.Comm = [16]byte{}
	copy(w.Comm[:], "cilium\xff\xfeagent")
	copy(w.ContainerID[:], "abc\xc3")
	s.Owners.Lost = 1
	pub.Publish(s)
	r.Record(s)

	var served []string
	for k := range servedSeries(t, pub) {
		if strings.HasPrefix(k, ns+"_owner_memory_bytes[") { // key: the name, then its labels
			served = append(served, k)
		}
	}
	var recorded []string
	err := h.Query(Query{}, func(p *Points) error {
		if p.Name == ns+"_owner_memory_bytes" {
			recorded = append(recorded, key(p.Name, p.Labels))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(served)
	slices.Sort(recorded)
	if !slices.Equal(served, recorded) {
		t.Errorf("owner series in the history:\n%q\nin /metrics:\n%q", recorded, served)
	}
	want := key(ns+"_owner_memory_bytes", []Label{{"container_id", "abc\uFFFD"}, {"owner", "cilium\uFFFDagent"}, {"pod_uid", ""}})
	other := key(ns+"_owner_memory_bytes", []Label{{"container_id", ""}, {"owner", "other"}, {"pod_uid", ""}})
	if !slices.Contains(recorded, want) || !slices.Contains(recorded, other) {
		t.Errorf("owner series in the history %q: want %q and %q among them", recorded, want, other)
	}
}

// servedSeries gathers what /metrics serves from pub: each series' value,
// keyed as the history keys its series.
func servedSeries(t *testing.T, pub *snapshot.Publisher) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(exposition.NewMetrics(pub, ns))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []Label
			for _, l := range m.GetLabel() {
				ls = append(ls, Label{l.GetName(), l.GetValue()})
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.GetCounter().GetValue()
			}
			served[key(mf.GetName(), ls)] = v
		}
	}
	return served
}
