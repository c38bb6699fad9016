package kernel

// A holders pass: the records the iterator writes, read through the gate
// and decoded in place.

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Begin starts a pass over every process's BPF file descriptors.
func (h *Holders) Begin() error {
	h.End()
	if h.link == nil {
		return errHoldersClosed
	}
	if h.epoch != h.epochSent {
		if err := h.objs.Epoch.Set(&h.epoch); err != nil {
			return fmt.Errorf("setting the holders iterator's epoch: %w", err)
		}
		h.epochSent = h.epoch
	}
	if err := h.gate.Acquire(OpIterCreate); err != nil {
		return err
	}
	err := h.open()
	h.gate.Release(OpIterCreate, NumKinds, 0, err)
	return err
}

// End finishes the pass in progress, if any. A pass ended before its last
// record may have lost cgroup paths the iterator counts as sent: the next
// sends them again.
func (h *Holders) End() error {
	if h.fd < 0 {
		return nil
	}
	if !h.eof || h.start != h.end {
		h.ResendCgroups()
	}
	var err error
	if h.gate.Acquire(OpClose) == nil {
		err = Close(h.fd)
		h.gate.Release(OpClose, NumKinds, 0, err)
	} else {
		err = Close(h.fd) // stopping: close anyway
	}
	h.fd = -1
	return err
}

// Next fills rec with the next record of the pass. It returns ErrEndOfList
// after the last one.
func (h *Holders) Next(rec *HolderRecord) error {
	b, err := h.recordGated()
	if err != nil {
		return err
	}
	return h.decode(b, rec)
}

// open creates the iterator's file descriptor.
func (h *Holders) open() error { return h.openLink(h.link.FD()) }

// openLink opens a pass of the iterator attached by linkFD.
func (h *Holders) openLink(linkFD int) error {
	attr := iterCreateAttr{LinkFD: uint32(linkFD)}
	fd, err := BPF(CmdIterCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return err
	}
	h.fd, h.start, h.end, h.eof = fd, 0, 0, false
	return nil
}

// close closes the calibration pass's descriptor.
func (h *Holders) close() {
	if h.fd >= 0 {
		Close(h.fd)
		h.fd = -1
	}
}

// The sizes of holders.h.
const (
	holderHeaderSize   = 4
	holderCgroupLevels = 8
	holderCgroupName   = 128
	holderMaxRecord    = int(unsafe.Sizeof(holdersHoldCgroup{}))

	holdTagProcess = 3
	holdTagCgroup  = 4
	holdTagFile    = 5
)

func holderTag(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

// record returns the next whole record, reading more when needed, without
// the gate (calibration).
func (h *Holders) record() ([]byte, error) { return h.nextRecord(nil) }

// recordGated is record with every read admitted by the gate.
func (h *Holders) recordGated() ([]byte, error) { return h.nextRecord(h.gate) }

func (h *Holders) nextRecord(gate Gate) ([]byte, error) {
	if h.fd < 0 {
		return nil, ErrEndOfList
	}
	for {
		if n := h.end - h.start; n >= holderHeaderSize {
			b := h.buf[h.start:h.end]
			size := int(uint16(b[2]) | uint16(b[3])<<8)
			if size < holderHeaderSize || size > holderMaxRecord {
				return nil, errShortRecord
			}
			if n >= size {
				h.start += size
				return b[:size], nil
			}
		}
		if h.eof {
			if h.end != h.start {
				return nil, errShortRecord
			}
			return nil, ErrEndOfList
		}
		if err := h.fill(gate); err != nil {
			return nil, err
		}
	}
}

// fill reads more records after the unread ones. A read interrupted or
// told to try again is retried a bounded number of times, each attempt
// through the gate, if any, like any other system call.
func (h *Holders) fill(gate Gate) error {
	if h.start > 0 {
		h.end = copy(h.buf, h.buf[h.start:h.end])
		h.start = 0
	}
	for try := 0; ; try++ {
		if gate != nil {
			if err := gate.Acquire(OpIterRead); err != nil {
				return err
			}
		}
		n, _, errno := unix.Syscall(unix.SYS_READ, uintptr(h.fd), uintptr(unsafe.Pointer(&h.buf[h.end])), uintptr(len(h.buf)-h.end))
		var err error
		if errno != 0 {
			err = errno
		}
		again := err != nil && retry(err, try)
		if gate != nil {
			if again {
				gate.Release(OpIterRead, NumKinds, 0, nil)
			} else {
				gate.Release(OpIterRead, NumKinds, 0, err)
			}
		}
		if again {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			h.eof = true
		}
		h.end += int(n)
		return nil
	}
}

// decode fills rec from one record b, header included. It reads nothing
// outside b: the record is copied into a zeroed layout of its type.
func (h *Holders) decode(b []byte, rec *HolderRecord) error {
	if len(b) < holderHeaderSize {
		return errShortRecord
	}
	switch tag := holderTag(b); tag {
	case uint16(KindMap), uint16(KindProg), uint16(KindLink):
		var r holdersHoldFd
		if len(b) < int(unsafe.Sizeof(r)) {
			return errShortRecord
		}
		loadRecord(unsafe.Pointer(&r), unsafe.Sizeof(r), b)
		rec.Type, rec.Kind, rec.ID = HolderFD, Kind(tag), r.Id
	case holdTagProcess:
		var r holdersHoldProcess
		if len(b) < int(unsafe.Sizeof(r)) {
			return errShortRecord
		}
		loadRecord(unsafe.Pointer(&r), unsafe.Sizeof(r), b)
		rec.Type = HolderProcess
		rec.Process = HolderProcessInfo{
			TGID:    r.Tgid,
			PID:     r.Pid,
			Self:    r.Flags&1 != 0,
			StartNs: r.StartTime,
			Cgroup:  r.Cgroup,
			Cgroup1: r.Cgroup1,
			Comm:    *(*[16]byte)(unsafe.Pointer(&r.Comm)),
		}
	case holdTagCgroup:
		// Read in place: the record is 1 KiB.
		const (
			levelsAt = int(unsafe.Offsetof(holdersHoldCgroup{}.Levels))
			flagsAt  = int(unsafe.Offsetof(holdersHoldCgroup{}.Flags))
			idAt     = int(unsafe.Offsetof(holdersHoldCgroup{}.Id))
			namesAt  = int(unsafe.Offsetof(holdersHoldCgroup{}.Name))
		)
		if len(b) < holderMaxRecord {
			return errShortRecord
		}
		levels := min(int(binary.LittleEndian.Uint16(b[levelsAt:])), holderCgroupLevels)
		h.path = h.path[:0]
		for i := levels - 1; i >= 0; i-- {
			name := b[namesAt+i*holderCgroupName : namesAt+(i+1)*holderCgroupName]
			if n := indexByte(name, 0); n >= 0 {
				name = name[:n]
			}
			h.path = append(h.path, '/')
			h.path = append(h.path, name...)
		}
		if levels == 0 {
			h.path = append(h.path, '/')
		}
		rec.Type = HolderCgroup
		rec.Cgroup = HolderCgroupInfo{
			ID:       binary.LittleEndian.Uint64(b[idAt:]),
			Path:     h.path,
			Complete: binary.LittleEndian.Uint16(b[flagsAt:])&1 != 0,
			V1:       binary.LittleEndian.Uint16(b[flagsAt:])&2 != 0,
		}
	default:
		return errShortRecord
	}
	return nil
}
