package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen/bpftool"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

// churnLeft returns the IDs of the maps and programs named ChurnName that
// bpftool lists, once the kernel has freed what it will (or releaseTimeout
// has passed).
func churnLeft(t *testing.T) (maps, progs []uint32) {
	t.Helper()
	deadline := time.Now().Add(releaseTimeout)
	for {
		maps, progs = nil, nil
		for kind, ids := range map[bpftool.Kind]*[]uint32{bpftool.Map: &maps, bpftool.Program: &progs} {
			objs, err := bpftool.Show(kind)
			if err != nil {
				t.Fatal(err)
			}
			for id, o := range objs {
				if o.Name == ChurnName {
					*ids = append(*ids, id)
				}
			}
		}
		if len(maps)+len(progs) == 0 || time.Now().After(deadline) {
			return maps, progs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmBTF parses the kernel's BTF, which cilium/ebpf keeps: the first
// iterator program of a test binary costs that parse (hundreds of
// milliseconds under -race on a busy machine), which is not churn.
func warmBTF(t *testing.T) {
	t.Helper()
	if _, err := btf.LoadKernelSpec(); err != nil {
		t.Fatal(err)
	}
}

// TestChurn runs Churn flat out for half a second: it creates objects of
// every kind at well over 1,000 objects per second, and releases every one
// of them, fds included.
func TestChurn(t *testing.T) {
	testutil.RequireBPF(t)
	fdsBefore, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	warmBTF(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := Churn(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d maps, %d programs, %d links in %v: %.0f objects/s", st.Maps, st.Programs, st.Links, st.Elapsed, st.Rate())
	if st.Maps == 0 || st.Links != st.Maps || st.Programs != st.Maps+1 {
		t.Errorf("stats %+v: want as many maps as links, and one program more (the iterator program)", st)
	}
	if st.Elapsed < 100*time.Millisecond || st.Elapsed > 2*time.Second {
		t.Errorf("churned for %v of a 500ms context", st.Elapsed)
	}
	if st.Rate() < 1000 {
		t.Errorf("%.0f objects/s, want at least 1000", st.Rate())
	}
	if fds, err := openFDs(); err != nil {
		t.Error(err)
	} else if fds > fdsBefore {
		t.Errorf("%d file descriptors open after Churn, %d before", fds, fdsBefore)
	}
	if maps, progs := churnLeft(t); len(maps)+len(progs) > 0 {
		t.Errorf("still in the kernel %v after Churn returned: maps %v, programs %v", releaseTimeout, maps, progs)
	}
}

// TestChurnRate holds Churn to a rate.
func TestChurnRate(t *testing.T) {
	testutil.RequireBPF(t)
	warmBTF(t)
	const rate = 400
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := Churn(ctx, rate)
	if err != nil {
		t.Fatal(err)
	}
	// At most what the rate allows over the churn (plus the step in flight
	// and the iterator program); at least half of it, even on a busy machine.
	if max := int(rate*st.Elapsed.Seconds()) + 4; st.Objects() > max {
		t.Errorf("%d objects in %v at %d/s: more than %d", st.Objects(), st.Elapsed, rate, max)
	}
	if min := int(rate*st.Elapsed.Seconds()/2) - 3; st.Objects() < min {
		t.Errorf("%d objects in %v at %d/s: fewer than %d", st.Objects(), st.Elapsed, rate, min)
	}
	if _, err := Churn(context.Background(), -1); err == nil {
		t.Error("a negative rate was accepted")
	}
}

// TestChurnSlowLinks attaches raw tracepoint links for half a second, one
// every 50 ms, and leaves nothing behind.
func TestChurnSlowLinks(t *testing.T) {
	testutil.RequireBPF(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	n, err := ChurnSlowLinks(ctx, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d raw tracepoint links attached and released in 500ms", n)
	if n == 0 || n > 11 {
		t.Errorf("%d links attached in 500ms, one every 50ms", n)
	}
	if maps, progs := churnLeft(t); len(maps)+len(progs) > 0 {
		t.Errorf("still in the kernel %v after ChurnSlowLinks returned: programs %v", releaseTimeout, progs)
	}
}
