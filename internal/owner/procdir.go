package owner

import (
	"bytes"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// procDir reads under procfs through a descriptor of its root and buffers
// it owns: paths are built in place, NUL-terminated, and the system calls
// are made raw, so that reading allocates nothing. Each open, read and
// close, and each directory listing, is admitted by the gate as one
// kernel.OpProcfsRead; each readlink as one kernel.OpProcfsLink.
type procDir struct {
	fd   int
	gate kernel.Gate
	path [64]byte // the path of the next call, relative to fd, NUL-terminated
	buf  []byte   // file contents, directory entries
}

// procBufSize holds a /proc/<pid>/cgroup of a v1 host (a dozen lines of
// long paths) and a few hundred directory entries per getdents.
const procBufSize = 16 << 10

func openProcDir(procfs string, gate kernel.Gate) (*procDir, error) {
	fd, err := unix.Open(procfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening procfs at %s: %w", procfs, err)
	}
	return &procDir{fd: fd, gate: gate, buf: make([]byte, procBufSize)}, nil
}

func (d *procDir) close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// setPath makes the path "<pid>/<name>" (name may be "").
func (d *procDir) setPath(pid uint32, name string) int {
	n := len(strconv.AppendUint(d.path[:0], uint64(pid), 10))
	if name != "" {
		d.path[n] = '/'
		n++
		n += copy(d.path[n:len(d.path)-1], name)
	}
	d.path[n] = 0
	return n
}

// setFDPath makes the path "<pid>/<dir>/<fd>".
func (d *procDir) setFDPath(pid uint32, dir string, fd uint32) {
	n := d.setPath(pid, dir)
	d.path[n] = '/'
	n++
	n += len(strconv.AppendUint(d.path[n:n], uint64(fd), 10))
	d.path[n] = 0
}

// setSelfPath makes the path "." (procfs itself).
func (d *procDir) setSelfPath() { d.path[0], d.path[1] = '.', 0 }

// openat opens the path.
func (d *procDir) openat(flags int) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(d.fd), uintptr(unsafe.Pointer(&d.path[0])),
		uintptr(flags|unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// read returns the contents of the file at the path, up to the buffer's
// size (/proc files of one record are read whole by one read).
func (d *procDir) read(k kernel.Kind) ([]byte, error) {
	if err := d.gate.Acquire(kernel.OpProcfsRead); err != nil {
		return nil, err
	}
	b, err := d.readRaw()
	d.gate.Release(kernel.OpProcfsRead, k, 0, failure(err))
	return b, err
}

func (d *procDir) readRaw() ([]byte, error) {
	fd, err := d.openat(0)
	if err != nil {
		return nil, err
	}
	n, _, errno := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&d.buf[0])), uintptr(len(d.buf)))
	kernel.Close(fd)
	if errno != 0 {
		return nil, errno
	}
	return d.buf[:n], nil
}

// failure is err as the gate counts it: a process or a descriptor that went
// between its listing and its reading is none (it is not there any more),
// nor a process the agent may not read (counted as such: Pass.Unreadable).
func failure(err error) error {
	switch err {
	case unix.ENOENT, unix.ESRCH, unix.EACCES, unix.EPERM:
		return nil
	}
	return err
}

// readlink returns the target of the symbolic link at the path, into dst.
func (d *procDir) readlink(dst []byte, k kernel.Kind) ([]byte, error) {
	if err := d.gate.Acquire(kernel.OpProcfsLink); err != nil {
		return nil, err
	}
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(d.fd), uintptr(unsafe.Pointer(&d.path[0])),
		uintptr(unsafe.Pointer(&dst[0])), uintptr(len(dst)), 0, 0)
	var err error
	if errno != 0 {
		err = errno
	}
	d.gate.Release(kernel.OpProcfsLink, k, 0, failure(err))
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// listNumbers appends to list the names of the directory at the path that
// are decimal numbers (PIDs in procfs, descriptors in fd/).
func (d *procDir) listNumbers(list []uint32) ([]uint32, error) {
	if err := d.gate.Acquire(kernel.OpProcfsRead); err != nil {
		return list, err
	}
	list, err := d.listRaw(list)
	d.gate.Release(kernel.OpProcfsRead, kernel.NumKinds, 0, failure(err))
	return list, err
}

func (d *procDir) listRaw(list []uint32) ([]uint32, error) {
	fd, err := d.openat(unix.O_DIRECTORY)
	if err != nil {
		return list, err
	}
	defer kernel.Close(fd)
	for {
		n, err := unix.Getdents(fd, d.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return list, err
		}
		if n == 0 {
			return list, nil
		}
		for b := d.buf[:n]; len(b) >= direntNameAt; {
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			if reclen < direntNameAt || reclen > len(b) {
				return list, unix.EIO
			}
			if v, ok := parseNumber(b[direntNameAt:reclen]); ok {
				list = append(list, v)
			}
			b = b[reclen:]
		}
	}
}

// direntNameAt is the offset of d_name in struct linux_dirent64 (d_ino 8,
// d_off 8, d_reclen 2, d_type 1).
const direntNameAt = 19

// parseNumber reads a NUL-terminated decimal number of at most 10 digits
// that fits 32 bits.
func parseNumber(b []byte) (uint32, bool) {
	var v uint64
	n := 0
	for _, c := range b {
		if c == 0 {
			break
		}
		if c < '0' || c > '9' || n == 10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		n++
	}
	if n == 0 || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// fieldUint returns the decimal value of the "key:\t<n>" line of b.
func fieldUint(b []byte, key string) (uint64, bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) <= len(key) || string(line[:len(key)]) != key || line[len(key)] != ':' {
			continue
		}
		v, n := uint64(0), 0
		for _, c := range line[len(key)+1:] {
			switch {
			case c == ' ' || c == '\t':
				if n > 0 {
					return v, true
				}
			case '0' <= c && c <= '9' && n < 19:
				v = v*10 + uint64(c-'0')
				n++
			default:
				return 0, false
			}
		}
		return v, n > 0
	}
	return 0, false
}
