package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// limitMemory sets the Go runtime's soft memory limit from the memory
// budget, unless GOMEMLIMIT sets one (a container's limit, say). The limit
// counts everything the runtime maps, and its own share (GC metadata, span
// tables, stacks: several MiB that do not grow with what the agent tracks)
// is no part of the budget, which is for the agent's state: the limit is
// the budget plus that share, measured once the BPF programs are loaded.
// The garbage collector then keeps the agent's heap, garbage included,
// within the budget; the collector's meter suspends collection when the
// state alone reaches 90% of it.
func limitMemory(budget uint64, pprof bool, logger *slog.Logger) {
	if pprof {
		runtime.MemProfileRate = 512 * 1024 // the runtime's default
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.Debug("soft memory limit from GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", debug.SetMemoryLimit(-1))
		return
	}
	overhead := runtimeOverhead()
	limit := min(budget+overhead, 1<<62)
	debug.SetMemoryLimit(int64(limit))
	logger.Debug("soft memory limit: the budget and the runtime's own share", "bytes", limit, "budget", budget,
		"runtime", overhead)
}

// runtimeOverhead is the memory the Go runtime maps for itself, not the
// heap: stacks, GC metadata, span tables and the rest.
func runtimeOverhead() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(s)
	var v [5]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	heap := v[1] + v[2] + v[3] + v[4]
	if v[0] < heap {
		return 0
	}
	return v[0] - heap
}
