package exposition

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Accept headers of real scrapers and of every format the handler can
// negotiate.
var acceptHeaders = []string{
	"",
	"*/*",
	prometheusAccept,
	"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
	"application/openmetrics-text;version=0.0.1",
	"application/openmetrics-text;version=1.0.0;escaping=dots",
	"text/plain;version=0.0.4;escaping=values",
	"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
	"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
	"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text",
	"application/json",
}

var acceptEncodings = []string{"", "gzip", "gzip, identity", "identity;q=0, gzip;q=0.5", "*", "gzip;q=0, identity;q=0", "br", "deflate, gzip;q=1.0, *;q=0.5", "x;q=2"}

type result struct {
	code     int
	header   http.Header
	body     []byte // decoded
	gzipped  bool
	encodedN int
}

// do serves one request with the given headers (and query) and decodes a
// gzipped body, checking that it is a single, complete gzip member.
func do(t *testing.T, h http.Handler, query, accept, encoding string) result {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics"+query, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	r := result{code: w.Code, header: w.Header(), body: w.Body.Bytes(), encodedN: w.Body.Len()}
	if w.Header().Get("Content-Encoding") == "gzip" {
		r.gzipped = true
		zr, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatalf("Accept-Encoding %q: %v", encoding, err)
		}
		zr.Multistream(false)
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: reading the gzip body: %v", encoding, err)
		}
		if rest, _ := io.ReadAll(zr); len(rest) != 0 {
			t.Fatalf("bytes after the gzip member")
		}
		if err := zr.Reset(bytes.NewReader(nil)); err != io.EOF {
			t.Fatalf("more than one gzip member: %v", err)
		}
		r.body = plain
	}
	return r
}

// shadow returns a gatherer of the live families h would have written while
// serving its next request: h's counts now, and this request in flight.
func shadow(h *metricsHandler) prometheus.Gatherer {
	s := &metricsHandler{}
	s.inFlight.Store(h.inFlight.Load() + 1)
	for i := range h.requests {
		s.requests[i].Store(h.requests[i].Load())
	}
	s.gatheringFails.Store(h.gatheringFails.Load())
	s.encodingFails.Store(h.encodingFails.Load())
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return s.liveFamilies(nil), nil })
}

// merged gathers the families of a and b, sorted by name: what a single
// registry holding both would gather. (prometheus.Gatherers would drop the
// families' units, which promhttp over a registry sends in OpenMetrics.)
func merged(a, b prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		ma, err := a.Gather()
		if err != nil {
			return nil, err
		}
		mb, err := b.Gather()
		all := append(append([]*dto.MetricFamily(nil), ma...), mb...)
		slices.SortFunc(all, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
		return all, err
	})
}

// TestHandlerMatchesPromhttp: for every format and content coding a client
// can ask for, a scrape served from the Cache has the headers and the
// (decoded) bytes that promhttp sends for the same families and the same
// handler counts.
func TestHandlerMatchesPromhttp(t *testing.T) {
	// The agent's names need no escaping, so that every escaping scheme
	// shares a body; a name with a dot does, and each scheme has its own.
	utf8 := testRegistry(publish(testSnapshot()))
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "another.dot", Help: "A name that needs escaping (before promhttp_*, as promhttp sorts)."})
	utf8.MustRegister(g)
	for _, reg := range []*prometheus.Registry{testRegistry(publish(testSnapshot())), utf8} {
		cache := NewCache(reg)
		if err := cache.Refresh(); err != nil {
			t.Fatal(err)
		}
		if cache.current().legacyNames != (reg != utf8) {
			t.Errorf("legacyNames %v", cache.current().legacyNames)
		}
		matchPromhttp(t, cache)
	}
}

