// Ownership: who holds each object. A pass over the holders (the processes
// with a file descriptor of an object) comes first; then each object is
// attributed to an owner as its kind's pass meets it. The kinds are read
// links first, programs, then maps, so that an object no one holds can go
// to the owner of an object that refers to it: a program to a link's, a
// map to a program's.

package collector

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/owner"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// passOrder is the order of the kinds in a cycle: referring objects first.
var passOrder = [kernel.NumKinds]kernel.Kind{kernel.KindLink, kernel.KindProg, kernel.KindMap}

// ownership is the attribution's state.
type ownership struct {
	src     owner.Source // nil: no ownership
	taken   bool         // the next cycle's holders pass was taken while loading
	holders *kernel.Holders
	owners  *inventory.Owners
	held    [kernel.NumKinds]*inventory.Refs // objects held by a descriptor
	viaProg *inventory.Refs                  // programs of attributed links
	viaMap  *inventory.Refs                  // maps of attributed programs
	edges   *inventory.Edges                 // tracked programs' maps
	maps    [kernel.MaxUsedMaps]uint32       // a program's maps, scratch
	hold    owner.Holding
	pass    owner.Pass
	key     inventory.OwnerKey
	other   inventory.OwnerStats // owners with no slot this cycle
	none    inventory.OwnerStats // objects no one holds
	lost    uint64
	top     topK
	mark    attrMark
}

// attrMark is the attribution as it was before a kind's pass, which an
// iterator pass read again (a wrapped ID) puts back.
type attrMark struct {
	stats                  []inventory.OwnerStats
	other, none            inventory.OwnerStats
	viaProg, viaMap, edges int
	top                    [numRanks][]ranked
}

func (o *ownership) save() {
	m := &o.mark
	m.stats = o.owners.SaveStats(m.stats)
	m.other, m.none = o.other, o.none
	m.viaProg, m.viaMap, m.edges = o.viaProg.Len(), o.viaMap.Len(), o.edges.Mark()
	for r := range m.top {
		m.top[r] = append(m.top[r][:0], o.top.heaps[r]...)
	}
}

func (o *ownership) restore() {
	m := &o.mark
	o.owners.RestoreStats(m.stats)
	o.other, o.none = m.other, m.none
	o.viaProg.Truncate(m.viaProg)
	o.viaMap.Truncate(m.viaMap)
	o.edges.Truncate(m.edges)
	for r := range m.top {
		o.top.heaps[r] = append(o.top.heaps[r][:0], m.top[r]...)
	}
}

// Capacities of the attribution's tables, from the configuration: they
// hold a cycle's references, which grow with the population, so they are
// sized from the tables' capacities with room beyond. What does not fit
// goes to "other" and is counted (Owners.Lost).
func refsCapacity(cfg *config.Config) int {
	return max(4*(cfg.MaxTrackedMaps+cfg.MaxTrackedPrograms+cfg.MaxTrackedLinks), 4096)
}

func ownersCapacity(cfg *config.Config) int { return max(4*cfg.MaxOwners, 256) }

// edgesPerProgram is the room Edges has per tracked program: programs use
// a few maps, some a few dozen, none more than kernel.MaxUsedMaps.
const edgesPerProgram = 16

func newOwnership(cfg *config.Config) ownership {
	o := ownership{
		owners:  inventory.NewOwners(ownersCapacity(cfg)),
		viaProg: inventory.NewRefs(refsCapacity(cfg)),
		viaMap:  inventory.NewRefs(refsCapacity(cfg)),
		edges:   inventory.NewEdges(edgesPerProgram * cfg.MaxTrackedPrograms),
		top:     newTopK(cfg.TopK),
	}
	o.mark.stats = make([]inventory.OwnerStats, 0, ownersCapacity(cfg))
	for r := range o.mark.top {
		o.mark.top[r] = make([]ranked, 0, cfg.TopK)
	}
	for k := range o.held {
		o.held[k] = inventory.NewRefs(refsCapacity(cfg))
	}
	return o
}

// chooseOwnership picks where holders come from: the holders iterator
// wherever objects are read by iterators (it needs the same CAP_BPF and
// CAP_PERFMON), else procfs; none with max_owners 0. Ownership is a plus:
// if neither works, the collection goes on without it, and says so.
func (c *Collector) chooseOwnership(opts Options) {
	switch {
	case c.cfg.MaxOwners == 0:
		// No owner series: a holders pass would cost its walk of every
		// process's files (in syscall mode, system calls under the rate
		// limit) for nothing.
		if opts.OwnerSource != nil {
			opts.OwnerSource.Close()
		}
		c.logger.Info("ownership off: max_owners is 0")
	case opts.OwnerSource != nil:
		c.attr.src = opts.OwnerSource
	default:
		c.attr.src = c.loadOwnerSource(opts)
	}
	c.snap.Features[snapshot.FeatureOwnership] = c.attr.src != nil
	if c.attr.src != nil {
		c.logger.Info("ownership", "holders", c.attr.src.Mode())
	}
}

