package statuspage

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

func testSnapshot() *snapshot.Snapshot {
	s := &snapshot.Snapshot{
		Valid: true, Active: true, Cycles: 7,
		Mode:                [kernel.NumKinds]string{"iterator", "iterator", "iterator"},
		LastSuccessUnixNano: 1_700_000_000_000_000_000, LastDurationNs: 3_500_000,
		MemoryUsageBytes: 1_234_567, MemoryBudgetBytes: 10 << 20,
	}
	s.Errors[kernel.OpFDInfo] = 2
	s.Features[snapshot.FeatureMapIterator] = true
	m := &s.Kinds[kernel.KindMap]
	*m = snapshot.KindStats{Objects: 12, MemoryBytes: 300_000, Tracked: 12, Capacity: 500, Created: 3, Removed: 1}
	m.Types[kernel.MapTypeHash] = snapshot.TypeStats{Objects: 10, MemoryBytes: 100_000}
	m.Types[kernel.MapTypeRingbuf] = snapshot.TypeStats{Objects: 2, MemoryBytes: 200_000}
	m.TypesSeen[0] = 1<<kernel.MapTypeHash | 1<<kernel.MapTypeRingbuf
	p := &s.Kinds[kernel.KindProg]
	*p = snapshot.KindStats{Objects: 4, MemoryBytes: 16384, Tracked: 4, Capacity: 200}
	p.Types[kernel.ProgTypeKprobe] = snapshot.TypeStats{Objects: 4, MemoryBytes: 16384}
	p.TypesSeen[0] = 1 << kernel.ProgTypeKprobe
	return s
}

func registry(s *snapshot.Snapshot) *prometheus.Registry {
	pub := new(snapshot.Publisher)
	pub.Publish(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(exposition.NewMetrics(pub, ""))
	return reg
}

func render(t *testing.T, g prometheus.Gatherer, opts Options) string {
	t.Helper()
	rec := httptest.NewRecorder()
	New(g, opts).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	return rec.Body.String()
}

var cellRE = regexp.MustCompile(`<span class="num" data-metric="([^"]+)" (?:data-agg="sum"|data-labels="([^"]*)") data-value="([^"]+)"`)

// cells returns every number of the page: metric{labels} (or metric{sum})
// to its value.
func cells(t *testing.T, page string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range cellRE.FindAllStringSubmatch(page, -1) {
		v, err := strconv.ParseFloat(html.UnescapeString(m[3]), 64)
		if err != nil {
			t.Fatal(err)
		}
		k := m[1] + "{" + html.UnescapeString(m[2]) + "}"
		if strings.Contains(m[0], `data-agg="sum"`) {
			k = m[1] + "{sum}"
		}
		out[k] = v
	}
	return out
}

// served is what the gatherer serves, in the same keys as cells.
func served(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()+"{"+labelString(m)+"}"] = value(m)
			out[mf.GetName()+"{sum}"] += value(m)
		}
	}
	return out
}

// Every number on the page is a series of the gathered families, with its
// value; the page shows the totals, each kind, each type and the health.
func TestNumbersEqualMetrics(t *testing.T) {
	reg := registry(testSnapshot())
	now := func() time.Time { return time.Unix(1_700_000_042, 0) }
	page := render(t, reg, Options{HistoryPath: "/api/v1/history", Version: "1.2.3", Now: now})
	got, want := cells(t, page), served(t, reg)
	for k, v := range got {
		if w, ok := want[k]; !ok || w != v {
			t.Errorf("%s: page %v, metrics %v (present %v)", k, v, w, ok)
		}
	}
	for _, k := range []string{
		`odigos_ebpf_total_memory_bytes{}`,
		`odigos_ebpf_objects{type="map"}`, `odigos_ebpf_objects{type="link"}`,
		`odigos_ebpf_memory_bytes{type="program"}`,
		`odigos_ebpf_map_objects{map_type="ringbuf"}`, `odigos_ebpf_map_memory_bytes{map_type="hash"}`,
		`odigos_ebpf_program_memory_bytes{program_type="kprobe"}`,
		`odigos_ebpf_collector_memory_usage_bytes{}`, `odigos_ebpf_collector_memory_budget_bytes{}`,
		`odigos_ebpf_collection_errors_total{sum}`, `odigos_ebpf_collection_cycles_total{}`,
		`odigos_ebpf_last_success_timestamp_seconds{}`, `odigos_ebpf_collection_active{}`,
		`odigos_ebpf_feature_enabled{feature="map_iterator"}`, `odigos_ebpf_collection_mode{mode="iterator",type="map"}`,
	} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s: not on the page", k)
		}
	}
	for _, s := range []string{
		`href="/metrics"`, `href="/-/healthy"`, `href="/-/ready"`, `href="/api/v1/history"`,
		`>309.0 KiB<`, // total: 300000 + 16384 bytes
		`>42s ago<`, `>3.5 ms<`, `>1.2 MiB<`, `id="chart-grid"`, `<noscript>`, `/static/uPlot.iife.min.js`, "1.2.3",
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	// The ringbuf type holds the most memory: listed first.
	if i, j := strings.Index(page, "<th>ringbuf</th>"), strings.Index(page, "<th>hash</th>"); i < 0 || j < i {
		t.Errorf("map types not ordered by memory (%d, %d)", i, j)
	}
	if strings.Contains(page, "Waiting for the first") {
		t.Error("says it waits, after a cycle")
	}
	// Every number the page looks for is served, but links' memory (the
	// kernel gives them none): a renamed metric shows up here.
	if n := strings.Count(page, `class="num missing"`); n != 1 {
		t.Errorf("%d numbers missing, want 1 (links' memory)", n)
	}
}

