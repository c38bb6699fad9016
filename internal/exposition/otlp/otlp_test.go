package otlp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
)

const ns = "test_ebpf"

// agentLike is a registry shaped like the agent's (exposition.NewRegistry:
// go_*, process_*, build_info) with a gauge, a counter and a histogram of
// its own, served through an exposition.Cache as in the agent. gathers
// counts the gathers of the registry itself.
type agentLike struct {
	reg     *prometheus.Registry
	cache   *exposition.Cache
	gathers atomic.Int64
}

func newAgentLike(t *testing.T) *agentLike {
	t.Helper()
	a := &agentLike{}
	objects := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "objects", Help: "Objects."}, []string{"type"})
	objects.WithLabelValues("map").Set(40)
	objects.WithLabelValues("program").Set(9)
	cycles := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "collection_cycles_total", Help: "Cycles."})
	cycles.Add(7)
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "collection_duration_seconds",
		Help: "Duration.", Buckets: []float64{0.001, 0.01, 0.1}})
	for _, v := range []float64{0.0005, 0.005, 0.05, 0.5} {
		duration.Observe(v)
	}
	a.reg = exposition.NewRegistry(objects, ns, "")
	a.reg.MustRegister(cycles, duration)
	a.cache = exposition.NewCache(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		a.gathers.Add(1)
		return a.reg.Gather()
	}))
	return a
}

