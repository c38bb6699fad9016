package e2e

import (
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPushToCollector points an agent at a real OpenTelemetry Collector over
// OTLP/HTTP and over gRPC, with a population from ebpf-loadgen, and checks
// that the Collector received, for the cycle that a scrape of /metrics
// shows, every series of that scrape with the same value and type
// (odigos_ebpf_objects by type and odigos_ebpf_total_memory_bytes among
// them); that these equal what bpftool reports while the kernel held still;
// and that the resource carries the service, host and Kubernetes
// attributes.
func TestPushToCollector(t *testing.T) {
	requireRoot(t)
	bpftool(t) // fails in CI without bpftool
	col := startCollector(t)
	startLoadgen(t, "--maps=30", "--programs=6", "--links=3", "--fill=0.5")

	for _, tc := range []struct{ protocol, endpoint string }{
		{"http/protobuf", "http://" + col.httpAddr},
		{"grpc", "http://" + col.grpcAddr},
	} {
		t.Run(strings.ReplaceAll(tc.protocol, "/", "-"), func(t *testing.T) {
			pod := "ebpf-metrics-" + strings.ReplaceAll(tc.protocol, "/", "-")
			env := []string{"K8S_NODE_NAME=otlp-test-node", "K8S_POD_NAME=" + pod, "K8S_POD_NAMESPACE=otlp-test"}
			// Cycles every second, pushes every 200 ms: each cycle's
			// picture is pushed several times.
			a := startAgent(t, env, "--collection.interval=1s", "--otlp.protocol="+tc.protocol,
				"--otlp.endpoint="+tc.endpoint, "--otlp.interval=200ms")
			r := &exportReader{path: col.out, pod: pod}

			var (
				paired             int
				lastScrape         series
				before, lastKernel bpftoolTotals
			)
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
				before = bpftool(t)
				lastScrape = a.scrapeAfter(t, time.Now())
				lastKernel = bpftool(t)
				e, ok := r.find(t, lastScrape.generation())
				if !ok {
					continue // that cycle's picture was replaced before it was pushed: try the next
				}
				paired++
				if d := diff(lastScrape, e.series); len(d) > 0 {
					t.Fatalf("cycle %v: the Collector received something else than /metrics showed:\n%s",
						lastScrape.generation().cycles, strings.Join(d, "\n"))
				}
				checkResource(t, e.resource, pod, lastScrape)
				if before != lastKernel {
					continue // objects came or went meanwhile (other tests, other users): try again
				}
				if got := received(e.series); got != lastKernel {
					t.Logf("cycle %v: received %+v, bpftool %+v; trying again", lastScrape.generation().cycles, got, lastKernel)
					continue
				}
				if lastKernel.maps < 30 || lastKernel.programs < 6 || lastKernel.links < 3 {
					t.Fatalf("bpftool %+v does not show the population", lastKernel)
				}
				if e.series.value("odigos_ebpf_otlp_exports_total", "result", "success") < 1 ||
					e.series.value("odigos_ebpf_otlp_exports_total", "result", "failure") != 0 {
					t.Errorf("exports counter: %v succeeded, %v failed",
						e.series.value("odigos_ebpf_otlp_exports_total", "result", "success"),
						e.series.value("odigos_ebpf_otlp_exports_total", "result", "failure"))
				}
				t.Logf("cycle %v: %d series received equal /metrics; objects and memory equal bpftool's %+v",
					lastScrape.generation().cycles, len(e.series.values), lastKernel)
				return
			}
			t.Fatalf("never agreed while the kernel held still (%d exports paired with a scrape): last scrape %+v, bpftool %+v then %+v",
				paired, received(lastScrape), before, lastKernel)
		})
	}
}

// received is the kernel's picture in a series: objects by type, total
// memory.
func received(s series) bpftoolTotals {
	return bpftoolTotals{
		maps:     int(s.value("odigos_ebpf_objects", "type", "map")),
		programs: int(s.value("odigos_ebpf_objects", "type", "program")),
		links:    int(s.value("odigos_ebpf_objects", "type", "link")),
		memory:   uint64(s.value("odigos_ebpf_total_memory_bytes")),
	}
}

func checkResource(t *testing.T, res map[string]string, pod string, scrape series) {
	t.Helper()
	want := map[string]string{
		"service.name":       "ebpf-metrics",
		"service.version":    testVersion,
		"host.name":          "otlp-test-node",
		"k8s.node.name":      "otlp-test-node",
		"k8s.pod.name":       pod,
		"k8s.namespace.name": "otlp-test",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("resource attribute %s = %q, want %q (all: %v)", k, res[k], v, res)
		}
	}
	// service.version is build_info's version.
	found := false
	for k := range scrape.values {
		found = found || strings.HasPrefix(k, "odigos_ebpf_build_info{") && strings.Contains(k, `version="`+testVersion+`"`)
	}
	if !found {
		t.Errorf("build_info does not carry version %s", testVersion)
	}
}

