package kernel

// A holders pass: the records the iterator writes, read through the gate
// and decoded in place.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"
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
	return h.stream.open(h.gate, NumKinds, h.link.FD())
}

// End finishes the pass in progress, if any. A pass ended before its last
// record may have lost cgroup paths the iterator counts as sent: the next
// sends them again.
func (h *Holders) End() error {
	if h.stream.fd < 0 {
		return nil
	}
	if !h.stream.drained() {
		h.ResendCgroups()
	}
	return h.stream.close(h.gate, NumKinds)
}

// Next fills rec with the next record of the pass. It returns ErrEndOfList
// after the last one.
func (h *Holders) Next(rec *HolderRecord) error {
	if h.stream.fd < 0 {
		return ErrEndOfList
	}
	b, err := h.stream.next(h.gate, NumKinds)
	if err != nil {
		return err
	}
	return h.decode(b, rec)
}

// The sizes of holders.h, from the generated layouts: a hand-typed number
// would go stale when the C changes.
const (
	holderHeaderSize   = int(unsafe.Sizeof(holdersHoldCgroup{}.H))
	holderCgroupLevels = len(holdersHoldCgroup{}.Name)
	holderCgroupName   = len(holdersHoldCgroup{}.Name[0])
	holderMaxRecord    = int(unsafe.Sizeof(holdersHoldCgroup{}))

	holdTagProcess = 3
	holdTagCgroup  = 4
	holdTagFile    = 5
)

func holderTag(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

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
			if n := bytes.IndexByte(name, 0); n >= 0 {
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
