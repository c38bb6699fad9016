package kernel

// Syscalls are the kernel operations the syscall source is built from. The
// production implementation is the kernel itself (Sys); tests wrap it to
// inject the failures a real kernel will not produce on demand.
type Syscalls interface {
	NextID(k Kind, after uint32) (uint32, error)
	FDByID(k Kind, id uint32) (int, error)
	MapInfo(fd int, info *MapInfo) error
	ProgInfo(fd int, info *ProgInfo) error
	LinkInfo(fd int, info *LinkInfo) error
	FDInfo(r *FDInfoReader, fd int, out *FDInfo) error
	Close(fd int) error
}

// Sys is the real kernel.
type Sys struct{}

func (Sys) NextID(k Kind, after uint32) (uint32, error)       { return NextID(k, after) }
func (Sys) FDByID(k Kind, id uint32) (int, error)             { return FDByID(k, id) }
func (Sys) MapInfo(fd int, info *MapInfo) error               { return MapInfoByFD(fd, info) }
func (Sys) ProgInfo(fd int, info *ProgInfo) error             { return ProgInfoByFD(fd, info) }
func (Sys) LinkInfo(fd int, info *LinkInfo) error             { return LinkInfoByFD(fd, info) }
func (Sys) FDInfo(r *FDInfoReader, fd int, out *FDInfo) error { return r.Read(fd, out) }
func (Sys) Close(fd int) error                                { return Close(fd) }

// SyscallSource reads objects one by one with bpf(2) and fdinfo. It works
// on every kernel with BPF object IDs (4.13+) and needs CAP_SYS_ADMIN, which
// BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID require.
type SyscallSource struct {
	sys    Syscalls
	gate   Gate
	procfs string
}

// NewSyscallSource returns a source that makes its calls through sys, each
// one admitted by gate. procfs is where /proc is mounted.
func NewSyscallSource(sys Syscalls, gate Gate, procfs string) *SyscallSource {
	return &SyscallSource{sys: sys, gate: gate, procfs: procfs}
}

func (s *SyscallSource) Mode(Kind) string { return "syscall" }
func (s *SyscallSource) Begin(Kind) error { return nil }

func (s *SyscallSource) NextID(k Kind, after uint32) (uint32, error) {
	if err := s.gate.Acquire(OpNextID); err != nil {
		return 0, err
	}
	id, err := s.sys.NextID(k, after)
	if err == ErrEndOfList {
		s.gate.Release(OpNextID, k, after, nil)
	} else {
		s.gate.Release(OpNextID, k, after, err)
	}
	return id, err
}

func (s *SyscallSource) NewReader() Reader {
	return &syscallReader{src: s, fdinfo: NewFDInfoReader(s.procfs)}
}

// syscallReader owns the buffers the kernel writes into; it lives on the
// heap so that the addresses passed inside bpf_attr stay valid.
type syscallReader struct {
	src    *SyscallSource
	fdinfo *FDInfoReader
	fi     FDInfo
	mi     MapInfo
	pi     ProgInfo
	li     LinkInfo
}

func (r *syscallReader) Close() error { return r.fdinfo.Close() }

func (r *syscallReader) call(op Op, k Kind, id uint32, err error) error {
	r.src.gate.Release(op, k, id, err)
	return err
}

func (r *syscallReader) Read(k Kind, id uint32, need Need, rec *Record) error {
	s := r.src
	if err := s.gate.Acquire(OpGetFD); err != nil {
		return err
	}
	fd, err := s.sys.FDByID(k, id)
	if Gone(err) {
		s.gate.Release(OpGetFD, k, id, nil)
		return err
	}
	if r.call(OpGetFD, k, id, err) != nil {
		return err
	}
	err = r.read(k, id, fd, need, rec)
	if cerr := s.gate.Acquire(OpClose); cerr != nil {
		// Stopping: close anyway, an fd must never leak.
		s.sys.Close(fd)
		return cerr
	}
	r.call(OpClose, k, id, s.sys.Close(fd))
	return err
}

func (r *syscallReader) read(k Kind, id uint32, fd int, need Need, rec *Record) error {
	s := r.src
	rec.ID = id
	wantInfo := need&NeedDetails != 0 || (k == KindProg && need&NeedStats != 0)
	if wantInfo {
		if err := s.gate.Acquire(OpInfo); err != nil {
			return err
		}
		var infoID uint32
		switch k {
		case KindMap:
			err := r.call(OpInfo, k, id, s.sys.MapInfo(fd, &r.mi))
			if err != nil {
				return err
			}
			fillMap(rec, &r.mi)
			infoID = r.mi.ID
		case KindProg:
			err := r.call(OpInfo, k, id, s.sys.ProgInfo(fd, &r.pi))
			if err != nil {
				return err
			}
			fillProg(rec, &r.pi, need)
			infoID = r.pi.ID
		case KindLink:
			err := r.call(OpInfo, k, id, s.sys.LinkInfo(fd, &r.li))
			if err != nil {
				return err
			}
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
	if err := s.gate.Acquire(OpFDInfo); err != nil {
		return err
	}
	if err := r.call(OpFDInfo, k, id, s.sys.FDInfo(r.fdinfo, fd, &r.fi)); err != nil {
		return err
	}
	if r.fi.Has&HasMemlock != 0 {
		rec.Memory = r.fi.Memlock
		rec.Fields |= HasMemory
	}
	return nil
}