func matchPromhttp(t *testing.T, cache *Cache) {
	h := newMetricsHandler(cache, 4, DefaultScrapeTimeout, nil)
	for _, accept := range acceptHeaders {
		for _, encoding := range acceptEncodings {
			for _, query := range []string{"", "?name[]=odigos_ebpf_objects&name[]=promhttp_metric_handler_requests_total&name[]=none"} {
				ref := promhttp.HandlerFor(merged(cache, shadow(h)), promhttp.HandlerOpts{
					ErrorHandling:     promhttp.ContinueOnError,
					EnableOpenMetrics: true,
				})
				want := do(t, ref, query, accept, encoding)
				got := do(t, h, query, accept, encoding)
				name := "Accept " + accept + ", Accept-Encoding " + encoding + ", query " + query
				if got.code != http.StatusOK || want.code != http.StatusOK {
					t.Fatalf("%s: %d, promhttp %d", name, got.code, want.code)
				}
				for _, k := range []string{"Content-Type", "Content-Encoding"} {
					if got.header.Get(k) != want.header.Get(k) {
						t.Errorf("%s: %s %q, promhttp %q", name, k, got.header.Get(k), want.header.Get(k))
					}
				}
				if g, w := strings.Join(got.header.Values("Vary"), ","), strings.Join(want.header.Values("Vary"), ","); g != w {
					t.Errorf("%s: Vary %q, promhttp %q", name, g, w)
				}
				if !bytes.Equal(got.body, want.body) {
					t.Fatalf("%s: body differs from promhttp's\n got: %q\nwant: %q", name, diffAt(got.body, want.body), diffAt(want.body, got.body))
				}
				if cl := got.header.Get("Content-Length"); cl != "" && cl != itoa(got.encodedN) {
					t.Errorf("%s: Content-Length %s, body %d bytes", name, cl, got.encodedN)
				}
			}
		}
	}
}

func itoa(n int) string { return string(appendValue(nil, float64(n), false)) }

// diffAt returns a from a little before its first difference with b.
func diffAt(a, b []byte) []byte {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	a = a[max(0, i-200):]
	return a[:min(len(a), 400)]
}

// tail shortens a body to its end, where the live section is.
func tail(b []byte) []byte {
	if len(b) > 1500 {
		return b[len(b)-1500:]
	}
	return b
}

// The live section written by hand is what expfmt writes, in every text and
// OpenMetrics format that can be negotiated, for any count.
func TestLiveSectionEqualsExpfmt(t *testing.T) {
	h := newMetricsHandler(NewCache(prometheus.NewRegistry()), 1, 0, nil)
	values := []uint64{0, 1, 2, 9, 10, 99999, 100000, 999999, 1000000, 1234567, 1 << 53, 1<<53 + 1, math.MaxUint64}
	for _, accept := range acceptHeaders {
		neg := negotiate(http.Header{"Accept": {accept}})
		if neg.live == liveExpfmt {
			continue
		}
		for i, v := range values {
			h.encodingFails.Store(v)
			h.gatheringFails.Store(values[(i+1)%len(values)])
			h.inFlight.Store(int64(values[(i+2)%len(values)] >> 1))
			for j := range h.requests {
				h.requests[j].Store(values[(i+3+j)%len(values)])
			}
			for _, names := range []map[string]struct{}{nil, {handlerInFlight: {}}, {"other": {}}} {
				var want bytes.Buffer
				enc := expfmt.NewEncoder(&want, neg.format)
				for _, mf := range h.liveFamilies(names) {
					if err := enc.Encode(mf); err != nil {
						t.Fatal(err)
					}
				}
				if err := enc.(expfmt.Closer).Close(); err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				h.writeLive(&got, neg, names)
				if got.String() != want.String() {
					t.Fatalf("%s, names %v:\n got %q\nwant %q", neg.format, names, got.String(), want.String())
				}
			}
		}
	}
}

