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
	"slices"
	"sync"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"golang.org/x/sys/unix"
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
	// goroutine: it must not block (exposition.Cache.Notify does not).
	OnPublish func()
	// LoadIterators loads the BPF iterators in every mode but syscall; tests
	// make it fail. Default: kernel.LoadIterators.
	LoadIterators func(kernel.Gate) (*kernel.Iterators, [kernel.NumKinds]error, error)
}

// PrivilegeError names the capability a configuration needs and lacks.
type PrivilegeError struct {
	Missing string // e.g. "CAP_SYS_ADMIN" or "CAP_BPF and CAP_PERFMON"
	Why     string
}

func (e *PrivilegeError) Error() string { return "missing capability " + e.Missing + ": " + e.Why }

// Collector runs collection cycles. Cycle and Run must not be called
// concurrently; Publisher may be read from anywhere.
type Collector struct {
	cfg       config.Config
	logger    *slog.Logger
	onPublish func()            // Options.OnPublish
	src       kernel.Source     // syscall source: kinds without an iterator, memory fallback
	iters     *kernel.Iterators // nil when no kind is read by an iterator
	byIter    [kernel.NumKinds]bool
	canOpen   bool                      // GET_FD_BY_ID is allowed (CAP_SYS_ADMIN)
	fallback  kernel.Reader             // fdinfo for map types whose memory the iterator cannot compute
	own       [kernel.NumKinds][]uint32 // IDs of the agent's own objects, sorted
	scan      kernel.Record             // the iterator's current record
	resync    [kernel.NumKinds]bool     // ask the iterator for full records next cycle
	gate      *gate
	lim       *limiter
	pool      *pool
	memory    func() uint64
	pub       Publisher

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
	agg    [kernel.NumKinds]KindStats
	maxs   [kernel.NumKinds]uint32 // greatest ID listed
	above  [kernel.NumKinds]uint64 // objects listed with an ID above prevMax
	ownAgg [kernel.NumKinds]OwnStats
	snap   Snapshot

	statsFD   int
	suspended bool
	closeOnce sync.Once

	has         func(kernel.Capability) bool // the capabilities held
	capsChecked bool                         // checkCapabilities ran
	unneeded    []string                     // capabilities held beyond need
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
	if opts.LoadIterators == nil {
		opts.LoadIterators = kernel.LoadIterators
	}
	c := &Collector{
		onPublish: opts.OnPublish,
		cfg:       cfg,
		logger:    opts.Logger,
		memory:    opts.MemoryUsage,
		statsFD:   -1,
	}
	workers := cfg.MaxConcurrentSyscalls
	c.lim = newLimiter(cfg.MaxSyscallsPerSecond, cfg.Burst(), workers+1)
	c.gate = newGate(workers, c.lim, c.logger)
	if err := c.chooseSources(opts); err != nil {
		c.closeSources()
		return nil, err
	}
	caps := [kernel.NumKinds]int{cfg.MaxTrackedMaps, cfg.MaxTrackedPrograms, cfg.MaxTrackedLinks}
	for k := range kernel.NumKinds {
		c.tables[k] = inventory.NewTable(caps[k])
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

// chooseSources picks, for each kind, how it is read: by a BPF iterator
// (needs CAP_BPF and CAP_PERFMON) or object by object with system calls
// (needs CAP_SYS_ADMIN). auto prefers iterators and falls back per kind;
// iterator and syscall insist.
func (c *Collector) chooseSources(opts Options) error {
	has := opts.Capabilities
	if has == nil {
		eff, err := kernel.EffectiveCapabilities()
		if err != nil {
			return err
		}
		has = eff
	}
	c.has = has
	c.canOpen = has(unix.CAP_SYS_ADMIN)
	canIter := c.canOpen || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON))
	mode := c.cfg.CollectionMode
	c.src = kernel.NewSyscallSource(opts.Syscalls, c.gate, opts.ProcFS)

	switch {
	case mode == config.ModeSyscall && !c.canOpen:
		return &PrivilegeError{"CAP_SYS_ADMIN", "syscall collection lists and opens eBPF objects with " +
			"BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID, which require it"}
	case mode == config.ModeIterator && !canIter:
		return &PrivilegeError{"CAP_BPF and CAP_PERFMON", "iterator collection loads BPF iterator programs, which require both"}
	case mode == config.ModeAuto && !canIter:
		return &PrivilegeError{"CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON)",
			"collection needs either to load BPF iterators or to open objects by ID"}
	case c.cfg.EnableSystemStats && !c.canOpen:
		return &PrivilegeError{"CAP_SYS_ADMIN", "enable_system_stats turns statistics on with BPF_ENABLE_STATS, which requires it"}
	}

	if mode != config.ModeSyscall {
		it, errs, err := opts.LoadIterators(c.gate)
		switch {
		case err != nil && mode == config.ModeIterator:
			return fmt.Errorf("collection mode iterator: %w", err)
		case err != nil:
			c.logger.Warn("BPF iterators unavailable: reading every kind with system calls", "err", err)
		default:
			c.iters = it
			for k := range kernel.NumKinds {
				c.byIter[k] = it.Available(k)
				if errs[k] == nil {
					continue
				}
				if mode == config.ModeIterator {
					return fmt.Errorf("collection mode iterator: %ss: %w", kernel.Kind(k), errs[k])
				}
				c.logger.Warn("no BPF iterator for this kind: reading it with system calls", "type", kernel.Kind(k).String(), "err", errs[k])
			}
			for _, o := range it.Own() {
				c.own[o.Kind] = append(c.own[o.Kind], o.ID)
			}
			for k := range c.own {
				slices.Sort(c.own[k])
			}
			c.snap.ElementCounts = it.ElementCounts()
		}
	}
	needsOpen := false
	for k := range kernel.NumKinds {
		needsOpen = needsOpen || !c.byIter[k]
		if !c.byIter[k] && !c.canOpen {
			return &PrivilegeError{"CAP_SYS_ADMIN", fmt.Sprintf("no BPF iterator for %ss on this kernel, and reading them "+
				"object by object requires it", kernel.Kind(k))}
		}
		c.snap.Mode[k] = "syscall"
		if c.byIter[k] {
			c.snap.Mode[k] = "iterator"
		}
	}
	c.snap.Features[FeatureMapIterator] = c.byIter[kernel.KindMap]
	c.snap.Features[FeatureProgIterator] = c.byIter[kernel.KindProg]
	c.snap.Features[FeatureLinkIterator] = c.byIter[kernel.KindLink]
	c.snap.Features[FeatureElementCounts] = c.snap.ElementCounts && c.byIter[kernel.KindMap]
	c.snap.ElementCounts = c.snap.Features[FeatureElementCounts]
	if needsOpen {
		// The capability is there; a refusal now comes from a user
		// namespace, seccomp or an LSM, and would fail every cycle.
		if _, err := opts.Syscalls.NextID(kernel.KindMap, 0); err != nil && err != kernel.ErrEndOfList {
			return &PrivilegeError{"CAP_SYS_ADMIN (held, but refused)", fmt.Sprintf("the kernel refused "+
				"BPF_MAP_GET_NEXT_ID (%v): a user namespace, seccomp or an LSM denies bpf(2)", err)}
		}
	}
	if c.canOpen {
		c.fallback = c.src.NewReader()
	}
	c.logger.Info("collection modes", "maps", c.snap.Mode[kernel.KindMap], "programs", c.snap.Mode[kernel.KindProg],
		"links", c.snap.Mode[kernel.KindLink], "element_counts", c.snap.ElementCounts)
	return nil
}

