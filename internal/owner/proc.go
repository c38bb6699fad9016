package owner

import (
	"bytes"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
)

// Proc finds holders in procfs, for the syscall mode: for each process,
// each entry of <procfs>/<pid>/fd whose link reads anon_inode:bpf-map,
// anon_inode:bpf-prog or anon_inode:bpf_link (bpf-link), with the object's
// ID from the map_id, prog_id or link_id line of its fdinfo. A pass costs a listing of
// procfs, a listing of each process's fd directory and a readlink per
// descriptor, and for each BPF descriptor an fdinfo read; for each holding
// process, its stat (comm and start time) and, the first time, its cgroup.
//
// It sees the file table of each process's group leader, not the tables of
// threads created without CLONE_FILES.
type Proc struct {
	dir    *procDir
	self   uint32
	procs  procCache
	pids   []uint32
	fds    []uint32
	link   [64]byte
	pass   Pass
	in     bool
	pi, fi int // next PID, next descriptor
	cur    Process
	curSet bool // cur is the process of pids[pi-1]
}

// NewProc returns a Source reading procfs (the agent's --path.procfs), with
// every system call admitted by gate.
func NewProc(procfs string, gate kernel.Gate) (*Proc, error) {
	d, err := openProcDir(procfs, gate)
	if err != nil {
		return nil, err
	}
	p := &Proc{dir: d, procs: newProcCache()}
	// The agent's own PID as this procfs numbers it.
	copy(d.path[:], "self\x00")
	if b, err := d.readlink(p.link[:], kernel.NumKinds); err == nil {
		if v, ok := parseNumber(b); ok {
			p.self = v
		}
	}
	return p, nil
}

func (p *Proc) Mode() string { return "procfs" }

func (p *Proc) Begin() error {
	p.End()
	p.pass = Pass{}
	p.procs.pass++
	p.dir.setSelfPath()
	var err error
	p.pids, err = p.dir.listNumbers(p.pids[:0])
	if err != nil {
		return err
	}
	p.in, p.pi, p.fi, p.fds, p.curSet = true, 0, 0, p.fds[:0], false
	return nil
}

// anonNames are the link targets of BPF descriptors in /proc/<pid>/fd, by
// kind: the names the kernel gives their anonymous inodes. A link has two:
// bpf_link from its creation (bpf_link_prime), bpf-link when opened by ID
// or from bpffs (bpf_link_new_fd).
var anonNames = [...]struct {
	name string
	kind kernel.Kind
}{
	{"anon_inode:bpf-map", kernel.KindMap},
	{"anon_inode:bpf-prog", kernel.KindProg},
	{"anon_inode:bpf_link", kernel.KindLink},
	{"anon_inode:bpf-link", kernel.KindLink},
}

// idKeys are the fdinfo lines with the object's ID, by kind (a link's
// fdinfo also has the prog_id of its program).
var idKeys = [kernel.NumKinds]string{"map_id", "prog_id", "link_id"}

func (p *Proc) Next(h *Holding) error {
	if !p.in {
		return errNotInPass
	}
	for {
		for p.fi < len(p.fds) {
			pid, fd := p.pids[p.pi-1], p.fds[p.fi]
			p.fi++
			k, ok := p.kindOf(pid, fd)
			if !ok {
				continue
			}
			p.dir.setFDPath(pid, "fdinfo", fd)
			b, err := p.dir.read(k)
			if err != nil {
				continue // closed since it was listed
			}
			id, ok := fieldUint(b, idKeys[k])
			if !ok || id > 1<<32-1 {
				continue
			}
			if !p.curSet {
				if !p.process(pid) {
					p.fi = len(p.fds) // the process exited
					continue
				}
				p.curSet = true
				p.pass.Processes++
			}
			*h = Holding{Kind: k, ID: uint32(id), Process: p.cur}
			return nil
		}
		if p.pi >= len(p.pids) {
			return kernel.ErrEndOfList
		}
		pid := p.pids[p.pi]
		p.pi++
		p.fi, p.curSet = 0, false
		p.dir.setPath(pid, "fd")
		var err error
		p.fds, err = p.dir.listNumbers(p.fds[:0])
		if err == unix.EACCES || err == unix.EPERM {
			p.pass.Unreadable++
		}
	}
}

// kindOf reads the link of /proc/<pid>/fd/<fd>.
func (p *Proc) kindOf(pid, fd uint32) (kernel.Kind, bool) {
	p.dir.setFDPath(pid, "fd", fd)
	b, err := p.dir.readlink(p.link[:], kernel.NumKinds)
	if err != nil || len(b) < len("anon_inode:bpf") || !bytes.HasPrefix(b, []byte("anon_inode:bpf")) {
		return 0, false
	}
	for _, a := range anonNames {
		if string(b) == a.name {
			return a.kind, true
		}
	}
	return 0, false
}

// process fills p.cur for pid from its stat and, once per process, its
// cgroup. It reports false when the process is gone.
func (p *Proc) process(pid uint32) bool {
	p.dir.setPath(pid, "stat")
	b, err := p.dir.read(kernel.NumKinds)
	if err != nil {
		return false
	}
	comm, start, ok := parseStat(b)
	if !ok {
		return false
	}
	p.cur = Process{PID: pid, Self: pid == p.self}
	copy(p.cur.Comm[:], comm)
	p.procs.setCgroup(p.dir, pid, start, &p.cur, &p.pass)
	return true
}

// setCgroup sets cur's container and pod, those of process pid started at
// start: remembered, or read from <procfs>/<pid>/cgroup through d. One it
// cannot read counts in pass.CgroupUnknown and is tried again next time.
func (c *procCache) setCgroup(d *procDir, pid uint32, start uint64, cur *Process, pass *Pass) {
	e, ok := c.get(pid, start)
	if !ok {
		d.setPath(pid, "cgroup")
		if b, err := d.read(kernel.NumKinds); err == nil {
			e.container, e.pod = ParseProcCgroup(b)
			e.known = true
		}
		c.put(pid, start, e)
	}
	if !e.known {
		pass.CgroupUnknown++
	}
	cur.ContainerID, cur.PodUID = e.container, e.pod
}

// parseStat returns the comm and the start time (field 22, clock ticks
// since boot) of a /proc/<pid>/stat. The comm is between the first "(" and
// the last ")": it may hold both.
func parseStat(b []byte) (comm []byte, start uint64, ok bool) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return nil, 0, false
	}
	comm = b[open+1 : end]
	// Fields 3.. follow ") ": start time is the 20th of them.
	field := 2
	for i := end + 1; i < len(b); i++ {
		if b[i] != ' ' {
			continue
		}
		field++
		if field == 22 {
			var v uint64
			n := 0
			for _, c := range b[i+1:] {
				if c < '0' || c > '9' {
					break
				}
				v = v*10 + uint64(c-'0')
				n++
			}
			return comm, v, n > 0
		}
	}
	return nil, 0, false
}

func (p *Proc) End() (Pass, error) {
	if !p.in {
		return p.pass, nil
	}
	p.in = false
	p.procs.prune()
	return p.pass, nil
}

func (p *Proc) Close() error {
	p.End()
	return p.dir.close()
}
