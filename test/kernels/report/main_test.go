package main

import (
	"strings"
	"testing"
)

// events builds the test2json events of one suite from "action test
// [output]" lines.
func events(lines ...string) []event {
	var out []event
	for _, l := range lines {
		action, rest, _ := strings.Cut(l, " ")
		test, output, _ := strings.Cut(rest, " ")
		if action == "output" {
			out = append(out, event{Action: "output", Test: test, Output: "    x_test.go:12: " + output + "\n"})
			continue
		}
		out = append(out, event{Action: action, Test: test})
	}
	return out
}

func TestReport(t *testing.T) {
	stream := strings.Join([]string{
		"@@@ kernel 6.1.0-56-cloud-amd64",
		"@@@ suites kernel collector e2e",
		"@@@ begin kernel",
		"raw kernel",
		"@@@ end kernel rc=1 secs=9",
		"@@@ begin collector",
		"raw collector",
		"@@@ end collector rc=0 secs=40",
		"@@@ begin e2e",
		"raw e2e",
		"@@@ done",
	}, "\r\n")
	conv := func(raw []byte) ([]event, error) {
		switch strings.TrimSpace(string(raw)) {
		case "raw kernel":
			return events(
				"pass TestA",
				"output TestMaps/arena missing kernel feature: arena maps: this kernel does not know the map type (upstream Linux 6.9 and later have it; running 6.1.0-56-cloud-amd64)",
				"skip TestMaps/arena",
				"pass TestMaps/hash",
				"output TestMaps/queue memory 1, fdinfo 2",
				"fail TestMaps/queue",
				"fail TestMaps",
				"output TestB bpftool not found",
				"skip TestB",
			), nil
		case "raw collector":
			return events("pass TestKernelX", "output TestKernelY missing kernel feature: map memory: the kernel's BTF has no member x", "skip TestKernelY"), nil
		}
		return events("pass TestAgent/auto"), nil
	}
	r, err := parseRun([]byte(stream), conv)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if !r.write(&b) {
		t.Error("a failed test and an unexplained skip: want failed")
	}
	out := b.String()
	for _, want := range []string{
		"FAIL kernel 6.1.0-56-cloud-amd64: kernel TestMaps/queue failed:\n        x_test.go:12: memory 1, fdinfo 2",
		"kernel TestB: skipped without naming a missing kernel feature: bpftool not found",
		"e2e: the suite never ended",
		"kernel 6.1.0-56-cloud-amd64: 4 passed, 3 failed, 2 skipped (TestMaps/arena: arena maps: this kernel does not know the map type (upstream Linux 6.9 and later have it); TestKernelY: map memory: the kernel's BTF has no member x) [kernel 9s, collector 40s, e2e 0s]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "TestMaps failed") {
		t.Errorf("a parent failing through its subtest is counted twice:\n%s", out)
	}
}

func TestReportNothingRan(t *testing.T) {
	r, err := parseRun([]byte("kernel panic\n"), func([]byte) ([]event, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if !r.write(&b) || !strings.Contains(b.String(), "never started") {
		t.Errorf("a guest that ran nothing must fail:\n%s", b.String())
	}
}