func (c *Collector) closeSources() {
	if c.iters != nil {
		c.iters.Close()
	}
	if c.fallback != nil {
		c.fallback.Close()
	}
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
		c.closeSources()
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
	t, _, stats := c.beginKind(k)
	if err := c.src.Begin(k); err != nil {
		return fmt.Errorf("starting a pass over %ss: %w", k, err)
	}
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
	c.endKind(k)
	return nil
}

// beginKind starts building kind k's table and aggregates for a pass, and
// tells whether the pass reads run-time statistics.
func (c *Collector) beginKind(k kernel.Kind) (*inventory.Table, *KindStats, bool) {
	t := c.tables[k]
	t.Begin()
	agg := &c.agg[k]
	*agg = KindStats{Capacity: uint64(t.Capacity())}
	c.maxs[k], c.above[k] = 0, 0
	c.ownAgg[k] = OwnStats{}
	return t, agg, c.snap.SystemStats && k == kernel.KindProg
}

// endKind completes kind k's aggregates at the end of a pass. Unreadable
// objects are counted apart from the untracked ones.
func (c *Collector) endKind(k kernel.Kind) {
	agg := &c.agg[k]
	agg.Tracked = uint64(c.tables[k].Building())
	agg.Untracked = agg.Objects - agg.Tracked - agg.Unreadable
}

