package loadgen

// Creating the objects of a population: maps of every kind (filled),
// programs, and iterator links.

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func mapSpec(n int, kind MapKind) *ebpf.MapSpec {
	s := &ebpf.MapSpec{
		Name:       fmt.Sprintf("lg_m_%d", n),
		Type:       kind.Type,
		Flags:      kind.Flags,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: MapMaxEntries,
	}
	switch kind.Type {
	case ebpf.LPMTrie:
		s.KeySize = 8 // 4-byte prefix length + 4-byte address
	case ebpf.Queue, ebpf.BloomFilter:
		s.KeySize = 0
	case ebpf.RingBuf:
		s.KeySize, s.ValueSize = 0, 0
		s.MaxEntries = uint32(os.Getpagesize())
	}
	return s
}

func (p *Population) createMap(n int, fill float64, f *filler) error {
	kind := MapKinds[n%len(MapKinds)]
	s := mapSpec(n, kind)
	m, err := ebpf.NewMap(s)
	if err != nil {
		return fmt.Errorf("loadgen: creating map %s (%s): %w", s.Name, s.Type, err)
	}
	p.maps = append(p.maps, m)
	var filled uint32
	if kind.Fillable {
		filled = uint32(fill * float64(s.MaxEntries))
		if err := f.fill(m, filled); err != nil {
			return fmt.Errorf("loadgen: filling map %s (%s): %w", s.Name, s.Type, err)
		}
	}
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("loadgen: map %s info: %w", s.Name, err)
	}
	id, ok := info.ID()
	if !ok {
		return fmt.Errorf("loadgen: map %s: kernel reports no ID", s.Name)
	}
	p.mapInfo = append(p.mapInfo, MapDetail{
		ID:         uint32(id),
		Name:       s.Name,
		Type:       s.Type,
		Flags:      s.Flags,
		KeySize:    s.KeySize,
		ValueSize:  s.ValueSize,
		MaxEntries: s.MaxEntries,
		Filled:     filled,
	})
	return nil
}

// returnZero is "r0 = 0; exit", the body of every program.
var returnZero = asm.Instructions{
	asm.Mov.Imm(asm.R0, 0),
	asm.Return(),
}

func (p *Population) createPrograms(count int) error {
	p.progs = make([]*ebpf.Program, 0, count)
	p.progIDs = make([]uint32, 0, count)
	spec := &ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: returnZero,
	}
	for n := range count {
		spec.Name = fmt.Sprintf("lg_p_%d", n)
		prog, err := ebpf.NewProgram(spec)
		if err != nil {
			return fmt.Errorf("loadgen: loading program %s: %w", spec.Name, err)
		}
		p.progs = append(p.progs, prog)
		id, err := progID(prog)
		if err != nil {
			return fmt.Errorf("loadgen: program %s: %w", spec.Name, err)
		}
		p.progIDs = append(p.progIDs, id)
	}
	return nil
}

func progID(prog *ebpf.Program) (uint32, error) {
	info, err := prog.Info()
	if err != nil {
		return 0, fmt.Errorf("info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("kernel reports no ID")
	}
	return uint32(id), nil
}

// createLinks loads one iter/bpf_map program and attaches it count times:
// the kernel accepts any number of iterator links on one program.
func (p *Population) createLinks(count int) error {
	if count == 0 {
		return nil
	}
	iter, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "lg_iter",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceIter,
		AttachTo:     "bpf_map",
		License:      "GPL",
		Instructions: returnZero,
	})
	if err != nil {
		return fmt.Errorf("loadgen: loading iterator program: %w", err)
	}
	p.helpers = append(p.helpers, iter)
	id, err := progID(iter)
	if err != nil {
		return fmt.Errorf("loadgen: iterator program: %w", err)
	}
	p.helpIDs = append(p.helpIDs, id)

	p.links = make([]link.Link, 0, count)
	p.linkIDs = make([]uint32, 0, count)
	for n := range count {
		if failpoint != nil {
			if err := failpoint(p, n); err != nil {
				return err
			}
		}
		l, err := link.AttachIter(link.IterOptions{Program: iter})
		if err != nil {
			return fmt.Errorf("loadgen: attaching iterator link %d: %w", n, err)
		}
		p.links = append(p.links, l)
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("loadgen: iterator link %d: %w", n, err)
		}
		p.linkIDs = append(p.linkIDs, uint32(info.ID))
	}
	return nil
}
