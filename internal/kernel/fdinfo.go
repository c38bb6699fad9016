package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FDInfo holds the fields of /proc/<pid>/fdinfo/<fd> that only fdinfo has
// (memlock) or that it has on every kernel (the run-time statistics).
type FDInfo struct {
	// Memlock is the kernel's own figure for the object's memory: for maps
	// bpf_map_memory_usage() (exact since Linux 6.4, an upper bound
	// before), for programs prog->pages * PAGE_SIZE. Links have none.
	Memlock       uint64
	RunTimeNs     uint64
	RunCnt        uint64
	VerifiedInsns uint64
	// Has records which of the fields above were present.
	Has FDInfoFields
}

// FDInfoFields is a set of FDInfo fields.
type FDInfoFields uint8

const (
	HasMemlock FDInfoFields = 1 << iota
	HasRunTimeNs
	HasRunCnt
	HasVerifiedInsns
)

// ParseFDInfo reads the "key:\tvalue" lines of a BPF object's fdinfo. Lines
// it does not know, and values that are not decimal numbers, are ignored;
// a value too large for 64 bits makes that field absent rather than wrong.
func ParseFDInfo(b []byte, out *FDInfo) {
	*out = FDInfo{}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		key, val := line[:colon], trimSpace(line[colon+1:])
		var field FDInfoFields
		var dst *uint64
		switch string(key) { // no allocation: the compiler compares in place
		case "memlock":
			field, dst = HasMemlock, &out.Memlock
		case "run_time_ns":
			field, dst = HasRunTimeNs, &out.RunTimeNs
		case "run_cnt":
			field, dst = HasRunCnt, &out.RunCnt
		case "verified_insns":
			field, dst = HasVerifiedInsns, &out.VerifiedInsns
		default:
			continue
		}
		if v, ok := parseUint(val); ok {
			*dst = v
			out.Has |= field
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// parseUint reads a decimal number. Leading zeros are allowed, however
// many; a value past 2^64-1 is refused, never wrapped.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// Errors of FDInfoReader. They are values, so that a cycle that meets them
// allocates nothing.
var (
	// ErrFDInfoMissing: this process's own fd has no fdinfo file under the
	// procfs given. The fd is open, so the object exists: the procfs is not
	// this process's (a wrong --path.procfs, another pid namespace) or hides
	// it (hidepid). Never read as "the object is gone".
	ErrFDInfoMissing = errors.New("fdinfo of an open fd not found: is --path.procfs this process's procfs?")
	// ErrFDInfoTooLarge: the file filled the buffer: not a BPF object's fdinfo.
	ErrFDInfoTooLarge = errors.New("fdinfo larger than a BPF object's")
)

// FDInfoReader reads the fdinfo of this process's own file descriptors into
// a buffer it owns. It is not safe for concurrent use; give each goroutine
// its own.
type FDInfoReader struct {
	dir  int      // an fd of <procfs>/self/fdinfo, or -1 once closed
	owns bool     // Close closes dir
	name [24]byte // the decimal fd number, NUL-terminated: a uint64 has 20 digits
	buf  [4096]byte
}

// NewFDInfoReader returns a reader for fdinfo under procfs (normally /proc).
// It keeps the fdinfo directory open: names are resolved relative to it,
// which saves resolving the procfs path on every read (a sixth of the cost
// of a read) and bounds the name to an fd number, whatever the path's length.
// Close releases it.
func NewFDInfoReader(procfs string) (*FDInfoReader, error) {
	dir, err := openFDInfoDir(procfs)
	if err != nil {
		return nil, err
	}
	return &FDInfoReader{dir: dir, owns: true}, nil
}

// newFDInfoReaderAt returns a reader of the fdinfo directory dir, which
// stays its caller's: readers of one source share one directory fd.
func newFDInfoReaderAt(dir int) *FDInfoReader { return &FDInfoReader{dir: dir} }

func openFDInfoDir(procfs string) (int, error) {
	dir, err := unix.Open(procfs+"/self/fdinfo", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s/self/fdinfo: %w", procfs, err)
	}
	return dir, nil
}

// Close releases the fdinfo directory, if the reader owns it.
func (r *FDInfoReader) Close() error {
	if r.dir < 0 || !r.owns {
		r.dir = -1
		return nil
	}
	err := unix.Close(r.dir)
	r.dir = -1
	return err
}

// Read fills out from the fdinfo of fd. It costs three system calls (open,
// read, close): BPF objects' fdinfo is a single seq_file record far smaller
// than the buffer, so one short read is the whole file.
func (r *FDInfoReader) Read(fd int, out *FDInfo) error {
	if r.dir < 0 {
		return unix.EBADF
	}
	n := len(strconv.AppendUint(r.name[:0], uint64(fd), 10))
	r.name[n] = 0
	f, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(r.dir), uintptr(unsafe.Pointer(&r.name[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if errno == unix.ENOENT {
		return ErrFDInfoMissing
	}
	if errno != 0 {
		return errno
	}
	got, _, rerr := unix.Syscall(unix.SYS_READ, f, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
	Close(int(f))
	if rerr != 0 {
		return rerr
	}
	if got == uintptr(len(r.buf)) {
		return ErrFDInfoTooLarge
	}
	ParseFDInfo(r.buf[:got], out)
	return nil
}

// CheckProcFS reports whether procfs is a procfs mount in which this process
// can read its own fdinfo: what --path.procfs must be.
func CheckProcFS(procfs string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(procfs, &st); err != nil {
		return fmt.Errorf("%s: %w", procfs, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s is not a procfs (filesystem magic %#x, want %#x)", procfs, st.Type, unix.PROC_SUPER_MAGIC)
	}
	r, err := NewFDInfoReader(procfs)
	if err != nil {
		return err
	}
	defer r.Close()
	var fi FDInfo
	if err := r.Read(r.dir, &fi); err != nil {
		return fmt.Errorf("reading this process's fdinfo under %s: %w", procfs, err)
	}
	return nil
}
