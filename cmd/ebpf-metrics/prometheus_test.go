package main

import (
	"bufio"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// Jobs of the Prometheus server of TestRealPrometheus.
const (
	jobPlain   = "ebpf-metrics"          // plain HTTP
	jobTLS     = "ebpf-metrics-tls"      // HTTPS with basic auth
	jobBadAuth = "ebpf-metrics-bad-auth" // HTTPS with a wrong password
)

// TestRealPrometheus runs Debian's Prometheus server against two agents,
// one on plain HTTP and one behind TLS and basic auth (exporter-toolkit web
// configuration), with a population made by ebpf-loadgen, and checks
// through Prometheus' query API that odigos_ebpf_objects and
// odigos_ebpf_total_memory_bytes equal what bpftool reports. The same
// Prometheus loads the alert and recording rules of deploy/prometheus, which
// must evaluate without error, and runs every query of the Grafana
// dashboard.
func TestRealPrometheus(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.Bpftool(t, kinds[0].bpf) // fails in CI without bpftool
	promBin := testutil.RequireTool(t, "prometheus", "prometheus")
	dir := t.TempDir()

	pop := startLoadgen(t, "--maps=30", "--programs=6", "--links=3", "--fill=0.5")

	// The TLS agent: a self-signed certificate for 127.0.0.1 and a bcrypt
	// password hash, in an exporter-toolkit web configuration file.
	certFile, keyFile, roots := selfSigned(t, dir)
	const user, password = "prometheus", "s3cret-scrape"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, dir, "web.yml", fmt.Sprintf(
		"tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n",
		certFile, keyFile, user, hash))
	tlsClient := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	defer tlsClient.CloseIdleConnections()

	fast := []string{"--collection.interval=100ms", "--config.file=" + fastConfig(t, "")}
	plain := startAgent(t, fast...)
	secure := startAgentWeb(t, webClient{scheme: "https", client: tlsClient, user: user, password: password},
		append(fast, "--web.config.file="+webConfig)...)

	// Without credentials, or with wrong ones: 401. Plain HTTP to the TLS
	// port: 400.
	for _, w := range []webClient{
		{scheme: "https", client: tlsClient},
		{scheme: "https", client: tlsClient, user: user, password: "wrong"},
		{scheme: "https", client: tlsClient, user: "nobody", password: password},
		{},
	} {
		want := http.StatusUnauthorized
		if w.scheme == "" {
			want = http.StatusBadRequest
		}
		resp, err := w.get(secure.addr, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s://%s/metrics as %q: %d, want %d", cmp.Or(w.scheme, "http"), secure.addr, w.user, resp.StatusCode, want)
		}
	}

	passwordFile := writeFile(t, dir, "password", password)
	var rules []string
	for _, f := range []string{"alerts.yml", "recording.yml"} {
		rules = append(rules, filepath.Join(testutil.RepoRoot(), "deploy", "prometheus", f))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: %s
    static_configs: [{targets: [%q]}]
  - job_name: %s
    scheme: https
    tls_config: {ca_file: %q}
    basic_auth: {username: %s, password_file: %q}
    static_configs: [{targets: [%q]}]
  - job_name: %s
    scheme: https
    tls_config: {ca_file: %q}
    basic_auth: {username: %s, password: wrong}
    static_configs: [{targets: [%q]}]
`, quoteAll(rules), jobPlain, plain.addr, jobTLS, certFile, user, passwordFile, secure.addr,
		jobBadAuth, certFile, user, secure.addr)
	prom := startPrometheus(t, promBin, dir, config)

	for _, job := range []string{jobPlain, jobTLS} {
		got := prom.waitAgrees(t, job)
		t.Logf("job %s: Prometheus and bpftool agree: %+v", job, got)
		if got.objects[0] < pop.Maps || got.objects[1] < pop.Programs+pop.HelperPrograms ||
			got.objects[2] < pop.Links || got.memory < pop.MemlockBytes {
			t.Errorf("job %s: %+v does not hold the population %+v", job, got, pop)
		}
	}

	prom.waitTarget(t, jobBadAuth, func(tg target) bool {
		return tg.Health == "down" && strings.Contains(tg.LastError, "401")
	})
	prom.waitRulesHealthy(t)
	// Rules are evaluated every second; the recorded count of agents
	// reaches 2 once both have been scraped.
	prom.waitQuery(t, `cluster:odigos_ebpf_agents:count`, func(v model.Vector) bool {
		return len(v) == 1 && v[0].Value == 2
	})
	// Rates in the dashboard need a few scrapes of each agent.
	prom.waitQuery(t, `count_over_time(odigos_ebpf_collection_active[1m]) >= 5`, func(v model.Vector) bool {
		return len(v) == 2
	})
	if v := prom.query(t, `ALERTS{alertstate="firing"}`); len(v) != 0 {
		t.Errorf("alerts firing: %v", v)
	}
	prom.checkDashboard(t)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, and its key, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ebpf-metrics test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile = writeFile(t, dir, "cert.pem", string(certPEM))
	keyFile = writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, roots
}

// loadgenReady is the part of ebpf-loadgen's JSON line the test uses.
type loadgenReady struct {
	Maps           int    `json:"maps"`
	Programs       int    `json:"programs"`
	Links          int    `json:"links"`
	HelperPrograms int    `json:"helper_programs"`
	MemlockBytes   uint64 `json:"memlock_bytes"`
}

// startLoadgen builds and runs ebpf-loadgen, waits for its ready line, and
// releases the population (SIGTERM) when the test ends.
func startLoadgen(t *testing.T, args ...string) loadgenReady {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ebpf-loadgen")
	if out, err := exec.Command("go", "build", "-o", bin, "../ebpf-loadgen").CombinedOutput(); err != nil {
		t.Fatalf("building ebpf-loadgen: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	var stderr testutil.LockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	line := make(chan []byte, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadBytes('\n')
		line <- l
		_, _ = io.Copy(io.Discard, r)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ebpf-loadgen: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("ebpf-loadgen did not exit within 30s of SIGTERM\n%s", stderr.String())
		}
	})
	var ready loadgenReady
	select {
	case l := <-line:
		if err := json.Unmarshal(l, &ready); err != nil {
			t.Fatalf("ebpf-loadgen ready line %q: %v\n%s", l, err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("ebpf-loadgen not ready after 60s\n%s", stderr.String())
	}
	return ready
}

// promServer is a Prometheus server run by a test.
type promServer struct {
	addr   string
	stderr *testutil.LockedBuffer
	client *http.Client
}

// startPrometheus runs prometheus on a loopback port with config, its data
// in dir, waits until it is ready, and stops it when the test ends.
func startPrometheus(t *testing.T, bin, dir, config string) *promServer {
	t.Helper()
	p := &promServer{addr: freeAddr(t), stderr: &testutil.LockedBuffer{}, client: &http.Client{Timeout: 10 * time.Second}}
	configFile := writeFile(t, dir, "prometheus.yml", config)
	cmd := exec.Command(bin,
		"--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr,
	)
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("prometheus did not exit within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s\nconfiguration:\n%s", p.stderr.String(), config)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := p.client.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup, which waits for it
			t.Fatalf("prometheus exited: %v\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60s\n%s", p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs /api/v1/<path> and decodes its data into v; it returns the API's
// error, if any.
func (p *promServer) api(t *testing.T, path string, params url.Values, v any) error {
	t.Helper()
	resp, err := p.client.Get("http://" + p.addr + "/api/v1/" + path + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("/api/v1/%s: %d: %v", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("/api/v1/%s?%s: %s: %s", path, params.Encode(), r.Status, r.Error)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("/api/v1/%s: %v\n%s", path, err, r.Data)
	}
	return nil
}

// instant runs an instant query; a scalar result is returned as one sample.
func (p *promServer) instant(t *testing.T, q string) (model.Vector, error) {
	t.Helper()
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api(t, "query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var v model.Vector
		if err := json.Unmarshal(data.Result, &v); err != nil {
			t.Fatal(err)
		}
		return v, nil
	case "scalar":
		var s model.Scalar
		if err := json.Unmarshal(data.Result, &s); err != nil {
			t.Fatal(err)
		}
		return model.Vector{{Value: s.Value, Timestamp: s.Timestamp}}, nil
	}
	return nil, fmt.Errorf("%s: unexpected result type %s", q, data.ResultType)
}

func (p *promServer) query(t *testing.T, q string) model.Vector {
	t.Helper()
	v, err := p.instant(t, q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitQuery waits until the result of q satisfies ok.
func (p *promServer) waitQuery(t *testing.T, q string, ok func(model.Vector) bool) {
	t.Helper()
	var v model.Vector
	for range 300 {
		if v = p.query(t, q); ok(v) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v after 30s", q, v)
}

// promTotals is what Prometheus holds of one job's last scrape: the totals,
// and when the cycle behind them started and ended.
type promTotals struct {
	totals
	cycleStart, cycleEnd float64 // Unix seconds
	complete             bool
}

func (p *promServer) totals(t *testing.T, job string) promTotals {
	t.Helper()
	// One query, so that every value comes from the same scrape.
	v := p.query(t, fmt.Sprintf(`{job=%q, __name__=~"odigos_ebpf_(objects|total_memory_bytes|last_success_timestamp_seconds|last_collection_duration_seconds)"}`, job))
	var pt promTotals
	var end, dur float64
	seen := 0
	for _, s := range v {
		val := float64(s.Value)
		switch s.Metric[model.MetricNameLabel] {
		case "odigos_ebpf_objects":
			for i, k := range kinds {
				if string(s.Metric["type"]) == k.label {
					pt.objects[i] = int(val)
					seen++
				}
			}
		case "odigos_ebpf_total_memory_bytes":
			pt.memory = uint64(val)
			seen++
		case "odigos_ebpf_last_success_timestamp_seconds":
			end = val
			seen++
		case "odigos_ebpf_last_collection_duration_seconds":
			dur = val
			seen++
		}
	}
	pt.cycleEnd, pt.cycleStart = end, end-dur
	pt.complete = seen == len(kinds)+3
	return pt
}

// waitAgrees waits until Prometheus holds, for job, the picture of a cycle
// that ran while the kernel held still (bpftool listed the same totals
// before the cycle started and after Prometheus had it), and that picture
// equals bpftool's; it returns the agreed totals. Other tests may create
// and remove objects on the same machine meanwhile: it retries.
func (p *promServer) waitAgrees(t *testing.T, job string) totals {
	t.Helper()
	var last promTotals
	var lastBpftool totals
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		start := float64(time.Now().UnixNano()) / 1e9
		before := bpftoolNow(t)
		// A scrape every second of a cycle every 100ms: a picture from a
		// cycle that started after `start` is in Prometheus within ~1.2s.
		fresh := false
		for range 50 {
			last = p.totals(t, job)
			if fresh = last.complete && last.cycleStart >= start; fresh {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		after := bpftoolNow(t)
		lastBpftool = after
		if fresh && before == after && last.totals == after {
			return after
		}
	}
	t.Fatalf("job %s: Prometheus %+v, bpftool %+v: never agreed in a stable window", job, last, lastBpftool)
	return totals{}
}

// target is an active target of /api/v1/targets.
type target struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

func (p *promServer) waitTarget(t *testing.T, job string, ok func(target) bool) {
	t.Helper()
	var last []target
	for range 100 {
		var data struct {
			Active []target `json:"activeTargets"`
		}
		if err := p.api(t, "targets", url.Values{"state": {"active"}}, &data); err != nil {
			t.Fatal(err)
		}
		last = last[:0]
		for _, tg := range data.Active {
			if tg.Labels["job"] == job {
				last = append(last, tg)
			}
		}
		if len(last) > 0 && !slices.ContainsFunc(last, func(tg target) bool { return !ok(tg) }) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s: targets %+v", job, last)
}

// waitRulesHealthy waits until every rule of deploy/prometheus has been
// evaluated, and fails if one did not evaluate cleanly.
func (p *promServer) waitRulesHealthy(t *testing.T) {
	t.Helper()
	type rule struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	}
	var rules []rule
	for range 100 {
		var data struct {
			Groups []struct {
				Rules []rule `json:"rules"`
			} `json:"groups"`
		}
		if err := p.api(t, "rules", nil, &data); err != nil {
			t.Fatal(err)
		}
		rules = rules[:0]
		for _, g := range data.Groups {
			rules = append(rules, g.Rules...)
		}
		if len(rules) > 0 && !slices.ContainsFunc(rules, func(r rule) bool { return r.Health == "unknown" }) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rules) < 10 {
		t.Fatalf("Prometheus loaded %d rules", len(rules))
	}
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
		}
	}
	t.Logf("%d rules of deploy/prometheus evaluated", len(rules))
}

// checkDashboard runs every query of the Grafana dashboard. Each must
// succeed, and return data unless it queries a metric present only in some
// conditions (docs/metrics.md: with system stats, with element counts).
func (p *promServer) checkDashboard(t *testing.T) {
	t.Helper()
	root := testutil.RepoRoot()
	ref, err := testutil.LoadMetricsReference(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := testutil.DashboardQueries(filepath.Join(root, "deploy", "grafana", "ebpf-metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	empty := 0
	defer func() { t.Logf("%d dashboard queries ran, %d without data (conditional metrics)", len(queries), empty) }()
	for _, q := range queries {
		expr := testutil.GrafanaToPromQL(q.Expr, "1m")
		v, err := p.instant(t, expr)
		if err != nil {
			t.Errorf("panel %q: %v", q.Panel, err)
			continue
		}
		conditional := slices.ContainsFunc(testutil.MetricNames(expr, "odigos_ebpf"), func(name string) bool {
			m, ok := ref.Metric(name)
			return ok && strings.HasPrefix(m.Present, "with ")
		})
		if len(v) == 0 {
			empty++
			if !conditional {
				t.Errorf("panel %q: no data from %s", q.Panel, expr)
			}
		}
	}
}