// holdersLoad is the holders iterator loading in a goroutine of its own.
type holdersLoad struct {
	h    *kernel.Holders
	src  *owner.Iter // reading h
	err  error
	done chan struct{}
}

// loadHolders starts loading the holders iterator, with the collector's
// BTF. With firstPass, the goroutine goes on with the first cycle's
// holders pass, while the object iterators may still be loading: it owns
// c.attr until done is closed.
func (c *Collector) loadHolders(procfs string, firstPass bool) {
	l := &holdersLoad{done: make(chan struct{})}
	c.hload = l
	gate, cache := c.gate, c.btf
	go func() {
		defer close(l.done)
		if l.h, l.err = kernel.LoadHolders(gate, procfs, kernel.HolderOptions{BTF: cache}); l.err != nil {
			return
		}
		if l.src, l.err = owner.NewIter(l.h, procfs, gate); l.err != nil {
			l.h.Close()
			l.h = nil
			return
		}
		if firstPass {
			c.attr.src = l.src
			c.holdersPass()
			c.attr.taken = true
		}
	}()
}

// discardHolders waits for the holders iterator's loading, if any, and
// releases it: start-up failed.
func (c *Collector) discardHolders() {
	if l := c.hload; l != nil {
		<-l.done
		if l.src != nil {
			l.src.Close()
		}
		if l.h != nil {
			l.h.Close()
		}
		c.attr.src, c.attr.taken = nil, false
		c.hload = nil
	}
}

func (c *Collector) loadOwnerSource(opts Options) owner.Source {
	var errs []error
	if l := c.hload; l != nil {
		<-l.done
		c.hload = nil
		if l.err == nil {
			c.attr.holders = l.h
			c.addOwn(l.h.Own())
			return l.src
		}
		errs = append(errs, fmt.Errorf("holders iterator: %w", l.err))
	}
	src, err := owner.NewProc(opts.ProcFS, c.gate)
	if err == nil {
		if len(errs) > 0 {
			c.logger.Warn("reading the holders of objects from procfs instead", "err", errs[0])
		}
		return src
	}
	errs = append(errs, fmt.Errorf("procfs: %w", err))
	c.logger.Warn("no ownership: objects are not attributed to processes", "err", errors.Join(errs...))
	return nil
}

func (o *ownership) close() {
	if o.src != nil {
		o.src.Close()
	}
	if o.holders != nil {
		o.holders.Close()
	}
}

// holdersPass reads every holding into the index of the cycle. A failed
// pass leaves the cycle without owners (every object in "other"), counted
// like any failed operation: it does not stop the collection.
func (c *Collector) holdersPass() {
	o := &c.attr
	if o.taken {
		o.taken = false // while loading: Options.FirstCycle
		return
	}
	o.owners.Begin()
	for k := range o.held {
		o.held[k].Reset()
	}
	o.viaProg.Reset()
	o.viaMap.Reset()
	o.other, o.none, o.lost, o.pass = inventory.OwnerStats{}, inventory.OwnerStats{}, 0, owner.Pass{}
	o.top.reset()
	if o.src == nil {
		return
	}
	if err := o.holdings(); err != nil {
		c.logger.Warn("reading the holders of objects failed: this cycle's objects have no owner", "err", err)
		for k := range o.held {
			o.held[k].Reset()
		}
		o.lost++
	}
	for k := range o.held {
		o.held[k].Sort()
	}
}

func (o *ownership) holdings() error {
	if err := o.src.Begin(); err != nil {
		return err
	}
	for {
		err := o.src.Next(&o.hold)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			o.src.End()
			return err
		}
		h := &o.hold
		if h.Kind >= kernel.NumKinds {
			continue
		}
		o.key = inventory.OwnerKey{Comm: h.Process.Comm, Container: h.Process.ContainerID, Pod: h.Process.PodUID}
		o.held[h.Kind].Add(h.ID, h.Process.PID, o.owners.Lookup(&o.key))
	}
	pass, err := o.src.End()
	o.pass = pass
	return err
}

