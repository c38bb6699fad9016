// Package warmup starts, while the program's packages are still being
// initialised, the start-up work that needs no flag: parsing the kernel's
// BTF, which every BPF program the agent loads is relocated against (some
// 20 ms of CPU on one thread). Go runs package initialisers one after
// another on one thread, and those the agent links (gRPC, protobuf, the
// OpenTelemetry SDK, client_golang) take about as long; the second CPU is
// idle meanwhile. Only the agent's main package imports warmup; the parse
// starts when this package is initialised, which is as soon as
// cilium/ebpf's are, before those of packages whose paths sort after it.
package warmup

import (
	"os"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// cache is the parse started at initialisation, until taken.
var cache atomic.Pointer[btf.Cache]

func init() { cache.Store(start(os.Args)) }

// start begins parsing the kernel's BTF in a goroutine and returns the
// cache it fills, unless args (the program's) load nothing: --version,
// --help, --config.check; nor in a test binary, whose children (the
// tests' BPF holders) would each parse it for nothing.
func start(args []string) *btf.Cache {
	if len(args) == 0 || strings.HasSuffix(args[0], ".test") {
		return nil
	}
	for _, a := range args[1:] {
		switch a {
		case "--version", "--help", "-h", "--help-long", "--help-man", "--config.check":
			return nil
		}
	}
	c := btf.NewCache()
	go c.Kernel() // an error is returned again to whoever asks next
	return c
}

// TakeBTF returns the cache whose kernel BTF is being parsed since start-up,
// once; nil afterwards or if none was started. The taker drops it once its
// programs are loaded.
func TakeBTF() *btf.Cache { return cache.Swap(nil) }

// StartupHeap is about how much memory loading the BPF programs and a
// first cycle touch for the first time (the kernel's BTF decoded for the
// CO-RE relocations, most of it): 1,900 minor faults, 7.4 MiB anonymous,
// measured on Linux 6.18 (docs/benchmarks.md).
const StartupHeap = 8 << 20

// PrefaultHeap makes n bytes of heap resident with one system call and
// leaves them free for the allocations that follow: one madvise instead of
// a page fault per 4 KiB page, which on a VM whose memory the host backs
// lazily costs ~12 µs each (bench/faultcost). MADV_POPULATE_WRITE needs
// Linux 5.14; without it, nothing is done and the error says why.
func PrefaultHeap(n int) error {
	b := make([]byte, n)
	err := unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	runtime.KeepAlive(b)
	b = nil
	// Freed by a collection, the pages go back to the heap's free pages,
	// resident, where the next spans are cut from.
	runtime.GC()
	return err
}
