package inventory

import (
	"unsafe"

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