// The promhttp_metric_handler_* series are exact for every scrape: in
// flight counts this one, requests_total the scrapes before it, by code.
func TestHandlerLiveSeriesAreExact(t *testing.T) {
	cache := NewCache(testRegistry(publish(testSnapshot())))
	if err := cache.Refresh(); err != nil {
		t.Fatal(err)
	}
	h := newMetricsHandler(cache, 1, DefaultScrapeTimeout, nil)
	parse := func(body []byte) map[string]*dto.MetricFamily {
		t.Helper()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		return fams
	}
	series := func(fams map[string]*dto.MetricFamily, name, code string) float64 {
		for _, m := range fams[name].GetMetric() {
			if len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() == code {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s{%s}", name, code)
		return 0
	}
	for i := range 5 {
		fams := parse(do(t, h, "", "", "gzip").body)
		if got := series(fams, handlerRequests, "200"); got != float64(i) {
			t.Errorf("scrape %d: requests_total{code=200} %v, want %d", i, got, i)
		}
		if got := series(fams, handlerInFlight, ""); got != 1 {
			t.Errorf("scrape %d: in flight %v, want 1", i, got)
		}
	}
	h.slots <- struct{}{} // the only slot is taken: the next scrape gets 503
	if r := do(t, h, "", "", ""); r.code != http.StatusServiceUnavailable {
		t.Fatalf("scrape over the limit: %d", r.code)
	}
	<-h.slots
	fams := parse(do(t, h, "", "", "").body)
	if got := series(fams, handlerRequests, "503"); got != 1 {
		t.Errorf("requests_total{code=503} %v, want 1", got)
	}
	if got := series(fams, handlerRequests, "200"); got != 5 {
		t.Errorf("requests_total{code=200} %v, want 5", got)
	}
}

// A refresh replaces every body; a format not encoded at the refresh is
// encoded once, at its first scrape, then served as is.
func TestCacheBodiesFollowRefresh(t *testing.T) {
	pub := publish(testSnapshot())
	cache := NewCache(testRegistry(pub))
	if err := cache.Refresh(); err != nil {
		t.Fatal(err)
	}
	h := newMetricsHandler(cache, 4, DefaultScrapeTimeout, nil)
	if r := do(t, h, "", "", ""); !bytes.Contains(r.body, []byte("\nodigos_ebpf_objects{type=\"map\"} 3\n")) {
		t.Fatalf("before: %s", r.body)
	}
	s := testSnapshot()
	s.Kinds[0].Objects = 42
	pub.Publish(s)
	if r := do(t, h, "", "", ""); !bytes.Contains(r.body, []byte("\nodigos_ebpf_objects{type=\"map\"} 3\n")) {
		t.Fatal("the body changed before the refresh")
	}
	if err := cache.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"", prometheusAccept} {
		for _, enc := range []string{"", "gzip"} {
			if r := do(t, h, "", accept, enc); !bytes.Contains(r.body, []byte("odigos_ebpf_objects{type=\"map\"} 42")) {
				t.Fatalf("after the refresh (%q, %q): %s", accept, enc, tail(r.body))
			}
		}
	}
	proto := acceptHeaders[7]
	gen := cache.current()
	if gen.lookup(negotiateFormat(http.Header{"Accept": {proto}})) != nil {
		t.Fatal("protobuf encoded before anyone asked for it")
	}
	first := do(t, h, "", proto, "")
	b := gen.lookup(negotiateFormat(http.Header{"Accept": {proto}}))
	if b == nil || !bytes.HasPrefix(first.body, b.plain) {
		t.Fatal("protobuf not kept after its first scrape")
	}
}

// Gathering errors are logged and counted at every scrape served from the
// refresh that had them, as promhttp counts them at every gather; with
// nothing gathered, the scrape is a 500.
func TestCacheGatherErrors(t *testing.T) {
	mfs, err := testRegistry(publish(testSnapshot())).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	g := failingGatherer{mfs}
	cache := NewCache(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mu.Lock()
		defer mu.Unlock()
		return g.Gather()
	}))
	if err := cache.Refresh(); err == nil {
		t.Fatal("Refresh hid the error")
	}
	h := newMetricsHandler(cache, 4, DefaultScrapeTimeout, nil)
	for range 2 {
		if r := do(t, h, "", "", ""); r.code != http.StatusOK || !bytes.Contains(r.body, []byte("odigos_ebpf_objects")) {
			t.Fatalf("partial gather: %d", r.code)
		}
	}
	if got := h.gatheringFails.Load(); got != 2 {
		t.Errorf("gathering errors %d, want 2", got)
	}
	mu.Lock()
	g.mfs = nil
	mu.Unlock()
	if err := cache.Refresh(); err == nil {
		t.Fatal("Refresh hid the error")
	}
	r := do(t, h, "", "", "gzip")
	if r.code != http.StatusInternalServerError || !strings.Contains(string(r.body), "collector exploded") || r.gzipped {
		t.Errorf("nothing gathered: %d %q, want 500 naming the error", r.code, r.body)
	}
}

