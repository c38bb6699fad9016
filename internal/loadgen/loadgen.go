// Package loadgen creates a known population of eBPF objects (maps, programs,
// links) and holds it, so that tests, benchmarks and demos can compare what
// the agent reports with what exists.
//
// Everything it creates is inert: the programs are never attached to a hook
// and the links are BPF iterator links, which run only when someone read()s an
// iterator fd created from them, which nobody does.
//
// It uses cilium/ebpf only, never internal/kernel, so that the kernel package's
// own tests can use it without an import cycle and check the agent's kernel
// boundary against an independent implementation.
package loadgen

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Spec says how many objects of each kind Create makes.
type Spec struct {
	// Maps is the number of maps. Map n (from 0) has kind MapKinds[n%len(MapKinds)].
	Maps int
	// Programs is the number of socket filter programs "r0 = 0; exit".
	Programs int
	// Links is the number of BPF iterator links. When Links > 0, Create also
	// loads one helper program (the iterator program all links share), which is
	// not counted in Programs: see Population.HelperProgramIDs.
	Links int
	// Fill is the fraction (0..1) of max_entries that Create writes into each
	// fillable map: see MapKind.Fillable.
	Fill float64
	// Processes, when above 0, spreads the population over that many
	// processes (sleep(1), comm HolderComm), object i held by process
	// i mod Processes and by nothing else: to measure finding holders.
	Processes int
}

// MapMaxEntries is max_entries of every map except ring buffers, whose
// max_entries is the page size.
const MapMaxEntries = 128

// MapKind is one kind of map in the mix Create cycles through.
type MapKind struct {
	Type  ebpf.MapType
	Flags uint32
	// Fillable kinds get floor(Fill*max_entries) elements written by Create,
	// at keys 0..n-1. For hash-like maps (hash, percpu_hash, lru_hash,
	// no-prealloc hash, lpm_trie) that is their element count; arrays always
	// hold max_entries elements, of which the first n are written non-zero.
	// Queue, ring buffer and bloom filter maps are left empty.
	Fillable bool
}

// MapKinds is the deterministic cycle of map kinds: map n has kind
// MapKinds[n%len(MapKinds)].
var MapKinds = [...]MapKind{
	{Type: ebpf.Hash, Fillable: true},
	{Type: ebpf.Array, Fillable: true},
	{Type: ebpf.PerCPUHash, Fillable: true},
	{Type: ebpf.PerCPUArray, Fillable: true},
	{Type: ebpf.LRUHash, Fillable: true},
	{Type: ebpf.Hash, Flags: unix.BPF_F_NO_PREALLOC, Fillable: true},
	{Type: ebpf.LPMTrie, Flags: unix.BPF_F_NO_PREALLOC, Fillable: true},
	{Type: ebpf.Queue},
	{Type: ebpf.RingBuf},
	{Type: ebpf.BloomFilter},
}

// failpoint, when set by a test, runs before link n is attached; an error
// it returns makes Create fail there.
var failpoint func(p *Population, n int) error

// fdSlack is the number of file descriptors kept free for the Go runtime,
// /proc reads and the caller, beyond those the population holds.
const fdSlack = 64

// MapDetail describes one map Create made.
type MapDetail struct {
	ID         uint32
	Name       string
	Type       ebpf.MapType
	Flags      uint32
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	// Filled is the number of elements Create wrote (0 for kinds that are
	// not fillable).
	Filled uint32
}

// Population holds every object Create made until Close.
type Population struct {
	mu       sync.Mutex
	closed   bool
	maps     []*ebpf.Map
	progs    []*ebpf.Program
	helpers  []*ebpf.Program
	links    []link.Link
	mapInfo  []MapDetail
	mapIDs   []uint32
	progIDs  []uint32
	helpIDs  []uint32
	linkIDs  []uint32
	procSelf string

	holders       []int  // the processes holding a spread population
	spreadMemlock uint64 // MemlockBytes as of spreading
}

// Create raises RLIMIT_NOFILE to its hard limit, removes the memlock limit,
// and creates spec's population. On error it releases what it created so far.
func Create(spec Spec) (*Population, error) {
	if spec.Maps < 0 || spec.Programs < 0 || spec.Links < 0 || spec.Processes < 0 {
		return nil, fmt.Errorf("loadgen: negative count in %+v", spec)
	}
	if !(spec.Fill >= 0 && spec.Fill <= 1) {
		return nil, fmt.Errorf("loadgen: fill %v outside 0..1", spec.Fill)
	}
	if err := raiseNoFile(spec); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("loadgen: removing memlock limit: %w", err)
	}

	p := &Population{procSelf: "/proc/self/fdinfo/"}
	if err := p.create(spec); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	if spec.Processes > 0 {
		if err := p.spread(spec.Processes); err != nil {
			return nil, errors.Join(err, p.Close())
		}
	}
	return p, nil
}

