package owner

import (
	"errors"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// Iter is the Source over the holders iterator (kernel.Holders). The
// cgroups the iterator reads are parsed once each and remembered by ID;
// where it reads none, <procfs>/<pid>/cgroup is read once per process.
type Iter struct {
	h       *kernel.Holders
	dir     *procDir
	kernel  bool // the iterator reads cgroups
	cgroups cgroupCache
	procs   procCache
	rec     kernel.HolderRecord
	pass    Pass
	in      bool
	cur     Process
	curSet  bool
}

// NewIter returns a Source reading h, with <procfs>/<pid>/cgroup where h
// reads no cgroups, and those reads admitted by gate. The Source does not
// own h: Close leaves it open.
func NewIter(h *kernel.Holders, procfs string, gate kernel.Gate) (*Iter, error) {
	d, err := openProcDir(procfs, gate)
	if err != nil {
		return nil, err
	}
	return &Iter{h: h, dir: d, kernel: h.CgroupsErr() == nil, cgroups: newCgroupCache(), procs: newProcCache()}, nil
}

func (s *Iter) Mode() string { return "iterator" }

func (s *Iter) Begin() error {
	s.End()
	s.pass = Pass{}
	s.procs.pass++
	if err := s.h.Begin(); err != nil {
		return err
	}
	s.in, s.curSet = true, false
	return nil
}

func (s *Iter) Next(h *Holding) error {
	if !s.in {
		return errNotInPass
	}
	for {
		if err := s.h.Next(&s.rec); err != nil {
			return err
		}
		switch s.rec.Type {
		case kernel.HolderCgroup:
			c, p := ParseCgroup(string(s.rec.Cgroup.Path))
			if !s.cgroups.put(cgroupKey(s.rec.Cgroup.ID, s.rec.Cgroup.V1), cgroupEntry{container: c, pod: p}) {
				// Paths sent before are forgotten: have them sent again.
				s.h.ResendCgroups()
			}
		case kernel.HolderProcess:
			s.process(&s.rec.Process)
		case kernel.HolderFD:
			if !s.curSet {
				return errOrphanFD
			}
			*h = Holding{Kind: s.rec.Kind, ID: s.rec.ID, Process: s.cur}
			return nil
		}
	}
}

// errOrphanFD: the iterator sent a descriptor before any process.
var errOrphanFD = errors.New("holders iterator: a descriptor before its process")

// process makes p the current process, with its container and pod.
func (s *Iter) process(p *kernel.HolderProcessInfo) {
	s.cur = Process{PID: p.TGID, Comm: p.Comm, Self: p.Self}
	s.curSet = true
	s.pass.Processes++
	if s.kernel && p.Cgroup != 0 {
		c2, ok2 := s.cgroups.m[cgroupKey(p.Cgroup, false)]
		c1, ok1 := s.cgroups.m[cgroupKey(p.Cgroup1, true)]
		if ok2 && (ok1 || p.Cgroup1 == 0) {
			switch {
			case c2.container != "" || c1.container == "" && c2.pod != "":
				s.cur.ContainerID, s.cur.PodUID = c2.container, c2.pod
			default:
				s.cur.ContainerID, s.cur.PodUID = c1.container, c1.pod
			}
			return
		}
		// A path the iterator counts as sent is not here (it was sent in
		// a pass that ended early, or forgotten): have them all sent again,
		// and read this one from procfs.
		s.h.ResendCgroups()
	}
	s.procs.setCgroup(s.dir, p.TGID, p.StartNs, &s.cur, &s.pass)
}

func (s *Iter) End() (Pass, error) {
	if !s.in {
		return s.pass, nil
	}
	s.in = false
	s.procs.prune()
	return s.pass, s.h.End()
}

// Close releases the procfs directory; the Holders stay open.
func (s *Iter) Close() error {
	s.End()
	return s.dir.close()
}

// cgroupKey is a cgroup's key in the cache: its ID, unique within its
// hierarchy only, with the top bit for v1 (as the iterator keys them).
func cgroupKey(id uint64, v1 bool) uint64 {
	if v1 {
		return id | 1<<63
	}
	return id
}
