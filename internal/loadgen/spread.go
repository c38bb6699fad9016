package loadgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// HolderComm is the comm of the processes that hold a spread population:
// they are sleep(1), which keeps the descriptors it inherits.
const HolderComm = "sleep"

// spread hands the population's descriptors to n processes, object i to
// process i mod n, and closes its own copies: each object is then held by
// one of them and by nothing in this process. They are killed by Close,
// and by the kernel if this process dies (PR_SET_PDEATHSIG).
func (p *Population) spread(n int) error {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return fmt.Errorf("loadgen: spreading over processes: %w", err)
	}
	// Memory as of now: once spread, this process can read no fdinfo.
	if p.spreadMemlock, err = p.MemlockBytes(); err != nil {
		return err
	}
	var fds []int
	for _, m := range p.maps {
		fds = append(fds, m.FD())
	}
	for _, progs := range [][]int{fdsOf(p.progs), fdsOf(p.helpers)} {
		fds = append(fds, progs...)
	}
	for _, l := range p.links {
		fd, err := linkFD(l)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	for c := range n {
		files := []uintptr{null.Fd(), null.Fd(), null.Fd()}
		for i := c; i < len(fds); i += n {
			files = append(files, uintptr(fds[i]))
		}
		pid, err := syscall.ForkExec(sleep, []string{HolderComm, "2147483647"}, &syscall.ProcAttr{
			Files: files,
			Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
		})
		if err != nil {
			return fmt.Errorf("loadgen: starting holder process %d of %d: %w", c+1, n, err)
		}
		p.holders = append(p.holders, pid)
	}
	// Let go of this process's copies.
	return p.closeObjects()
}

func fdsOf[T interface{ FD() int }](objs []T) []int {
	fds := make([]int, len(objs))
	for i, o := range objs {
		fds[i] = o.FD()
	}
	return fds
}

// linkFD is the descriptor of a link (link.Link has no FD method; the
// iterator links Create makes do).
func linkFD(l interface{}) (int, error) {
	if f, ok := l.(interface{ FD() int }); ok {
		return f.FD(), nil
	}
	return -1, errors.New("loadgen: a link without a file descriptor")
}

// HolderPIDs returns the processes holding the population when Spec.Processes
// spread it, none otherwise.
func (p *Population) HolderPIDs() []int { return append([]int(nil), p.holders...) }

// stopHolders kills the holder processes and waits for them.
func (p *Population) stopHolders() error {
	var errs []error
	for _, pid := range p.holders {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("loadgen: killing holder %d: %w", pid, err))
		}
	}
	for _, pid := range p.holders {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil && err != unix.ECHILD {
				errs = append(errs, fmt.Errorf("loadgen: waiting for holder %d: %w", pid, err))
			}
			break
		}
	}
	p.holders = nil
	return errors.Join(errs...)
}
