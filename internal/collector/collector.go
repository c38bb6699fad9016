// Package collector owns the collection cycle: it lists every object of each
// kind, reads what it does not know yet in batches under concurrency and
// rate limits, keeps the tracked objects in the inventory's tables, keeps
// counts and memory exact for the objects beyond the tables, watches its own
// memory budget, and publishes a Snapshot at the end of each complete cycle.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// Errors a cycle ends with.
var (
	// ErrMemoryLimit: the agent reached 90% of its memory budget; the cycle
	// was stopped or not started, and the last complete snapshot stays.
	ErrMemoryLimit = errors.New("memory budget reached: collection suspended")
	// ErrClosed: the collector was closed.
	ErrClosed = errors.New("collector closed")
)

// suspendAt is the share of the memory budget at which collection stops.
const suspendAt = 0.9

// Options configure a Collector. Config is required; the rest have defaults
// that are the real kernel and runtime.
type Options struct {
	Config config.Config
	// Syscalls is the kernel seen by the syscall source; tests inject faults
	// here. Default: kernel.Sys{}.
	Syscalls kernel.Syscalls
	// ProcFS is where /proc is mounted. Default "/proc".
	ProcFS string
	Logger *slog.Logger
	// MemoryUsage measures the agent's memory. Default: MemoryMeter.Usage.
	MemoryUsage func() uint64
}

// Collector runs collection cycles. Cycle and Run must not be called
// concurrently; Publisher may be read from anywhere.
type Collector struct {
	cfg    config.Config
	logger *slog.Logger
	src    kernel.Source
	gate   *gate
	lim    *limiter
	pool   *pool
	memory func() uint64
	pub    Publisher

	tables [kernel.NumKinds]*inventory.Table
	batch  []job
	spare  []kernel.Record // records of untracked objects, one per batch slot

	// State carried between complete cycles.
	baseline  bool // a complete cycle has been seen
	prevCount [kernel.NumKinds]uint64
	prevMax   [kernel.NumKinds]uint32
	created   [kernel.NumKinds]uint64
	removed   [kernel.NumKinds]uint64
	seen      [kernel.NumKinds][MaxTypes / 64]uint64

	// Built during a cycle, published at its end.
	agg   [kernel.NumKinds]KindStats
	maxs  [kernel.NumKinds]uint32 // greatest ID listed
	above [kernel.NumKinds]uint64 // objects listed with an ID above prevMax
	snap  Snapshot

	statsFD   int
	suspended bool
	closeOnce sync.Once
}

// New allocates everything the collector will ever use: tables at the
// configured capacities, the batch, the workers and their buffers.
func New(opts Options) (*Collector, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Syscalls == nil {
		opts.Syscalls = kernel.Sys{}
	}
	if opts.ProcFS == "" {
		opts.ProcFS = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MemoryUsage == nil {
		opts.MemoryUsage = NewMemoryMeter().Usage
	}
	c := &Collector{
		cfg:     cfg,
		logger:  opts.Logger,
		memory:  opts.MemoryUsage,
		statsFD: -1,
	}
	workers := cfg.MaxConcurrentSyscalls
	c.lim = newLimiter(cfg.MaxSyscallsPerSecond, cfg.Burst(), workers+1)
	c.gate = newGate(workers, c.lim, c.logger)
	c.src = c.source(opts)
	caps := [kernel.NumKinds]int{cfg.MaxTrackedMaps, cfg.MaxTrackedPrograms, cfg.MaxTrackedLinks}
	for k := range kernel.NumKinds {
		c.tables[k] = inventory.NewTable(caps[k])
		c.snap.Mode[k] = c.src.Mode(k)
	}
	c.batch = make([]job, cfg.BatchSize)
	c.spare = make([]kernel.Record, cfg.BatchSize)
	c.pool = newPool(c.src, workers, c.batch)
	c.snap.MemoryBudgetBytes = cfg.MaxMemoryBytes
	c.snap.Active = true

	if cfg.EnableSystemStats {
		if err := c.enableStats(); err != nil {
			c.Close()
			return nil, err
		}
	}
	// The live-heap figure dates from the last garbage collection; start it
	// with the tables just allocated counted.
	runtime.GC()
	c.snap.MemoryUsageBytes = c.memory()
	c.pub.Publish(&c.snap)
	return c, nil
}

// source picks the Source for the configured mode. Only the syscall source
// exists in this build; iterator and auto use it and say so.
func (c *Collector) source(opts Options) kernel.Source {
	if c.cfg.CollectionMode != config.ModeSyscall {
		c.logger.Info("BPF iterator collection is not available in this build; using syscall mode",
			"requested_mode", c.cfg.CollectionMode)
	}
	return kernel.NewSyscallSource(opts.Syscalls, c.gate, opts.ProcFS)
}

func (c *Collector) enableStats() error {
	c.gate.calls[kernel.OpEnableStats].Add(1)
	fd, err := kernel.EnableStats()
	if err != nil {
		c.gate.failures[kernel.OpEnableStats].Add(1)
		return fmt.Errorf("enabling run-time statistics (BPF_ENABLE_STATS): %w", err)
	}
	c.statsFD = fd
	c.snap.SystemStats = true
	c.snap.Features[FeatureRunTimeStats] = true
	return nil
}

// Publisher is where the snapshots of completed cycles appear.
func (c *Collector) Publisher() *Publisher { return &c.pub }

// Close stops the workers and turns run-time statistics off again by
// closing their fd. It is safe to call more than once.
func (c *Collector) Close() error {
	c.closeOnce.Do(func() {
		c.pool.stop()
		if c.statsFD >= 0 {
			kernel.Close(c.statsFD)
			c.statsFD = -1
		}
		c.snap.Active = false
		c.snap.SystemStats = false
		c.snap.Features[FeatureRunTimeStats] = false
		c.pub.Publish(&c.snap)
	})
	return nil
}

// Run collects every interval until ctx is done. The first cycle starts at
// once. Cycles never overlap: one that takes longer than the interval is
// counted as an overrun and the next starts one interval after it ended,
// so that a node too slow for the interval still gets rest between cycles.
func (c *Collector) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		start := time.Now()
		err := c.Cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !errors.Is(err, ErrMemoryLimit) {
			c.logger.Error("collection cycle failed", "err", err)
		}
		next := c.cfg.CollectionInterval - time.Since(start)
		if next < 0 {
			c.snap.Overruns++
			c.pub.Publish(&c.snap)
			next = c.cfg.CollectionInterval
		}
		timer.Reset(next)
	}
}

