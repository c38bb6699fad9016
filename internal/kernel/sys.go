package kernel

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors callers test for. They are values, not wrapped, so that the paths
// that meet them every cycle (the end of an ID list, an object that vanished)
// allocate nothing.
var (
	// ErrEndOfList ends an enumeration: no object has a greater ID.
	ErrEndOfList = errors.New("no more objects")
)

// Gone reports whether err, from a bpf(2) call naming an object by ID, means
// that the object no longer exists: it was released between the moment its
// ID was listed and the moment it was opened. That is normal on a busy node
// and not an error. Only the bpf(2) calls can say so: an fdinfo file that is
// missing means something else (see ErrFDInfoMissing).
func Gone(err error) bool { return err == unix.ENOENT }

// maxEAGAIN bounds the retries of a call that returned EAGAIN, which the
// kernel uses for transient failures (a link still being attached, the
// verifier under memory pressure). Each retry is a system call like any
// other: the sources take it through their Gate, so that it is rate limited
// and counted.
const maxEAGAIN = 5

// retry reports whether a call that failed with err on attempt try (from 0)
// is worth making again.
func retry(err error, try int) bool {
	return (err == unix.EAGAIN || err == unix.EINTR) && try < maxEAGAIN
}

// gated makes call through gate as operation op on object id of kind k,
// retrying it while retry allows; every attempt is admitted and counted, a
// failure once, at the last attempt. An error that settled reports true for
// (the end of a list, an object gone) is returned but no failure; settled
// may be nil. call must not escape, so that gated allocates nothing.
func gated(gate Gate, op Op, k Kind, id uint32, settled func(error) bool, call func() error) error {
	for try := 0; ; try++ {
		if err := gate.Acquire(op); err != nil {
			return err
		}
		err := call()
		switch {
		case err == nil, settled != nil && settled(err):
			gate.Release(op, k, id, nil)
			return err
		case retry(err, try):
			gate.Release(op, k, id, nil)
		default:
			gate.Release(op, k, id, err)
			return err
		}
	}
}

// BPF is the entry point for the agent's own bpf(2) calls during collection
// (loading the iterators goes through cilium/ebpf). attr must point to memory
// the caller keeps alive; pointers the kernel follows from inside attr (the
// info buffer of BPF_OBJ_GET_INFO_BY_FD) must be heap memory kept alive by the
// caller. The error is the bare errno so that it allocates nothing. It does
// not retry: callers retry EAGAIN through their Gate.
func BPF(cmd Cmd, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	runtime.KeepAlive(attr)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// Kind is one of the three kinds of eBPF objects with IDs.
type Kind uint8

const (
	KindMap Kind = iota
	KindProg
	KindLink
	NumKinds
)

var kindNames = [NumKinds]string{"map", "program", "link"}

// String returns the label value used in metrics: map, program or link.
func (k Kind) String() string {
	switch {
	case k < NumKinds:
		return kindNames[k]
	case k == NumKinds:
		return "holders" // a pass over every kind: the holders of objects
	}
	return "unknown"
}

var (
	nextIDCmd = [NumKinds]Cmd{CmdMapGetNextID, CmdProgGetNextID, CmdLinkGetNextID}
	fdByIDCmd = [NumKinds]Cmd{CmdMapGetFDByID, CmdProgGetFDByID, CmdLinkGetFDByID}
)

// NextID returns the smallest ID of an object of kind k greater than after,
// or ErrEndOfList. IDs are allocated cyclically (idr_alloc_cyclic), so a new
// object has a greater ID than every object listed before it.
func NextID(k Kind, after uint32) (uint32, error) {
	attr := idAttr{StartID: after}
	_, err := BPF(nextIDCmd[k], unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == unix.ENOENT {
		return 0, ErrEndOfList
	}
	if err != nil {
		return 0, err
	}
	return attr.NextID, nil
}

// FDByID opens the object of kind k with the given ID. Maps are opened
// read-only: the agent never writes to anyone's maps. The caller closes fd.
func FDByID(k Kind, id uint32) (int, error) {
	attr := idAttr{StartID: id}
	if k == KindMap {
		attr.OpenFlags = unix.BPF_F_RDONLY
	}
	return BPF(fdByIDCmd[k], unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// objInfo fills the info structure *info of size bytes for fd. The kernel
// refuses pointer fields it is not asked to follow unless they are zero, so
// callers pass a zeroed structure.
func objInfo(fd int, info unsafe.Pointer, size uintptr) error {
	attr := infoAttr{BpfFD: uint32(fd), InfoLen: uint32(size), Info: uint64(uintptr(info))}
	_, err := BPF(CmdObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(info)
	return err
}

// MapInfoByFD fills info for the map fd. info must be heap memory.
func MapInfoByFD(fd int, info *MapInfo) error {
	*info = MapInfo{}
	return objInfo(fd, unsafe.Pointer(info), unsafe.Sizeof(*info))
}

// ProgInfoByFD fills info for the program fd. info must be heap memory.
// With maps not nil, the IDs of the maps the program uses are read into it
// too; maps must be heap memory.
func ProgInfoByFD(fd int, info *ProgInfo, maps *UsedMaps) error {
	*info = ProgInfo{}
	if maps != nil {
		info.NrMapIds = MaxUsedMaps
		info.MapIds = uint64(uintptr(unsafe.Pointer(&maps.IDs[0])))
	}
	err := objInfo(fd, unsafe.Pointer(info), unsafe.Sizeof(*info))
	runtime.KeepAlive(maps)
	if maps != nil {
		maps.N = 0
		if err == nil {
			maps.N = int(min(info.NrMapIds, MaxUsedMaps))
		}
	}
	return err
}

// LinkInfoByFD fills info for the link fd. info must be heap memory.
func LinkInfoByFD(fd int, info *LinkInfo) error {
	*info = LinkInfo{}
	return objInfo(fd, unsafe.Pointer(info), unsafe.Sizeof(*info))
}

// AttachType returns the attach type carried by the link's type-specific
// info, for the link types that have one.
func (l *LinkInfo) AttachType() (AttachType, bool) {
	if int(l.Type) >= len(linkAttachTypeOffset) {
		return 0, false
	}
	off := linkAttachTypeOffset[l.Type]
	if off == 0 {
		return 0, false
	}
	b := (*[unsafe.Sizeof(LinkInfo{})]byte)(unsafe.Pointer(l))[off : off+4]
	return AttachType(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24), true
}

// Close closes a file descriptor without allocating an error.
func Close(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// EnableStats turns on run-time statistics (run_time_ns, run_cnt) for every
// program for as long as the returned fd stays open. Unlike writing the
// kernel.bpf_stats_enabled sysctl, nothing is left changed when the process
// dies, whatever the way it dies.
func EnableStats() (int, error) {
	attr := enableStatsAttr{Type: uint32(StatsTypeRunTime)}
	return BPF(CmdEnableStats, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}