// start returns a started Pusher of a's cache to cfg, registered in a's
// registry, and the log it writes.
func (a *agentLike) start(t *testing.T, cfg Config) (*Pusher, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	p, err := New(cfg, a.cache, ns, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.reg.MustRegister(p)
	a.cache.Refresh()
	p.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p, logs
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

// count returns the lines that contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func config(t *testing.T, args ...string) Config {
	t.Helper()
	c, err := parse(t, args...).Config(time.Hour) // pushes are forced by the tests
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func flush(t *testing.T, p *Pusher) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return p.provider.ForceFlush(ctx)
}

func exports(p *Pusher, result string) float64 {
	return testutil.ToFloat64(p.exports.WithLabelValues(result))
}

// TestPush pushes to a receiver over HTTP and gRPC, in clear text and over
// mutual TLS, and checks the request: headers, resource, every family of the
// cache converted, the exports counter among them; and that a push gathers
// nothing: only the cache's refreshes gather the registry.
func TestPush(t *testing.T) {
	pki := newPKI(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
		ClientAuth: tls.RequireAndVerifyClientCert}
	t.Setenv("K8S_NODE_NAME", "node-1")
	t.Setenv("K8S_POD_NAME", "ebpf-metrics-x7k2p")
	t.Setenv("K8S_POD_NAMESPACE", "monitoring")

	for _, tc := range []struct {
		name, protocol string
		tls            bool
	}{
		{"http", ProtocolHTTP, false},
		{"grpc", ProtocolGRPC, false},
		{"https-mtls", ProtocolHTTP, true},
		{"grpc-mtls", ProtocolGRPC, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvTLS *tls.Config
			args := []string{"--otlp.protocol=" + tc.protocol, "--otlp.header=Authorization=Bearer s3cret"}
			if tc.tls {
				srvTLS = serverTLS
				args = append(args, "--otlp.tls.ca-file="+pki.caFile, "--otlp.tls.cert-file="+pki.clientCert,
					"--otlp.tls.key-file="+pki.clientKey)
			}
			r := newReceiver(t, tc.protocol, srvTLS)
			a := newAgentLike(t)
			p, logs := a.start(t, config(t, append(args, "--otlp.endpoint="+r.url)...))

			for range 2 {
				if err := flush(t, p); err != nil {
					t.Fatalf("push: %v\n%s", err, logs)
				}
			}
			if n := a.gathers.Load(); n != 1 {
				t.Errorf("the registry was gathered %d times for one refresh and two pushes, want 1", n)
			}
			if s, f := exports(p, "success"), exports(p, "failure"); s != 2 || f != 0 {
				t.Errorf("exports: %v succeeded, %v failed; want 2, 0", s, f)
			}
			// The counter is in the registry: after a refresh, it is pushed.
			a.cache.Refresh()
			if err := flush(t, p); err != nil {
				t.Fatal(err)
			}
			reqs, headers := r.received()
			if len(reqs) != 3 {
				t.Fatalf("received %d requests, want 3", len(reqs))
			}
			for _, h := range headers {
				if h["authorization"] != "Bearer s3cret" {
					t.Errorf("authorization header %q", h["authorization"])
				}
			}
			rm := reqs[2].GetResourceMetrics()
			if len(rm) != 1 {
				t.Fatalf("%d resources", len(rm))
			}
			attrs := attributes(rm[0].GetResource().GetAttributes())
			for k, v := range map[string]string{"service.name": "ebpf-metrics", "host.name": "node-1",
				"k8s.node.name": "node-1", "k8s.pod.name": "ebpf-metrics-x7k2p", "k8s.namespace.name": "monitoring"} {
				if attrs[k] != v {
					t.Errorf("resource attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
				}
			}
			metrics := byName(rm[0])
			if m := metrics[ns+"_otlp_exports_total"]; m == nil || m.GetSum() == nil ||
				value(m, "result", "success") != 2 || value(m, "result", "failure") != 0 {
				t.Errorf("exports counter pushed as %v", m)
			}
			mfs, _ := a.cache.Gather()
			for _, mf := range mfs {
				if metrics[mf.GetName()] == nil {
					t.Errorf("%s: gathered, not pushed", mf.GetName())
				}
			}
			if len(metrics) != len(mfs) {
				t.Errorf("pushed %d metrics, the cache holds %d families", len(metrics), len(mfs))
			}
		})
	}
}

// TestEnvironment: the SDK's OTEL_EXPORTER_OTLP_* variables apply to what
// no flag sets (headers without --otlp.header, compression), as
// docs/opentelemetry.md says; a flag wins.
func TestEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=1")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	for _, protocol := range []string{ProtocolHTTP, ProtocolGRPC} {
		for _, flag := range []bool{false, true} {
			r := newReceiver(t, protocol, nil)
			args := []string{"--otlp.protocol=" + protocol, "--otlp.endpoint=" + r.url}
			if flag {
				args = append(args, "--otlp.header=x-from-flag=2")
			}
			p, _ := newAgentLike(t).start(t, config(t, args...))
			if err := flush(t, p); err != nil {
				t.Fatal(err)
			}
			_, headers := r.received()
			h := headers[0]
			if flag && (h["x-from-flag"] != "2" || h["x-from-env"] != "") || !flag && h["x-from-env"] != "1" {
				t.Errorf("%s, header flag %v: headers %v", protocol, flag, h)
			}
			if protocol == ProtocolHTTP && h["content-encoding"] != "gzip" {
				t.Errorf("%s: content encoding %q, want gzip", protocol, h["content-encoding"])
			}
			if protocol == ProtocolGRPC && h["grpc-encoding"] != "gzip" {
				t.Errorf("%s: grpc-encoding %q, want gzip", protocol, h["grpc-encoding"])
			}
		}
	}
}

