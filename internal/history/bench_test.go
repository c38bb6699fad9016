package history

import (
	"context"
	"testing"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/collector"
	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// BenchmarkRecord measures what recording a cycle costs the cycle's
// goroutine on the steady node of TestSteadyNodeBytesPerSample (53 series):
// loading the published snapshot and encoding a row. Its peer, measured in
// the same run, is publishing and loading that snapshot, the copies every
// cycle already makes; "x-publish" is the ratio. It also reports bytes per
// sample and allocations (0).
func BenchmarkRecord(b *testing.B) {
	n := newSteadyNode()
	pub := new(snapshot.Publisher)
	var dst snapshot.Snapshot
	// The peer, timed by hand: testing.Benchmark cannot run inside a
	// benchmark.
	const peerRuns = 20000
	t0 := time.Now()
	for range peerRuns {
		pub.Publish(n.next())
		pub.Load(&dst)
	}
	peerNs := float64(time.Since(t0).Nanoseconds()) / peerRuns
	h := newHistory(b, 256<<10)
	r := NewRecorder(h, ns)
	b.ReportAllocs()
	for b.Loop() {
		s := n.next()
		pub.Publish(s)
		r.Record(s)
	}
	st := h.Stats()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(st.Bytes)/float64(st.Samples), "bytes/sample")
	b.ReportMetric(peerNs, "publish-ns")
	b.ReportMetric(per/peerNs, "x-publish")
}

// BenchmarkRecordInCycle measures the recorder where it runs, after a
// steady iterator-mode cycle over 1,000 objects held by loadgen (and
// whatever else the kernel holds): ns/op is the cycle and the recording,
// record-ns the recording alone, and record/cycle their ratio, all in the
// same run.
func BenchmarkRecordInCycle(b *testing.B) {
	testutil.RequireBPF(b)
	p, err := loadgen.Create(loadgen.Spec{Maps: 600, Programs: 300, Links: 100, Fill: 0.5})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	cfg, err := config.ForProfile(config.ProfileProduction)
	if err != nil {
		b.Fatal(err)
	}
	cfg.CollectionMode = config.ModeIterator
	cfg.MaxSyscallsPerSecond = 0
	cfg.MaxTrackedMaps, cfg.MaxTrackedPrograms, cfg.MaxTrackedLinks = 20000, 10000, 5000
	cfg.MaxMemoryBytes = 64 << 20
	h := newHistory(b, int(cfg.HistoryBytes))
	// Wired as the agent wires it: OnPublish, on the cycle's goroutine,
	// timed there.
	var r *Recorder
	var recordNs time.Duration
	record := func(s *snapshot.Snapshot) {
		t0 := time.Now()
		r.Record(s)
		recordNs += time.Since(t0)
	}
	c, err := collector.New(collector.Options{Config: cfg, OnPublish: record})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	r = NewRecorder(h, "odigos_ebpf")
	for range 2 { // the first cycle reads everything; the second is steady
		if err := c.Cycle(ctx); err != nil {
			b.Fatal(err)
		}
	}
	recordNs = 0
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Cycle(ctx); err != nil {
			b.Fatal(err)
		}
		// Rows are a millisecond apart at least (the agent's cycles,
		// 100 ms): a cycle within the same millisecond would be refused,
		// not recorded, and cost less than a real one.
		b.StopTimer()
		time.Sleep(time.Millisecond)
		b.StartTimer()
	}
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	rec := float64(recordNs.Nanoseconds()) / float64(b.N)
	b.ReportMetric(rec, "record-ns")
	b.ReportMetric(rec/(per-rec), "record/cycle")
	if st := h.Stats(); st.Rows < min(b.N, 500) {
		b.Fatalf("%d rows for %d cycles", st.Rows, b.N)
	}
}
