package exposition

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	agenttest "github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// client opens a new connection per request, so that no idle connection
// (and no goroutine) outlives a test.
var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   10 * time.Second,
}

// startServer runs a server on a loopback port until the test ends, and
// checks then that Serve returned nil.
func startServer(t *testing.T, cfg ServerConfig, g prometheus.Gatherer) (*Server, string) {
	t.Helper()
	if cfg.ListenAddresses == nil {
		cfg.ListenAddresses = []string{"127.0.0.1:0"}
	}
	// Not t.Output(): a scrape abandoned by the timeout handler may still
	// log after the test has ended.
	logs := &agenttest.LockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	s, err := NewServer(cfg, g, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + s.Addrs()[0].String()
}

type response struct {
	code   int
	header http.Header
	body   string
}

func get(t *testing.T, url string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func testRegistry(pub *snapshot.Publisher) *prometheus.Registry {
	return NewRegistry(NewMetrics(pub, ""), "", "")
}

func TestServerEndpoints(t *testing.T) {
	pub := new(snapshot.Publisher)
	reg := testRegistry(pub)
	_, base := startServer(t, ServerConfig{Ready: SnapshotReady(pub)}, reg)

	if r := get(t, base+"/-/healthy"); r.code != http.StatusOK {
		t.Errorf("/-/healthy before the first cycle: %d, want 200", r.code)
	}
	if r := get(t, base+"/-/ready"); r.code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready before the first cycle: %d, want 503", r.code)
	}
	r := get(t, base+"/metrics")
	if r.code != http.StatusOK || strings.Contains(r.body, "odigos_ebpf_objects{") ||
		!strings.Contains(r.body, "odigos_ebpf_collection_active") {
		t.Errorf("/metrics before the first cycle: %d, want 200, the meta metrics and no object gauge:\n%s", r.code, r.body)
	}

	pub.Publish(testSnapshot())
	if r := get(t, base+"/-/ready"); r.code != http.StatusOK {
		t.Errorf("/-/ready after a cycle: %d, want 200", r.code)
	}
	r = get(t, base+"/metrics")
	if r.code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", r.code, r.body)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format", r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		"\nodigos_ebpf_objects{type=\"map\"} 3\n",
		"\nodigos_ebpf_build_info{",
		"\npromhttp_metric_handler_requests_total{code=\"200\"} ",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	r = get(t, base+"/")
	if r.code != http.StatusOK || !strings.Contains(r.body, `href="/metrics"`) || strings.Contains(r.body, "debug/pprof") {
		t.Errorf("landing page: %d, want 200 with a link to /metrics and none to pprof:\n%s", r.code, r.body)
	}
	for _, path := range []string{"/debug/pprof/", "/metrics/x", "/nothing"} {
		if r := get(t, base+path); r.code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, r.code)
		}
	}
}

func TestServerOpenMetrics(t *testing.T) {
	reg := testRegistry(publish(testSnapshot()))
	_, base := startServer(t, ServerConfig{}, reg)
	r := get(t, base+"/metrics", "Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if r.code != http.StatusOK {
		t.Fatalf("%d\n%s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Errorf("Content-Type %q, want OpenMetrics 1.0.0", ct)
	}
	// OpenMetrics names a counter family without _total and ends with EOF.
	for _, want := range []string{
		"\n# TYPE odigos_ebpf_collection_cycles counter\n",
		"\nodigos_ebpf_collection_cycles_total 4.0\n", // and writes floats as such
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("OpenMetrics response lacks %q", want)
		}
	}
	if !strings.HasSuffix(r.body, "# EOF\n") {
		t.Error("OpenMetrics response does not end with # EOF")
	}
}

func TestServerTelemetryPathAndPprof(t *testing.T) {
	reg := testRegistry(publish(testSnapshot()))
	_, base := startServer(t, ServerConfig{TelemetryPath: "/x/metrics", EnablePprof: true}, reg)
	if r := get(t, base+"/x/metrics"); r.code != http.StatusOK || !strings.Contains(r.body, "odigos_ebpf_objects") {
		t.Errorf("/x/metrics: %d", r.code)
	}
	if r := get(t, base+"/metrics"); r.code != http.StatusNotFound {
		t.Errorf("/metrics with telemetry path /x/metrics: %d, want 404", r.code)
	}
	if r := get(t, base+"/"); !strings.Contains(r.body, `href="/x/metrics"`) || !strings.Contains(r.body, "debug/pprof/heap") {
		t.Errorf("landing page lacks the links to /x/metrics and pprof:\n%s", r.body)
	}
	if r := get(t, base+"/debug/pprof/"); r.code != http.StatusOK {
		t.Errorf("/debug/pprof/ with pprof on: %d, want 200", r.code)
	}
	if r := get(t, base+"/debug/pprof/goroutine?debug=1"); r.code != http.StatusOK || !strings.Contains(r.body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %d", r.code)
	}
}