func (p *Population) create(spec Spec) error {
	p.maps = make([]*ebpf.Map, 0, spec.Maps)
	p.mapInfo = make([]MapDetail, 0, spec.Maps)
	f := filler{}
	for n := range spec.Maps {
		if err := p.createMap(n, spec.Fill, &f); err != nil {
			return err
		}
	}
	if err := p.createPrograms(spec.Programs); err != nil {
		return err
	}
	if err := p.createLinks(spec.Links); err != nil {
		return err
	}
	slices.SortFunc(p.mapInfo, func(a, b MapDetail) int { return cmp.Compare(a.ID, b.ID) })
	p.mapIDs = make([]uint32, len(p.mapInfo))
	for i := range p.mapInfo {
		p.mapIDs[i] = p.mapInfo[i].ID
	}
	slices.Sort(p.progIDs)
	slices.Sort(p.helpIDs)
	slices.Sort(p.linkIDs)
	return nil
}

// raiseNoFile sets the RLIMIT_NOFILE soft limit to the hard limit and checks
// that spec fits under it.
func raiseNoFile(spec Spec) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("loadgen: getrlimit RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("loadgen: raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	open, err := openFDs()
	if err != nil {
		return err
	}
	need := uint64(spec.Maps) + uint64(spec.Programs) + uint64(spec.Links) + uint64(helperPrograms(spec))
	if uint64(open)+need+fdSlack > lim.Cur {
		return fmt.Errorf("loadgen: %d maps + %d programs + %d links (+%d helper) need %d file descriptors, "+
			"%d are already open and %d kept free, over the RLIMIT_NOFILE limit of %d",
			spec.Maps, spec.Programs, spec.Links, helperPrograms(spec), need, open, fdSlack, lim.Cur)
	}
	return nil
}

func helperPrograms(spec Spec) int {
	if spec.Links > 0 {
		return 1
	}
	return 0
}

func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("loadgen: counting open file descriptors: %w", err)
	}
	return len(ents), nil
}

// MapIDs returns the sorted kernel IDs of the maps.
func (p *Population) MapIDs() []uint32 { return append([]uint32{}, p.mapIDs...) }

// ProgramIDs returns the sorted kernel IDs of the Spec.Programs socket
// filter programs; the helper program is not among them.
func (p *Population) ProgramIDs() []uint32 { return append([]uint32{}, p.progIDs...) }

// HelperProgramIDs returns the IDs of the programs Create loaded beyond
// Spec.Programs: the one iterator program the links share when Spec.Links > 0,
// none otherwise.
func (p *Population) HelperProgramIDs() []uint32 { return append([]uint32{}, p.helpIDs...) }

// LinkIDs returns the sorted kernel IDs of the links.
func (p *Population) LinkIDs() []uint32 { return append([]uint32{}, p.linkIDs...) }

// Maps describes every map, sorted by ID.
func (p *Population) Maps() []MapDetail { return append([]MapDetail{}, p.mapInfo...) }

// MemlockBytes returns the sum of the kernel's fdinfo "memlock" over the
// population's maps and programs, helper program included, as the kernel
// reports it now (non-preallocated maps grow with their content); for a
// population spread over processes, as it was when it was spread. Links
// have no memlock.
func (p *Population) MemlockBytes() (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errors.New("loadgen: population closed")
	}
	if p.holders != nil {
		return p.spreadMemlock, nil
	}
	r := memlockReader{dir: p.procSelf}
	var sum uint64
	for _, m := range p.maps {
		v, err := r.read(m.FD())
		if err != nil {
			return 0, err
		}
		sum += v
	}
	for _, progs := range [][]*ebpf.Program{p.progs, p.helpers} {
		for _, prog := range progs {
			v, err := r.read(prog.FD())
			if err != nil {
				return 0, err
			}
			sum += v
		}
	}
	return sum, nil
}

// Close releases every object; it is idempotent. The kernel frees the
// objects asynchronously (after an RCU grace period), so their IDs may stay
// visible for a short while after Close returns.
func (p *Population) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.holders != nil {
		errs = append(errs, p.stopHolders())
	}
	errs = append(errs, p.closeObjectsLocked())
	return errors.Join(errs...)
}

// closeObjects closes this process's descriptors of the objects.
func (p *Population) closeObjects() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeObjectsLocked()
}

func (p *Population) closeObjectsLocked() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	for _, progs := range [][]*ebpf.Program{p.helpers, p.progs} {
		for _, prog := range progs {
			errs = append(errs, prog.Close())
		}
	}
	for _, m := range p.maps {
		errs = append(errs, m.Close())
	}
	p.links, p.helpers, p.progs, p.maps = nil, nil, nil, nil
	return errors.Join(errs...)
}
