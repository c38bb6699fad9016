package inventory

import (
	"fmt"
	"unsafe"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// BytesPerTracked is what one tracked object costs in the tables: its ID and
// its record, twice (the previous and the current cycle).
const BytesPerTracked = 2 * (unsafe.Sizeof(uint32(0)) + unsafe.Sizeof(kernel.Record{}))

// TableBytes is the memory the tables preallocate for the given capacities
// (tracked maps, programs, links).
func TableBytes(caps [kernel.NumKinds]int) uint64 {
	var n uint64
	for _, c := range caps {
		n += uint64(c) * uint64(BytesPerTracked)
	}
	return n
}

// Capacities returns the table capacity of each kind that c configures.
func Capacities(c *config.Config) [kernel.NumKinds]int {
	var caps [kernel.NumKinds]int
	caps[kernel.KindMap] = c.MaxTrackedMaps
	caps[kernel.KindProg] = c.MaxTrackedPrograms
	caps[kernel.KindLink] = c.MaxTrackedLinks
	return caps
}

// CheckBudget reports whether the tables and the history c configures fit
// half of its memory budget: both are preallocated at start, and the other
// half is for the Go runtime, the HTTP server and the published snapshots.
// Capacities out of range are Validate's to report; CheckBudget says
// nothing of them.
func CheckBudget(c *config.Config) error {
	caps := Capacities(c)
	for _, n := range caps {
		if n < 1 || n > 1<<31-1 {
			return nil
		}
	}
	tables := TableBytes(caps)
	if need, have := tables+c.HistoryBytes, c.MaxMemoryBytes/2; need > have {
		return fmt.Errorf("max_tracked_maps, max_tracked_programs, max_tracked_links, history_bytes: tables for %d maps, %d programs and %d links (%d bytes) "+
			"and a history of %d bytes need %d bytes, more than half of max_memory_bytes (%d / 2 = %d bytes); lower them or raise max_memory_bytes",
			c.MaxTrackedMaps, c.MaxTrackedPrograms, c.MaxTrackedLinks, tables, c.HistoryBytes, need, c.MaxMemoryBytes, have)
	}
	return nil
}
