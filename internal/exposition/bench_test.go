package exposition

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// realisticSnapshot is a busy node: 10,000 maps of 16 types, 5,000
// programs of 12 types, 2,000 links of 6 types, run-time statistics on.
// discardWriter is a ResponseWriter that keeps the status and counts the
// bytes: what a scrape costs the handler, not a recorder's buffer.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// prometheusAccept is the Accept header of Prometheus 2.x's scrapes.
const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

func realisticSnapshot() *snapshot.Snapshot {
	s := testSnapshot()
	fill := func(k kernel.Kind, objects, types int, memPerObject uint64) {
		ks := &s.Kinds[k]
		*ks = snapshot.KindStats{Capacity: uint64(objects)}
		for i := 1; i <= types; i++ {
			n := uint64(objects / types)
			ks.Types[i] = snapshot.TypeStats{Objects: n, MemoryBytes: n * memPerObject, RunTimeNs: n * 1e6, RunCount: n * 1e3}
			ks.TypesSeen[i/64] |= 1 << (uint(i) % 64)
			ks.Objects += n
			ks.MemoryBytes += n * memPerObject
		}
		ks.Tracked = ks.Objects
	}
	fill(kernel.KindMap, 10_000, 16, 20_000)
	fill(kernel.KindProg, 5_000, 12, 8_192)
	fill(kernel.KindLink, 2_000, 6, 0)
	return s
}

// BenchmarkScrape measures what one scrape costs the agent: Gather of the
// full registry (snapshot, Go, process, build info) and encoding in the
// Prometheus text format.
func BenchmarkScrape(b *testing.B) {
	reg := NewRegistry(NewMetrics(publish(realisticSnapshot()), ""), "", "")
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteText(io.Discard, reg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollect is the share of the snapshot collector alone, encoded
// too.
func BenchmarkCollect(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewMetrics(publish(realisticSnapshot()), ""))
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// refreshedCache is the cache of a realistic snapshot's registry, refreshed.
func refreshedCache(b *testing.B) *Cache {
	cache := NewCache(NewRegistry(NewMetrics(publish(realisticSnapshot()), ""), "", ""))
	if err := cache.Refresh(); err != nil {
		b.Fatal(err)
	}
	return cache
}

// scrapeLoop times scrapes of h with req, each into a discarding writer.
func scrapeLoop(b *testing.B, h http.Handler, req *http.Request) {
	b.ReportAllocs()
	w := &discardWriter{}
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatal(w.code)
		}
	}
	b.ReportMetric(float64(w.n), "bytes/scrape")
}

// BenchmarkScrapeCached is a scrape as the agent serves it: the registry
// gathered and encoded once into a Cache, each scrape copying the encoded
// body and appending the handler's live series.
func BenchmarkScrapeCached(b *testing.B) {
	cache := refreshedCache(b)
	h := newMetricsHandler(cache, 4, DefaultScrapeTimeout, nil)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	scrapeLoop(b, h, req)
}

// BenchmarkScrapeCachedGzip is BenchmarkScrapeCached as Prometheus asks:
// OpenMetrics, gzip.
func BenchmarkScrapeCachedGzip(b *testing.B) {
	cache := refreshedCache(b)
	h := newMetricsHandler(cache, 4, DefaultScrapeTimeout, nil)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", prometheusAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	scrapeLoop(b, h, req)
}

// BenchmarkScrapePromhttpCached is how the agent served a scrape before the
// handler served encoded bodies: promhttp over the Cache's families, each
// scrape encoding them, with promhttp's counters gathered live.
func BenchmarkScrapePromhttpCached(b *testing.B) {
	cache := refreshedCache(b)
	httpReg := prometheus.NewRegistry()
	h := promhttp.InstrumentMetricHandler(httpReg, promhttp.HandlerFor(prometheus.Gatherers{cache, httpReg}, promhttp.HandlerOpts{}))
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	scrapeLoop(b, h, req)
}

// BenchmarkScrapeUncached is the same scrape gathering the registry each
// time, for comparison.
func BenchmarkScrapeUncached(b *testing.B) {
	reg := NewRegistry(NewMetrics(publish(realisticSnapshot()), ""), "", "")
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	scrapeLoop(b, h, req)
}

// BenchmarkCacheRefresh is what the cache's goroutine does after each
// cycle: gather the registry, then encode the eager formats, as is and
// gzipped. BenchmarkCacheGather is the gathering alone, what a refresh cost
// before the cache kept encoded bodies.
func BenchmarkCacheRefresh(b *testing.B) {
	cache := NewCache(NewRegistry(NewMetrics(publish(realisticSnapshot()), ""), "", ""))
	b.ReportAllocs()
	for b.Loop() {
		if err := cache.Refresh(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(*cache.current().bodies.Load())), "bodies")
}

func BenchmarkCacheGather(b *testing.B) {
	reg := NewRegistry(NewMetrics(publish(realisticSnapshot()), ""), "", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
