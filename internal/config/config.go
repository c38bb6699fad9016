// Package config holds the agent's configuration: four named profiles, a
// YAML file that overrides single values of a profile, and the validation
// that every value and the memory budget as a whole are sound.
//
// The order of precedence is profile < file < flags: Load applies the file
// to the profile, the caller applies its flags, then calls Validate.
package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Collection modes: how the agent reads the kernel.
const (
	// ModeAuto probes the running kernel once and uses iterators where it
	// supports them, syscalls elsewhere.
	ModeAuto = "auto"
	// ModeIterator uses BPF iterator programs only.
	ModeIterator = "iterator"
	// ModeSyscall uses bpf(2) and fdinfo only.
	ModeSyscall = "syscall"
)

// Limits that Validate enforces beyond "positive".
const (
	// MinMemoryBytes is the smallest memory budget: below it the Go runtime
	// and the HTTP server alone do not fit, whatever the tables.
	MinMemoryBytes = 2 << 20
	// MinHistoryBytes is the smallest history_bytes other than 0 (off):
	// the history's series table and a ring of blocks (internal/history).
	MinHistoryBytes = 64 << 10
	// MinCollectionInterval keeps a misconfigured agent from turning into a
	// busy loop of syscalls.
	MinCollectionInterval = 100 * time.Millisecond

	maxConcurrentSyscalls = 64
	maxBatchSize          = 100000
	// MaxOwners and MaxTopK bound the per-owner and per-object series, and
	// the snapshot's fixed arrays that hold them.
	MaxOwners = 200
	MaxTopK   = 50
	// maxTracked is the kernel's ID space (IDs are positive ints); it also
	// keeps the table size computation far from overflowing.
	maxTracked = math.MaxInt32
)

// The YAML keys. Error messages name these, since they are what the user
// wrote (and what --config.check prints).
const (
	keyProfile               = "profile"
	keyMaxMemoryBytes        = "max_memory_bytes"
	keyMaxTrackedMaps        = "max_tracked_maps"
	keyMaxTrackedPrograms    = "max_tracked_programs"
	keyMaxTrackedLinks       = "max_tracked_links"
	keyCollectionInterval    = "collection_interval"
	keyMaxConcurrentSyscalls = "max_concurrent_syscalls"
	keyMaxSyscallsPerSecond  = "max_syscalls_per_second"
	keySyscallBurst          = "syscall_burst"
	keyBatchSize             = "batch_size"
	keyEnableSystemStats     = "enable_system_stats"
	keyCollectionMode        = "collection_mode"
	keyHistoryBytes          = "history_bytes"
	keyMaxOwners             = "max_owners"
	keyTopK                  = "top_k"
	keyStatsDutyCycle        = "system_stats_duty_cycle"
)

// Config is the agent's effective configuration. The zero value is not
// valid: start from ForProfile or Load.
type Config struct {
	// Profile is the name of the profile the values started from. It is not
	// a key of the file: the file overrides a profile chosen by flag.
	Profile string
	// MaxMemoryBytes is the agent's whole memory budget. In YAML an integer
	// (bytes) or a string with a unit: "10MiB" is 10×2^20, "5MB" is 5×10^6.
	MaxMemoryBytes uint64
	// MaxTracked* are the capacities of the per-object tables. They bound
	// what is tracked in detail, never what is counted.
	MaxTrackedMaps     int
	MaxTrackedPrograms int
	MaxTrackedLinks    int
	// CollectionInterval is the time between the starts of two cycles.
	CollectionInterval time.Duration
	// MaxConcurrentSyscalls bounds the goroutines reading the kernel at once.
	MaxConcurrentSyscalls int
	// MaxSyscallsPerSecond is the rate limit of bpf(2) calls; 0 is unlimited.
	MaxSyscallsPerSecond float64
	// SyscallBurst is how many syscalls the rate limiter lets through at
	// once; 0 is the default, see Burst.
	SyscallBurst int
	// BatchSize is how many objects a cycle reads between two checks of its
	// limits (memory, rate, cancellation).
	BatchSize int
	// EnableSystemStats turns on the kernel's run-time statistics of
	// programs (BPF_ENABLE_STATS) while the agent runs.
	EnableSystemStats bool
	// CollectionMode is ModeAuto, ModeIterator or ModeSyscall.
	CollectionMode string
	// HistoryBytes bounds the compressed history of the aggregates that
	// the status page and /api/v1/history show; 0 turns it off. It counts
	// within the memory budget, see inventory.CheckBudget.
	HistoryBytes uint64
	// MaxOwners is how many holders (comm, container, pod) get series of
	// their own, the largest by memory; the others are summed into "other".
	MaxOwners int
	// TopK is how many maps and programs get series of their own in each
	// ranking (most memory, fullest, most run time); 0: none.
	TopK int
	// SystemStatsDutyCycle is the share of each interval during which
	// run-time statistics are on (0 < d <= 1), when EnableSystemStats.
	SystemStatsDutyCycle float64
}