// Cycle runs one collection cycle and, if it completes, publishes its
// snapshot. Whatever happens, the counters (errors, syscalls, memory limit
// hits) are published too, with the last complete picture of the objects.
func (c *Collector) Cycle(ctx context.Context) error {
	start := time.Now()
	c.gate.ctx = ctx
	c.gate.logged.Store(0)
	defer func() { c.gate.ctx = context.Background() }()

	err := c.cycle(ctx)
	c.publish(start, err)
	return err
}

func (c *Collector) overBudget(collect bool) bool {
	limit := uint64(suspendAt * float64(c.cfg.MaxMemoryBytes))
	if c.memory() < limit {
		return false
	}
	if !collect {
		return true
	}
	// The live-heap figure is as of the last collection; make it current
	// before deciding to suspend or to stay suspended.
	runtime.GC()
	return c.memory() >= limit
}

func (c *Collector) cycle(ctx context.Context) error {
	if c.pool.stopped() {
		return ErrClosed
	}
	if c.overBudget(true) {
		return ErrMemoryLimit
	}
	for k := range kernel.NumKinds {
		if err := c.collectKind(ctx, k); err != nil {
			for j := range kernel.NumKinds {
				c.tables[j].Abort()
			}
			return err
		}
	}
	for k := range kernel.NumKinds {
		c.tables[k].Commit()
	}
	return nil
}

// collectKind lists every object of kind k, batch by batch, and builds the
// kind's aggregates and table. Nothing is committed here: a cycle that
// stops half-way leaves the last complete picture untouched.
func (c *Collector) collectKind(ctx context.Context, k kernel.Kind) error {
	t := c.tables[k]
	t.Begin()
	agg := &c.agg[k]
	*agg = KindStats{Capacity: uint64(t.Capacity())}
	c.maxs[k], c.above[k] = 0, 0
	if err := c.src.Begin(k); err != nil {
		return fmt.Errorf("starting a pass over %ss: %w", k, err)
	}
	stats := c.snap.SystemStats && k == kernel.KindProg
	var after uint32
	for done := false; !done; {
		n := 0
		from := t.Building()
		for n < len(c.batch) {
			id, err := c.src.NextID(k, after)
			if err == kernel.ErrEndOfList {
				done = true
				break
			}
			if err != nil {
				return fmt.Errorf("listing %ss after ID %d: %w", k, after, err)
			}
			after = id
			if c.plan(k, t, id, stats, &c.batch[n], &c.spare[n]) {
				n++
			}
		}
		c.pool.run(n)
		c.collectBatch(k, t, from, n)
		c.snap.Batches++
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.overBudget(false) {
			return ErrMemoryLimit
		}
	}
	agg.Tracked = uint64(t.Building())
	agg.Untracked = agg.Objects - agg.Tracked
	return nil
}

// job is one object to read in a batch.
type job struct {
	kind  kernel.Kind
	id    uint32
	need  kernel.Need
	rec   *kernel.Record
	slot  int32 // index in the table being built, or -1 for an untracked object
	known bool  // rec holds the previous cycle's record
	err   error
}

