package warmup

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestStartParsesTheKernelBTF: for the agent's arguments, start returns a
// cache whose kernel BTF is parsed or being parsed, and the kernel's types
// are there; for arguments that load nothing, and in a test binary, none.
func TestStartParsesTheKernelBTF(t *testing.T) {
	c := start([]string{"/usr/bin/ebpf-metrics", "--web.listen-address=:9435"})
	if c == nil {
		t.Fatal("no parse started for the agent's arguments")
	}
	spec, err := c.Kernel()
	if errors.Is(err, btf.ErrNotSupported) {
		t.Skipf("missing kernel feature: BTF (/sys/kernel/btf/vmlinux): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var s *btf.Struct
	if err := spec.TypeByName("bpf_map", &s); err != nil {
		t.Errorf("the parsed BTF has no struct bpf_map: %v", err)
	}
	for _, args := range [][]string{
		{"ebpf-metrics", "--version"},
		{"ebpf-metrics", "--config.check"},
		{"ebpf-metrics", "-h"},
		{"/tmp/go-build1/b001/warmup.test", "-test.run=X"},
	} {
		if start(args) != nil {
			t.Errorf("%q: a parse was started", args)
		}
	}
	if TakeBTF() != nil {
		t.Error("TakeBTF in a test binary: a cache")
	}
}
