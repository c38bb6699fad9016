// Choosing, for each kind of object, where it is read from: a BPF iterator
// or system calls, by what the kernel supports and the capabilities held.

package collector

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// PrivilegeError names the capability a configuration needs and lacks.
type PrivilegeError struct {
	Missing string // e.g. "CAP_SYS_ADMIN" or "CAP_BPF and CAP_PERFMON"
	Why     string
}

func (e *PrivilegeError) Error() string { return "missing capability " + e.Missing + ": " + e.Why }

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
		if opts.OwnerSource == nil && c.cfg.MaxOwners > 0 {
			c.loadHolders(opts.ProcFS, opts.FirstCycle) // beside the object iterators: both take tens of ms of CPU
		}
		it, errs, err := opts.LoadIterators(c.gate, opts.ProcFS)
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
			c.addOwn(it.Own())
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
	c.snap.Features[snapshot.FeatureMapIterator] = c.byIter[kernel.KindMap]
	c.snap.Features[snapshot.FeatureProgIterator] = c.byIter[kernel.KindProg]
	c.snap.Features[snapshot.FeatureLinkIterator] = c.byIter[kernel.KindLink]
	c.snap.Features[snapshot.FeatureElementCounts] = c.snap.ElementCounts && c.byIter[kernel.KindMap]
	c.snap.ElementCounts = c.snap.Features[snapshot.FeatureElementCounts]
	if needsOpen {
		// The capability is there; a refusal now comes from a user
		// namespace, seccomp or an LSM, and would fail every cycle.
		if _, err := opts.Syscalls.NextID(kernel.KindMap, 0); err != nil && err != kernel.ErrEndOfList {
			return &PrivilegeError{"CAP_SYS_ADMIN (held, but refused)", fmt.Sprintf("the kernel refused "+
				"BPF_MAP_GET_NEXT_ID (%v): a user namespace, seccomp or an LSM denies bpf(2)", err)}
		}
	}
	if c.canOpen {
		fallback, err := c.src.NewReader()
		if err != nil {
			return err
		}
		c.fallback = fallback
		c.snap.Features[snapshot.FeatureMemoryFormulaCheck] = c.byIter[kernel.KindMap]
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

// closeSyscalls releases the syscall source, after every reader of it.
func (c *Collector) closeSyscalls() {
	if c.src != nil {
		c.src.Close()
	}
}

// addOwn adds the agent's own objects (its iterators' programs, maps and
// links) to the sorted IDs that accounting counts apart (own_*).
func (c *Collector) addOwn(objs []kernel.OwnObject) {
	for _, o := range objs {
		c.own[o.Kind] = append(c.own[o.Kind], o.ID)
	}
	for k := range c.own {
		slices.Sort(c.own[k])
	}
}