func TestBeforeFirstCycleAndNoHistory(t *testing.T) {
	s := &snapshot.Snapshot{Active: true}
	page := render(t, registry(s), Options{})
	if !strings.Contains(page, "Waiting for the first collection cycle") {
		t.Error("no waiting notice")
	}
	if strings.Contains(page, "chart-grid") || strings.Contains(page, "History (JSON)") {
		t.Error("charts without a history")
	}
}

// familiesOf builds a gatherer serving one gauge family.
type fixed []*dto.MetricFamily

func (f fixed) Gather() ([]*dto.MetricFamily, error) { return f, nil }

func gaugeFamily(name string, labels []string, rows [][]string, values []float64) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum()}
	for i, row := range rows {
		m := &dto.Metric{Gauge: &dto.Gauge{Value: &values[i]}}
		for j := range labels {
			m.Label = append(m.Label, &dto.LabelPair{Name: &labels[j], Value: &row[j]})
		}
		mf.Metric = append(mf.Metric, m)
	}
	return mf
}

// The families of issue "Whose is it" get their tables, the largest ten
// first, when the agent serves them.
func TestTopTables(t *testing.T) {
	labels := []string{"container_id", "owner", "pod_uid"}
	var rows [][]string
	var values []float64
	for i := range 14 {
		rows = append(rows, []string{fmt.Sprintf("c%02d", i), fmt.Sprintf("agent%02d", i), ""})
		values = append(values, float64(1000*i))
	}
	rows = append(rows, []string{"", "other", ""})
	values = append(values, 500)
	g := append(fixed{gaugeFamily("odigos_ebpf_owner_memory_bytes", labels, rows, values)},
		gaugeFamily("odigos_ebpf_top_map_fill_ratio", []string{"container_id", "id", "map_type", "name", "owner"},
			[][]string{{"", "7", "hash", "conntrack", "cilium-agent"}}, []float64{0.97}))
	page := render(t, g, Options{})
	for _, s := range []string{"Top owners by memory", "agent13", "agent04", "Fullest maps", "conntrack", "97.0%"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	for _, s := range []string{"agent03", ">other<", "Largest maps", "Hottest programs"} {
		if strings.Contains(page, s) {
			t.Errorf("page shows %s", s)
		}
	}
	if i, j := strings.Index(page, "agent13"), strings.Index(page, "agent12"); j < i {
		t.Error("owners not ordered by memory")
	}
	got, want := cells(t, page), served(t, g)
	for k, v := range got {
		if want[k] != v {
			t.Errorf("%s: page %v, metrics %v", k, v, want[k])
		}
	}
}

func TestStatic(t *testing.T) {
	srv := httptest.NewServer(Static())
	defer srv.Close()
	for _, f := range []string{"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "app.js", "style.css"} {
		resp, err := http.Get(srv.URL + StaticPrefix + f)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) < 100 {
			t.Errorf("%s: %d, %d bytes", f, resp.StatusCode, len(b))
		}
	}
}
