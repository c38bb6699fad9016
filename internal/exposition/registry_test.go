package exposition

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	agenttest "github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

func TestWriteTextRegistry(t *testing.T) {
	reg := NewRegistry(NewMetrics(publish(testSnapshot()), ""), "", "")
	var buf bytes.Buffer
	if err := WriteText(&buf, reg); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{
		"\nodigos_ebpf_objects{type=\"map\"} 3\n",
		"\n# TYPE odigos_ebpf_build_info gauge\n",
		"\n# TYPE go_goroutines gauge\n",
		"\n# TYPE process_resident_memory_bytes gauge\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("WriteText output lacks %q", want)
		}
	}
	if strings.Contains(text, "# EOF") {
		t.Error("WriteText wrote OpenMetrics, want the Prometheus text format")
	}
}

type failingGatherer struct{ mfs []*dto.MetricFamily }

func (f failingGatherer) Gather() ([]*dto.MetricFamily, error) {
	return f.mfs, errors.New("collector exploded")
}

func TestWriteTextPartial(t *testing.T) {
	mfs, err := NewRegistry(NewMetrics(publish(testSnapshot()), ""), "", "").Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = WriteText(&buf, failingGatherer{mfs})
	if err == nil || !strings.Contains(err.Error(), "collector exploded") {
		t.Fatalf("WriteText error = %v, want the gathering error", err)
	}
	if !strings.Contains(buf.String(), "odigos_ebpf_objects") {
		t.Error("WriteText dropped what was gathered before the error")
	}
}

func TestNewRegistryNamespace(t *testing.T) {
	reg := NewRegistry(NewMetrics(publish(testSnapshot()), "node_bpf"), "node_bpf", "")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	all := strings.Join(names, " ")
	if !strings.Contains(all, "node_bpf_build_info") || !strings.Contains(all, "node_bpf_objects") {
		t.Errorf("metric names %v lack node_bpf_build_info or node_bpf_objects", names)
	}
	if strings.Contains(all, "odigos_ebpf") {
		t.Errorf("metric names %v still use the default namespace", names)
	}
	// Never the global registry.
	if reg == prometheus.DefaultRegisterer {
		t.Error("NewRegistry returned the default registry")
	}
}

// TestPromtoolCheckMetrics runs promtool's linter on everything the agent
// exposes. CI installs promtool (Debian package prometheus) and fails
// without it.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if agenttest.InCI() {
			t.Fatal("promtool is not on PATH; CI must install it (Debian package prometheus)")
		}
		t.Skip("promtool is not on PATH")
	}
	var text bytes.Buffer
	if err := WriteText(&text, NewRegistry(NewMetrics(publish(testSnapshot()), ""), "", "")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