// collectKindIter reads kind k with its BPF iterator: one pass of a few
// large reads. Objects above the threshold come in full; the others carry
// only what can change and are merged with their record of the last cycle.
func (c *Collector) collectKindIter(ctx context.Context, k kernel.Kind) error {
	t, agg, stats := c.beginKind(k)
	if err := c.iters.Begin(k, c.fullAbove(k), stats); err != nil {
		return fmt.Errorf("starting the %s iterator: %w", k, err)
	}
	defer c.iters.End()
	c.resync[k] = false
	scan := &c.scan
	for left := len(c.batch); ; {
		full, err := c.iters.Next(scan)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the %s iterator: %w", k, err)
		}
		id := scan.ID
		if id == 0 {
			// A link between bpf_link_prime and bpf_link_settle is in the
			// kernel's table without its ID yet: it is not there for
			// anyone else either; the next cycle sees it whole.
			continue
		}
		c.maxs[k] = max(c.maxs[k], id)
		if id > c.prevMax[k] {
			c.above[k]++
		}
		prev := t.Known(id)
		var rec *kernel.Record
		switch {
		case prev != nil && !t.Full():
			if full {
				rec = t.AddCopy(id, scan)
			} else {
				rec = t.AddCopy(id, prev)
				overlay(rec, scan)
			}
		case full && !t.Full():
			rec = t.AddCopy(id, scan)
		case full:
			rec = scan // beyond the table: counted, not kept
		default:
			// A short record of an object the table does not hold: the
			// table and the kernel disagree (a cycle stopped half-way
			// between them). Count it; ask for full records next time.
			c.resync[k] = true
			agg.Objects++
			agg.Unreadable++
			continue
		}
		// The iterator gave no memory: the map type's memory cannot be
		// computed in BPF on this kernel, or it has not changed.
		if k == kernel.KindMap && scan.Fields&kernel.HasMemory == 0 && c.fallback != nil &&
			(full || prev == nil || rec.Fields&kernel.HasMemory == 0 || kernel.MemoryVaries(k, rec)) {
			c.memoryByFDInfo(k, rec)
		}
		c.account(k, rec)
		if left--; left == 0 {
			left = len(c.batch)
			c.snap.Batches++
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	// A pass allocates nothing: the budget is checked once, after it.
	if c.overBudget(false) {
		return ErrMemoryLimit
	}
	c.snap.Batches++
	c.endKind(k)
	return nil
}

// fullAbove is the ID above which the iterator must send full records:
// everything in the first cycle and after a disagreement; the objects new
// since the last cycle; and, with the table full, every object beyond it
// (read in full every cycle, as in syscall mode).
func (c *Collector) fullAbove(k kernel.Kind) uint32 {
	if !c.baseline || c.resync[k] {
		return 0
	}
	t := c.tables[k]
	if t.Len() == t.Capacity() && t.Len() > 0 {
		return min(c.prevMax[k], t.Records()[t.Len()-1].ID)
	}
	return c.prevMax[k]
}

// overlay copies onto a known record what a short record carries.
func overlay(rec, scan *kernel.Record) {
	const changing = kernel.HasMemory | kernel.HasElements | kernel.HasStats
	if scan.Fields&kernel.HasMemory != 0 {
		rec.Memory = scan.Memory
	}
	rec.Elements = scan.Elements
	rec.RunTimeNs = scan.RunTimeNs
	rec.RunCount = scan.RunCount
	rec.Fields = rec.Fields&^(kernel.HasElements|kernel.HasStats) | scan.Fields&changing
}

// memoryByFDInfo reads from fdinfo the memory of a map whose memory the
// iterator could not compute on this kernel: once for a new map, every
// cycle for a type whose memory follows its contents. It needs
// CAP_SYS_ADMIN (c.fallback); without it the memory stays unknown and is
// counted as such.
func (c *Collector) memoryByFDInfo(k kernel.Kind, rec *kernel.Record) {
	err := c.fallback.Read(k, rec.ID, kernel.NeedMemory, rec)
	if err != nil && !kernel.Gone(err) {
		rec.Fields &^= kernel.HasMemory
	}
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
	ts.Objects++
	if k != kernel.KindLink && rec.Fields&kernel.HasMemory == 0 {
		agg.MemoryUnknown++
	}
	agg.MemoryBytes += rec.Memory
	ts.MemoryBytes += rec.Memory
	ts.RunTimeNs += rec.RunTimeNs
	ts.RunCount += rec.RunCount
	if rec.Fields&kernel.HasElements != 0 && rec.MaxEntries > 0 {
		ts.Elements += rec.Elements
		ts.MaxEntries += uint64(rec.MaxEntries)
		if rec.Elements*10 > uint64(rec.MaxEntries)*9 {
			ts.NearFull++
		}
	}
	c.seen[k][ti/64] |= 1 << (uint(ti) % 64)
	if own := c.own[k]; len(own) > 0 && rec.ID >= own[0] && rec.ID <= own[len(own)-1] {
		if _, ok := slices.BinarySearch(own, rec.ID); ok {
			c.ownAgg[k].Objects++
			c.ownAgg[k].MemoryBytes += rec.Memory
		}
	}
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
				if c.prevCount[k]+created < a.Objects {
					// More objects than before plus the new ones: one
					// first listed below the previous greatest ID, a link
					// that was still being attached last cycle. It is new
					// too; the removed count must not wrap around.
					created = a.Objects - c.prevCount[k]
				}
				c.created[k] += created
				c.removed[k] += c.prevCount[k] + created - a.Objects
			}
			c.prevCount[k] = a.Objects
			c.prevMax[k] = max(c.prevMax[k], c.maxs[k])
			a.Created, a.Removed = c.created[k], c.removed[k]
			a.TypesSeen = c.seen[k]
			s.Kinds[k] = *a
			s.Own[k] = c.ownAgg[k]
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
		c.checkCapabilities()
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
	if c.onPublish != nil {
		c.onPublish()
	}
}

func durationBucket(s float64) int {
	for i, b := range DurationBuckets {
		if s <= b {
			return i
		}
	}
	return -1 // only in the +Inf bucket
}
