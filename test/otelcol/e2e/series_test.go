package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// series is one picture of the agent's metrics, flattened as the Prometheus
// text format shows it: one value per series name{labels}, histograms and
// summaries as their _count, _sum, _bucket{le} and {quantile} series. A
// scrape and an OTLP export both flatten to it, so that they compare value
// by value.
type series struct {
	values map[string]float64
	types  map[string]string // family name → gauge, counter, histogram, summary
}

func newSeries() series {
	return series{values: make(map[string]float64), types: make(map[string]string)}
}

// key is name{labels}, the labels sorted by name.
func key(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", n, labels[n])
	}
	b.WriteByte('}')
	return b.String()
}

func with(labels map[string]string, name, value string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[name] = value
	return out
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// get returns the value of name{labels}, and whether there is one.
func (s series) get(name string, labels map[string]string) (float64, bool) {
	v, ok := s.values[key(name, labels)]
	return v, ok
}

func (s series) value(name string, labels ...string) float64 {
	m := make(map[string]string)
	for i := 0; i < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	return s.values[key(name, m)]
}

// generation identifies what one refresh of the agent's cache gathered: the
// cycle it shows, and the Go runtime's allocation counter at that gather,
// which every gather moves.
type generation struct{ cycles, allocs float64 }

func (s series) generation() generation {
	return generation{s.value("odigos_ebpf_collection_cycles_total"), s.value("go_memstats_alloc_bytes_total")}
}

// fromScrape flattens a scrape in the text format. The HTTP handler's own
// promhttp_* families are left out: they are counted live at each scrape,
// outside the cache that both /metrics and OTLP serve.
func fromScrape(body []byte) (series, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return series{}, err
	}
	s := newSeries()
	for name, mf := range fams {
		if strings.HasPrefix(name, "promhttp_") {
			continue
		}
		s.types[name] = strings.ToLower(mf.GetType().String())
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string)
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				s.values[key(name, labels)] = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				s.values[key(name, labels)] = m.GetCounter().GetValue()
			case dto.MetricType_UNTYPED:
				s.values[key(name, labels)] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				s.values[key(name+"_count", labels)] = float64(h.GetSampleCount())
				s.values[key(name+"_sum", labels)] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					s.values[key(name+"_bucket", with(labels, "le", formatFloat(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_SUMMARY:
				q := m.GetSummary()
				s.values[key(name+"_count", labels)] = float64(q.GetSampleCount())
				s.values[key(name+"_sum", labels)] = q.GetSampleSum()
				for _, v := range q.GetQuantile() {
					s.values[key(name, with(labels, "quantile", formatFloat(v.GetQuantile())))] = v.GetValue()
				}
			default:
				return series{}, fmt.Errorf("%s: unexpected type %v", name, mf.GetType())
			}
		}
	}
	return s, nil
}

// export is one OTLP request the Collector received from one agent.
type export struct {
	resource map[string]string
	series   series
}

func attrs(m pcommon.Map) map[string]string {
	out := make(map[string]string, m.Len())
	for k, v := range m.All() {
		out[k] = v.AsString()
	}
	return out
}

func number(dp pmetric.NumberDataPoint) float64 {
	if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(dp.IntValue())
	}
	return dp.DoubleValue()
}

// fromOTLP flattens the metrics of one resource as the Prometheus text
// format would show them. The OTLP types map to Prometheus types as the
// bridge made them: a gauge from a gauge, a monotonic cumulative sum from a
// counter, an explicit-bucket histogram (buckets not cumulative, +Inf
// implied) from a histogram, a summary from a summary.
func fromOTLP(rm pmetric.ResourceMetrics) (series, error) {
	s := newSeries()
	for _, sm := range rm.ScopeMetrics().All() {
		for _, m := range sm.Metrics().All() {
			name := m.Name()
			switch m.Type() {
			case pmetric.MetricTypeGauge:
				s.types[name] = "gauge"
				for _, dp := range m.Gauge().DataPoints().All() {
					s.values[key(name, attrs(dp.Attributes()))] = number(dp)
				}
			case pmetric.MetricTypeSum:
				sum := m.Sum()
				if !sum.IsMonotonic() || sum.AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					return series{}, fmt.Errorf("%s: a sum that is not monotonic and cumulative", name)
				}
				s.types[name] = "counter"
				for _, dp := range sum.DataPoints().All() {
					s.values[key(name, attrs(dp.Attributes()))] = number(dp)
				}
			case pmetric.MetricTypeHistogram:
				if m.Histogram().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					return series{}, fmt.Errorf("%s: a histogram that is not cumulative", name)
				}
				s.types[name] = "histogram"
				for _, dp := range m.Histogram().DataPoints().All() {
					labels := attrs(dp.Attributes())
					s.values[key(name+"_count", labels)] = float64(dp.Count())
					s.values[key(name+"_sum", labels)] = dp.Sum()
					bounds, counts := dp.ExplicitBounds().AsRaw(), dp.BucketCounts().AsRaw()
					if len(counts) != len(bounds)+1 {
						return series{}, fmt.Errorf("%s: %d bounds, %d buckets", name, len(bounds), len(counts))
					}
					var cumulative uint64
					for i, c := range counts {
						cumulative += c
						le := "+Inf"
						if i < len(bounds) {
							le = formatFloat(bounds[i])
						}
						s.values[key(name+"_bucket", with(labels, "le", le))] = float64(cumulative)
					}
				}
			case pmetric.MetricTypeSummary:
				s.types[name] = "summary"
				for _, dp := range m.Summary().DataPoints().All() {
					labels := attrs(dp.Attributes())
					s.values[key(name+"_count", labels)] = float64(dp.Count())
					s.values[key(name+"_sum", labels)] = dp.Sum()
					for _, q := range dp.QuantileValues().All() {
						s.values[key(name, with(labels, "quantile", formatFloat(q.Quantile())))] = q.Value()
					}
				}
			default:
				return series{}, fmt.Errorf("%s: unexpected OTLP type %v", name, m.Type())
			}
		}
	}
	return s, nil
}

