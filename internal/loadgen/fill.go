package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// lpmKey is the key of the LPM trie maps: a prefix length and an IPv4-sized
// address, as struct bpf_lpm_trie_key_u8 with 4 data bytes.
type lpmKey struct {
	PrefixLen uint32
	Addr      [4]byte
}

// filler writes the first n elements of maps, reusing its key and value
// buffers from one map to the next.
type filler struct {
	keys    []uint32
	lpmKeys []lpmKey
	values  []uint64
	ncpu    int
	noBatch bool // tests: write one element at a time
}

// fill writes keys 0..n-1 with values 1..n (the same on every CPU for per-CPU
// maps), in one BPF_MAP_UPDATE_BATCH where the map type supports it, one
// update per element otherwise.
func (f *filler) fill(m *ebpf.Map, n uint32) error {
	if n == 0 {
		return nil
	}
	perCPU := m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.PerCPUArray
	copies := 1
	if perCPU {
		if f.ncpu == 0 {
			ncpu, err := ebpf.PossibleCPU()
			if err != nil {
				return fmt.Errorf("possible CPUs: %w", err)
			}
			f.ncpu = ncpu
		}
		copies = f.ncpu
	}
	f.values = f.values[:0]
	for i := range n {
		for range copies {
			f.values = append(f.values, uint64(i)+1)
		}
	}
	var keys any
	if m.Type() == ebpf.LPMTrie {
		f.lpmKeys = f.lpmKeys[:0]
		for i := range n {
			k := lpmKey{PrefixLen: 32}
			binary.BigEndian.PutUint32(k.Addr[:], i)
			f.lpmKeys = append(f.lpmKeys, k)
		}
		keys = f.lpmKeys
	} else {
		f.keys = f.keys[:0]
		for i := range n {
			f.keys = append(f.keys, i)
		}
		keys = f.keys
	}

	if m.Type() == ebpf.LRUHash {
		// An LRU map hands out free nodes from per-CPU lists and evicts when
		// the list of the CPU at hand runs dry, even while the map is far from
		// full: keep the whole fill on one CPU so that nothing is evicted.
		restore, err := pinToOneCPU()
		if err != nil {
			return err
		}
		defer restore()
	}

	done, err := 0, ebpf.ErrNotSupported
	if !f.noBatch {
		done, err = m.BatchUpdate(keys, f.values, nil)
	}
	switch {
	case err == nil && done == int(n):
		return nil
	case err == nil:
		return fmt.Errorf("batch update wrote %d of %d elements", done, n)
	case !errors.Is(err, ebpf.ErrNotSupported):
		return err
	}
	for i := range int(n) {
		var key any
		if m.Type() == ebpf.LPMTrie {
			key = &f.lpmKeys[i]
		} else {
			key = &f.keys[i]
		}
		var err error
		if perCPU {
			err = m.Update(key, f.values[i*copies:(i+1)*copies], ebpf.UpdateAny)
		} else {
			err = m.Update(key, &f.values[i], ebpf.UpdateAny)
		}
		if err != nil {
			return fmt.Errorf("update of element %d: %w", i, err)
		}
	}
	return nil
}

// pinToOneCPU locks the calling goroutine to its thread and that thread to
// the first CPU it may run on; restore undoes both.
func pinToOneCPU() (restore func(), err error) {
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpu := 0
	for !old.IsSet(cpu) {
		cpu++
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sched_setaffinity: %w", err)
	}
	return func() {
		// A thread whose mask could not be widened again stays locked to
		// this goroutine, so that no other goroutine inherits the narrow mask.
		if unix.SchedSetaffinity(0, &old) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}
