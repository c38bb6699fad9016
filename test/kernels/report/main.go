// Command report reads what the kernel matrix's guest (or the host run)
// wrote — the output of each test binary run with -test.v=test2json,
// framed by "@@@" lines — and prints one summary line per kernel:
//
//	kernel 6.1.0-56-cloud-amd64: 60 passed, 0 failed, 3 skipped (TestX: element counts (...): the kernel's BTF has no function ...; ...) [kernel 9s, collector 41s, e2e 17s]
//
// preceded by the output of every failed test. A skip counts as a failure
// unless it names a kernel feature that the running kernel lacks
// ("missing kernel feature: ..."): in the guests every other prerequisite
// (root, bpftool, setpriv) is present, and CI is set. A test binary that
// exits non-zero without a failed test (a panic, a timeout), a suite that
// never ended (the guest crashed or hung) and a missing suite are failures
// too. It exits 1 if anything failed.
//
// The framing, one line each, written by test/kernels/init.sh and run.sh:
//
//	@@@ kernel <release>
//	@@@ suites <name> <name>...
//	@@@ begin <name>
//	<test binary output>
//	@@@ end <name> rc=<exit code> secs=<seconds>
//	@@@ done
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	log := flag.String("log", "", "the guest's result stream")
	label := flag.String("label", "", "name of the run in the summary (default: the kernel release it reports)")
	flag.Parse()
	if *log == "" {
		fmt.Fprintln(os.Stderr, "usage: report -log FILE [-label NAME]")
		os.Exit(2)
	}
	data, err := os.ReadFile(*log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	run, err := parseRun(data, test2json)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *label != "" {
		run.kernel = *label
	}
	failed := run.write(os.Stdout)
	if failed {
		os.Exit(1)
	}
}

// event is one line of go tool test2json's output.
type event struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// test2json converts the -test.v=test2json output of one binary to events.
func test2json(raw []byte) ([]event, error) {
	cmd := exec.Command("go", "tool", "test2json")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w", err)
	}
	var events []event
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var e event
		if err := dec.Decode(&e); err == io.EOF {
			return events, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding test2json: %w", err)
		}
		events = append(events, e)
	}
}

// suite is one test binary's run.
type suite struct {
	name   string
	raw    []byte
	ended  bool
	rc     int
	secs   int
	tests  map[string]*result
	order  []string
	parent map[string]bool // tests that have subtests
}

type result struct {
	action string // pass, fail, skip
	output []string
}

// run is everything one kernel reported.
type run struct {
	kernel string
	want   []string // the suites announced
	suites []*suite
	done   bool
}

