package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
)

// limitMemory makes the memory budget the Go runtime's soft memory limit,
// unless GOMEMLIMIT sets one (a container's limit, say): the garbage
// collector then keeps everything it manages (the agent's state, garbage,
// stacks, its own overhead) within the budget. The collector's meter counts
// what the agent needs of it, and suspends collection at 90%.
func limitMemory(budget uint64, pprof bool, logger *slog.Logger) {
	if pprof {
		runtime.MemProfileRate = 512 * 1024 // the runtime's default
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.Debug("soft memory limit from GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", debug.SetMemoryLimit(-1))
		return
	}
	debug.SetMemoryLimit(int64(min(budget, 1<<62)))
	logger.Debug("soft memory limit from the memory budget", "bytes", budget)
}
