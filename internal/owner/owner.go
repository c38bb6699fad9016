// Package owner says who holds an object: the processes that hold a file
// descriptor of an eBPF map, program or link, their containers and pods.
//
// A Source yields, pass after pass, one Holding per (object, process)
// pair: the object's kind and ID, the holding process's thread-group ID,
// its group leader's comm, its container ID and pod UID (both "" for a
// host process), and whether it is the agent itself. Two implementations:
//
//   - Iter (NewIter), over kernel.Holders: a BPF iterator over every task's
//     files, which reads each holder's cgroups in the kernel. Needs CAP_BPF
//     and CAP_PERFMON only. Where the kernel refuses the iterator's cgroup
//     code, it reads <procfs>/<pid>/cgroup instead (readable by anyone).
//   - Proc (NewProc), the syscall mode's: <procfs>/<pid>/fd (a readlink
//     to anon_inode:bpf-map, bpf-prog, bpf_link or bpf-link) and the map_id,
//     prog_id or link_id line of <procfs>/<pid>/fdinfo/<fd>. Reading a
//     process's descriptors takes ptrace read access to it (the same user
//     and a dumpable process, or CAP_SYS_PTRACE): processes it cannot read
//     are counted (Pass.Unreadable), not guessed.
//
// Objects held by no descriptor (pinned in bpffs, or held by another
// object: a map used by a program, a program attached by a link) come in
// no Holding. An object held by several processes comes once per holding
// process, and may come more than once for one process (dup'ed
// descriptors; threads with a file table of their own).
//
// Container and pod come from the cgroup path (ParseCgroup), resolved once
// per cgroup (Iter) or per process (Proc, and Iter's fallback): a steady
// pass allocates nothing.
package owner

import (
	"errors"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// Process is a process holding eBPF objects.
type Process struct {
	PID  uint32   // thread-group ID, what ps calls a PID
	Comm [16]byte // the group leader's comm, NUL-padded
	// ContainerID and PodUID are "" for a process in no container or pod,
	// and when its cgroup could not be read.
	ContainerID string
	PodUID      string
	Self        bool // the agent itself
}

// CommString returns Comm up to its first NUL. It allocates.
func (p *Process) CommString() string {
	for i, c := range p.Comm {
		if c == 0 {
			return string(p.Comm[:i])
		}
	}
	return string(p.Comm[:])
}

// Holding is one object held by one process.
type Holding struct {
	Kind    kernel.Kind
	ID      uint32
	Process Process
}

// Source yields the holdings of a pass. A Source is not safe for
// concurrent use.
type Source interface {
	// Mode names the implementation: "iterator" or "procfs".
	Mode() string
	// Begin starts a pass.
	Begin() error
	// Next fills h with the next holding, or returns kernel.ErrEndOfList
	// after the last.
	Next(h *Holding) error
	// End finishes the pass and returns what it saw.
	End() (Pass, error)
	// Close releases what the Source holds.
	Close() error
}

// Pass is what a pass saw beyond its holdings.
type Pass struct {
	// Processes is the number of processes holding at least one object.
	Processes int
	// Unreadable counts the processes whose file descriptors could not be
	// read (Proc without the privilege to read them), and CgroupUnknown the
	// holding processes whose cgroup could not be read: their container
	// and pod are "".
	Unreadable    int
	CgroupUnknown int
}

// errNotInPass: Next was called outside a pass.
var errNotInPass = errors.New("owner: Next outside a pass")
