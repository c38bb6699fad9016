package testutil

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestFeatureProbes: a probe answers from the running kernel, and a missing
// feature's message names it, what the kernel said and the matrix's prefix.
func TestFeatureProbes(t *testing.T) {
	RequireBPF(t)
	if !HasFeature(t, MapType("hash", ebpf.Hash, "3.19")) {
		t.Fatal("the kernel creates no hash map")
	}
	noFunc := Feature{Name: "f", Upstream: "9.9", probe: btfFunc("no_such_function_in_any_kernel")}
	if HasFeature(t, noFunc) {
		t.Fatal("a function no kernel has reported as present")
	}
	ok, why := probe(t, noFunc)
	msg := missing(noFunc, why)
	if ok || !strings.HasPrefix(msg, MissingPrefix+"f: the kernel's BTF has no function no_such_function_in_any_kernel (upstream Linux 9.9") {
		t.Errorf("message %q", msg)
	}
}
