package kernel

import "sync"

// Syscalls are the kernel operations the syscall source is built from. The
// production implementation is the kernel itself (Sys); tests wrap it to
// inject the failures a real kernel will not produce on demand.
type Syscalls interface {
	NextID(k Kind, after uint32) (uint32, error)
	FDByID(k Kind, id uint32) (int, error)
	MapInfo(fd int, info *MapInfo) error
	ProgInfo(fd int, info *ProgInfo, maps *UsedMaps) error
	LinkInfo(fd int, info *LinkInfo) error
	FDInfo(r *FDInfoReader, fd int, out *FDInfo) error
	Close(fd int) error
}

// Sys is the real kernel.
type Sys struct{}

func (Sys) NextID(k Kind, after uint32) (uint32, error) { return NextID(k, after) }
func (Sys) FDByID(k Kind, id uint32) (int, error)       { return FDByID(k, id) }
func (Sys) MapInfo(fd int, info *MapInfo) error         { return MapInfoByFD(fd, info) }
func (Sys) ProgInfo(fd int, info *ProgInfo, maps *UsedMaps) error {
	return ProgInfoByFD(fd, info, maps)
}
func (Sys) LinkInfo(fd int, info *LinkInfo) error             { return LinkInfoByFD(fd, info) }
func (Sys) FDInfo(r *FDInfoReader, fd int, out *FDInfo) error { return r.Read(fd, out) }
func (Sys) Close(fd int) error                                { return Close(fd) }

// SyscallSource reads objects one by one with bpf(2) and fdinfo. It works
// on every kernel with BPF object IDs (4.13+) and needs CAP_SYS_ADMIN, which
// BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID require. Every call, retries of
// EAGAIN included, goes through the gate.
type SyscallSource struct {
	sys    Syscalls
	gate   Gate
	procfs string

	mu  sync.Mutex
	dir int // <procfs>/self/fdinfo, shared by the readers; -1 until the first
}

// NewSyscallSource returns a source that makes its calls through sys, each
// one admitted by gate. procfs is where /proc is mounted.
func NewSyscallSource(sys Syscalls, gate Gate, procfs string) *SyscallSource {
	return &SyscallSource{sys: sys, gate: gate, procfs: procfs, dir: -1}
}

// Close releases the fdinfo directory; the source's readers must be closed
// already.
func (s *SyscallSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir < 0 {
		return nil
	}
	err := Close(s.dir)
	s.dir = -1
	return err
}

func (s *SyscallSource) NextID(k Kind, after uint32) (uint32, error) {
	var id uint32
	err := gated(s.gate, OpNextID, k, after, endOfList, func() (err error) {
		id, err = s.sys.NextID(k, after)
		return err
	})
	if err != nil && err != ErrEndOfList {
		return 0, err
	}
	return id, err
}

func endOfList(err error) bool { return err == ErrEndOfList }

// NewReader returns a reader with its own buffers. The readers share one
// fd of the fdinfo directory: an agent run with few fds needs one, not one
// per worker.
func (s *SyscallSource) NewReader() (Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir < 0 {
		dir, err := openFDInfoDir(s.procfs)
		if err != nil {
			return nil, err
		}
		s.dir = dir
	}
	return &syscallReader{src: s, fdinfo: newFDInfoReaderAt(s.dir)}, nil
}

// syscallReader owns the buffers the kernel writes into; it lives on the
// heap so that the addresses passed inside bpf_attr stay valid.
type syscallReader struct {
	src    *SyscallSource
	fdinfo *FDInfoReader
	fd     int  // the fd the last OpGetFD opened
	full   bool // the read in progress wants a program's maps
	maps   UsedMaps
	fi     FDInfo
	mi     MapInfo
	pi     ProgInfo
	li     LinkInfo
}

func (r *syscallReader) Close() error { return r.fdinfo.Close() }

// do makes one operation on object id of kind k through the gate, retrying
// EAGAIN a bounded number of times; each attempt is admitted and counted.
// A failure is counted once, at the last attempt; an object gone is none.
// For OpGetFD, arg is the object's ID and the new fd lands in r.fd; for
// the others, arg is the fd.
func (r *syscallReader) do(op Op, k Kind, id uint32, arg int) error {
	var settled func(error) bool
	if op == OpGetFD {
		settled = Gone
	}
	return gated(r.src.gate, op, k, id, settled, func() error { return r.call(op, k, arg) })
}

func (r *syscallReader) call(op Op, k Kind, arg int) error {
	s := r.src.sys
	switch op {
	case OpGetFD:
		fd, err := s.FDByID(k, uint32(arg))
		r.fd = fd
		return err
	case OpInfo:
		switch k {
		case KindMap:
			return s.MapInfo(arg, &r.mi)
		case KindProg:
			// Map IDs only for a full read: a stats-only read, every
			// program every cycle, would copy them for nothing.
			var maps *UsedMaps
			if r.full {
				maps = &r.maps
			}
			return s.ProgInfo(arg, &r.pi, maps)
		default:
			return s.LinkInfo(arg, &r.li)
		}
	case OpFDInfo:
		return s.FDInfo(r.fdinfo, arg, &r.fi)
	}
	return ErrMismatch
}

// UsedMaps returns the maps of the program the last Read read in full
// (NeedDetails); nothing after any other read.
func (r *syscallReader) UsedMaps() []uint32 { return r.maps.List() }

func (r *syscallReader) Read(k Kind, id uint32, need Need, rec *Record) error {
	r.maps.N = 0
	if err := r.do(OpGetFD, k, id, int(id)); err != nil {
		return err
	}
	fd := r.fd
	err := r.read(k, id, fd, need, rec)
	// close is never retried: on Linux the fd is released even when it
	// reports EINTR.
	g := r.src.gate
	if cerr := g.Acquire(OpClose); cerr != nil {
		r.src.sys.Close(fd) // stopping: close anyway, an fd must never leak
		return cerr
	}
	g.Release(OpClose, k, id, r.src.sys.Close(fd))
	return err
}

func (r *syscallReader) read(k Kind, id uint32, fd int, need Need, rec *Record) error {
	rec.ID = id
	r.full = need&NeedDetails != 0
	wantInfo := r.full || (k == KindProg && need&NeedStats != 0)
	if wantInfo {
		if err := r.do(OpInfo, k, id, fd); err != nil {
			return err
		}
		var infoID uint32
		switch k {
		case KindMap:
			fillMap(rec, &r.mi)
			infoID = r.mi.ID
		case KindProg:
			fillProg(rec, &r.pi, need)
			infoID = r.pi.ID
		case KindLink:
			fillLink(rec, &r.li)
			infoID = r.li.ID
		}
		if infoID != id {
			return ErrMismatch
		}
	}
	if k == KindLink || need&(NeedDetails|NeedMemory) == 0 {
		return nil
	}
	if err := r.do(OpFDInfo, k, id, fd); err != nil {
		return err
	}
	if r.fi.Has&HasMemlock != 0 {
		rec.Memory = r.fi.Memlock
		rec.Fields |= HasMemory
	}
	return nil
}
