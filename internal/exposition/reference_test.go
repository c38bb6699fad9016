package exposition

import (
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition/otlp"
	"github.com/ebpf-metrics/ebpf-metrics/internal/history"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	agenttest "github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// descRE takes the name and the variable labels out of a Desc's String():
// Desc has no accessor for them.
var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// gatheredFamilies returns the families g gathers, by name.
func gatheredFamilies(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	return fams
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestMetricsReference holds docs/metrics.md to what the agent registers:
// the same metrics as the collector's Describe, each with the labels of its
// descriptor, the type and labels of its series in a Gather of the golden
// snapshot, a unit that agrees with its name, and the conditions in which it
// is present; build_info as the registry serves it, and the OTLP pusher's
// counter as the agent registers it with --otlp.endpoint; and every other
// metric of the registry and the HTTP handler in a documented group.
func TestMetricsReference(t *testing.T) {
	ref, err := agenttest.LoadMetricsReference(filepath.Join(agenttest.RepoRoot(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]agenttest.MetricRef)
	for _, m := range ref.Metrics {
		if _, dup := documented[m.Name]; dup {
			t.Errorf("%s: documented twice", m.Name)
		}
		documented[m.Name] = m
	}

	c := NewMetrics(publish(testSnapshot()), "")
	hist := historyMetrics(t, true)
	described := make(map[string][]string) // name → variable labels, sorted
	ch := make(chan *prometheus.Desc, 256)
	c.Describe(ch)
	hist.Describe(ch)
	close(ch)
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read descriptor %s", d)
		}
		labels := []string{}
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		slices.Sort(labels)
		described[m[1]] = labels
	}

	// The golden snapshot has every metric; the registry adds build_info
	// and the standard groups, the HTTP handler promhttp_*.
	golden := gatheredFamilies(t, pedantic(c, hist))
	reg := NewRegistry(c, "", "")
	pushCfg, err := (&otlp.Flags{Endpoint: "http://127.0.0.1:4318", Protocol: otlp.ProtocolHTTP}).Config(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	push, err := otlp.New(pushCfg, reg, DefaultNamespace, slog.New(slog.DiscardHandler)) // never started: it connects to nothing
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(push)
	reg.MustRegister(hist)
	h := newMetricsHandler(reg, 1, time.Second, slog.New(slog.DiscardHandler))
	all := gatheredFamilies(t, prometheus.Gatherers{reg, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return h.liveFamilies(nil), nil
	})})
	const buildInfo = DefaultNamespace + "_build_info"
	// Served by the registry, outside the snapshot's collector.
	registryOnly := []string{buildInfo, DefaultNamespace + "_otlp_exports_total"}

	for _, name := range sortedKeys(described) {
		doc, ok := documented[name]
		if !ok {
			t.Errorf("%s: registered, missing from docs/metrics.md", name)
			continue
		}
		if !slices.Equal(doc.Labels, described[name]) {
			t.Errorf("%s: documented labels %v, registered %v", name, doc.Labels, described[name])
		}
		mf, ok := golden[name]
		if !ok {
			t.Errorf("%s: not in a gather of the golden snapshot", name)
			continue
		}
		checkFamily(t, doc, mf)
	}
	for _, name := range sortedKeys(documented) {
		if _, ok := described[name]; !ok && !slices.Contains(registryOnly, name) {
			t.Errorf("%s: documented, not registered", name)
		}
	}
	for _, name := range registryOnly {
		if doc, ok := documented[name]; !ok {
			t.Errorf("%s: missing from docs/metrics.md", name)
		} else if mf, ok := all[name]; !ok {
			t.Errorf("%s: not served by the registry", name)
		} else {
			checkFamily(t, doc, mf)
		}
	}

	groups := make(map[string]int)
	for _, name := range sortedKeys(all) {
		if _, ok := documented[name]; ok {
			continue
		}
		i := slices.IndexFunc(ref.Groups, func(p string) bool { return strings.HasPrefix(name, p) })
		if i < 0 {
			t.Errorf("%s: served, neither documented nor in a documented group %v", name, ref.Groups)
			continue
		}
		groups[ref.Groups[i]]++
	}
	for _, g := range ref.Groups {
		if groups[g] == 0 {
			t.Errorf("group %s*: documented, no metric served", g)
		}
	}

	checkPresence(t, documented)
}

// checkFamily compares the type, labels and unit of a documented metric
// with a gathered family.
func checkFamily(t *testing.T, doc agenttest.MetricRef, mf *dto.MetricFamily) {
	t.Helper()
	if typ := strings.ToLower(mf.GetType().String()); doc.Type != typ {
		t.Errorf("%s: documented as %s, served as %s", doc.Name, doc.Type, typ)
	}
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		if !slices.Equal(labels, doc.Labels) {
			t.Errorf("%s: documented labels %v, a series has %v", doc.Name, doc.Labels, labels)
			break
		}
	}
	name := strings.TrimSuffix(doc.Name, "_total")
	switch {
	case strings.HasSuffix(name, "_bytes"):
		if doc.Unit != "bytes" {
			t.Errorf("%s: unit %q, want bytes", doc.Name, doc.Unit)
		}
	case strings.HasSuffix(name, "_timestamp_seconds"):
		if doc.Unit != "Unix seconds" {
			t.Errorf("%s: unit %q, want Unix seconds", doc.Name, doc.Unit)
		}
	case strings.HasSuffix(name, "_seconds"):
		if doc.Unit != "seconds" {
			t.Errorf("%s: unit %q, want seconds", doc.Name, doc.Unit)
		}
	default:
		if doc.Unit == "" || strings.Contains(doc.Unit, "bytes") || strings.Contains(doc.Unit, "seconds") {
			t.Errorf("%s: unit %q does not agree with the name", doc.Name, doc.Unit)
		}
	}
}

