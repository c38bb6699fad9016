package owner

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil/holder"
)

// reportEnv asks this binary, run again as another user, for the holdings
// of one process: "<iter|proc>:<pid>".
const reportEnv = "EBPF_METRICS_TEST_OWNER_REPORT"

func TestMain(m *testing.M) {
	// The tests run this binary again: as the process that holds, and as
	// an unprivileged reader.
	holder.RunIfChild()
	if r := os.Getenv(reportEnv); r != "" {
		os.Exit(report(r))
	}
	os.Exit(m.Run())
}

// reported is one line of report's output: a holding, or the pass.
type reported struct {
	Holding *reportedHolding `json:"holding,omitempty"`
	Pass    *Pass            `json:"pass,omitempty"`
}

type reportedHolding struct {
	Kind      kernel.Kind `json:"kind"`
	ID        uint32      `json:"id"`
	PID       uint32      `json:"pid"`
	Comm      string      `json:"comm"`
	Container string      `json:"container"`
	Pod       string      `json:"pod"`
	Self      bool        `json:"self"`
}

// report prints, as JSON lines, the holdings of one process that one pass
// of the source finds, then the pass.
func report(arg string) int {
	mode, pidText, _ := strings.Cut(arg, ":")
	pid, err := strconv.ParseUint(pidText, 10, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var src Source
	switch mode {
	case "iter":
		h, err := kernel.LoadHolders(&countingGate{}, "/proc", kernel.HolderOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer h.Close()
		src, err = NewIter(h, "/proc", &countingGate{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "proc":
		src, err = NewProc("/proc", &countingGate{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown source %q\n", mode)
		return 2
	}
	defer src.Close()
	enc := json.NewEncoder(os.Stdout)
	hs, pass, err := collect(src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, h := range hs {
		if h.Process.PID == uint32(pid) {
			enc.Encode(reported{Holding: toReported(h)})
		}
	}
	enc.Encode(reported{Pass: &pass})
	return 0
}

func toReported(h Holding) *reportedHolding {
	return &reportedHolding{Kind: h.Kind, ID: h.ID, PID: h.Process.PID, Comm: h.Process.CommString(),
		Container: h.Process.ContainerID, Pod: h.Process.PodUID, Self: h.Process.Self}
}

// collect runs one pass of src.
func collect(src Source) ([]Holding, Pass, error) {
	if err := src.Begin(); err != nil {
		return nil, Pass{}, err
	}
	var hs []Holding
	for {
		var h Holding
		err := src.Next(&h)
		if err == kernel.ErrEndOfList {
			break
		}
		if err != nil {
			src.End()
			return nil, Pass{}, err
		}
		hs = append(hs, h)
	}
	pass, err := src.End()
	return hs, pass, err
}

// countingGate admits everything and counts calls.
type countingGate struct{ calls, failures [kernel.NumOps]int }

func (g *countingGate) Acquire(kernel.Op) error { return nil }
func (g *countingGate) Release(op kernel.Op, _ kernel.Kind, _ uint32, err error) {
	g.calls[op]++
	if err != nil {
		g.failures[op]++
	}
}