// Burst returns the rate limiter's burst: SyscallBurst if set, else one
// second's worth of syscalls (at least 1). It means nothing when
// MaxSyscallsPerSecond is 0 (unlimited).
func (c Config) Burst() int {
	if c.SyscallBurst > 0 {
		return c.SyscallBurst
	}
	r := math.Ceil(c.MaxSyscallsPerSecond)
	switch {
	case !(r < math.MaxInt32): // also NaN: converting those to int is undefined
		return math.MaxInt32 // a burst that large is no limit anyway
	case r < 1:
		return 1
	}
	return int(r)
}

// Validate reports every value that is out of range. It returns all
// problems at once (errors.Join), each naming its YAML key, so that a user
// fixes them in one go. Whether the tables fit the memory budget depends on
// the size of a record: inventory.CheckBudget says.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}

	if _, err := ForProfile(c.Profile); err != nil {
		errs = append(errs, err)
	}
	if c.MaxMemoryBytes < MinMemoryBytes {
		add(keyMaxMemoryBytes, "must be at least %d (2MiB), got %d", MinMemoryBytes, c.MaxMemoryBytes)
	}
	tracked := []struct {
		key string
		n   int
	}{
		{keyMaxTrackedMaps, c.MaxTrackedMaps},
		{keyMaxTrackedPrograms, c.MaxTrackedPrograms},
		{keyMaxTrackedLinks, c.MaxTrackedLinks},
	}
	for _, t := range tracked {
		if t.n < 1 || t.n > maxTracked {
			add(t.key, "must be between 1 and %d, got %d", maxTracked, t.n)
		}
	}
	if c.CollectionInterval < MinCollectionInterval {
		add(keyCollectionInterval, "must be at least %s, got %s", MinCollectionInterval, c.CollectionInterval)
	}
	if c.MaxConcurrentSyscalls < 1 || c.MaxConcurrentSyscalls > maxConcurrentSyscalls {
		add(keyMaxConcurrentSyscalls, "must be between 1 and %d, got %d", maxConcurrentSyscalls, c.MaxConcurrentSyscalls)
	}
	if !(c.MaxSyscallsPerSecond >= 0) || math.IsInf(c.MaxSyscallsPerSecond, 0) { // !(>=) catches NaN
		add(keyMaxSyscallsPerSecond, "must be a finite number >= 0 (0 means unlimited), got %g", c.MaxSyscallsPerSecond)
	}
	if c.SyscallBurst < 0 {
		add(keySyscallBurst, "must be >= 0 (0 means one second's worth), got %d", c.SyscallBurst)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
		add(keyBatchSize, "must be between 1 and %d, got %d", maxBatchSize, c.BatchSize)
	}
	if c.MaxOwners < 0 || c.MaxOwners > MaxOwners {
		add(keyMaxOwners, "must be between 0 and %d, got %d", MaxOwners, c.MaxOwners)
	}
	if c.TopK < 0 || c.TopK > MaxTopK {
		add(keyTopK, "must be between 0 and %d, got %d", MaxTopK, c.TopK)
	}
	if !(c.SystemStatsDutyCycle > 0 && c.SystemStatsDutyCycle <= 1) { // also NaN
		add(keyStatsDutyCycle, "must be above 0 and at most 1, got %g", c.SystemStatsDutyCycle)
	}
	if c.HistoryBytes != 0 && (c.HistoryBytes < MinHistoryBytes || c.HistoryBytes > math.MaxInt32) {
		add(keyHistoryBytes, "must be 0 (no history) or between %d (64KiB) and %d, got %d", MinHistoryBytes, math.MaxInt32, c.HistoryBytes)
	}
	switch c.CollectionMode {
	case ModeAuto, ModeIterator, ModeSyscall:
	default:
		add(keyCollectionMode, "unknown mode %q, want one of %s", c.CollectionMode, strings.Join([]string{ModeAuto, ModeIterator, ModeSyscall}, ", "))
	}

	return errors.Join(errs...)
}
