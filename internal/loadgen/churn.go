package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// ChurnName is the name of every map and program Churn creates, so that a
// test can tell them from everyone else's.
const ChurnName = "lg_churn"

// churnWindow is how many steps' objects are alive at once: an object lives
// for churnWindow steps, long enough to be listed by a collector and often
// released while it is being read.
const churnWindow = 64

// ChurnStats is what Churn did.
type ChurnStats struct {
	// Objects created, each released again before Churn returned. Programs
	// include the one iterator program the links share.
	Maps, Programs, Links int
	// Elapsed is the time spent churning, after the setup (loading the
	// iterator program can take ~10 ms, or much more on a busy machine).
	Elapsed time.Duration
}

// Objects is the number of objects created.
func (s ChurnStats) Objects() int { return s.Maps + s.Programs + s.Links }

// Rate is the number of objects created per second.
func (s ChurnStats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Objects()) / s.Elapsed.Seconds()
}

// churnStep is the objects of one step.
type churnStep struct {
	m *ebpf.Map
	p *ebpf.Program
	l link.Link
}

func (s *churnStep) close() error {
	var errs []error
	if s.l != nil {
		errs = append(errs, s.l.Close())
	}
	if s.p != nil {
		errs = append(errs, s.p.Close())
	}
	if s.m != nil {
		errs = append(errs, s.m.Close())
	}
	*s = churnStep{}
	return errors.Join(errs...)
}

// Churn creates and releases objects until ctx is done, at about rate
// objects per second (0: as fast as it can), and returns what it did. Each
// step creates a map (cycling through MapKinds, empty), a socket filter
// program and a BPF iterator link, and releases the objects of the step
// churnWindow steps before, so that about 3×churnWindow of its objects exist
// at any time, each for a few milliseconds. The links share one iterator
// program, loaded at the start and released at the end (loading an iterator
// program costs ~10 ms; a link costs microseconds).
//
// Like Create, everything is inert. On return everything Churn created has
// been released (the kernel frees it asynchronously). It returns an error
// only if it could not create an object; ctx ending is not an error.
func Churn(ctx context.Context, rate float64) (ChurnStats, error) {
	return ChurnFor(ctx, rate, 0)
}

// ChurnFor is Churn for d (0: until ctx is done) from the end of its setup,
// which can take seconds on a loaded or emulated CPU: a test that wants
// churn for a while gets it, however long loading took.
func ChurnFor(ctx context.Context, rate float64, d time.Duration) (st ChurnStats, err error) {
	if rate < 0 {
		return st, fmt.Errorf("loadgen: negative churn rate %v", rate)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return st, fmt.Errorf("loadgen: removing memlock limit: %w", err)
	}
	iter, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: ChurnName, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "bpf_map",
		License: "GPL", Instructions: returnZero,
	})
	if err != nil {
		return st, fmt.Errorf("loadgen: loading the churn iterator program: %w", err)
	}
	st.Programs++
	start := time.Now() // the rate is over the churn, not the setup
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var ring [churnWindow]churnStep
	defer func() {
		for i := range ring {
			ring[i].close()
		}
		iter.Close()
		st.Elapsed = time.Since(start)
	}()
	prog := &ebpf.ProgramSpec{Name: ChurnName, Type: ebpf.SocketFilter, License: "GPL", Instructions: returnZero}
	for n := 0; ctx.Err() == nil; n++ {
		if rate > 0 {
			// Ahead of the rate: wait until the objects made so far are due.
			due := start.Add(time.Duration(float64(st.Objects()) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return st, nil
				case <-time.After(d):
				}
			}
		}
		s := &ring[n%churnWindow]
		if err := s.close(); err != nil {
			return st, fmt.Errorf("loadgen: releasing churned objects: %w", err)
		}
		spec := mapSpec(n, MapKinds[n%len(MapKinds)])
		spec.Name = ChurnName
		if s.m, err = ebpf.NewMap(spec); err != nil {
			return st, fmt.Errorf("loadgen: churn: creating a %s map: %w", spec.Type, err)
		}
		st.Maps++
		if s.p, err = ebpf.NewProgram(prog); err != nil {
			return st, fmt.Errorf("loadgen: churn: loading a program: %w", err)
		}
		st.Programs++
		if s.l, err = link.AttachIter(link.IterOptions{Program: iter}); err != nil {
			return st, fmt.Errorf("loadgen: churn: attaching an iterator link: %w", err)
		}
		st.Links++
	}
	return st, nil
}

// slowLinkTracepoint is where ChurnSlowLinks attaches: a tracepoint that
// fires only when a program is test-run (BPF_PROG_TEST_RUN), never on a
// hot path.
const slowLinkTracepoint = "bpf_test_finish"

// ChurnSlowLinks attaches and releases raw tracepoint links until ctx is
// done, one every interval (0: one after the other), and returns how many
// it attached. Attaching one takes milliseconds (the tracepoint is patched
// in), and meanwhile the kernel lists the link but does not let anyone open
// it: BPF_LINK_GET_FD_BY_ID answers EAGAIN, and a BPF link iterator shows it
// with ID 0, until bpf_link_settle(). Churn's iterator links, attached at
// once, are never seen in that state. The links are inert: bpf_test_finish
// fires only when a program is test-run.
//
// bpftool's listing of links fails while such a link exists: with an
// interval, other processes' bpftool gets through between two attachments.
func ChurnSlowLinks(ctx context.Context, interval time.Duration) (n int, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return 0, fmt.Errorf("loadgen: removing memlock limit: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: ChurnName, Type: ebpf.RawTracepoint, License: "GPL", Instructions: returnZero})
	if err != nil {
		return 0, fmt.Errorf("loadgen: loading the raw tracepoint program: %w", err)
	}
	defer prog.Close()
	for ctx.Err() == nil {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: slowLinkTracepoint, Program: prog})
		if err != nil {
			return n, fmt.Errorf("loadgen: attaching to raw tracepoint %s: %w", slowLinkTracepoint, err)
		}
		n++
		if err := l.Close(); err != nil {
			return n, fmt.Errorf("loadgen: releasing a raw tracepoint link: %w", err)
		}
		if interval > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}
	return n, nil
}
