package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fuzz targets of the kernel boundary's two parsers of untrusted bytes:
// fdinfo text and iterator records. `go test` runs their seed corpora
// (testdata/fuzz/<Target>); test/fuzz.sh runs each for a bounded time.

// refParseFDInfo is ParseFDInfo written the obvious way, with the standard
// library: the oracle of FuzzParseFDInfo.
func refParseFDInfo(b []byte) FDInfo {
	var out FDInfo
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || key == "" {
			continue
		}
		val = strings.TrimRight(strings.TrimLeft(val, " \t"), " \t\r")
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "memlock":
			out.Memlock, out.Has = v, out.Has|HasMemlock
		case "run_time_ns":
			out.RunTimeNs, out.Has = v, out.Has|HasRunTimeNs
		case "run_cnt":
			out.RunCnt, out.Has = v, out.Has|HasRunCnt
		case "verified_insns":
			out.VerifiedInsns, out.Has = v, out.Has|HasVerifiedInsns
		}
	}
	return out
}

// FuzzParseFDInfo: ParseFDInfo never panics and agrees with the oracle on
// any input; a well-formed "memlock:\t<n>" line (LF or CRLF) after anything
// yields exactly n; an unknown line changes nothing; a number too large for
// 64 bits is rejected, never wrapped.
func FuzzParseFDInfo(f *testing.F) {
	const mapFDInfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2061\nmap_type:\t1\nkey_size:\t4\n" +
		"value_size:\t8\nmax_entries:\t128\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t17280\n" +
		"map_id:\t42\nfrozen:\t0\n"
	const progFDInfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2061\nprog_type:\t1\nprog_jited:\t1\n" +
		"prog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t7\nrun_time_ns:\t123456\nrun_cnt:\t42\n" +
		"recursion_misses:\t0\nverified_insns:\t17\n"
	// The interesting cases are files in testdata/fuzz/FuzzParseFDInfo:
	// CRLF, 2^64-1 and 2^64, huge numbers, leading zeros, signs, spaces...
	f.Add([]byte(mapFDInfo), uint64(17280), false)
	f.Add([]byte(progFDInfo), uint64(4096), true)
	f.Fuzz(func(t *testing.T, data []byte, n uint64, crlf bool) {
		var got FDInfo
		ParseFDInfo(data, &got)
		if want := refParseFDInfo(data); got != want {
			t.Fatalf("ParseFDInfo(%q) = %+v, want %+v", data, got, want)
		}

		eol := "\n"
		if crlf {
			eol = "\r\n"
		}
		// A well-formed line, last, wins: exactly n.
		var out FDInfo
		ParseFDInfo(fmt.Appendf(append([]byte(nil), data...), "\nmemlock:\t%d%s", n, eol), &out)
		if out.Memlock != n || out.Has&HasMemlock == 0 {
			t.Fatalf("memlock line %d after %q: got %d (has %v)", n, data, out.Memlock, out.Has&HasMemlock != 0)
		}
		// An unknown line, or a memlock too large for 64 bits, changes
		// nothing.
		tooBig := new(big.Int).Add(new(big.Int).SetUint64(n), new(big.Int).Lsh(big.NewInt(1), 64))
		for _, line := range []string{
			"no_such_key:\t" + strconv.FormatUint(n, 10),
			"memlock:\t" + tooBig.String(),
			"run_time_ns:\t" + tooBig.String() + eol + "verified_insns:\t-1",
		} {
			var with FDInfo
			ParseFDInfo(append(append(append([]byte(nil), data...), '\n'), line...), &with)
			if with != got {
				t.Fatalf("%q after %q: %+v, want %+v as without it", line, data, with, got)
			}
		}
	})
}

// Record sizes, from the generated layouts.
const (
	mapRecordFull  = int(unsafe.Sizeof(iterMapRecord{}))
	progRecordFull = int(unsafe.Sizeof(iterProgRecord{}))
	linkRecordFull = int(unsafe.Sizeof(iterLinkRecord{}))
)

