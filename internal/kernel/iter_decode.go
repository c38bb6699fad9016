// Decoding the iterators' records: the layouts of bpf/records.h, generated
// by bpf2go, copied so that a short or malformed record reads nothing
// outside itself.

package kernel

import (
	"errors"
	"unsafe"
)

// errShortRecord: the iterator wrote a record that does not fit its size.
var errShortRecord = errors.New("malformed iterator record")

// decodeRecord fills rec from one record of kind k: b is the record, header
// included. It reads nothing outside b: the record is copied into a zeroed
// layout of its kind (a short record is a prefix of it), and b shorter than
// a header is malformed.
//
// A full program record is followed by the IDs of the maps the program
// uses; with maps not nil they are read into it (IDs of 0 left out).
func decodeRecord(k Kind, b []byte, stats bool, rec *Record, maps *UsedMaps) (bool, error) {
	if len(b) < recordHeaderSize {
		return false, errShortRecord
	}
	switch k {
	case KindMap:
		var r iterMapRecord
		loadRecord(unsafe.Pointer(&r), unsafe.Sizeof(r), b)
		*rec = Record{ID: r.H.Id}
		if len(b) < mapRecordShort {
			return false, nil // nothing changed
		}
		if r.Memory != memoryUnknown && r.Memory != memoryUnchanged {
			rec.Memory = r.Memory
			rec.Fields |= HasMemory
		}
		if r.Elements >= 0 {
			rec.Elements = uint64(r.Elements)
			rec.Fields |= HasElements
		}
		if len(b) < int(unsafe.Sizeof(r)) {
			return false, nil
		}
		rec.Type = r.Type
		rec.Flags = r.Flags
		rec.MaxEntries = r.MaxEntries
		rec.Name = *(*[16]byte)(unsafe.Pointer(&r.Name))
		rec.Fields |= HasDetails
		return true, nil
	case KindProg:
		var r iterProgRecord
		loadRecord(unsafe.Pointer(&r), unsafe.Sizeof(r), b)
		*rec = Record{ID: r.H.Id}
		if stats && len(b) >= progRecordStats {
			rec.RunTimeNs = r.RunTimeNs
			rec.RunCount = r.RunCnt
			rec.Fields |= HasStats
		}
		if len(b) < int(unsafe.Sizeof(r)) {
			return false, nil
		}
		rec.Memory = r.Memory
		rec.Type = r.Type
		rec.Name = *(*[16]byte)(unsafe.Pointer(&r.Name))
		rec.Fields |= HasDetails | HasMemory
		if maps != nil {
			decodeUsedMaps(b[unsafe.Sizeof(r):], maps)
		}
		return true, nil
	case KindLink:
		var r iterLinkRecord
		loadRecord(unsafe.Pointer(&r), unsafe.Sizeof(r), b)
		*rec = Record{ID: r.H.Id}
		if len(b) < int(unsafe.Sizeof(r)) {
			return false, nil
		}
		rec.Type = r.Type
		rec.ProgID = r.ProgId
		if r.HasAttachType != 0 {
			rec.AttachType = r.AttachType
			rec.Fields |= HasAttachType
		}
		rec.Fields |= HasDetails
		return true, nil
	}
	return false, errShortRecord
}

// decodeUsedMaps reads the tail of a full program record: a count and that
// many map IDs, as far as b holds them.
func decodeUsedMaps(b []byte, maps *UsedMaps) {
	var m iterProgMaps
	loadRecord(unsafe.Pointer(&m), unsafe.Sizeof(m), b)
	n := min(int(m.N), MaxUsedMaps, max(len(b)-4, 0)/4)
	maps.N = 0
	for _, id := range m.Ids[:n] {
		if id != 0 {
			maps.IDs[maps.N] = id
			maps.N++
		}
	}
}

// loadRecord copies b into the record layout of size bytes at dst: what b
// lacks stays as it was (zero), what b has beyond it is not read.
func loadRecord(dst unsafe.Pointer, size uintptr, b []byte) {
	copy(unsafe.Slice((*byte)(dst), size), b)
}

// The sizes and markers of records.h.
const (
	recordHeaderSize = int(unsafe.Sizeof(iterMapRecord{}.H))
	mapRecordShort   = 24
	progRecordStats  = 24
	memoryUnknown    = ^uint64(0)
	memoryUnchanged  = ^uint64(0) - 1
)