// diff lists how got differs from want, series by series.
func diff(want, got series) []string {
	var d []string
	for k, w := range want.values {
		g, ok := got.values[k]
		switch {
		case !ok:
			d = append(d, "missing "+k)
		case g != w:
			d = append(d, fmt.Sprintf("%s = %v, want %v", k, g, w))
		}
	}
	for k := range got.values {
		if _, ok := want.values[k]; !ok {
			d = append(d, "unexpected "+k)
		}
	}
	for name, w := range want.types {
		if g := got.types[name]; g != w {
			d = append(d, fmt.Sprintf("%s: type %s, want %s", name, g, w))
		}
	}
	slices.Sort(d)
	return d
}

// exportReader reads the Collector's output file as it grows and keeps the
// exports of one agent, told apart by its k8s.pod.name.
type exportReader struct {
	path    string
	pod     string
	offset  int64
	partial []byte
	exports []export
}

// poll reads the lines appended since the last call.
func (r *exportReader) poll(t *testing.T) {
	t.Helper()
	f, err := os.Open(r.path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(r.offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	r.offset += int64(len(data))
	data = append(r.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	if last < 0 {
		r.partial = data
		return
	}
	r.partial = append([]byte(nil), data[last+1:]...)
	sc := bufio.NewScanner(bytes.NewReader(data[:last+1]))
	sc.Buffer(nil, 64<<20)
	var u pmetric.JSONUnmarshaler
	for sc.Scan() {
		md, err := u.UnmarshalMetrics(sc.Bytes())
		if err != nil {
			t.Fatalf("the Collector wrote a line that is not OTLP JSON: %v", err)
		}
		for _, rm := range md.ResourceMetrics().All() {
			res := attrs(rm.Resource().Attributes())
			if res["k8s.pod.name"] != r.pod {
				continue
			}
			s, err := fromOTLP(rm)
			if err != nil {
				t.Fatal(err)
			}
			r.exports = append(r.exports, export{resource: res, series: s})
		}
	}
}

// find waits for the export of generation g. It returns false once an
// export of a later cycle has arrived without it (the agent pushes what its
// cache holds, which only moves forward), or after 30 s.
func (r *exportReader) find(t *testing.T, g generation) (export, bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		r.poll(t)
		for _, e := range r.exports {
			if e.series.generation() == g {
				return e, true
			}
		}
		if n := len(r.exports); n > 0 && r.exports[n-1].series.generation().cycles > g.cycles {
			return export{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return export{}, false
}

// scrape returns the agent's /metrics, flattened.
func (a *agent) scrape(t testing.TB) series {
	t.Helper()
	s, err := fromScrape(a.get(t))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return s
}

// get returns the body of the agent's /metrics.
func (a *agent) get(t testing.TB) []byte {
	t.Helper()
	resp, err := http.Get("http://" + a.addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	return body
}

// scrapeAfter returns a scrape of a cycle that started after start.
func (a *agent) scrapeAfter(t *testing.T, start time.Time) series {
	t.Helper()
	since := float64(start.UnixNano()) / 1e9
	for deadline := time.Now().Add(30 * time.Second); ; {
		s := a.scrape(t)
		end, ok := s.get("odigos_ebpf_last_success_timestamp_seconds", nil)
		if ok && end-s.value("odigos_ebpf_last_collection_duration_seconds") >= since {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("no cycle started within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