// refDecodeRecord decodes a record with encoding/binary at the offsets of
// the generated layouts, reading only what len(b) holds: the oracle of
// FuzzDecodeRecord.
func refDecodeRecord(k Kind, b []byte, stats bool) (Record, bool, error) {
	if len(b) < recordHeaderSize || k >= NumKinds {
		return Record{}, false, errShortRecord
	}
	le := binary.LittleEndian
	u32 := func(off uintptr) uint32 { return le.Uint32(b[off:]) }
	u64 := func(off uintptr) uint64 { return le.Uint64(b[off:]) }
	rec := Record{ID: le.Uint32(b)}
	switch k {
	case KindMap:
		var r iterMapRecord
		if len(b) < mapRecordShort {
			return rec, false, nil
		}
		if m := u64(unsafe.Offsetof(r.Memory)); m != memoryUnknown && m != memoryUnchanged {
			rec.Memory, rec.Fields = m, rec.Fields|HasMemory
		}
		if e := int64(u64(unsafe.Offsetof(r.Elements))); e >= 0 {
			rec.Elements, rec.Fields = uint64(e), rec.Fields|HasElements
		}
		if len(b) < mapRecordFull {
			return rec, false, nil
		}
		rec.Type = u32(unsafe.Offsetof(r.Type))
		rec.Flags = u32(unsafe.Offsetof(r.Flags))
		rec.MaxEntries = u32(unsafe.Offsetof(r.MaxEntries))
		copy(rec.Name[:], b[unsafe.Offsetof(r.Name):])
		rec.Fields |= HasDetails
		return rec, true, nil
	case KindProg:
		var r iterProgRecord
		if stats && len(b) >= progRecordStats {
			rec.RunTimeNs = u64(unsafe.Offsetof(r.RunTimeNs))
			rec.RunCount = u64(unsafe.Offsetof(r.RunCnt))
			rec.Fields |= HasStats
		}
		if len(b) < progRecordFull {
			return rec, false, nil
		}
		rec.Memory = u64(unsafe.Offsetof(r.Memory))
		rec.Type = u32(unsafe.Offsetof(r.Type))
		copy(rec.Name[:], b[unsafe.Offsetof(r.Name):])
		rec.Fields |= HasDetails | HasMemory
		return rec, true, nil
	default: // KindLink
		var r iterLinkRecord
		if len(b) < linkRecordFull {
			return rec, false, nil
		}
		rec.Type = u32(unsafe.Offsetof(r.Type))
		rec.ProgID = u32(unsafe.Offsetof(r.ProgId))
		if u32(unsafe.Offsetof(r.HasAttachType)) != 0 {
			rec.AttachType = u32(unsafe.Offsetof(r.AttachType))
			rec.Fields |= HasAttachType
		}
		rec.Fields |= HasDetails
		return rec, true, nil
	}
}

// decoded is one result of Next.
type decoded struct {
	rec  Record
	full bool
}

// refStream frames a whole stream as Next must: records back to back, each
// starting with its header; a size below the header or above half the read
// buffer, or a stream ending inside a record, is malformed.
func refStream(k Kind, b []byte, stats bool) ([]decoded, error) {
	var out []decoded
	for len(b) > 0 {
		if len(b) < recordHeaderSize {
			return out, errShortRecord
		}
		size := int(binary.LittleEndian.Uint32(b[4:]))
		if size < recordHeaderSize || size > iterReadSize/2 || size > len(b) {
			return out, errShortRecord
		}
		rec, full, err := refDecodeRecord(k, b[:size], stats)
		if err != nil {
			return out, err
		}
		out = append(out, decoded{rec, full})
		b = b[size:]
	}
	return out, ErrEndOfList
}

// nextOverSocket runs the real Iterators.Next (and its fill and buffer
// compaction) over stream, delivered in reads of the sizes that split
// picks: one SOCK_SEQPACKET message per read, as a seq_file hands out a
// BPF iterator's output page by page.
func nextOverSocket(t *testing.T, k Kind, stream []byte, stats bool, split uint16) ([]decoded, error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer unix.Close(fds[1]) // the reader then sees the end (read returns 0)
		x := uint32(split) | 1
		for b := stream; len(b) > 0; {
			x ^= x << 13 // xorshift: chunk sizes from 1 to 4096 bytes
			x ^= x >> 17
			x ^= x << 5
			n := int(x%4096) + 1
			if split&1 == 0 {
				n = int(split%4096) + 1 // fixed-size chunks
			}
			// At most ~64 reads per stream, so that a large input costs
			// milliseconds, not a syscall per byte.
			n = min(len(b), max(n, min(len(stream)/64, 4096)))
			if _, err := unix.Write(fds[1], b[:n]); err != nil {
				return // the reader gave up and closed its end
			}
			b = b[n:]
		}
	})
	watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("nextOverSocket hung: %d bytes, split %d", len(stream), split)) })
	defer watchdog.Stop()
	it := &Iterators{gate: &countingGate{}, stream: newObjectStream(make([]byte, iterReadSize)), ck: k, stats: stats}
	it.stream.fd = fds[0]
	var out []decoded
	for {
		var rec Record
		full, err := it.Next(&rec)
		if err != nil {
			it.End() // closes fds[0]: a writer blocked on a full socket returns
			wg.Wait()
			return out, err
		}
		out = append(out, decoded{rec, full})
		if len(out) > len(stream)/recordHeaderSize {
			t.Fatalf("Next returned %d records from %d bytes", len(out), len(stream))
		}
	}
}