func TestServerMetricsAtRoot(t *testing.T) {
	reg := testRegistry(publish(testSnapshot()))
	_, base := startServer(t, ServerConfig{TelemetryPath: "/"}, reg)
	if r := get(t, base+"/"); r.code != http.StatusOK || !strings.Contains(r.body, "odigos_ebpf_objects") {
		t.Errorf("/ as telemetry path: %d\n%s", r.code, r.body)
	}
	if r := get(t, base+"/other"); r.code != http.StatusNotFound {
		t.Errorf("/other with metrics at /: %d, want 404", r.code)
	}
}

// blockingGatherer holds every Gather until released.
type blockingGatherer struct {
	g        prometheus.Gatherer
	entered  chan struct{}
	release  chan struct{}
	released sync.Once
}

func newBlockingGatherer() *blockingGatherer {
	return &blockingGatherer{
		g:       testRegistry(publish(testSnapshot())),
		entered: make(chan struct{}, 16),
		release: make(chan struct{}),
	}
}

func (b *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.g.Gather()
}

func (b *blockingGatherer) Release() { b.released.Do(func() { close(b.release) }) }

// getAsync starts a GET and returns where its response will arrive.
func getAsync(t *testing.T, url string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		var r response
		resp, err := client.Get(url)
		if err != nil {
			r.body = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r = response{resp.StatusCode, resp.Header, string(body)}
		}
		ch <- r
	}()
	return ch
}

func TestServerMaxRequestsInFlight(t *testing.T) {
	bg := newBlockingGatherer()
	defer bg.Release()
	_, base := startServer(t, ServerConfig{MaxRequestsInFlight: 1}, bg)

	first := getAsync(t, base+"/metrics")
	<-bg.entered // the first scrape holds the only slot
	if r := get(t, base+"/metrics"); r.code != http.StatusServiceUnavailable {
		t.Errorf("second concurrent scrape: %d, want 503\n%s", r.code, r.body)
	}
	bg.Release()
	if r := <-first; r.code != http.StatusOK || !strings.Contains(r.body, "odigos_ebpf_objects") {
		t.Errorf("first scrape: %d, want 200\n%s", r.code, r.body)
	}
}

// TestServerNoRequestLimit: MaxRequestsInFlight 0 (--web.max-requests=0)
// means no limit, as in node_exporter: eight scrapes held at once are all
// served.
func TestServerNoRequestLimit(t *testing.T) {
	bg := newBlockingGatherer()
	defer bg.Release()
	_, base := startServer(t, ServerConfig{MaxRequestsInFlight: 0}, bg)
	var pending []<-chan response
	for range 8 {
		pending = append(pending, getAsync(t, base+"/metrics"))
		<-bg.entered
	}
	bg.Release()
	for i, ch := range pending {
		if r := <-ch; r.code != http.StatusOK {
			t.Errorf("scrape %d of 8 at once: %d, want 200\n%s", i, r.code, r.body)
		}
	}
}

func TestServerScrapeTimeout(t *testing.T) {
	bg := newBlockingGatherer()
	_, base := startServer(t, ServerConfig{ScrapeTimeout: 50 * time.Millisecond}, bg)
	r := get(t, base+"/metrics")
	bg.Release() // let the abandoned Gather finish
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "Exceeded configured timeout") {
		t.Errorf("scrape over the timeout: %d, want 503\n%s", r.code, r.body)
	}
}

func TestServerShutdown(t *testing.T) {
	reg := testRegistry(publish(testSnapshot()))
	s, err := NewServer(ServerConfig{ListenAddresses: []string{"127.0.0.1:0"}}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()

	// A kept-alive idle connection must not hold Shutdown.
	keepAlive := &http.Client{Transport: &http.Transport{}}
	defer keepAlive.CloseIdleConnections()
	resp, err := keepAlive.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with no scrape in flight", d)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Shutdown", addr)
	}
}

