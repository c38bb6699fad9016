// Command ebpf-loadgen creates a known population of inert eBPF maps,
// programs and links, prints one JSON line on stdout when it is ready, and
// holds the population until SIGINT or SIGTERM, when it releases all of it
// and exits 0.
//
// Exit status: 0 after a clean release, 1 when creating or releasing fails,
// 2 for invalid flags (the message names the flag).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/ebpf-metrics/ebpf-metrics/internal/loadgen"
)

// ready is the JSON line printed on stdout once the population exists.
type ready struct {
	Ready bool `json:"ready"`
	PID   int  `json:"pid"`
	Maps  int  `json:"maps"`
	// Programs counts the socket filter programs asked for with --programs;
	// the helper program is not among them nor in ProgramIDs.
	Programs int `json:"programs"`
	Links    int `json:"links"`
	// HelperPrograms is the number of programs loaded beyond --programs: the
	// one iterator program every link uses, when --links > 0.
	HelperPrograms int     `json:"helper_programs"`
	Fill           float64 `json:"fill"`
	// MemlockBytes sums fdinfo memlock over the maps, programs and helper
	// program at the time of the line.
	MemlockBytes     uint64   `json:"memlock_bytes"`
	MapIDs           []uint32 `json:"map_ids"`
	ProgramIDs       []uint32 `json:"program_ids"`
	HelperProgramIDs []uint32 `json:"helper_program_ids"`
	LinkIDs          []uint32 `json:"link_ids"`
	CreateSeconds    float64  `json:"create_seconds"`
	// HolderPIDs are the processes holding the population, with
	// --processes; MemlockBytes is then as of spreading it.
	HolderPIDs []int `json:"holder_pids,omitempty"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("ebpf-loadgen",
		"Creates inert eBPF maps, programs and links, prints one JSON line when they exist, "+
			"and holds them until SIGINT or SIGTERM.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	terminated := -1
	app.Terminate(func(code int) { terminated = code })
	var spec loadgen.Spec
	app.Flag("maps", "Number of maps, a fixed cycle of 10 map types.").
		Default("0").SetValue(&countFlag{"maps", &spec.Maps})
	app.Flag("programs", "Number of socket filter programs (never attached).").
		Default("0").SetValue(&countFlag{"programs", &spec.Programs})
	app.Flag("links", "Number of BPF iterator links (inert; they share one extra helper program).").
		Default("0").SetValue(&countFlag{"links", &spec.Links})
	app.Flag("fill", "Fraction 0..1 of max_entries written into each hash, array and LPM trie map.").
		Default("0").SetValue(&fillFlag{&spec.Fill})
	app.Flag("processes", "Spread the objects over this many sleep(1) processes, each object held by one "+
		"of them and not by ebpf-loadgen (0: ebpf-loadgen holds them all).").
		Default("0").SetValue(&countFlag{"processes", &spec.Processes})
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: %v\n", err)
		return 2
	}
	if terminated >= 0 { // --help
		return terminated
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return hold(ctx, spec, stdout, stderr)
}

// countFlag is a flag holding a number of objects: a whole number, 0 or more.
type countFlag struct {
	name string
	n    *int
}

func (f *countFlag) String() string { return strconv.Itoa(*f.n) }

func (f *countFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("--%s must be a whole number, 0 or more, got %q", f.name, s)
	}
	*f.n = n
	return nil
}

// fillFlag is --fill: a fraction between 0 and 1.
type fillFlag struct{ fill *float64 }

func (f *fillFlag) String() string { return strconv.FormatFloat(*f.fill, 'g', -1, 64) }

func (f *fillFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v <= 1) {
		return fmt.Errorf("--fill must be a number between 0 and 1, got %q", s)
	}
	*f.fill = v
	return nil
}

// hold creates the population, reports it, waits for ctx, and releases it.
func hold(ctx context.Context, spec loadgen.Spec, stdout, stderr io.Writer) int {
	start := time.Now()
	p, err := loadgen.Create(spec)
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: %v\n", err)
		return 1
	}
	createSeconds := time.Since(start).Seconds()
	code := report(p, spec, createSeconds, stdout, stderr)
	if code == 0 {
		<-ctx.Done()
	}
	start = time.Now()
	if err := p.Close(); err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: releasing: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "ebpf-loadgen: released %d maps, %d programs, %d links in %.3fs\n",
		spec.Maps, spec.Programs+len(p.HelperProgramIDs()), spec.Links, time.Since(start).Seconds())
	return code
}

func report(p *loadgen.Population, spec loadgen.Spec, createSeconds float64, stdout, stderr io.Writer) int {
	memlock, err := p.MemlockBytes()
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: %v\n", err)
		return 1
	}
	line, err := json.Marshal(ready{
		Ready:            true,
		PID:              os.Getpid(),
		Maps:             spec.Maps,
		Programs:         spec.Programs,
		Links:            spec.Links,
		HelperPrograms:   len(p.HelperProgramIDs()),
		Fill:             spec.Fill,
		MemlockBytes:     memlock,
		MapIDs:           p.MapIDs(),
		ProgramIDs:       p.ProgramIDs(),
		HelperProgramIDs: p.HelperProgramIDs(),
		LinkIDs:          p.LinkIDs(),
		CreateSeconds:    createSeconds,
		HolderPIDs:       p.HolderPIDs(),
	})
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: encoding the ready line: %v\n", err)
		return 1
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		fmt.Fprintf(stderr, "ebpf-loadgen: writing the ready line: %v\n", err)
		return 1
	}
	return 0
}
