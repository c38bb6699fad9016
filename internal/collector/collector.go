// Package collector owns the collection cycle: it lists every object of each
// kind, reads what it does not know yet in batches under concurrency and
// rate limits, keeps the tracked objects in the inventory's tables, keeps
// counts and memory exact for the objects beyond the tables, watches its own
// memory budget, and publishes a Snapshot at the end of each complete cycle.
package collector

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/owner"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
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
	// Capabilities tells which capabilities the agent holds. Default: the
	// effective set of the calling thread.
	Capabilities func(kernel.Capability) bool
	// OnPublish, if set, is called after each publication, on the cycle's
	// goroutine, with the snapshot just published: it must not block
	// (exposition.Cache.Notify does not). The snapshot is the collector's
	// own, unchanged until the call returns (the cycle lock is held): read
	// it in place, do not keep it or write to it.
	OnPublish func(*snapshot.Snapshot)
	// OwnerSource, if set, replaces where the holders of objects are read
	// from (the holders iterator, or procfs): tests give a fake.
	OwnerSource owner.Source
	// LoadIterators loads the BPF iterators in every mode but syscall; tests
	// replace them with a fake or make them fail. Default:
	// kernel.LoadIteratorsWith, sharing the kernel BTF with the holders
	// iterator.
	LoadIterators func(gate kernel.Gate, procfs string) (kernel.IteratorSource, [kernel.NumKinds]error, error)
	// BTF is where the kernel's BTF is parsed for loading the BPF programs,
	// perhaps already being parsed (warmup.TakeBTF). Default: a new cache.
	// It is dropped when New returns.
	BTF *btf.Cache
	// FirstCycle says that the caller runs a cycle as soon as New returns
	// (--once; the agent, which starts Run at once): the first cycle's
	// holders pass is then taken during New,
	// as soon as the holders iterator is loaded, beside the loading of the
	// object iterators, instead of on the cycle's critical path. Objects
	// created between that pass and the cycle have no holder in it.
	FirstCycle bool
}

// Collector runs collection cycles. Cycles never run concurrently (Cycle
// waits for the one in progress), and Close waits for the cycle in progress
// to stop before it releases what the cycle uses; Publisher may be read
// from anywhere.
type Collector struct {
	cfg       config.Config
	logger    *slog.Logger
	onPublish func(*snapshot.Snapshot) // Options.OnPublish
	src       kernel.Source            // syscall source: kinds without an iterator, memory fallback
	iters     kernel.IteratorSource    // nil when no kind is read by an iterator
	byIter    [kernel.NumKinds]bool
	canOpen   bool                      // GET_FD_BY_ID is allowed (CAP_SYS_ADMIN)
	fallback  kernel.Reader             // fdinfo for map types whose memory the iterator cannot compute
	own       [kernel.NumKinds][]uint32 // IDs of the agent's own objects, sorted
	scan      kernel.Record             // the iterator's current record
	unread    kernel.Record             // an unreadable object's, for its owner
	resync    [kernel.NumKinds]bool     // ask the iterator for full records next cycle
	gate      *gate
	lim       *limiter
	pool      *pool
	memory    func() uint64
	pub       snapshot.Publisher

	tables [kernel.NumKinds]*inventory.Table
	batch  []job
	spare  []kernel.Record // records of untracked objects, one per batch slot

	guard formulaGuard
	attr  ownership
	btf   *btf.Cache   // while loading; nil after
	hload *holdersLoad // the holders iterator loading beside the others
	// ownerRank is where the owners are ranked at publication.
	ownerRank []int32

	// State carried between complete cycles.
	baseline  bool // a complete cycle has been seen
	prevCount [kernel.NumKinds]uint64
	prevMax   [kernel.NumKinds]uint32
	// prevUnreadable: objects of the last complete cycle that were listed
	// but could not be read, so are in no table.
	prevUnreadable [kernel.NumKinds]uint64
	created        [kernel.NumKinds]uint64
	removed        [kernel.NumKinds]uint64
	seen           [kernel.NumKinds][snapshot.MaxTypes / 64]uint64

	// Built during a cycle, published at its end.
	agg    [kernel.NumKinds]snapshot.KindStats
	maxs   [kernel.NumKinds]uint32 // greatest ID listed
	fresh  [kernel.NumKinds]uint64 // objects not in the last complete cycle
	known  [kernel.NumKinds]uint32 // see beginKind
	ownAgg [kernel.NumKinds]snapshot.OwnStats
	snap   snapshot.Snapshot

	statsMu    sync.Mutex
	statsFD    int
	statsSince time.Time     // when statsFD was opened
	statsOn    time.Duration // how long statistics were on, before statsSince
	suspended  bool
	// cycleMu is held by a cycle from start to publication; Close takes it
	// after telling the cycle to stop, so that nothing a cycle uses (fds,
	// iterators, workers, the snapshot) is released under it.
	cycleMu   sync.Mutex
	closed    bool // under cycleMu
	closeOnce sync.Once

	has         func(kernel.Capability) bool // the capabilities held
	capsChecked bool                         // checkCapabilities ran
	unneeded    []string                     // capabilities held beyond need
}

