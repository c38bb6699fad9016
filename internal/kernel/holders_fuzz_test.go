package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// holderDecoded is one record of a holders pass, comparable.
type holderDecoded struct {
	Type     HolderRecordType
	Kind     Kind
	ID       uint32
	Process  HolderProcessInfo
	CgroupID uint64
	V1       bool
	Path     string
	Complete bool
}

func holderDecodedOf(r *HolderRecord) holderDecoded {
	d := holderDecoded{Type: r.Type}
	switch r.Type {
	case HolderFD:
		d.Kind, d.ID = r.Kind, r.ID
	case HolderProcess:
		d.Process = r.Process
	case HolderCgroup:
		d.CgroupID, d.V1, d.Path, d.Complete = r.Cgroup.ID, r.Cgroup.V1, string(r.Cgroup.Path), r.Cgroup.Complete
	}
	return d
}

// refHolderStream decodes a holders stream with encoding/binary at the
// offsets of the generated layouts: the oracle of FuzzHolderStream.
// Records are back to back, each starting with a 4-byte header (tag, size);
// a size below the header, above the largest record or past the stream's
// end, a record shorter than its type's layout, and an unknown tag are
// malformed.
func refHolderStream(b []byte) ([]holderDecoded, error) {
	le := binary.LittleEndian
	var out []holderDecoded
	for len(b) > 0 {
		if len(b) < 4 {
			return out, errShortRecord
		}
		tag, size := le.Uint16(b), int(le.Uint16(b[2:]))
		if size < 4 || size > holderMaxRecord || size > len(b) {
			return out, errShortRecord
		}
		r := b[:size]
		b = b[size:]
		switch tag {
		case 0, 1, 2:
			if size < 8 {
				return out, errShortRecord
			}
			out = append(out, holderDecoded{Type: HolderFD, Kind: Kind(tag), ID: le.Uint32(r[4:])})
		case 3:
			var p holdersHoldProcess
			if size < int(unsafe.Sizeof(p)) {
				return out, errShortRecord
			}
			d := holderDecoded{Type: HolderProcess, Process: HolderProcessInfo{
				TGID:    le.Uint32(r[unsafe.Offsetof(p.Tgid):]),
				PID:     le.Uint32(r[unsafe.Offsetof(p.Pid):]),
				Self:    le.Uint32(r[unsafe.Offsetof(p.Flags):])&1 != 0,
				StartNs: le.Uint64(r[unsafe.Offsetof(p.StartTime):]),
				Cgroup:  le.Uint64(r[unsafe.Offsetof(p.Cgroup):]),
				Cgroup1: le.Uint64(r[unsafe.Offsetof(p.Cgroup1):]),
			}}
			copy(d.Process.Comm[:], r[unsafe.Offsetof(p.Comm):])
			out = append(out, d)
		case 4:
			var c holdersHoldCgroup
			if size < int(unsafe.Sizeof(c)) {
				return out, errShortRecord
			}
			levels := min(int(le.Uint16(r[unsafe.Offsetof(c.Levels):])), 8)
			path := ""
			for i := levels - 1; i >= 0; i-- {
				name := r[int(unsafe.Offsetof(c.Name))+i*128:][:128]
				name, _, _ = bytes.Cut(name, []byte{0})
				path += "/" + string(name)
			}
			if path == "" {
				path = "/"
			}
			out = append(out, holderDecoded{Type: HolderCgroup, CgroupID: le.Uint64(r[unsafe.Offsetof(c.Id):]), Path: path,
				Complete: le.Uint16(r[unsafe.Offsetof(c.Flags):])&1 != 0, V1: le.Uint16(r[unsafe.Offsetof(c.Flags):])&2 != 0})
		default:
			return out, errShortRecord
		}
	}
	return out, ErrEndOfList
}

// holdersOverSocket runs the real Holders.Next (its fill and buffer
// compaction) over stream, delivered in reads of the sizes that split
// picks, as nextOverSocket does for Iterators.
func holdersOverSocket(t *testing.T, stream []byte, split uint16) ([]holderDecoded, error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer unix.Close(fds[1])
		x := uint32(split) | 1
		for b := stream; len(b) > 0; {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			n := int(x%4096) + 1
			if split&1 == 0 {
				n = int(split%4096) + 1
			}
			n = min(len(b), max(n, min(len(stream)/64, 4096)))
			if _, err := unix.Write(fds[1], b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	})
	watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("holdersOverSocket hung: %d bytes, split %d", len(stream), split)) })
	defer watchdog.Stop()
	h := &Holders{gate: &countingGate{}, stream: newHolderStream(make([]byte, iterReadSize))}
	h.stream.fd = fds[0]
	var out []holderDecoded
	for {
		var rec HolderRecord
		err := h.Next(&rec)
		if err != nil {
			h.End()
			wg.Wait()
			return out, err
		}
		out = append(out, holderDecodedOf(&rec))
		if len(out) > len(stream)/holderHeaderSize {
			t.Fatalf("Next returned %d records from %d bytes", len(out), len(stream))
		}
	}
}