// Shutdown waits for a scrape in flight, which completes normally.
func TestServerShutdownDrains(t *testing.T) {
	bg := newBlockingGatherer()
	defer bg.Release()
	s, err := NewServer(ServerConfig{ListenAddresses: []string{"127.0.0.1:0"}}, bg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()

	scrape := getAsync(t, "http://"+s.Addrs()[0].String()+"/metrics")
	<-bg.entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a scrape in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	bg.Release()
	if r := <-scrape; r.code != http.StatusOK {
		t.Errorf("scrape in flight during Shutdown: %d, want 200\n%s", r.code, r.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// Shutdown before Serve releases the ports; Serve then returns at once.
func TestServerShutdownBeforeServe(t *testing.T) {
	s, err := NewServer(ServerConfig{ListenAddresses: []string{"127.0.0.1:0", "127.0.0.1:0"}}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0].String() == addrs[1].String() {
		t.Fatalf("Addrs = %v, want two distinct addresses", addrs)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Shutdown", a)
		}
	}
	if err := s.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("second Serve returned nil, want an error")
	}
}

// Basic auth from an exporter-toolkit web configuration file, on two
// listeners (each gets its own http.Server, checked by -race).
func TestServerWebConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "web.yml")
	// dave:scrape-secret, bcrypt at the minimum cost (4) to keep the test
	// fast under -race.
	const config = "basic_auth_users:\n  dave: $2a$04$czJcoD7lGO6lRnDwCyr2Vutdx.7riWiMD9aqe781zdCuR/z18rYkq\n"
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(publish(testSnapshot()))
	s, _ := startServer(t, ServerConfig{
		ListenAddresses: []string{"127.0.0.1:0", "127.0.0.1:0"},
		WebConfigFile:   file,
	}, reg)

	for _, a := range s.Addrs() {
		url := "http://" + a.String() + "/metrics"
		if r := get(t, url); r.code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", url, r.code)
		}
		for password, want := range map[string]int{"scrape-secret": http.StatusOK, "wrong": http.StatusUnauthorized} {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.SetBasicAuth("dave", password)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want || want == http.StatusOK && !strings.Contains(string(body), "odigos_ebpf_objects") {
				t.Errorf("%s with password %q: %d, want %d", url, password, resp.StatusCode, want)
			}
		}
	}
}

func TestNewServerErrors(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(badConfig, []byte("no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	local := []string{"127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no address", ServerConfig{}, "no listen address"},
		{"vsock", ServerConfig{ListenAddresses: []string{"vsock://:9435"}}, "only TCP"},
		{"address in use", ServerConfig{ListenAddresses: []string{"127.0.0.1:0", busy.Addr().String()}}, "listening on"},
		{"relative path", ServerConfig{ListenAddresses: local, TelemetryPath: "metrics"}, "must start with /"},
		{"pattern", ServerConfig{ListenAddresses: local, TelemetryPath: "/{x}"}, "only letters"},
		{"method", ServerConfig{ListenAddresses: local, TelemetryPath: "/metrics POST"}, "only letters"},
		{"unclean", ServerConfig{ListenAddresses: local, TelemetryPath: "/a/../metrics"}, "clean"},
		{"double slash", ServerConfig{ListenAddresses: local, TelemetryPath: "//metrics"}, "clean"},
		{"reserved", ServerConfig{ListenAddresses: local, TelemetryPath: "/-/healthy"}, "reserved"},
		{"pprof", ServerConfig{ListenAddresses: local, TelemetryPath: "/debug/pprof/heap"}, "reserved"},
		{"history", ServerConfig{ListenAddresses: local, TelemetryPath: "/api/v1/history"}, "reserved"},
		{"status page", ServerConfig{ListenAddresses: local, TelemetryPath: "/static/metrics"}, "reserved"},
		{"web config", ServerConfig{ListenAddresses: local, WebConfigFile: badConfig}, "web configuration file"},
		{"web config missing", ServerConfig{ListenAddresses: local, WebConfigFile: badConfig + ".none"}, "web configuration file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(tc.cfg, prometheus.NewRegistry(), nil)
			if err == nil {
				_ = s.Shutdown(context.Background())
				t.Fatal("NewServer accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
	for _, p := range []string{"/", "/metrics", "/metrics/", "/a/b_c-d.e~f", "/debugging"} {
		if err := CheckTelemetryPath(p); err != nil {
			t.Errorf("telemetry path %q rejected: %v", p, err)
		}
	}
}

// /-/ready, served from the cache, turns 200 only once the cache has
// gathered the completed cycle: a scrape after a 200 shows the objects.
func TestCacheReady(t *testing.T) {
	pub := new(snapshot.Publisher)
	cache := NewCache(testRegistry(pub))
	_, base := startServer(t, ServerConfig{Ready: cache.Ready(SnapshotReady(pub))}, cache)

	cache.Refresh()
	if r := get(t, base+"/-/ready"); r.code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready before the first cycle: %d, want 503", r.code)
	}
	pub.Publish(testSnapshot())
	if r := get(t, base+"/-/ready"); r.code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready after a cycle, before the cache refreshed: %d, want 503", r.code)
	}
	if r := get(t, base+"/metrics"); strings.Contains(r.body, "odigos_ebpf_objects{") {
		t.Errorf("the cache served the cycle before refreshing:\n%s", r.body)
	}
	cache.Refresh()
	if r := get(t, base+"/-/ready"); r.code != http.StatusOK {
		t.Errorf("/-/ready after the refresh: %d, want 200", r.code)
	}
	if r := get(t, base+"/metrics"); !strings.Contains(r.body, "\nodigos_ebpf_objects{type=\"map\"} 3\n") {
		t.Errorf("/metrics after /-/ready answered 200 lacks the cycle's objects:\n%s", r.body)
	}
}