// TestNames: how the bridge names and types each kind of Prometheus family
// (docs/opentelemetry.md says the same).
func TestNames(t *testing.T) {
	r := newReceiver(t, ProtocolHTTP, nil)
	a := newAgentLike(t)
	p, _ := a.start(t, config(t, "--otlp.endpoint="+r.url))
	if err := flush(t, p); err != nil {
		t.Fatal(err)
	}
	reqs, _ := r.received()
	sm := reqs[0].GetResourceMetrics()[0].GetScopeMetrics()
	if len(sm) != 1 || sm[0].GetScope().GetName() != "go.opentelemetry.io/contrib/bridges/prometheus" {
		t.Errorf("scopes %v", sm)
	}
	metrics := byName(reqs[0].GetResourceMetrics()[0])
	for name, m := range metrics {
		if m.GetUnit() != "" {
			t.Errorf("%s: unit %q, want none (the name carries it)", name, m.GetUnit())
		}
	}

	// A gauge: a gauge, one point per series, labels as attributes.
	objects := metrics[ns+"_objects"]
	if objects.GetGauge() == nil || objects.GetDescription() != "Objects." ||
		value(objects, "type", "map") != 40 || value(objects, "type", "program") != 9 {
		t.Errorf("gauge: %v", objects)
	}
	// A counter: a monotonic cumulative sum, named with its _total.
	cycles := metrics[ns+"_collection_cycles_total"]
	if s := cycles.GetSum(); s == nil || !s.GetIsMonotonic() ||
		s.GetAggregationTemporality() != metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE ||
		value(cycles) != 7 || s.GetDataPoints()[0].GetStartTimeUnixNano() == 0 {
		t.Errorf("counter: %v", cycles)
	}
	// A histogram: a cumulative explicit-bucket histogram under the
	// family's name (no _bucket, _sum, _count), +Inf implied.
	h := metrics[ns+"_collection_duration_seconds"].GetHistogram()
	if h == nil || h.GetAggregationTemporality() != metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
		t.Fatalf("histogram: %v", metrics[ns+"_collection_duration_seconds"])
	}
	dp := h.GetDataPoints()[0]
	if !slices.Equal(dp.GetExplicitBounds(), []float64{0.001, 0.01, 0.1}) ||
		!slices.Equal(dp.GetBucketCounts(), []uint64{1, 1, 1, 1}) || dp.GetCount() != 4 || dp.GetSum() != 0.5555 {
		t.Errorf("histogram point: %v", dp)
	}
	// An info metric: a gauge at 1, its labels as attributes.
	info := metrics[ns+"_build_info"]
	if info.GetGauge() == nil || value(info) != 1 || info.GetGauge().GetDataPoints()[0].GetAttributes() == nil {
		t.Errorf("info: %v", info)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if metrics[name].GetGauge() == nil {
			t.Errorf("%s: %v", name, metrics[name])
		}
	}
}

// TestPushFailures: an endpoint that refuses, or that accepts and never
// answers, fails pushes without holding anything of the agent: the cache
// refreshes and serves, the counter is read, while a push hangs. Each
// failure is counted; the first is logged, the next ones within the
// backoff are not.
func TestPushFailures(t *testing.T) {
	for _, protocol := range []string{ProtocolHTTP, ProtocolGRPC} {
		t.Run(protocol+"/refused", func(t *testing.T) {
			a := newAgentLike(t)
			p, logs := a.start(t, config(t, "--otlp.protocol="+protocol, "--otlp.endpoint=http://"+refusedAddr(t)))
			for range 3 {
				if err := flush(t, p); err == nil {
					t.Fatal("push to a closed port succeeded")
				}
			}
			if s, f := exports(p, "success"), exports(p, "failure"); s != 0 || f != 3 {
				t.Errorf("exports: %v succeeded, %v failed; want 0, 3", s, f)
			}
			if n := logs.count("OTLP export failed"); n != 1 {
				t.Errorf("%d failures logged, want the first one only:\n%s", n, logs)
			}
		})

		t.Run(protocol+"/black-hole", func(t *testing.T) {
			bh := newBlackHole(t)
			a := newAgentLike(t)
			// A timeout far beyond the test: the push hangs until the black
			// hole closes.
			p, _ := a.start(t, config(t, "--otlp.protocol="+protocol, "--otlp.endpoint=http://"+bh.addr, "--otlp.timeout=10m"))
			pushed := make(chan error, 1)
			go func() { pushed <- flush(t, p) }()
			<-bh.accepted
			for range 3 {
				if err := a.cache.Refresh(); err != nil {
					t.Fatal(err)
				}
				if mfs, _ := a.cache.Gather(); len(mfs) == 0 {
					t.Fatal("nothing gathered")
				}
				testutil.ToFloat64(p.exports.WithLabelValues("failure"))
			}
			select {
			case err := <-pushed:
				t.Fatalf("the push to a black hole returned before it was closed: %v", err)
			default:
			}
			bh.close()
			if err := <-pushed; err == nil {
				t.Fatal("push to a black hole succeeded")
			}
			if f := exports(p, "failure"); f != 1 {
				t.Errorf("%v failures, want 1", f)
			}
		})

		t.Run(protocol+"/timeout", func(t *testing.T) {
			bh := newBlackHole(t)
			a := newAgentLike(t)
			p, logs := a.start(t, config(t, "--otlp.protocol="+protocol, "--otlp.endpoint=http://"+bh.addr, "--otlp.timeout=200ms"))
			if err := flush(t, p); err == nil {
				t.Fatal("push to a black hole succeeded")
			}
			if f := exports(p, "failure"); f != 1 {
				t.Errorf("%v failures, want 1", f)
			}
			if logs.count("OTLP export failed") != 1 {
				t.Errorf("failure not logged:\n%s", logs)
			}
		})
	}
}

