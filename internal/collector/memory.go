package collector

import (
	"runtime/metrics"
	"sync"
)

// The agent's memory, as the Go runtime accounts it:
//
//   - /gc/heap/live:bytes: heap memory held by reachable objects, as
//     measured by the last garbage collection. This is the agent's state:
//     tables, snapshots, the Prometheus registry, buffers. Garbage waiting
//     to be collected is not state and is left out; it is bounded by the
//     collector's pacing (GOGC / GOMEMLIMIT), not by the agent.
//   - /memory/classes/heap/stacks:bytes: goroutine stacks.
//
// Neither counts the binary's text or the runtime's own metadata, which do
// not grow with what the agent tracks.
var memorySamples = []string{"/gc/heap/live:bytes", "/memory/classes/heap/stacks:bytes"}

// MemoryMeter reads the agent's memory usage without allocating.
type MemoryMeter struct {
	mu      sync.Mutex
	samples []metrics.Sample
}

// NewMemoryMeter prepares the runtime/metrics samples once.
func NewMemoryMeter() *MemoryMeter {
	m := &MemoryMeter{samples: make([]metrics.Sample, len(memorySamples))}
	for i, name := range memorySamples {
		m.samples[i].Name = name
	}
	return m
}

// Usage returns live heap plus stacks, in bytes.
func (m *MemoryMeter) Usage() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	metrics.Read(m.samples)
	var total uint64
	for _, s := range m.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			total += s.Value.Uint64()
		}
	}
	return total
}
