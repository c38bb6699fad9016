package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ebpf-metrics/ebpf-metrics/internal/warmup"
)

// envFaultChild makes the test binary a fresh process that allocates 4 MiB
// in small objects, after warmup.PrefaultHeap or not ("prefault", "none"), and
// prints its minor page faults while allocating.
const envFaultChild = "EBPF_METRICS_TEST_FAULT_CHILD"

// faultChildIfAsked returns only when this process is not such a child.
func faultChildIfAsked() {
	mode, ok := os.LookupEnv(envFaultChild)
	if !ok {
		return
	}
	if mode == "prefault" {
		if err := warmup.PrefaultHeap(warmup.StartupHeap); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(0)
		}
	}
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	before := ru.Minflt
	keep := make([][]byte, 0, 1<<16)
	for range 1 << 16 {
		keep = append(keep, make([]byte, 64))
	}
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	fmt.Printf("faults %d %d\n", ru.Minflt-before, len(keep))
	os.Exit(0)
}

func childFaults(t *testing.T, mode string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFaultChild+"="+mode)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s child: %v", mode, err)
	}
	f := strings.Fields(string(out))
	if len(f) >= 2 && f[0] == "error" {
		if strings.Contains(string(out), unix.EINVAL.Error()) {
			t.Skipf("missing kernel feature: madvise(MADV_POPULATE_WRITE) (Linux 5.14): %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("%s child: %s", mode, out)
	}
	if len(f) < 2 || f[0] != "faults" {
		t.Fatalf("%s child printed %q", mode, out)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPrefaultHeapSavesPageFaults: in a fresh process, 4 MiB of small
// objects (1,024 pages) allocated after warmup.PrefaultHeap take at least
// 768 fewer page faults than without it. A difference, not a ratio: under
// the race detector each allocation also faults in its shadow memory,
// which prefaulting the heap does not touch.
func TestPrefaultHeapSavesPageFaults(t *testing.T) {
	none, pre := childFaults(t, "none"), childFaults(t, "prefault")
	t.Logf("minor faults allocating 4 MiB: %d without prefaulting, %d after", none, pre)
	const pages = 4 << 20 >> 12
	if none < pages*3/4 {
		t.Fatalf("without prefaulting, 4 MiB of new objects took %d page faults: the measure shows nothing", none)
	}
	if none-pre < pages*3/4 {
		t.Errorf("after warmup.PrefaultHeap: %d page faults, against %d without: %d saved, want %d or more",
			pre, none, none-pre, pages*3/4)
	}
}