// plan decides what the object id needs: nothing (already tracked, nothing
// changes: accounted at once), a refresh of what changes, a first read into
// a free slot of the table, or, with the table full, a read into a spare
// record so that it is counted and its memory summed without being kept.
// It reports whether a job was queued.
func (c *Collector) plan(k kernel.Kind, t *inventory.Table, id uint32, stats bool, j *job, spare *kernel.Record) bool {
	if id > c.maxs[k] {
		c.maxs[k] = id
	}
	if id > c.prevMax[k] {
		c.above[k]++
	}
	prev := t.Known(id)
	*j = job{kind: k, id: id, slot: -1}
	switch {
	case prev != nil && !t.Full():
		slot, rec := t.Add(id)
		*rec = *prev
		if kernel.MemoryVaries(k, rec) {
			j.need |= kernel.NeedMemory
		}
		if stats {
			j.need |= kernel.NeedStats
		}
		if j.need == 0 {
			c.account(k, rec)
			return false
		}
		j.rec, j.slot, j.known = rec, int32(slot), true
	case !t.Full():
		slot, rec := t.Add(id)
		j.rec, j.slot, j.need = rec, int32(slot), kernel.NeedDetails
	default:
		*spare = kernel.Record{}
		j.rec, j.need = spare, kernel.NeedDetails
	}
	if stats {
		j.need |= kernel.NeedStats
	}
	return true
}

// collectBatch accounts the results of a batch and drops from the table the
// objects that vanished while being read, or that could not be read at all.
func (c *Collector) collectBatch(k kernel.Kind, t *inventory.Table, from, n int) {
	drops := false
	for i := range n {
		j := &c.batch[i]
		switch {
		case j.err == nil:
			c.account(k, j.rec)
			continue
		case kernel.Gone(j.err):
			// Released after it was listed: it is not there any more.
		case j.known:
			// A refresh failed: the record is still right but for what
			// changes; the gate counted and logged the failure.
			c.account(k, j.rec)
			continue
		default:
			// Listed but unreadable: it exists, its details do not.
			c.agg[k].Objects++
			c.agg[k].Unreadable++
		}
		if j.slot >= 0 {
			j.rec.ID = 0
			drops = true
		}
	}
	if drops {
		t.Compact(from)
	}
}

// account adds one readable object to the cycle's aggregates.
func (c *Collector) account(k kernel.Kind, rec *kernel.Record) {
	agg := &c.agg[k]
	ti := TypeIndex(rec.Type)
	ts := &agg.Types[ti]
	agg.Objects++
	agg.MemoryBytes += rec.Memory
	ts.Objects++
	ts.MemoryBytes += rec.Memory
	ts.RunTimeNs += rec.RunTimeNs
	ts.RunCount += rec.RunCount
	c.seen[k][ti/64] |= 1 << (uint(ti) % 64)
}

// publish folds the cycle into the snapshot and publishes it: everything
// if the cycle completed, only the counters and the state otherwise.
func (c *Collector) publish(start time.Time, err error) {
	end := time.Now()
	s := &c.snap
	for op := range kernel.NumOps {
		s.Syscalls[op] = c.gate.calls[op].Load()
		s.Errors[op] = c.gate.failures[op].Load()
	}
	s.RateLimitWaitNs = c.lim.waitNs.Load()
	s.MemoryUsageBytes = c.memory()

	switch {
	case err == nil:
		for k := range kernel.NumKinds {
			a := &c.agg[k]
			if c.baseline {
				// IDs only grow, so the objects above the previous
				// cycle's greatest ID are exactly the new ones; the
				// removed ones follow from the counts.
				created := c.above[k]
				c.created[k] += created
				c.removed[k] += c.prevCount[k] + created - a.Objects
			}
			c.prevCount[k] = a.Objects
			c.prevMax[k] = max(c.prevMax[k], c.maxs[k])
			a.Created, a.Removed = c.created[k], c.removed[k]
			a.TypesSeen = c.seen[k]
			s.Kinds[k] = *a
		}
		c.baseline = true
		d := end.Sub(start)
		s.Valid = true
		s.Cycles++
		s.LastSuccessUnixNano = end.UnixNano()
		s.LastDurationNs = int64(d)
		s.DurationSum += d.Seconds()
		s.DurationCount++
		if b := durationBucket(d.Seconds()); b >= 0 {
			s.DurationCounts[b]++
		}
		s.Active = true
		if c.suspended {
			c.logger.Info("memory usage back under the budget: collection resumed",
				"usage_bytes", s.MemoryUsageBytes, "budget_bytes", c.cfg.MaxMemoryBytes)
			c.suspended = false
		}
	case errors.Is(err, ErrMemoryLimit):
		s.MemoryLimitHits++
		s.Active = false
		if !c.suspended {
			c.logger.Warn("memory usage reached 90% of the budget: collection suspended",
				"usage_bytes", s.MemoryUsageBytes, "budget_bytes", c.cfg.MaxMemoryBytes)
			c.suspended = true
		}
	}
	c.pub.Publish(s)
}

func durationBucket(s float64) int {
	for i, b := range DurationBuckets {
		if s <= b {
			return i
		}
	}
	return -1 // only in the +Inf bucket
}
