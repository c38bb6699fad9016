// Command holderpass times the agent's ownership pass against the floor of
// finding holders, on whatever eBPF objects and processes exist now
// (bench/holders-vs-floor.sh holds a population spread over processes with
// ebpf-loadgen --processes while it runs). Everything is measured in one
// process, the contestants taking turns (in a rotating order) so that the
// noise of a shared machine falls on all of them alike:
//
//   - taskfloor: bench/floor.TaskFiles, an iterator over every task's files
//     that writes the 4-byte ID of each BPF file, read raw and counted;
//   - objfloor: bench/floor.Floor, the ID-only iterators over maps,
//     programs and links;
//   - holders: kernel.Holders, the agent's iterator over tasks' files, its
//     records decoded by Next and dropped;
//   - owner: owner.Iter over kernel.Holders, each holding resolved to its
//     process, container and pod (cgroups parsed once, then remembered);
//   - objects: kernel.Iterators over the three kinds, every object known
//     (short records), decoded by Next and dropped: the object side of a
//     steady cycle.
//
// The goal of issue 10 is the whole ownership pass (owner + objects) at
// most 1.5 times the floor (taskfloor + objfloor). Output: one "key value"
// line per figure, durations in nanoseconds, medians over -runs:
//
//	runs, {taskfloor,objfloor,holders,owner,objects}_{ns,min_ns,max_ns,syscalls},
//	taskfloor_ids (BPF descriptors the floor found), holders_fds,
//	holders_processes, holders_records, owner_holdings, owner_processes,
//	owner_containers (holdings in a container), objects_objects,
//	holders_over_taskfloor, owner_over_taskfloor,
//	ownership_over_floor ((owner+objects) / (taskfloor+objfloor)),
//	(medians of the per-turn ratios), owner_allocs (heap allocations per
//	owner pass, whole process)
//
// Exit status: 0 when everything was measured, 1 when something failed, 2
// for bad flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/ebpf-metrics/ebpf-metrics/bench/floor"
	"github.com/ebpf-metrics/ebpf-metrics/bench/internal/stat"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/owner"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("holderpass", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 21, "turns: each times every contestant once")
	procfs := fs.String("procfs", "/proc", "where procfs is mounted")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runs < 1 {
		fmt.Fprintln(stderr, "holderpass: -runs must be at least 1")
		return 2
	}
	out := &lines{w: stdout}
	if err := measure(*runs, *procfs, out); err != nil {
		fmt.Fprintf(stderr, "holderpass: %v\n", err)
		return 1
	}
	if out.err != nil {
		fmt.Fprintf(stderr, "holderpass: %v\n", out.err)
		return 1
	}
	return 0
}

// lines prints "key value" lines and keeps the first write error.
type lines struct {
	w   io.Writer
	err error
}

func (l *lines) put(key string, val any) {
	if l.err == nil {
		_, l.err = fmt.Fprintf(l.w, "%s %v\n", key, val)
	}
}

// countingGate admits everything and counts system calls.
type countingGate struct{ calls int }

func (g *countingGate) Acquire(kernel.Op) error { return nil }
func (g *countingGate) Release(op kernel.Op, _ kernel.Kind, _ uint32, _ error) {
	g.calls += op.Calls()
}

// contestant is one thing timed in turns.
type contestant struct {
	name     string
	pass     func() (syscalls int, err error)
	times    []time.Duration
	syscalls int // of the last pass
}

func (c *contestant) time() error {
	start := time.Now()
	sc, err := c.pass()
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.times = append(c.times, d)
	c.syscalls = sc
	return nil
}

