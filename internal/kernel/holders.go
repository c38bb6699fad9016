package kernel

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type hold_fd -type hold_process -type hold_cgroup -type hold_file holders bpf/holders.bpf.c

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Holders finds the processes that hold a file descriptor of a BPF map,
// program or link, with a BPF iterator over every task's open files
// (iter/task_file, bpf/holders.bpf.c). A pass costs BPF_ITER_CREATE, one
// read() per ~32 KiB of records and a close, like the object iterators:
// a process holding BPF descriptors costs one 56-byte record, each
// descriptor 8 bytes, a process holding none nothing.
//
// Like Iterators it needs CAP_BPF and CAP_PERFMON, not CAP_SYS_ADMIN nor
// CAP_SYS_PTRACE: the iterator sees every task of the agent's PID
// namespace (on a node, the host's: hostPID) without opening anything. It
// reports global thread-group IDs, those of the host's /proc.
//
// BPF files are recognised by their file_operations, which are not exported
// (and not in kallsyms without CONFIG_KALLSYMS_ALL): LoadHolders calibrates
// them from the agent's own map, program and link descriptors, by a first
// pass restricted to the agent's own files (on Linux 6.1 and later, a walk
// of those files only: CalibrationScope). Where a kind has a second
// file_operations (bpf_link_fops_poll, Linux 6.10 and later, for links
// whose type supports poll: struct_ops), the iterator knows its files by
// the name of their anonymous inode (bpf-map, bpf-prog; bpf_link, or
// bpf-link for a link's descriptor reopened by ID or from bpffs) and
// learns it.
//
// The cgroups of each holding process are read in the kernel: the
// default (v2) hierarchy's cgroup and, on hybrid hosts, the v1 cpuset
// hierarchy's, each as an ID, with the last components of its path sent
// once (the iterator remembers which it sent, per epoch: ResendCgroups).
// Where the kernel refuses that code (CgroupsErr), processes come without
// cgroups and the caller reads /proc/<pid>/cgroup.
//
// Holders is not safe for concurrent use.
type Holders struct {
	gate    Gate
	objs    holdersObjects
	link    *link.Iter
	own     []OwnObject
	cgroups error // why the cgroups are not read in the kernel; nil if they are
	// calibrationScope: CalibrationOwnProcess or CalibrationEveryProcess.
	calibrationScope string

	epoch     uint32
	epochSent uint32 // the epoch last written into the iterator

	// The pass in progress.
	stream recordStream
	path   []byte // the path of the last cgroup record
}

// HolderOptions changes how LoadHolders loads the iterator.
type HolderOptions struct {
	// NoKernelCgroups loads the iterator without the code that reads
	// cgroups, as on a kernel that refuses it: for tests of the fallback.
	NoKernelCgroups bool
	// BTF is where the kernel's BTF comes from, shared with other loads;
	// nil: a cache of its own, dropped after loading.
	BTF *btf.Cache
}

// HolderRecordType is the type of one record of a holders pass.
type HolderRecordType uint8

const (
	// HolderFD: the process of the last HolderProcess record holds a file
	// descriptor of the object Kind, ID.
	HolderFD HolderRecordType = iota
	// HolderProcess: a process holding BPF descriptors; its HolderFD
	// records follow.
	HolderProcess
	// HolderCgroup: the path of a cgroup that a later HolderProcess names,
	// sent once per epoch.
	HolderCgroup
)

// HolderRecord is one record of a holders pass, filled by Next. Only the
// fields of its Type are set.
type HolderRecord struct {
	Type    HolderRecordType
	Kind    Kind   // HolderFD
	ID      uint32 // HolderFD
	Process HolderProcessInfo
	Cgroup  HolderCgroupInfo
}

// HolderProcessInfo is a process holding BPF file descriptors.
type HolderProcessInfo struct {
	TGID uint32
	// PID is the task whose file table follows: TGID, except for a thread
	// with a file table of its own (created without CLONE_FILES), or when
	// the group leader has exited and its threads remain. The same object
	// can then come more than once for one TGID.
	PID  uint32
	Self bool // the agent itself
	// StartNs is the group leader's start time in nanoseconds since boot
	// (CLOCK_MONOTONIC): with TGID it names one process, whatever reuse of
	// the ID.
	StartNs uint64
	// Cgroup is the ID of the process's cgroup in the default (v2)
	// hierarchy, the inode number of its directory in cgroup2fs; Cgroup1
	// that of the v1 cpuset hierarchy on a hybrid host, when it is not the
	// root. 0: not known.
	Cgroup  uint64
	Cgroup1 uint64
	Comm    [16]byte // the group leader's, NUL-padded
}

// HolderCgroupInfo is a cgroup's path.
type HolderCgroupInfo struct {
	// ID is the cgroup's ID in its hierarchy, HolderProcessInfo.Cgroup1
	// when V1, else Cgroup: IDs are unique within a hierarchy only.
	ID uint64
	V1 bool
	// Path is "/" followed by the last components of the cgroup's path,
	// up to 8; it points into the Holders' buffer and is valid until the
	// next call of Next.
	Path []byte
	// Complete is true when Path is the whole path from the hierarchy's
	// root; otherwise its first components are missing.
	Complete bool
}