// Streams as the iterator writes them.
func holdFD(k Kind, id uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(k)|8<<16), id)
}

func holdProcess(tgid uint32, comm string, cgroup uint64) []byte {
	var p holdersHoldProcess
	p.H.Tag, p.H.Size = holdTagProcess, uint16(unsafe.Sizeof(p))
	p.Tgid, p.Pid, p.StartTime, p.Cgroup = tgid, tgid, 1e9, cgroup
	for i := range min(len(comm), 15) {
		p.Comm[i] = int8(comm[i])
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&p)), unsafe.Sizeof(p))...)
}

func holdCgroup(id uint64, complete bool, names ...string) []byte {
	var c holdersHoldCgroup
	c.H.Tag, c.H.Size = holdTagCgroup, uint16(unsafe.Sizeof(c))
	c.Id, c.Levels = id, uint16(len(names))
	if complete {
		c.Flags = 1
	}
	for i, n := range names {
		for j := range min(len(n), 127) {
			c.Name[i][j] = int8(n[j])
		}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c))...)
}

func TestHolderStreamDecodes(t *testing.T) {
	stream := cat(holdCgroup(7, true, "cri-containerd-x.scope", "kubepods.slice"), holdProcess(42, "agent", 7),
		holdFD(KindMap, 1), holdFD(KindProg, 2), holdFD(KindLink, 3), holdCgroup(1, true), holdProcess(43, "other", 1), holdFD(KindMap, 1))
	got, err := holdersOverSocket(t, stream, 1)
	if err != ErrEndOfList {
		t.Fatal(err)
	}
	want := []holderDecoded{
		{Type: HolderCgroup, CgroupID: 7, Path: "/kubepods.slice/cri-containerd-x.scope", Complete: true},
		{Type: HolderProcess, Process: HolderProcessInfo{TGID: 42, PID: 42, StartNs: 1e9, Cgroup: 7, Comm: [16]byte{'a', 'g', 'e', 'n', 't'}}},
		{Type: HolderFD, Kind: KindMap, ID: 1}, {Type: HolderFD, Kind: KindProg, ID: 2}, {Type: HolderFD, Kind: KindLink, ID: 3},
		{Type: HolderCgroup, CgroupID: 1, Path: "/", Complete: true},
		{Type: HolderProcess, Process: HolderProcessInfo{TGID: 43, PID: 43, StartNs: 1e9, Cgroup: 1, Comm: [16]byte{'o', 't', 'h', 'e', 'r'}}},
		{Type: HolderFD, Kind: KindMap, ID: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// FuzzHolderStream: Holders.Next never panics and never reads outside a
// record, frames and decodes any stream exactly as the oracle does however
// reads split it, and reports a truncated, oversized or unknown record as
// malformed instead of misreading the rest.
func FuzzHolderStream(f *testing.F) {
	f.Add(uint16(1), cat(holdCgroup(7, false, "a", "b"), holdProcess(42, "agent", 7), holdFD(KindMap, 1), holdFD(KindLink, 3)))
	f.Add(uint16(4), cat(holdProcess(1, "x", 0), holdFD(KindProg, 9)))
	f.Add(uint16(2), cat(holdFD(KindMap, 1), []byte{3, 0, 4, 0}))             // a process record of 4 bytes
	f.Add(uint16(3), cat(holdFD(KindMap, 1), []byte{9, 0, 8, 0, 1, 2, 3, 4})) // an unknown tag
	f.Add(uint16(6), []byte{0, 0, 0xff, 0xff})                                // larger than any record
	f.Add(uint16(8), []byte{0, 0, 8})                                         // a truncated header
	f.Fuzz(func(t *testing.T, split uint16, stream []byte) {
		want, wantErr := refHolderStream(stream)
		got, err := holdersOverSocket(t, stream, split)
		if !errors.Is(err, wantErr) || len(got) != len(want) {
			t.Fatalf("Next over %d bytes (split %d): %d records then %v; want %d then %v", len(stream), split, len(got), err, len(want), wantErr)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}
