package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkEndpointDown runs four agents side by side on the same kernel
// (with a population of 621 objects from ebpf-loadgen besides whatever
// exists), cycling and pushing every 100 ms: one without OTLP (the peer), one
// pushing to a Collector, one to a black hole (each push given up at its
// 100 ms timeout) and one to a closed port; it scrapes them in turn and
// reports, against the peer, the scrape latency, the cycles completed, the
// mean cycle duration, and the CPU time and resident memory of each.
//
//	cd test/otelcol && sudo go test -run '^$' -bench EndpointDown -benchtime 2000x ./e2e
func BenchmarkEndpointDown(b *testing.B) {
	requireRoot(b)
	col := startCollector(b)
	startLoadgen(b, "--maps=500", "--programs=100", "--links=20", "--fill=0.5")
	bh := newBlackHole(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	common := []string{"--collection.interval=100ms", "--otlp.interval=100ms"}
	agents := []struct {
		name string
		args []string
		a    *agent
	}{
		{name: "no-otlp"},
		{name: "collector", args: []string{"--otlp.endpoint=http://" + col.httpAddr}},
		{name: "black-hole", args: []string{"--otlp.endpoint=http://" + bh.addr}},
		{name: "refused", args: []string{"--otlp.endpoint=http://" + refused}},
	}
	for i := range agents {
		agents[i].a = startAgent(b, nil, append(common, agents[i].args...)...)
	}
	type sample struct{ cycles, durSum, durCount, cpu float64 }
	read := func(a *agent) sample {
		s := a.scrape(b)
		return sample{s.value("odigos_ebpf_collection_cycles_total"), s.value("odigos_ebpf_collection_duration_seconds_sum"),
			s.value("odigos_ebpf_collection_duration_seconds_count"), s.value("process_cpu_seconds_total")}
	}
	before := make([]sample, len(agents))
	for i := range agents {
		before[i] = read(agents[i].a)
	}
	latency := make([]time.Duration, len(agents))
	start := time.Now()
	b.ResetTimer()
	for round := range b.N {
		for k := range agents {
			i := (round + k) % len(agents) // each agent first as often as the others
			t0 := time.Now()
			agents[i].a.get(b)
			latency[i] += time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond) // let cycles and pushes run between rounds
	}
	b.StopTimer()
	elapsed := time.Since(start).Seconds()

	var rows []string
	var peer struct{ lat, cycles, dur, cpu, rss float64 }
	for i, ag := range agents {
		after := read(ag.a)
		rss := ag.a.scrape(b).value("process_resident_memory_bytes")
		lat := float64(latency[i].Nanoseconds()) / float64(b.N) / 1e3
		cycles := after.cycles - before[i].cycles
		dur := (after.durSum - before[i].durSum) / (after.durCount - before[i].durCount) * 1e3
		cpu := (after.cpu - before[i].cpu) / elapsed * 100
		pushes := ag.a.scrape(b)
		ok, failed := pushes.value("odigos_ebpf_otlp_exports_total", "result", "success"),
			pushes.value("odigos_ebpf_otlp_exports_total", "result", "failure")
		if i == 0 {
			peer.lat, peer.cycles, peer.dur, peer.cpu, peer.rss = lat, cycles, dur, cpu, rss
		}
		rows = append(rows, fmt.Sprintf("%-10s  scrape %6.0f µs (%.2fx)  cycles %4.0f (%.2fx)  cycle %6.2f ms (%.2fx)  cpu %5.2f%% (%.2fx)  rss %5.1f MiB (%.2fx)  pushes ok %4.0f failed %4.0f",
			ag.name, lat, lat/peer.lat, cycles, cycles/peer.cycles, dur, dur/peer.dur, cpu, cpu/peer.cpu,
			rss/(1<<20), rss/peer.rss, ok, failed))
		if i > 0 {
			b.ReportMetric(lat/peer.lat, ag.name+"-scrape-x")
			b.ReportMetric(cycles/peer.cycles, ag.name+"-cycles-x")
			b.ReportMetric(dur/peer.dur, ag.name+"-cycle-duration-x")
		}
	}
	if b.N < 100 {
		return // the benchmark's probe run, too short to count cycles
	}
	b.Logf("over %.1f s, against the agent without OTLP:\n%s", elapsed, strings.Join(rows, "\n"))
}