// TestPeriodicFailuresLoggedOnce: the reader's own pushes, failing, are
// logged once through the backoff, and not again by the SDK's error
// handler.
func TestPeriodicFailuresLoggedOnce(t *testing.T) {
	a := newAgentLike(t)
	p, logs := a.start(t, config(t, "--otlp.endpoint=http://"+refusedAddr(t), "--otlp.interval=100ms"))
	for exports(p, "failure") < 3 {
		time.Sleep(50 * time.Millisecond)
	}
	if n, m := logs.count("OTLP export failed"), logs.count("OpenTelemetry SDK error"); n != 1 || m != 0 {
		t.Errorf("%d export failures and %d SDK errors logged, want 1 and 0:\n%s", n, m, logs)
	}
}

// TestGatherError: an error of the gatherer reaches the log through the
// SDK's error handler.
func TestGatherError(t *testing.T) {
	r := newReceiver(t, ProtocolHTTP, nil)
	logs := &logBuffer{}
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("gathering went wrong") })
	p, err := New(config(t, "--otlp.endpoint="+r.url), g, ns, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	defer p.Shutdown(context.Background())
	flush(t, p)
	if logs.count("OpenTelemetry SDK error") != 1 || logs.count("gathering went wrong") != 1 {
		t.Errorf("gather error not logged:\n%s", logs)
	}
}

// TestTLSVerification: a server certificate that the CA did not sign fails
// the push, unless verification is off.
func TestTLSVerification(t *testing.T) {
	pki := newPKI(t)
	r := newReceiver(t, ProtocolHTTP, &tls.Config{Certificates: []tls.Certificate{pki.selfSigned}})
	a := newAgentLike(t)
	p, _ := a.start(t, config(t, "--otlp.endpoint="+r.url, "--otlp.tls.ca-file="+pki.caFile))
	if err := flush(t, p); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("push to an unknown certificate: %v", err)
	}
	b := newAgentLike(t)
	p, _ = b.start(t, config(t, "--otlp.endpoint="+r.url, "--otlp.tls.insecure-skip-verify"))
	if err := flush(t, p); err != nil {
		t.Errorf("push with verification off: %v", err)
	}
}

// TestShutdownPushes: Shutdown makes a last push.
func TestShutdownPushes(t *testing.T) {
	r := newReceiver(t, ProtocolHTTP, nil)
	a := newAgentLike(t)
	p, _ := a.start(t, config(t, "--otlp.endpoint="+r.url))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reqs, _ := r.received(); len(reqs) != 1 {
		t.Errorf("%d pushes at shutdown, want 1", len(reqs))
	}
}

func TestResource(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range k8sEnv {
		t.Setenv(e.env, "") // unset: outside Kubernetes
	}
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod,service.name=other")
	t.Setenv("OTEL_SERVICE_NAME", "other")
	res, err := newResource()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{"service.name": "ebpf-metrics", "host.name": host, "k8s.cluster.name": "prod"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, e := range k8sEnv {
		if v, ok := got[string(e.key)]; ok {
			t.Errorf("%s = %q without %s", e.key, v, e.env)
		}
	}
}

func attributes(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

func byName(rm *metricpb.ResourceMetrics) map[string]*metricpb.Metric {
	m := make(map[string]*metricpb.Metric)
	for _, sm := range rm.GetScopeMetrics() {
		for _, x := range sm.GetMetrics() {
			m[x.GetName()] = x
		}
	}
	return m
}

// value returns the value of m's number point whose attributes include the
// given pairs, or -1.
func value(m *metricpb.Metric, labels ...string) float64 {
	points := m.GetGauge().GetDataPoints()
	if points == nil {
		points = m.GetSum().GetDataPoints()
	}
next:
	for _, p := range points {
		attrs := attributes(p.GetAttributes())
		for i := 0; i < len(labels); i += 2 {
			if attrs[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return p.GetAsDouble()
	}
	return -1
}