// holderFDs is how many file descriptors loading the iterator and reading
// it take (its maps, program, link, a pass's fd), with slack.
const holderFDs = 10

// LoadHolders loads and attaches the holders iterator and calibrates it.
// Every system call of a pass goes through gate, with NumKinds as the kind
// (a pass is over every kind); the calibration pass, part of loading, does
// not. procfs is where /proc is mounted.
func LoadHolders(gate Gate, procfs string, opts HolderOptions) (_ *Holders, err error) {
	if err := fdHeadroom(procfs, holderFDs); err != nil {
		return nil, err
	}
	h := &Holders{gate: gate, stream: newHolderStream(make([]byte, iterReadSize)), epoch: 1,
		calibrationScope: CalibrationEveryProcess}
	h.path = make([]byte, 0, 1+holderCgroupLevels*holderCgroupName)
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	// One parse of the kernel's BTF for both tries, dropped after loading.
	cache := opts.BTF
	if cache == nil {
		cache = btf.NewCache()
	}
	if opts.NoKernelCgroups {
		h.cgroups = errors.New("not read in the kernel: HolderOptions.NoKernelCgroups")
		err = h.load(false, cache)
	} else if err = h.load(true, cache); err != nil {
		h.cgroups = fmt.Errorf("loading the holders iterator with its cgroup reads: %w", err)
		err = h.load(false, cache)
	}
	if err != nil {
		return nil, err
	}
	h.link, err = link.AttachIter(link.IterOptions{Program: h.objs.Holders})
	if err != nil {
		return nil, fmt.Errorf("attaching the holders iterator: %w", err)
	}
	if h.own, err = ownObjects("holders iterator", h.objs.Holders, h.link); err != nil {
		return nil, err
	}
	if err := h.calibrate(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Holders) load(cgroups bool, cache *btf.Cache) error {
	spec, err := loadHolders()
	if err != nil {
		return fmt.Errorf("reading the holders iterator object: %w", err)
	}
	read := uint32(0)
	if cgroups {
		read = 1
	}
	if err := spec.Variables[holdersVarReadCgroups].Set(read); err != nil {
		return err
	}
	h.objs = holdersObjects{}
	if err := spec.LoadAndAssign(&h.objs, &ebpf.CollectionOptions{Cache: cache}); err != nil {
		return fmt.Errorf("loading the holders iterator: %w", err)
	}
	return nil
}

// reopenedLinkName is the name of a link's file that BPF_LINK_GET_FD_BY_ID
// or BPF_OBJ_GET opened (bpf_link_new_fd), "bpf_link" being the name of one
// the link's creation returned (bpf_link_prime).
const reopenedLinkName = "bpf-link"

// errHoldersClosed: Begin after Close.
var errHoldersClosed = errors.New("the holders iterator is closed")

// errCalibration: the calibration pass did not find the agent's own files.
var errCalibration = errors.New("calibrating the holders iterator")

// calibrate runs the first pass, which reports the agent's own files, and
// writes what identifies a map, a program and a link into the iterator.
func (h *Holders) calibrate() error {
	want := [NumKinds]int{h.objs.SentCgroups.FD(), h.objs.Holders.FD(), h.link.FD()}
	var found [NumKinds]holdersHoldFile
	var seen [NumKinds]bool
	linkFD := h.link.FD()
	if own, err := h.ownProcessLink(); err == nil {
		defer Close(own)
		linkFD, h.calibrationScope = own, CalibrationOwnProcess
	}
	// Part of loading: no collection limits or counts it.
	if err := h.stream.open(noGate{}, NumKinds, linkFD); err != nil {
		return fmt.Errorf("%w: %w", errCalibration, err)
	}
	defer h.stream.close(noGate{}, NumKinds)
	for {
		b, err := h.stream.next(noGate{}, NumKinds)
		if err == ErrEndOfList {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errCalibration, err)
		}
		if holderTag(b) != holdTagFile {
			return fmt.Errorf("%w: record of type %d", errCalibration, holderTag(b))
		}
		var f holdersHoldFile
		loadRecord(unsafe.Pointer(&f), unsafe.Sizeof(f), b)
		for k, fd := range want {
			if int(f.Fd) == fd {
				found[k], seen[k] = f, true
			}
		}
	}
	var fops [NumKinds][2]uint64
	var names [NumKinds + 1][2]uint64
	for k := range NumKinds {
		if !seen[k] || found[k].F_op == 0 {
			return fmt.Errorf("%w: the agent's own %s (fd %d) is not among its files", errCalibration, k, want[k])
		}
		fops[k][0] = found[k].F_op
		names[k] = *(*[2]uint64)(unsafe.Pointer(&found[k].Name))
		for j := range k {
			if fops[j][0] == fops[k][0] || names[j] == names[k] {
				return fmt.Errorf("%w: the agent's own %s and %s look alike", errCalibration, Kind(j), k)
			}
		}
	}
	// A link's descriptor opened by ID or from bpffs is named by
	// bpf_link_new_fd, not bpf_link_prime, which named the agent's.
	copy((*[16]byte)(unsafe.Pointer(&names[NumKinds]))[:], reopenedLinkName)
	// Every BPF file shares the one anonymous inode; without it, only the
	// calibrated file_operations are known.
	anon := found[KindMap].Inode
	if found[KindProg].Inode != anon || found[KindLink].Inode != anon {
		anon = 0
	}
	if err := h.objs.Fops.Set(fops); err != nil {
		return fmt.Errorf("%w: %w", errCalibration, err)
	}
	if err := h.objs.Names.Set(names); err != nil {
		return fmt.Errorf("%w: %w", errCalibration, err)
	}
	if err := h.objs.AnonInode.Set(anon); err != nil {
		return fmt.Errorf("%w: %w", errCalibration, err)
	}
	if err := h.objs.Calibrated.Set(uint32(1)); err != nil {
		return fmt.Errorf("%w: %w", errCalibration, err)
	}
	return nil
}

