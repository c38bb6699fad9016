package exposition

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/collector"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// realisticSnapshot is a busy node: 10,000 maps of 16 types, 5,000
// programs of 12 types, 2,000 links of 6 types, run-time statistics on.
func realisticSnapshot() *collector.Snapshot {
	s := testSnapshot()
	fill := func(k kernel.Kind, objects, types int, memPerObject uint64) {
		ks := &s.Kinds[k]
		*ks = collector.KindStats{Capacity: uint64(objects)}
		for i := 1; i <= types; i++ {
			n := uint64(objects / types)
			ks.Types[i] = collector.TypeStats{Objects: n, MemoryBytes: n * memPerObject, RunTimeNs: n * 1e6, RunCount: n * 1e3}
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
	reg := NewRegistry(NewCollector(publish(realisticSnapshot()), ""), "")
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
	reg.MustRegister(NewCollector(publish(realisticSnapshot()), ""))
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

// BenchmarkScrapeCached is a scrape as the agent serves it: the registry
// gathered once into a Cache, each scrape only encoding what the cache
// holds, through promhttp with promhttp's own counters live.
func BenchmarkScrapeCached(b *testing.B) {
	reg := NewRegistry(NewCollector(publish(realisticSnapshot()), ""), "")
	cache := NewCache(reg)
	if err := cache.Refresh(); err != nil {
		b.Fatal(err)
	}
	httpReg := prometheus.NewRegistry()
	h := promhttp.InstrumentMetricHandler(httpReg, promhttp.HandlerFor(prometheus.Gatherers{cache, httpReg}, promhttp.HandlerOpts{}))
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkScrapeUncached is the same scrape gathering the registry each
// time, for comparison.
func BenchmarkScrapeUncached(b *testing.B) {
	reg := NewRegistry(NewCollector(publish(realisticSnapshot()), ""), "")
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
