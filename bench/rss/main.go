// Command rss measures the resident memory of an exporter in its steady
// state: it starts the command after "--" with "{addr}" in its arguments
// replaced by a free loopback address, waits until it has collected
// -cycles times (the value of -cycles-metric in its /metrics; without
// -cycles-metric, -cycles × -interval), scrapes /metrics -scrapes times,
// -interval apart, then reads /proc/<pid>/status and stops the command with
// SIGTERM. It prints one "key value" line per figure:
//
//	pid, cycles, scrapes, scrape_bytes (the last scrape's body),
//	vmrss_bytes, vmhwm_bytes (peak), rssanon_bytes, rssfile_bytes,
//	metric <name> (each -metric, from the last scrape; summed over series)
//
// Exit status: 0 when measured, 1 when the command failed or timed out,
// 2 for bad flags.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	cyclesMetric string
	cycles       int
	scrapes      int
	interval     time.Duration
	path         string
	metrics      multi
	timeout      time.Duration
	command      []string
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.cyclesMetric, "cycles-metric", "", "counter of completed collection cycles to wait on (empty: wait cycles×interval)")
	fs.IntVar(&o.cycles, "cycles", 5, "cycles to wait for before scraping")
	fs.IntVar(&o.scrapes, "scrapes", 5, "scrapes of /metrics before reading the memory")
	fs.DurationVar(&o.interval, "interval", time.Second, "time between scrapes (and between polls while waiting)")
	fs.StringVar(&o.path, "path", "/metrics", "telemetry path")
	fs.Var(&o.metrics, "metric", "metric whose value (summed over its series) to print from the last scrape; repeatable")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.command = fs.Args()
	if len(o.command) == 0 || o.cycles < 0 || o.scrapes < 1 || o.interval <= 0 {
		fmt.Fprintln(stderr, "rss: want -cycles >= 0, -scrapes >= 1, -interval > 0 and a command after --")
		return 2
	}
	if err := measure(o, stdout); err != nil {
		fmt.Fprintf(stderr, "rss: %v\n", err)
		return 1
	}
	return 0
}

// tail keeps the last bytes the command wrote on stderr, shown if it fails.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if n := len(t.buf); n > 16<<10 {
		t.buf = append(t.buf[:0], t.buf[n-16<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func measure(o options, w io.Writer) (err error) {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := make([]string, len(o.command)-1)
	for i, a := range o.command[1:] {
		args[i] = strings.ReplaceAll(a, "{addr}", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var errOut tail
	cmd := exec.Command(o.command[0], args...)
	cmd.Stdout, cmd.Stderr = io.Discard, &errOut
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if serr := stop(cmd, exited); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			err = fmt.Errorf("%w\n%s stderr (last lines):\n%s", err, o.command[0], errOut.String())
		}
	}()

	url := "http://" + addr + o.path
	client := &http.Client{Timeout: 30 * time.Second}
	var body []byte
	scrape := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return err
	}
	sleep := func(d time.Duration) error {
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited early: %v", o.command[0], err)
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v", o.timeout)
		case <-time.After(d):
			return nil
		}
	}

	// Wait for the cycles. Polls are scrapes too; they are not counted.
	cycles := 0
	if o.cyclesMetric == "" {
		if err := sleep(time.Duration(o.cycles) * o.interval); err != nil {
			return err
		}
		cycles = o.cycles
	} else {
		for {
			if scrape() == nil {
				if v, ok := metricValue(body, o.cyclesMetric); ok && int(v) >= o.cycles {
					cycles = int(v)
					break
				}
			}
			if err := sleep(o.interval / 4); err != nil {
				return err
			}
		}
	}
	for i := range o.scrapes {
		if i > 0 {
			if err := sleep(o.interval); err != nil {
				return err
			}
		}
		if err := scrape(); err != nil {
			return err
		}
	}
	status, err := readStatus(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "pid %d\ncycles %d\nscrapes %d\nscrape_bytes %d\n", cmd.Process.Pid, cycles, o.scrapes, len(body))
	for _, k := range []string{"VmRSS", "VmHWM", "RssAnon", "RssFile"} {
		fmt.Fprintf(w, "%s_bytes %d\n", strings.ToLower(k), status[k])
	}
	for _, m := range o.metrics {
		v, ok := metricValue(body, m)
		if !ok {
			return fmt.Errorf("metric %s not in the last scrape", m)
		}
		fmt.Fprintf(w, "metric %s %s\n", m, strconv.FormatFloat(v, 'f', -1, 64))
	}
	return nil
}

// stop sends SIGTERM to the command and waits for it, then SIGKILL after
// 10 s. A command that exits 0 on SIGTERM has stopped cleanly.
func stop(cmd *exec.Cmd, exited chan error) error {
	if cmd.ProcessState != nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("stopping %s: %w", cmd.Path, err)
		}
		return nil
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
		return errors.New("the command did not stop within 10s of SIGTERM: killed")
	}
}

// readStatus returns the kB fields of /proc/<pid>/status, in bytes.
func readStatus(pid int) (map[string]uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			m[k] = n << 10
		}
	}
	if m["VmRSS"] == 0 {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// metricValue sums the samples of metric name in a text exposition.
func metricValue(body []byte, name string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}