// New allocates everything the collector will ever use: tables at the
// configured capacities, the batch, the workers and their buffers.
func New(opts Options) (*Collector, error) {
	cfg := opts.Config
	if err := errors.Join(cfg.Validate(), inventory.CheckBudget(&cfg)); err != nil {
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
	// One parse of the kernel's BTF serves every BPF program the agent
	// loads (the object iterators, the holders iterator); it is dropped
	// with this function's frame once they are loaded.
	btfCache := opts.BTF
	if btfCache == nil {
		btfCache = btf.NewCache()
	}
	if opts.LoadIterators == nil {
		opts.LoadIterators = func(gate kernel.Gate, procfs string) (kernel.IteratorSource, [kernel.NumKinds]error, error) {
			it, errs, err := kernel.LoadIteratorsWith(gate, procfs, btfCache)
			if err != nil {
				return nil, errs, err
			}
			return it, errs, nil
		}
	}
	c := &Collector{
		btf:       btfCache,
		onPublish: opts.OnPublish,
		cfg:       cfg,
		logger:    opts.Logger,
		memory:    opts.MemoryUsage,
		statsFD:   -1,
		guard:     newFormulaGuard(),
		attr:      newOwnership(&cfg),
		ownerRank: make([]int32, 0, ownersCapacity(&cfg)),
	}
	workers := cfg.MaxConcurrentSyscalls
	c.lim = newLimiter(cfg.MaxSyscallsPerSecond, cfg.Burst(), workers+1)
	c.gate = newGate(workers, c.lim, c.logger)
	if err := c.chooseSources(opts); err != nil {
		c.discardHolders()
		c.closeSources()
		c.closeSyscalls()
		return nil, err
	}
	c.chooseOwnership(opts)
	c.btf, btfCache = nil, nil // for the collection that ends New
	caps := inventory.Capacities(&cfg)
	for k := range kernel.NumKinds {
		c.tables[k] = inventory.NewTable(caps[k])
	}
	c.batch = make([]job, cfg.BatchSize)
	c.spare = make([]kernel.Record, cfg.BatchSize)
	pool, err := newPool(c.src, workers, c.batch)
	if err != nil {
		c.attr.close()
		c.closeSources()
		c.closeSyscalls()
		return nil, err
	}
	c.pool = pool
	c.snap.MemoryBudgetBytes = cfg.MaxMemoryBytes
	c.snap.Active = true

	if cfg.EnableSystemStats {
		if err := c.enableStats(); err != nil {
			c.Close()
			return nil, err
		}
	}
	// The live-heap figure dates from the last garbage collection; start it
	// with the tables just allocated counted and the BTF parsed for loading
	// gone. Giving that memory back to the kernel (debug.FreeOSMemory, some
	// 10 ms of madvise) is the caller's choice: a one-shot process exits.
	runtime.GC()
	c.snap.MemoryUsageBytes = c.memory()
	c.pub.Publish(&c.snap)
	return c, nil
}

// Publisher is where the snapshots of completed cycles appear.
func (c *Collector) Publisher() *snapshot.Publisher { return &c.pub }

// Close stops the cycle in progress, if any, and waits for it; then it stops
// the workers, releases the iterators and fds, and turns run-time statistics
// off again by closing their fd. It is safe to call more than once.
func (c *Collector) Close() error {
	c.closeOnce.Do(func() {
		c.gate.stop()
		c.cycleMu.Lock()
		defer c.cycleMu.Unlock()
		c.closed = true
		c.pool.stop()
		c.attr.close()
		c.closeSources()
		c.closeSyscalls()
		c.disableStats()
		c.snap.Active = false
		c.snap.SystemStats = false
		c.snap.Features[snapshot.FeatureRunTimeStats] = false
		c.pub.Publish(&c.snap)
	})
	return nil
}

// Run collects every interval until ctx is done. The first cycle starts at
// once. Cycles never overlap: one that takes longer than the interval is
// counted as an overrun (when it is published) and the next starts one
// interval after it ended, so that a node too slow for the interval still
// gets rest between cycles.
//
// With run-time statistics on for a share of the time only
// (system_stats_duty_cycle), they are turned on that share of the interval
// before each cycle, and off after it.
func (c *Collector) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	lead := c.statsLead()
	enabling := false // the timer is for turning statistics on
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if enabling {
			enabling = false
			if err := c.enableStats(); err != nil {
				c.logger.Error("turning run-time statistics on", "err", err)
			}
			timer.Reset(lead)
			continue
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
		if next <= 0 {
			next = c.cfg.CollectionInterval
		}
		if lead > 0 {
			c.disableStats()
			if next > lead {
				next, enabling = next-lead, true
			} else if err := c.enableStats(); err != nil {
				c.logger.Error("turning run-time statistics on", "err", err)
			}
		}
		timer.Reset(next)
	}
}

// Cycle runs one collection cycle and, if it completes, publishes its
// snapshot. Whatever happens, the counters (errors, syscalls, memory limit
// hits) are published too, with the last complete picture of the objects.
// After Close it returns ErrClosed.
func (c *Collector) Cycle(ctx context.Context) error {
	c.cycleMu.Lock()
	defer c.cycleMu.Unlock()
	if c.closed {
		return ErrClosed
	}
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
	if c.overBudget(true) {
		return ErrMemoryLimit
	}
	c.holdersPass()
	c.attr.edges.Begin()
	for _, k := range passOrder {
		var err error
		if c.byIter[k] {
			err = c.collectKindIter(ctx, k)
		} else {
			err = c.collectKind(ctx, k)
		}
		if err != nil {
			for j := range kernel.NumKinds {
				c.tables[j].Abort()
			}
			c.attr.edges.Abort()
			return err
		}
		c.attr.endKind(k)
	}
	for k := range kernel.NumKinds {
		c.tables[k].Commit()
	}
	c.attr.edges.Commit()
	return nil
}
