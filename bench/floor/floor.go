// Package floor is the floor of iterator collection, for the benchmarks:
// BPF iterators over maps, programs and links that write only each object's
// 4-byte ID (bpf/floor.bpf.c), read with raw system calls into one reused
// buffer and counted, nothing else. No collector reading the same objects
// through BPF iterators can be faster; bench/itercycle measures the agent's
// cycle against it.
package floor

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel floor bpf/floor.bpf.c

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// NumKinds is the number of iterators: maps, programs, links, in that
// order in every array of this package.
const NumKinds = 3

// KindNames name the kinds, in order.
var KindNames = [NumKinds]string{"maps", "programs", "links"}

// BufferSize is the read buffer. A bpf_iter seq_file holds 8 pages, so one
// read() returns at most 32 KiB however large the buffer; the agent reads
// into 64 KiB too.
const BufferSize = 64 << 10

// Floor holds the three loaded and attached iterators and the buffer. It is
// not safe for concurrent use.
type Floor struct {
	objs  floorObjects
	links [NumKinds]*link.Iter
	buf   []byte
}

// Pass is what one Read saw.
type Pass struct {
	Objects  [NumKinds]int // IDs read, per kind
	Syscalls int           // BPF_ITER_CREATE, read and close calls
	Bytes    int
}

// Total is the number of objects of every kind.
func (p *Pass) Total() int { return p.Objects[0] + p.Objects[1] + p.Objects[2] }

// Load loads and attaches the three iterators. It needs CAP_BPF and
// CAP_PERFMON (or CAP_SYS_ADMIN) and a kernel with BPF iterators over all
// three kinds (Linux 5.19 and later for links).
func Load() (_ *Floor, err error) {
	f := &Floor{buf: make([]byte, BufferSize)}
	if err := loadFloorObjects(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("loading the floor iterators: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	for k, prog := range f.Programs() {
		l, err := link.AttachIter(link.IterOptions{Program: prog})
		if err != nil {
			return nil, fmt.Errorf("attaching the %s floor iterator: %w", KindNames[k], err)
		}
		f.links[k] = l
	}
	return f, nil
}

// Programs returns the iterator programs, in kind order (for their run-time
// statistics).
func (f *Floor) Programs() [NumKinds]*ebpf.Program {
	return [NumKinds]*ebpf.Program{f.objs.FloorMaps, f.objs.FloorProgs, f.objs.FloorLinks}
}

// Read runs the three iterators once each: BPF_ITER_CREATE, read() until
// end of file, close. It allocates nothing.
func (f *Floor) Read() (Pass, error) {
	var p Pass
	for k, l := range f.links {
		n, calls, err := ReadIterator(l, f.buf)
		p.Syscalls += calls
		if err != nil {
			return p, fmt.Errorf("reading the %s floor iterator: %w", KindNames[k], err)
		}
		if n%4 != 0 {
			return p, fmt.Errorf("reading the %s floor iterator: %w", KindNames[k], errPartialID)
		}
		p.Bytes += n
		p.Objects[k] = n / 4
	}
	return p, nil
}

// iterCreateAttr is union bpf_attr for BPF_ITER_CREATE.
type iterCreateAttr struct {
	linkFD uint32
	flags  uint32
}

var errPartialID = errors.New("iterator output is not a whole number of IDs")

// ReadIterator runs the iterator l once, BPF_ITER_CREATE, read() into buf
// until end of file, close, and returns the bytes it wrote and the system
// calls made. It allocates nothing and looks at no byte: any iterator's
// output can be read this way, to time the kernel's side of it alone.
func ReadIterator(l *link.Iter, buf []byte) (n, calls int, err error) {
	attr := iterCreateAttr{linkFD: uint32(l.FD())}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_ITER_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	calls++
	if errno != 0 {
		return 0, calls, fmt.Errorf("BPF_ITER_CREATE: %w", errno)
	}
	for {
		r, _, errno := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		calls++
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue
		}
		if errno != 0 {
			err = fmt.Errorf("read: %w", errno)
			break
		}
		if r == 0 {
			break
		}
		n += int(r)
	}
	unix.Syscall(unix.SYS_CLOSE, fd, 0, 0)
	calls++
	return n, calls, err
}

// Close detaches and unloads the iterators. It is safe to call more than
// once.
func (f *Floor) Close() error {
	var errs []error
	for k, l := range f.links {
		if l != nil {
			errs = append(errs, l.Close())
			f.links[k] = nil
		}
	}
	errs = append(errs, f.objs.Close())
	f.objs = floorObjects{}
	return errors.Join(errs...)
}