// parseRun splits the stream into suites and decodes each with conv.
func parseRun(data []byte, conv func([]byte) ([]event, error)) (*run, error) {
	r := &run{}
	var cur *suite
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "@@@" {
			if cur != nil {
				cur.raw = append(append(cur.raw, line...), '\n')
			}
			continue
		}
		switch {
		case len(fields) >= 3 && fields[1] == "kernel":
			r.kernel = fields[2]
		case len(fields) >= 2 && fields[1] == "suites":
			r.want = fields[2:]
		case len(fields) >= 3 && fields[1] == "begin":
			cur = &suite{name: fields[2]}
			r.suites = append(r.suites, cur)
		case len(fields) >= 3 && fields[1] == "end" && cur != nil:
			cur.ended = true
			for _, f := range fields[3:] {
				k, v, _ := strings.Cut(f, "=")
				n, _ := strconv.Atoi(v)
				switch k {
				case "rc":
					cur.rc = n
				case "secs":
					cur.secs = n
				}
			}
			cur = nil
		case len(fields) >= 2 && fields[1] == "done":
			r.done = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if r.kernel == "" {
		r.kernel = "unknown kernel"
	}
	for _, s := range r.suites {
		events, err := conv(s.raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		s.collect(events)
	}
	return r, nil
}

func (s *suite) collect(events []event) {
	s.tests = map[string]*result{}
	s.parent = map[string]bool{}
	for _, e := range events {
		if e.Test == "" {
			continue
		}
		if i := strings.LastIndex(e.Test, "/"); i > 0 {
			s.parent[e.Test[:i]] = true
		}
		t := s.tests[e.Test]
		if t == nil {
			t = &result{}
			s.tests[e.Test] = t
			s.order = append(s.order, e.Test)
		}
		switch e.Action {
		case "output":
			t.output = append(t.output, e.Output)
		case "pass", "fail", "skip":
			t.action = e.Action
		}
	}
}

// featureSkip is how a skip for a missing kernel feature starts
// (testutil.MissingPrefix); the kernel it ran on, which the summary line
// names once, ends it.
var (
	featureSkip = regexp.MustCompile(`^missing kernel feature: `)
	running     = regexp.MustCompile(`; running [^)]*\)$`)
)

// skipReason is the message a test skipped with: its last line of output
// that is not test2json's framing, without the file:line prefix.
func skipReason(out []string) string {
	for i := len(out) - 1; i >= 0; i-- {
		l := strings.TrimSpace(out[i])
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		if _, rest, ok := strings.Cut(l, ".go:"); ok {
			if _, msg, ok := strings.Cut(rest, ": "); ok {
				return msg
			}
		}
		return l
	}
	return "no reason given"
}

// write prints the failures and the summary line, and reports whether the
// kernel failed.
func (r *run) write(w io.Writer) bool {
	var passed, failed, skipped int
	var skips, problems, times []string
	seen := map[string]bool{}
	for _, s := range r.suites {
		seen[s.name] = true
		times = append(times, fmt.Sprintf("%s %ds", s.name, s.secs))
		suiteFailed := false
		for _, name := range s.order {
			t := s.tests[name]
			if s.parent[name] && t.action != "fail" {
				continue // counted through its subtests
			}
			if s.parent[name] && t.action == "fail" && s.anySubFailed(name) {
				continue
			}
			switch t.action {
			case "pass":
				passed++
			case "skip":
				reason := skipReason(t.output)
				if featureSkip.MatchString(reason) {
					skipped++
					skips = append(skips, name+": "+running.ReplaceAllString(featureSkip.ReplaceAllString(reason, ""), ")"))
					break
				}
				failed++
				suiteFailed = true
				problems = append(problems, fmt.Sprintf("%s %s: skipped without naming a missing kernel feature: %s", s.name, name, reason))
			case "fail":
				failed++
				suiteFailed = true
				problems = append(problems, fmt.Sprintf("%s %s failed:\n%s", s.name, name, indent(t.output)))
			default:
				failed++
				suiteFailed = true
				problems = append(problems, fmt.Sprintf("%s %s never ended:\n%s", s.name, name, indent(t.output)))
			}
		}
		switch {
		case !s.ended:
			failed++
			problems = append(problems, fmt.Sprintf("%s: the suite never ended (the guest crashed, hung or timed out); last output:\n%s", s.name, tail(s.raw, 30)))
		case s.rc != 0 && !suiteFailed:
			failed++
			problems = append(problems, fmt.Sprintf("%s: exited with %d without a failed test; last output:\n%s", s.name, s.rc, tail(s.raw, 30)))
		}
	}
	for _, name := range r.want {
		if !seen[name] {
			failed++
			problems = append(problems, fmt.Sprintf("%s: never ran", name))
		}
	}
	if len(r.want) == 0 {
		failed++
		problems = append(problems, "no suite announced: the guest never started its tests")
	}
	for _, p := range problems {
		fmt.Fprintf(w, "FAIL kernel %s: %s\n", r.kernel, p)
	}
	line := fmt.Sprintf("kernel %s: %d passed, %d failed, %d skipped", r.kernel, passed, failed, skipped)
	if len(skips) > 0 {
		line += " (" + strings.Join(skips, "; ") + ")"
	}
	line += " [" + strings.Join(times, ", ") + "]"
	fmt.Fprintln(w, line)
	return failed > 0
}

func (s *suite) anySubFailed(name string) bool {
	return slices.ContainsFunc(s.order, func(sub string) bool {
		return strings.HasPrefix(sub, name+"/") && s.tests[sub].action == "fail"
	})
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "=== RUN") {
			continue
		}
		b.WriteString("    " + strings.TrimRight(l, "\n") + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

func tail(raw []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		// test2json framing bytes (^V) are not for the log.
		lines[i] = "    " + strings.ReplaceAll(l, "\x16", "")
	}
	return strings.Join(lines, "\n")
}
