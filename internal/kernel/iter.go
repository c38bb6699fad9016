package kernel

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type map_record -type prog_record -type prog_maps -type link_record iter bpf/iter.bpf.c

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Iterators reads every object of a kind with a BPF iterator (iter/bpf_map,
// iter/bpf_prog, iter/bpf_link): a pass costs BPF_ITER_CREATE, one read()
// per ~32 KiB of records and a close, however many objects there are. It
// needs CAP_BPF and CAP_PERFMON, not CAP_SYS_ADMIN: an iterator sees every
// object without opening any.
//
// Each kind's program is loaded on its own, so that a kernel lacking one
// iterator (bpf_link's arrived in 5.19) still gets the others. Iterators is
// not safe for concurrent use.
type Iterators struct {
	kinds    [NumKinds]*iterKind
	gate     Gate
	elements bool // the kernel has bpf_map_sum_elem_count
	stats    bool // the pass in progress reads statistics

	// The pass in progress.
	maps   UsedMaps // of the last full program record
	cur    *iterKind
	ck     Kind
	stream recordStream
}

// iterKind is one kind's iterator: its program, the link the kernel runs it
// through, and the variables the agent sets in its .bss.
type iterKind struct {
	prog      *ebpf.Program
	link      *link.Iter
	fullAbove *ebpf.Variable
	wantStats *ebpf.Variable
	own       []OwnObject

	// Values written into the variables; fields, so that passing their
	// address to Variable.Set allocates nothing.
	fullAboveVal [NumKinds]uint32
	wantStatsVal uint32
	statsSet     bool
}

// iterReadSize is the read buffer: a bpf_iter seq_file holds 8 pages of
// records at most, so one read rarely returns more than 32 KiB; the rest
// holds a record split across two reads.
const iterReadSize = 64 << 10

var iterProgNames = [NumKinds]string{iterProgDumpMaps, iterProgDumpProgs, iterProgDumpLinks}

var _ IteratorSource = (*Iterators)(nil)

// LoadIterators loads the iterator of each kind that the running kernel
// supports. errs[k] says why kind k has none; the result is nil only when
// no kind has one. Every system call of a pass goes through gate. procfs is
// where /proc is mounted.
func LoadIterators(gate Gate, procfs string) (*Iterators, [NumKinds]error, error) {
	return LoadIteratorsWith(gate, procfs, nil)
}

// LoadIteratorsWith is LoadIterators with the kernel's BTF from cache,
// which the caller shares with other loads (nil: a cache of its own).
func LoadIteratorsWith(gate Gate, procfs string, cache *btf.Cache) (*Iterators, [NumKinds]error, error) {
	var errs [NumKinds]error
	if err := fdHeadroom(procfs, iterFDs); err != nil {
		return nil, errs, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, errs, fmt.Errorf("counting possible CPUs: %w", err)
	}
	spec, err := loadIter()
	if err != nil {
		return nil, errs, fmt.Errorf("reading the iterator object: %w", err)
	}
	if err := spec.Variables[iterVarNrCpus].Set(uint32(cpus)); err != nil {
		return nil, errs, err
	}
	if err := spec.Variables[iterVarPageSize].Set(uint64(os.Getpagesize())); err != nil {
		return nil, errs, err
	}
	// One parse of the kernel's BTF serves the three programs' CO-RE
	// relocations and attach targets, and the kfunc probe: each load would
	// parse it again (~15 ms and megabytes each). It is dropped with the
	// cache when loading ends. The kinds load side by side: most of a load
	// is relocating, on the CPU.
	if cache == nil {
		cache = btf.NewCache()
	}
	it := &Iterators{gate: gate, stream: newObjectStream(make([]byte, iterReadSize))}
	var wg sync.WaitGroup
	for k := range NumKinds {
		spec := spec.Copy()
		wg.Go(func() { it.kinds[k], errs[k] = loadIterKind(k, spec, cache) })
	}
	wg.Wait()
	any := false
	for _, ik := range it.kinds {
		any = any || ik != nil
	}
	if !any {
		return nil, errs, fmt.Errorf("no BPF iterator could be loaded: %w", errors.Join(errs[:]...))
	}
	it.elements = kernelHasFunc(cache, "bpf_map_sum_elem_count")
	return it, errs, nil
}

// iterFDs is how many file descriptors loading the three iterators and
// reading one of them takes (measured on Linux 6.18: 14, the programs'
// maps, programs, links and cilium/ebpf's feature probes), with slack.
const iterFDs = 16

// fdHeadroom fails with EMFILE when fewer than need descriptors are free
// under RLIMIT_NOFILE. Checked before loading because an exhausted table
// is not reported as such: cilium/ebpf's feature probes take EMFILE for
// "not supported", and the message would send the operator to the kernel.
func fdHeadroom(procfs string, need int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return nil
	}
	fds, err := os.ReadDir(procfs + "/self/fd")
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return fmt.Errorf("loading the iterators needs %d free file descriptors, RLIMIT_NOFILE %d has none left: %w",
			need, lim.Cur, err)
	}
	if err != nil {
		return nil
	}
	// ReadDir's own descriptor is listed and closed again.
	if free := int(lim.Cur) - (len(fds) - 1); free < need {
		return fmt.Errorf("loading the iterators needs %d free file descriptors, RLIMIT_NOFILE %d leaves %d: %w",
			need, lim.Cur, free, unix.EMFILE)
	}
	return nil
}