// attribute gives object rec of kind k to its owner: the process holding
// it with the lowest PID, else that of an object referring to it, else no
// one; and records, for the kinds read after it, what it refers to (a
// link's program; a program's maps, usedMaps). It accounts the object's
// counts, memory and run time to that owner, and offers it to the rankings.
func (c *Collector) attribute(k kernel.Kind, rec *kernel.Record, usedMaps []uint32) {
	o := &c.attr
	if o.src == nil {
		o.top.offer(k, rec, nil)
		return
	}
	ref, ok := o.held[k].Lookup(rec.ID)
	if !ok {
		switch k {
		case kernel.KindProg:
			ref, ok = o.viaProg.Lookup(rec.ID)
		case kernel.KindMap:
			ref, ok = o.viaMap.Lookup(rec.ID)
		}
	}
	var stats *inventory.OwnerStats
	var key *inventory.OwnerKey
	switch {
	case ok && ref.Owner != inventory.NoOwner:
		stats, key = o.owners.Stats(ref.Owner), o.owners.Key(ref.Owner)
	case ok, o.held[k].Dropped() > 0, k == kernel.KindMap && o.viaMap.Dropped() > 0,
		k == kernel.KindProg && o.viaProg.Dropped() > 0:
		// An owner without a slot, or maybe one whose reference did not
		// fit: not "no one".
		stats = &o.other
	default:
		stats = &o.none
	}
	stats.Objects[k]++
	stats.MemoryBytes += rec.Memory
	stats.RunTimeNs += rec.RunTimeNs
	stats.RunCount += rec.RunCount
	if ok {
		switch k {
		case kernel.KindLink:
			if rec.ProgID != 0 {
				o.viaProg.Add(rec.ProgID, ref.PID, ref.Owner)
			}
		case kernel.KindProg:
			for _, m := range usedMaps {
				o.viaMap.Add(m, ref.PID, ref.Owner)
			}
		}
	}
	o.top.offer(k, rec, key)
}

// endKind sorts what kind k's pass referred to, for the next kind's.
func (o *ownership) endKind(k kernel.Kind) {
	switch k {
	case kernel.KindLink:
		o.viaProg.Sort()
	case kernel.KindProg:
		o.viaMap.Sort()
	}
}

// programMaps returns the maps a program uses: read with it this cycle
// (full, a new or untracked program), or kept from the cycle that read it
// (tracked); for a tracked program, they are kept for the next cycle.
func (o *ownership) programMaps(id uint32, read []uint32, full, tracked bool) []uint32 {
	switch {
	case o.src == nil: // the maps serve attribution only
		return nil
	case full && tracked:
		o.edges.Put(id, read)
		return read
	case full:
		return read
	case tracked:
		return o.edges.Keep(id, o.maps[:0])
	}
	return nil
}

// publishOwners folds the cycle's owners into s: the largest by memory get
// rows, up to max; the others are summed into Other.
func (c *Collector) publishOwners(s *snapshot.Owners, max int) {
	o := &c.attr
	*s = snapshot.Owners{Processes: uint64(o.pass.Processes), Unreadable: uint64(o.pass.Unreadable),
		CgroupUnknown: uint64(o.pass.CgroupUnknown)}
	s.Lost = o.lost + o.owners.Refused() + o.viaProg.Dropped() + o.viaMap.Dropped() + o.edges.Dropped()
	for k := range o.held {
		s.Lost += o.held[k].Dropped()
	}
	rows := c.ownerRank[:0]
	for i := range int32(o.owners.Len()) {
		if st := o.owners.Stats(i); o.owners.Seen(i) && *st != (inventory.OwnerStats{}) {
			rows = append(rows, i)
		}
	}
	slices.SortFunc(rows, func(a, b int32) int {
		ma, mb := o.owners.Stats(a).MemoryBytes, o.owners.Stats(b).MemoryBytes
		switch {
		case ma != mb:
			if ma > mb {
				return -1
			}
			return 1
		default:
			return compareKeys(o.owners.Key(a), o.owners.Key(b))
		}
	})
	setOwner(&s.Other, nil, &o.other)
	for n, i := range rows {
		if n < max {
			setOwner(&s.Rows[n], o.owners.Key(i), o.owners.Stats(i))
			s.N++
			continue
		}
		addOwner(&s.Other, o.owners.Stats(i))
		s.OtherOwners++
	}
	setOwner(&s.None, nil, &o.none)
}

func compareKeys(a, b *inventory.OwnerKey) int {
	for i := range a.Comm {
		if a.Comm[i] != b.Comm[i] {
			return int(a.Comm[i]) - int(b.Comm[i])
		}
	}
	if a.Container != b.Container {
		if a.Container < b.Container {
			return -1
		}
		return 1
	}
	if a.Pod < b.Pod {
		return -1
	} else if a.Pod > b.Pod {
		return 1
	}
	return 0
}

func setOwner(dst *snapshot.Owner, key *inventory.OwnerKey, st *inventory.OwnerStats) {
	*dst = snapshot.Owner{}
	if key != nil {
		dst.Comm = key.Comm
		copy(dst.ContainerID[:], key.Container)
		copy(dst.PodUID[:], key.Pod)
	}
	addOwner(dst, st)
}

func addOwner(dst *snapshot.Owner, st *inventory.OwnerStats) {
	for k := range st.Objects {
		dst.Objects[k] += st.Objects[k]
	}
	dst.MemoryBytes += st.MemoryBytes
	dst.RunTimeNs += st.RunTimeNs
	dst.RunCount += st.RunCount
}