// hdr, rec and cat build iterator streams: a header, a record of size
// bytes (the body counts up from byte 8), records back to back.
func hdr(id, size uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, id), size)
}

func rec(id uint32, size int, body ...byte) []byte {
	b := append(hdr(id, uint32(size)), body...)
	for len(b) < size {
		b = append(b, byte(len(b)))
	}
	return b[:size]
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// The largest records Next accepts (half its buffer), each spanning several
// reads and filling the buffer; one byte more is malformed. A test rather
// than a seed: a 64 KiB seed makes the fuzzer spend its time minimizing.
func TestNextLargestRecords(t *testing.T) {
	for _, tc := range []struct {
		stream []byte
		n      int
		end    error
	}{
		{cat(rec(1, iterReadSize/2), rec(2, iterReadSize/2), rec(3, mapRecordFull)), 3, ErrEndOfList},
		{cat(rec(1, iterReadSize/2), rec(2, iterReadSize/2+1)), 1, errShortRecord},
	} {
		for _, split := range []uint16{4094, 1, 4095} {
			got, err := nextOverSocket(t, KindMap, tc.stream, false, split)
			want, wantErr := refStream(KindMap, tc.stream, false)
			if err != tc.end || wantErr != tc.end || len(got) != tc.n || len(want) != tc.n {
				t.Fatalf("split %d: %d records then %v; oracle %d then %v; want %d then %v",
					split, len(got), err, len(want), wantErr, tc.n, tc.end)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("split %d: record %d: %+v, want %+v", split, i, got[i], want[i])
				}
			}
		}
	}
}

// FuzzDecodeRecord: decodeRecord never panics and never reads outside its
// slice, whatever the kind, length and contents, and agrees with the
// oracle; Iterators.Next frames a stream of records exactly as the oracle
// does, however reads split it, and reports a truncated or oversized record
// as malformed instead of misreading the rest.
func FuzzDecodeRecord(f *testing.F) {
	// Streams as the iterators write them. The malformed ones (size 0,
	// below the header, larger than the buffer; truncated records and
	// headers; unknown kinds...) are files in testdata/fuzz/FuzzDecodeRecord.
	f.Add(uint8(KindMap), false, uint16(1), cat(rec(1, mapRecordFull), rec(2, mapRecordShort), rec(3, 8)))
	f.Add(uint8(KindProg), true, uint16(7), cat(rec(5, progRecordFull), rec(6, progRecordStats), rec(7, 8)))
	f.Add(uint8(KindLink), false, uint16(2), cat(rec(9, linkRecordFull), rec(10, 8), rec(11, linkRecordFull+8)))
	f.Fuzz(func(t *testing.T, kind uint8, stats bool, split uint16, stream []byte) {
		k := Kind(kind % (uint8(NumKinds) + 1)) // and one kind that does not exist
		// decodeRecord alone, on every prefix length of the stream's start,
		// in a slice of exactly that capacity so that the race detector's
		// checkptr catches any read past it.
		for n := 0; n <= min(len(stream), progRecordFull+8); n++ {
			b := append(make([]byte, 0, n), stream[:n]...)
			var got Record
			gotFull, gotErr := decodeRecord(k, b, stats, &got, nil)
			want, wantFull, wantErr := refDecodeRecord(k, b, stats)
			if got != want || gotFull != wantFull || gotErr != wantErr {
				t.Fatalf("decodeRecord(%s, %x, stats %v) = %+v, %v, %v; want %+v, %v, %v",
					k, b, stats, got, gotFull, gotErr, want, wantFull, wantErr)
			}
		}
		if k >= NumKinds {
			return // Next is only ever called on a pass of a real kind
		}
		want, wantErr := refStream(k, stream, stats)
		got, err := nextOverSocket(t, k, stream, stats, split)
		if !errors.Is(err, wantErr) || len(got) != len(want) {
			t.Fatalf("Next over %d bytes (split %d): %d records then %v; want %d then %v",
				len(stream), split, len(got), err, len(want), wantErr)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}