// kernelHasFunc reports whether the kernel's BTF has the function (a kfunc
// the iterator calls where it exists).
func kernelHasFunc(cache *btf.Cache, name string) bool {
	spec, err := cache.Kernel()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName(name, &fn) == nil
}

// ElementCounts reports whether map records carry element counts: the
// kernel has the kfunc bpf_map_sum_elem_count (Linux 6.6 and later).
func (it *Iterators) ElementCounts() bool { return it.elements }

func loadIterKind(k Kind, spec *ebpf.CollectionSpec, cache *btf.Cache) (_ *iterKind, err error) {
	// Load only this kind's program and what it uses, so that a kernel
	// that refuses one iterator still runs the others. LoadAndAssign takes
	// a struct whose tags name what to load: the program's is this kind's.
	name := iterProgNames[k]
	objs := reflect.New(reflect.StructOf([]reflect.StructField{
		{Name: "Prog", Type: reflect.TypeFor[*ebpf.Program](), Tag: reflect.StructTag(`ebpf:"` + name + `"`)},
		{Name: "FullAbove", Type: reflect.TypeFor[*ebpf.Variable](), Tag: `ebpf:"full_above"`},
		{Name: "WantStats", Type: reflect.TypeFor[*ebpf.Variable](), Tag: `ebpf:"want_stats"`},
	}))
	if err := spec.LoadAndAssign(objs.Interface(), &ebpf.CollectionOptions{Cache: cache}); err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	o := objs.Elem()
	prog := o.Field(0).Interface().(*ebpf.Program)
	ik := &iterKind{prog: prog, fullAbove: o.Field(1).Interface().(*ebpf.Variable),
		wantStats: o.Field(2).Interface().(*ebpf.Variable)}
	defer func() {
		if err != nil {
			ik.close()
		}
	}()
	ik.link, err = link.AttachIter(link.IterOptions{Program: ik.prog})
	if err != nil {
		return nil, fmt.Errorf("attaching %s: %w", name, err)
	}
	if ik.own, err = ownObjects("iterator", ik.prog, ik.link); err != nil {
		return nil, err
	}
	return ik, nil
}

// ownObjects returns the objects an iterator consists of: its program, the
// maps the program uses and its link. what names the iterator in errors.
func ownObjects(what string, prog *ebpf.Program, l *link.Iter) ([]OwnObject, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the %s program's info: %w", what, err)
	}
	var own []OwnObject
	if id, ok := info.ID(); ok {
		own = append(own, OwnObject{KindProg, uint32(id)})
	}
	if ids, ok := info.MapIDs(); ok {
		for _, id := range ids {
			own = append(own, OwnObject{KindMap, uint32(id)})
		}
	}
	linfo, err := l.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the %s link's info: %w", what, err)
	}
	return append(own, OwnObject{KindLink, uint32(linfo.ID)}), nil
}

func (ik *iterKind) close() {
	if ik.link != nil {
		ik.link.Close()
	}
	if ik.prog != nil {
		ik.prog.Close()
	}
}

// UsedMaps returns the maps of the program of the last full record Next
// gave, until the next Next.
func (it *Iterators) UsedMaps() []uint32 { return it.maps.List() }

// Available reports whether kind k is read by an iterator.
func (it *Iterators) Available(k Kind) bool { return it.kinds[k] != nil }

// Own returns the objects the iterators consist of: they are in the kernel
// like any other, and the agent reports them apart.
func (it *Iterators) Own() []OwnObject {
	var own []OwnObject
	for _, ik := range it.kinds {
		if ik != nil {
			own = append(own, ik.own...)
		}
	}
	return own
}

// Close releases the iterators.
func (it *Iterators) Close() error {
	it.End()
	for k, ik := range it.kinds {
		if ik != nil {
			ik.close()
			it.kinds[k] = nil
		}
	}
	return nil
}

// Begin starts a pass over kind k. Objects with an ID above fullAbove come
// with every field; the others with their ID and what can change (memory,
// element count, and run-time statistics if stats).
func (it *Iterators) Begin(k Kind, fullAbove uint32, stats bool) error {
	ik := it.kinds[k]
	if ik == nil {
		return fmt.Errorf("no iterator for %ss: %w", k, ebpf.ErrNotSupported)
	}
	it.End()
	ik.fullAboveVal[k] = fullAbove
	if err := ik.fullAbove.Set(&ik.fullAboveVal); err != nil {
		return fmt.Errorf("setting the %s iterator's threshold: %w", k, err)
	}
	if s := uint32(0); stats != ik.statsSet || !ik.statsSet {
		if stats {
			s = 1
		}
		ik.wantStatsVal = s
		if err := ik.wantStats.Set(&ik.wantStatsVal); err != nil {
			return fmt.Errorf("setting the %s iterator's statistics switch: %w", k, err)
		}
		ik.statsSet = stats
	}
	if err := it.stream.open(it.gate, k, ik.link.FD()); err != nil {
		return err
	}
	it.cur, it.ck, it.stats = ik, k, stats
	return nil
}

// End finishes the pass in progress, if any.
func (it *Iterators) End() error {
	it.cur = nil
	return it.stream.close(it.gate, it.ck)
}

// Next fills rec with the next object of the pass, in ascending ID order,
// and reports whether the record was full. It returns ErrEndOfList after
// the last one. A short record fills rec.ID and the fields that can change.
func (it *Iterators) Next(rec *Record) (full bool, err error) {
	b, err := it.stream.next(it.gate, it.ck)
	if err != nil {
		return false, err
	}
	it.maps.N = 0
	return decodeRecord(it.ck, b, it.stats, rec, &it.maps)
}
