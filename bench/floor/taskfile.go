package floor

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel taskfile bpf/taskfile.bpf.c

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TaskFiles is the floor of finding the holders of objects: an iterator
// over every task's open files (bpf/taskfile.bpf.c) that writes the 4-byte
// ID of each map, program and link file, read with raw system calls into
// one reused buffer and counted. No walk of the tasks' files that finds
// BPF objects can be faster; bench/holderpass measures the agent's holders
// pass against it. It is not safe for concurrent use.
type TaskFiles struct {
	objs taskfileObjects
	link *link.Iter
	buf  []byte
}

// LoadTaskFiles loads and attaches the iterator, which knows BPF files by
// fops: per kind (map, program, link), the file_operations of its files
// (kernel.Holders.FileOps). It needs CAP_BPF and CAP_PERFMON.
func LoadTaskFiles(fops [NumKinds][2]uint64) (_ *TaskFiles, err error) {
	spec, err := loadTaskfile()
	if err != nil {
		return nil, fmt.Errorf("reading the task-file floor iterator: %w", err)
	}
	if err := spec.Variables["fops"].Set(fops); err != nil {
		return nil, err
	}
	f := &TaskFiles{buf: make([]byte, BufferSize)}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("loading the task-file floor iterator: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.link, err = link.AttachIter(link.IterOptions{Program: f.objs.FloorTaskFiles})
	if err != nil {
		return nil, fmt.Errorf("attaching the task-file floor iterator: %w", err)
	}
	return f, nil
}

// Program returns the iterator program (for its run-time statistics).
func (f *TaskFiles) Program() *ebpf.Program { return f.objs.FloorTaskFiles }

// Read runs the iterator once and returns the number of BPF descriptors it
// found and the system calls it made. It allocates nothing.
func (f *TaskFiles) Read() (ids, syscalls int, err error) {
	n, calls, err := ReadIterator(f.link, f.buf)
	if err != nil {
		return 0, calls, fmt.Errorf("reading the task-file floor iterator: %w", err)
	}
	if n%4 != 0 {
		return 0, calls, fmt.Errorf("reading the task-file floor iterator: %w", errPartialID)
	}
	return n / 4, calls, nil
}

// Close detaches and unloads the iterator. It is safe to call more than
// once.
func (f *TaskFiles) Close() error {
	var errs []error
	if f.link != nil {
		errs = append(errs, f.link.Close())
		f.link = nil
	}
	errs = append(errs, f.objs.Close())
	f.objs = taskfileObjects{}
	return errors.Join(errs...)
}