// blackHole accepts connections and never answers, until closed.
type blackHole struct {
	addr     string
	accepted chan struct{}
	l        net.Listener
	once     sync.Once
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackHole(t testing.TB) *blackHole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{addr: l.Addr().String(), accepted: make(chan struct{}, 64), l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			select {
			case b.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *blackHole) close() {
	b.once.Do(func() {
		b.l.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30s", what)
		}
	}
}

// TestEndpointDown: with the endpoint refusing connections, or accepting
// them and never answering, cycles complete and scrapes are served, and
// failed pushes are counted; the first failure is logged, not every one.
// A push that hangs holds nothing: cycles go on while it is in flight,
// and shutdown does not wait for it.
func TestEndpointDown(t *testing.T) {
	requireRoot(t)
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		name := strings.ReplaceAll(protocol, "/", "-")
		fast := []string{"--collection.interval=100ms", "--otlp.protocol=" + protocol, "--otlp.interval=100ms"}

		t.Run(name+"/refused", func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			a := startAgent(t, nil, append(fast, "--otlp.endpoint=http://"+addr)...)
			first := a.scrape(t)
			var s series
			waitFor(t, "three failed pushes and three cycles", func() bool {
				s = a.scrape(t)
				return s.value("odigos_ebpf_otlp_exports_total", "result", "failure") >= 3 &&
					s.value("odigos_ebpf_collection_cycles_total") >= first.value("odigos_ebpf_collection_cycles_total")+3
			})
			if n := s.value("odigos_ebpf_otlp_exports_total", "result", "success"); n != 0 {
				t.Errorf("%v pushes to a closed port succeeded", n)
			}
			if n := strings.Count(a.output.String(), "OTLP export failed"); n != 1 {
				t.Errorf("%d failures logged, want the first only (the next one 30s later)", n)
			}
		})

		t.Run(name+"/black-hole", func(t *testing.T) {
			bh := newBlackHole(t)
			// The push waits for an answer for longer than the test.
			a := startAgent(t, nil, append(fast, "--otlp.endpoint=http://"+bh.addr, "--otlp.timeout=10m")...)
			<-bh.accepted
			first := a.scrape(t)
			waitFor(t, "five cycles while a push hangs", func() bool {
				s := a.scrape(t)
				return s.value("odigos_ebpf_collection_cycles_total") >= first.value("odigos_ebpf_collection_cycles_total")+5
			})
			if s := a.scrape(t); s.value("odigos_ebpf_otlp_exports_total", "result", "failure") != 0 ||
				s.value("odigos_ebpf_otlp_exports_total", "result", "success") != 0 {
				t.Fatalf("a push ended while the black hole held it")
			}
			bh.close()
			waitFor(t, "the push failed once the black hole closed", func() bool {
				return a.scrape(t).value("odigos_ebpf_otlp_exports_total", "result", "failure") >= 1
			})
		})

		t.Run(name+"/shutdown", func(t *testing.T) {
			bh := newBlackHole(t)
			a := startAgent(t, nil, append(fast, "--otlp.endpoint=http://"+bh.addr, "--otlp.timeout=10m")...)
			<-bh.accepted
			signalled := time.Now()
			a.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-a.done:
				a.done <- err
				if err != nil {
					t.Fatalf("agent exited with %v", err)
				}
				t.Logf("exit 0 in %v after SIGTERM", time.Since(signalled).Round(time.Millisecond))
			case <-time.After(30 * time.Second):
				t.Fatal("agent did not exit within 30s of SIGTERM while a push hung")
			}
			// The last push was given up at the shutdown bound, not at the
			// 10 minutes of --otlp.timeout.
			if out := a.output.String(); !strings.Contains(out, "last OTLP push") || strings.Contains(out, "did not stop in time") {
				t.Errorf("shutdown log:\n%s", out)
			}
		})
	}
}

// TestConfigCheck: --config.check accepts the OTLP flags the Helm chart
// passes, and rejects a bad one naming it.
func TestConfigCheck(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	ok := exec.Command(bin.agent, "--config.check", "--otlp.endpoint=https://collector.monitoring:4317",
		"--otlp.protocol=grpc", "--otlp.interval=30s", "--otlp.timeout=5s", "--otlp.header=Authorization=Bearer x")
	if out, err := ok.CombinedOutput(); err != nil {
		t.Errorf("valid OTLP flags: %v\n%s", err, out)
	}
	bad := exec.Command(bin.agent, "--config.check", "--otlp.endpoint=collector:4318")
	out, err := bad.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--otlp.endpoint") {
		t.Errorf("invalid endpoint: %v\n%s", err, out)
	}
}