// checkPresence holds the "present" column to what the collector sends
// before the first cycle, after it, and with each optional feature.
func checkPresence(t *testing.T, documented map[string]agenttest.MetricRef) {
	t.Helper()
	const (
		always       = "always"
		cycle        = "after a cycle"
		stats        = "with system stats"
		elements     = "with element counts"
		formula      = "with the formula check"
		otlpPush     = "with OTLP push"
		history      = "with history"
		historyCycle = "with history, after a cycle"
		owners       = "with ownership"
		ownersStats  = "with ownership and system stats"
		ranks        = "with top_k"
		ranksElems   = "with top_k and element counts"
		ranksStats   = "with top_k and system stats"
	)
	presents := []string{always, cycle, stats, elements, formula, history, historyCycle, owners, ownersStats, ranks, ranksElems, ranksStats}
	beforeCycle := &snapshot.Snapshot{Active: true, Mode: [kernel.NumKinds]string{"syscall", "syscall", "syscall"}}
	type on struct{ stats, elements, formula, owners, ranks bool }
	only := func(f on) *snapshot.Snapshot {
		s := testSnapshot()
		s.SystemStats, s.ElementCounts = f.stats, f.elements
		s.Features[snapshot.FeatureMemoryFormulaCheck] = f.formula
		s.Features[snapshot.FeatureOwnership] = f.owners
		if !f.ranks {
			s.Top = snapshot.Top{}
		} else if !f.elements {
			s.Top.N[1] = 0 // the fill ranking needs element counts
		}
		return s
	}

	for _, tc := range []struct {
		name    string
		s       *snapshot.Snapshot
		history prometheus.Collector // nil: history_bytes 0
		want    []string             // the values of the present column whose metrics are sent
	}{
		{"before the first cycle", beforeCycle, nil, []string{always}},
		{"after a cycle", only(on{}), nil, []string{always, cycle}},
		{"with system stats", only(on{stats: true}), nil, []string{always, cycle, stats}},
		{"with element counts", only(on{elements: true}), nil, []string{always, cycle, elements}},
		{"with the formula check", only(on{formula: true}), nil, []string{always, cycle, formula}},
		{"with ownership", only(on{owners: true}), nil, []string{always, cycle, owners}},
		{"with ownership and stats", only(on{owners: true, stats: true}), nil, []string{always, cycle, stats, owners, ownersStats}},
		{"with rankings", only(on{ranks: true}), nil, []string{always, cycle, ranks}},
		{"with rankings and element counts", only(on{ranks: true, elements: true}), nil, []string{always, cycle, elements, ranks, ranksElems}},
		{"with rankings and stats", only(on{ranks: true, stats: true}), nil, []string{always, cycle, stats, ranks, ranksStats}},
		{"with history, before the first cycle", beforeCycle, historyMetrics(t, false), []string{always, history}},
		{"with history, after a cycle", only(on{}), historyMetrics(t, true), []string{always, cycle, history, historyCycle}},
	} {
		cs := []prometheus.Collector{NewMetrics(publish(tc.s), "")}
		if tc.history != nil {
			cs = append(cs, tc.history)
		}
		fams := gatheredFamilies(t, pedantic(cs...))
		for _, name := range sortedKeys(documented) {
			doc := documented[name]
			if name == DefaultNamespace+"_build_info" {
				continue // the registry's, always
			}
			if doc.Present == otlpPush {
				if name != DefaultNamespace+"_otlp_exports_total" {
					t.Errorf("%s: present %q, but not the OTLP pusher's", name, doc.Present)
				}
				continue // registered by the agent with --otlp.endpoint
			}
			if !slices.Contains(presents, doc.Present) {
				t.Errorf("%s: present %q, want one of %s", name, doc.Present, strings.Join(presents, ", "))
				continue
			}
			_, sent := fams[name]
			if want := slices.Contains(tc.want, doc.Present); sent != want {
				t.Errorf("%s: %s: sent %v, but documented as present %q", tc.name, name, sent, doc.Present)
			}
		}
	}
}

func pedantic(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	return reg
}

// historyMetrics is the collector of the history's size, which the agent
// registers beside NewMetrics', over a history holding one cycle or none.
func historyMetrics(t *testing.T, cycle bool) prometheus.Collector {
	t.Helper()
	h, err := history.New(history.MinBytes)
	if err != nil {
		t.Fatal(err)
	}
	if cycle {
		history.NewRecorder(h, DefaultNamespace).Append(testSnapshot())
	}
	return history.NewMetrics(h, DefaultNamespace)
}
