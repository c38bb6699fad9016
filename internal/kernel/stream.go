package kernel

// The record stream of an iterator's file descriptor, shared by the object
// iterators and the holders iterator: they differ only in their records'
// header.

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recordStream reads an iterator's records, each a header naming its size
// followed by its body, into buf and hands them out whole, in place.
type recordStream struct {
	fd    int // -1: no pass in progress
	buf   []byte
	start int // first unread byte of buf
	end   int // end of the bytes read
	eof   bool

	// The header's layout, as fields rather than a function: next runs
	// once per object. The size is the little-endian uint32 at sizeAt
	// shifted right by sizeShift (a uint16 at bytes 2-3 is the uint32 at 0
	// shifted by 16), so that reading it never leaves the header.
	hdr       int
	sizeAt    int
	sizeShift uint
	max       int // the largest valid record
}

// newObjectStream is the stream of an object iterator: an 8-byte header
// {ID, Size uint32} (bpf/records.h); a record fills at most half the buffer,
// so that one split across two reads always fits.
func newObjectStream(buf []byte) recordStream {
	return recordStream{fd: -1, buf: buf, hdr: recordHeaderSize, sizeAt: int(unsafe.Offsetof(iterMapRecord{}.H.Size)), max: len(buf) / 2}
}

// newHolderStream is the stream of the holders iterator: a 4-byte header
// {Tag, Size uint16} (bpf/holders.h); a cgroup record is the largest.
func newHolderStream(buf []byte) recordStream {
	return recordStream{fd: -1, buf: buf, hdr: holderHeaderSize, sizeShift: 16, max: holderMaxRecord}
}

// open creates an iterator's file descriptor from its link, through gate
// as kind k; the stream starts empty. Not retried: an iterator that cannot
// be created fails the pass.
func (s *recordStream) open(gate Gate, k Kind, linkFD int) error {
	if err := gate.Acquire(OpIterCreate); err != nil {
		return err
	}
	attr := iterCreateAttr{LinkFD: uint32(linkFD)}
	fd, err := BPF(CmdIterCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	gate.Release(OpIterCreate, k, 0, err)
	if err != nil {
		return err
	}
	s.fd, s.start, s.end, s.eof = fd, 0, 0, false
	return nil
}

// close closes the descriptor, if any. When the gate refuses (the
// collection is stopping) it is closed anyway: an fd must never leak.
func (s *recordStream) close(gate Gate, k Kind) error {
	if s.fd < 0 {
		return nil
	}
	var err error
	if gate.Acquire(OpClose) == nil {
		err = Close(s.fd)
		gate.Release(OpClose, k, 0, err)
	} else {
		err = Close(s.fd)
	}
	s.fd = -1
	return err
}

// drained reports whether the stream was read to its end: every record
// handed out and the iterator at EOF.
func (s *recordStream) drained() bool { return s.eof && s.start == s.end }

// next returns the next whole record, header included, reading more
// through gate as kind k when needed; ErrEndOfList after the last one. The
// bytes are valid until the next call.
func (s *recordStream) next(gate Gate, k Kind) ([]byte, error) {
	for {
		if n := s.end - s.start; n >= s.hdr {
			size := int(binary.LittleEndian.Uint32(s.buf[s.start+s.sizeAt:]) >> s.sizeShift)
			if size < s.hdr || size > s.max {
				return nil, errShortRecord
			}
			if n >= size {
				b := s.buf[s.start : s.start+size]
				s.start += size
				return b, nil
			}
		}
		if s.eof {
			if s.end != s.start {
				return nil, errShortRecord
			}
			return nil, ErrEndOfList
		}
		if err := s.fill(gate, k); err != nil {
			return nil, err
		}
	}
}

// fill reads more records after the unread ones. A read interrupted or
// told to try again is retried a bounded number of times, each attempt
// through the gate like any other system call.
func (s *recordStream) fill(gate Gate, k Kind) error {
	if s.start > 0 {
		s.end = copy(s.buf, s.buf[s.start:s.end])
		s.start = 0
	}
	var n uintptr
	err := gated(gate, OpIterRead, k, 0, nil, func() error {
		var errno unix.Errno
		n, _, errno = unix.Syscall(unix.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(&s.buf[s.end])), uintptr(len(s.buf)-s.end))
		if errno != 0 {
			return errno
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		s.eof = true
	}
	s.end += int(n)
	return nil
}

// noGate admits every call and counts none: for the holders iterator's
// calibration pass, part of loading, which no collection limits or counts.
type noGate struct{}

func (noGate) Acquire(Op) error                { return nil }
func (noGate) Release(Op, Kind, uint32, error) {}