func measure(runs int, procfs string, out *lines) error {
	gate := &countingGate{}
	h, err := kernel.LoadHolders(gate, procfs, kernel.HolderOptions{})
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.CgroupsErr(); err != nil {
		return fmt.Errorf("the holders iterator reads no cgroups on this kernel: %w", err)
	}
	fops, err := h.FileOps()
	if err != nil {
		return err
	}
	tf, err := floor.LoadTaskFiles(fops)
	if err != nil {
		return err
	}
	defer tf.Close()
	of, err := floor.Load()
	if err != nil {
		return err
	}
	defer of.Close()
	its, errs, err := kernel.LoadIterators(gate, procfs)
	if err != nil {
		return err
	}
	defer its.Close()
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("the agent's iterators: %w", err)
	}
	src, err := owner.NewIter(h, procfs, gate)
	if err != nil {
		return err
	}
	defer src.Close()

	var taskIDs int
	taskfloor := &contestant{name: "taskfloor", pass: func() (int, error) {
		n, calls, err := tf.Read()
		taskIDs = n
		return calls, err
	}}
	objfloor := &contestant{name: "objfloor", pass: func() (int, error) {
		p, err := of.Read()
		return p.Syscalls, err
	}}
	var hc holderCounts
	var rec kernel.HolderRecord
	holders := &contestant{name: "holders", pass: func() (int, error) {
		before := gate.calls
		err := readHolders(h, &rec, &hc)
		return gate.calls - before, err
	}}
	var oc ownerCounts
	var holding owner.Holding
	ownerC := &contestant{name: "owner", pass: func() (int, error) {
		before := gate.calls
		err := readOwner(src, &holding, &oc)
		return gate.calls - before, err
	}}
	var objs int
	var orec kernel.Record
	objects := &contestant{name: "objects", pass: func() (int, error) {
		before := gate.calls
		n, err := readObjects(its, &orec)
		objs = n
		return gate.calls - before, err
	}}

	all := []*contestant{taskfloor, objfloor, holders, ownerC, objects}
	for _, c := range all { // warm up: the first pass of each (cgroups parsed, caches filled) is not timed
		if err := c.time(); err != nil {
			return err
		}
		c.times = make([]time.Duration, 0, runs) // appending allocates nothing while timed
	}
	var ms runtime.MemStats
	var ownerAllocs uint64
	for i := range runs {
		for j := range all {
			c := all[(i+j)%len(all)]
			var m0 uint64
			if c == ownerC {
				runtime.ReadMemStats(&ms)
				m0 = ms.Mallocs
			}
			if err := c.time(); err != nil {
				return err
			}
			if c == ownerC {
				runtime.ReadMemStats(&ms)
				ownerAllocs += ms.Mallocs - m0
			}
		}
	}

	out.put("runs", runs)
	for _, c := range all {
		ts := slices.Sorted(slices.Values(c.times))
		out.put(c.name+"_ns", int64(stat.Median(ts)))
		out.put(c.name+"_min_ns", int64(ts[0]))
		out.put(c.name+"_max_ns", int64(ts[len(ts)-1]))
		out.put(c.name+"_syscalls", c.syscalls)
	}
	out.put("taskfloor_ids", taskIDs)
	out.put("holders_fds", hc.fds)
	out.put("holders_processes", hc.processes)
	out.put("holders_records", hc.records)
	out.put("owner_holdings", oc.holdings)
	out.put("owner_processes", oc.processes)
	out.put("owner_containers", oc.inContainer)
	out.put("objects_objects", objs)
	out.put("holders_over_taskfloor", ratio(runs, func(i int) float64 {
		return float64(holders.times[i]) / float64(taskfloor.times[i])
	}))
	out.put("owner_over_taskfloor", ratio(runs, func(i int) float64 {
		return float64(ownerC.times[i]) / float64(taskfloor.times[i])
	}))
	out.put("ownership_over_floor", ratio(runs, func(i int) float64 {
		return float64(ownerC.times[i]+objects.times[i]) / float64(taskfloor.times[i]+objfloor.times[i])
	}))
	out.put("owner_allocs", strconv.FormatFloat(float64(ownerAllocs)/float64(runs), 'f', -1, 64))
	return nil
}

// ratio is the median over the turns of one ratio of that turn's times:
// within a turn the contestants ran back to back, under the same load.
func ratio(runs int, of func(i int) float64) string {
	rs := make([]float64, runs)
	for i := range rs {
		rs[i] = of(i)
	}
	slices.Sort(rs)
	m := rs[runs/2]
	if runs%2 == 0 {
		m = (rs[runs/2-1] + rs[runs/2]) / 2
	}
	return strconv.FormatFloat(m, 'f', 3, 64)
}

type holderCounts struct{ fds, processes, records int }

// readHolders reads one pass of h, decoding every record and dropping it.
//
//go:noinline
func readHolders(h *kernel.Holders, rec *kernel.HolderRecord, c *holderCounts) error {
	*c = holderCounts{}
	if err := h.Begin(); err != nil {
		return err
	}
	for {
		err := h.Next(rec)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			h.End()
			return err
		}
		c.records++
		switch rec.Type {
		case kernel.HolderFD:
			c.fds++
		case kernel.HolderProcess:
			c.processes++
		}
	}
	return h.End()
}

type ownerCounts struct{ holdings, processes, inContainer int }

// readOwner reads one pass of src, every holding resolved and dropped.
//
//go:noinline
func readOwner(src *owner.Iter, h *owner.Holding, c *ownerCounts) error {
	*c = ownerCounts{}
	if err := src.Begin(); err != nil {
		return err
	}
	for {
		err := src.Next(h)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			src.End()
			return err
		}
		c.holdings++
		if h.Process.ContainerID != "" {
			c.inContainer++
		}
	}
	p, err := src.End()
	c.processes = p.Processes
	return err
}

// readObjects reads every object with the agent's iterators, all of them
// known (short records), decoding each record and dropping it.
//
//go:noinline
func readObjects(its *kernel.Iterators, rec *kernel.Record) (objects int, err error) {
	for k := range kernel.NumKinds {
		if err := its.Begin(k, math.MaxUint32, false); err != nil {
			return 0, err
		}
		for {
			_, err := its.Next(rec)
			if err == kernel.ErrEndOfList {
				break
			}
			if err != nil {
				its.End()
				return 0, err
			}
			objects++
		}
		if err := its.End(); err != nil {
			return 0, err
		}
	}
	return objects, nil
}