// A registry that holds promhttp's own series (someone wrapped it in
// promhttp.InstrumentMetricHandler) does not make them appear twice.
func TestHandlerFamiliesNotTwice(t *testing.T) {
	reg := testRegistry(publish(testSnapshot()))
	promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for _, g := range []prometheus.Gatherer{reg, NewCache(reg)} {
		if c, ok := g.(*Cache); ok {
			if err := c.Refresh(); err != nil {
				t.Fatal(err)
			}
		}
		r := do(t, newMetricsHandler(g, 4, DefaultScrapeTimeout, nil), "", "", "")
		if n := bytes.Count(r.body, []byte("# TYPE promhttp_metric_handler_requests_total")); n != 1 {
			t.Errorf("%T: promhttp_metric_handler_requests_total %d times", g, n)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := p.TextToMetricFamilies(bytes.NewReader(r.body)); err != nil {
			t.Errorf("%T: %v", g, err)
		}
	}
}

// A gatherer that panics fails the scrape, as under promhttp (net/http
// recovers and closes the connection), not the agent.
func TestHandlerGathererPanics(t *testing.T) {
	var fixed atomic.Bool
	h := newMetricsHandler(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		if !fixed.Load() {
			panic("boom")
		}
		return nil, nil
	}), 1, DefaultScrapeTimeout, nil)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // "http: panic serving ...: boom"
	srv.Start()
	defer srv.Close()
	if _, err := client.Get(srv.URL); err == nil {
		t.Error("a scrape whose gatherer panicked succeeded")
	}
	// The slot is free again.
	fixed.Store(true)
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after the panic: %d", resp.StatusCode)
	}
}

// TestNegotiateEncodingMatchesPromhttp: for well-formed Accept-Encoding
// headers (RFC 9110: codings, q from 0 to 1) the coding is promhttp's.
// Malformed ones (",gzip", "gzip;q=1.5") may be read differently; either
// way the response is valid and says its coding.
func TestNegotiateEncodingMatchesPromhttp(t *testing.T) {
	for _, enc := range append(acceptEncodings, "gzip;q=0.5, identity;q=0.5", "identity;q=0.4, gzip;q=0.6", "gzip ; q=0.9",
		"gzip;Q=1", "GZIP", "identity;q=0", "gzip;q=0", "*;q=0", "deflate;q=0.9, gzip;q=0.8, identity;q=0.1", "gzip, deflate, br, zstd") {
		got := negotiateEncoding(http.Header{"Accept-Encoding": {enc}})
		ref := do(t, promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}), "", "", enc)
		want := "identity"
		if ref.gzipped {
			want = "gzip"
		}
		if got == "" {
			got = "identity" // sent as identity, as promhttp does
		}
		if got != want {
			t.Errorf("Accept-Encoding %q: %s, promhttp %s", enc, got, want)
		}
	}
}

// OpenMetrics sends each family's unit ("# UNIT"), as promhttp does for a
// registry; a parser (Prometheus') rejects a unit that is not the suffix of
// the family's name.
func TestUnitsAreNameSuffixes(t *testing.T) {
	cache := NewCache(testRegistry(publish(testSnapshot())))
	if err := cache.Refresh(); err != nil {
		t.Fatal(err)
	}
	units := 0
	for _, mf := range cache.current().mfs {
		unit := mf.GetUnit()
		if unit == "" {
			continue
		}
		units++
		name := mf.GetName()
		if mf.GetType() == dto.MetricType_COUNTER {
			name = strings.TrimSuffix(name, "_total")
		}
		if !strings.HasSuffix(name, "_"+unit) {
			t.Errorf("%s: unit %q is not the suffix of its name", mf.GetName(), unit)
		}
	}
	if units == 0 {
		t.Log("no family has a unit")
	}
}

// appendStored writes stored deflate blocks that any inflater reads back,
// also past one block's 65,535 bytes.
func TestAppendStored(t *testing.T) {
	for _, n := range []int{0, 1, 1200, 0xffff, 0xffff + 1, 3*0xffff + 7} {
		data := bytes.Repeat([]byte("live section "), n/13+1)[:n]
		// A flushed, non-final stream first, as a cached body is.
		var stream bytes.Buffer
		fw, _ := flate.NewWriter(&stream, flate.BestSpeed)
		fw.Write([]byte("cached body\n"))
		fw.Flush()
		out, err := io.ReadAll(flate.NewReader(bytes.NewReader(appendStored(stream.Bytes(), data))))
		if err != nil || !bytes.Equal(out, append([]byte("cached body\n"), data...)) {
			t.Fatalf("%d bytes: %v, read back %d bytes", n, err, len(out))
		}
	}
}