// Where the calibration pass looks for the agent's own files.
const (
	// CalibrationEveryProcess: the pass walks every file of every process,
	// and the program ignores all but the agent's.
	CalibrationEveryProcess = "every process"
	// CalibrationOwnProcess: the pass walks the agent's files only (a task
	// iterator limited to one process, Linux 6.1), so that loading does
	// not cost a walk of every descriptor on the node.
	CalibrationOwnProcess = "own process"
)

// iterTaskInfo is the task member of union bpf_iter_link_info (uapi
// linux/bpf.h, Linux 6.1): a task iterator limited to one thread (tid) or
// process (pid). The union is 16 bytes, the size of its cgroup member.
type iterTaskInfo struct {
	tid, pid, pidFD uint32
	_               uint32
}

// The offsets of link_create.iter_info (a pointer to union
// bpf_iter_link_info) and link_create.iter_info_len in
// linkCreateAttr.Union1 (uapi linux/bpf.h, Linux 5.9).
const (
	linkCreateIterInfo    = 0
	linkCreateIterInfoLen = 8
)

// linkInfoIterTaskPID is the offset of iter.task.pid in LinkInfo.Union1
// (36 in bpf_link_info), where the kernel reports the process an iterator
// link is limited to.
const linkInfoIterTaskPID = 20

// ownProcessLink attaches the holders program a second time, limited to
// the agent's process, and returns the link's fd. It fails where the
// kernel does not take the limit (before Linux 6.1, E2BIG) or does not
// apply it to task_file iterators (Linux 6.0 takes the parameter for
// cgroup iterators only): the link's info must report the agent's PID.
func (h *Holders) ownProcessLink() (int, error) {
	pid := uint32(unix.Getpid())
	info := &iterTaskInfo{pid: pid}
	attr := linkCreateAttr{ProgFD: uint32(h.objs.Holders.FD()), AttachType: uint32(AttachTypeTraceIter)}
	*(*uint64)(unsafe.Pointer(&attr.Union1[linkCreateIterInfo])) = uint64(uintptr(unsafe.Pointer(info)))
	*(*uint32)(unsafe.Pointer(&attr.Union1[linkCreateIterInfoLen])) = uint32(unsafe.Sizeof(*info))
	fd, err := BPF(CmdLinkCreate, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(info)
	if err != nil {
		return -1, err
	}
	li := new(LinkInfo)
	if err := LinkInfoByFD(fd, li); err != nil {
		Close(fd)
		return -1, err
	}
	if got := *(*uint32)(unsafe.Pointer(&li.Union1[linkInfoIterTaskPID])); got != pid {
		Close(fd)
		return -1, fmt.Errorf("the kernel did not limit the iterator to process %d", pid)
	}
	return fd, nil
}

// CalibrationScope says which processes' files the calibration pass walked:
// CalibrationOwnProcess or CalibrationEveryProcess.
func (h *Holders) CalibrationScope() string { return h.calibrationScope }

// CgroupsErr says why the iterator does not read cgroups (the kernel
// refused the code that does), or nil when it does.
func (h *Holders) CgroupsErr() error { return h.cgroups }

// Own returns the objects the holders iterator consists of.
func (h *Holders) Own() []OwnObject { return append([]OwnObject(nil), h.own...) }

// FileOps returns the file_operations the iterator knows BPF files by, per
// kind: the calibrated one and a second one learned since, or 0. For the
// benchmarks' floor (bench/floor), which needs the same test.
func (h *Holders) FileOps() ([NumKinds][2]uint64, error) {
	var fops [NumKinds][2]uint64
	err := h.objs.Fops.Get(&fops)
	return fops, err
}

// ResendCgroups makes the next pass send the path of every cgroup again:
// for a caller that lost what it was sent (it dropped its cache, or a pass
// ended half-way).
func (h *Holders) ResendCgroups() { h.epoch++ }

// Close releases the iterator.
func (h *Holders) Close() error {
	h.End()
	var errs []error
	if h.link != nil {
		errs = append(errs, h.link.Close())
		h.link = nil
	}
	errs = append(errs, h.objs.Close())
	h.objs = holdersObjects{}
	return errors.Join(errs...)
}
