// Command ebpf-metrics serves an exact, cheap and bounded picture of every
// eBPF map, program and link in the kernel on a Prometheus /metrics
// endpoint.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/ebpf-metrics/ebpf-metrics/internal/collector"
	"github.com/ebpf-metrics/ebpf-metrics/internal/config"
	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition"
	"github.com/ebpf-metrics/ebpf-metrics/internal/exposition/otlp"
	"github.com/ebpf-metrics/ebpf-metrics/internal/history"
	"github.com/ebpf-metrics/ebpf-metrics/internal/inventory"
	"github.com/ebpf-metrics/ebpf-metrics/internal/kernel"
	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
	"github.com/ebpf-metrics/ebpf-metrics/internal/warmup"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // could not start or run: privileges, kernel, listening
	exitUsage   = 2 // bad flags or configuration: nothing started
)

// shutdownGrace bounds the whole shutdown after SIGTERM/SIGINT: draining
// scrapes in flight, stopping the cycle, closing every fd.
const shutdownGrace = 800 * time.Millisecond

func main() {
	// No heap profile unless it is served (--web.enable-pprof): its
	// buckets grow to megabytes in a process that must stay small.
	runtime.MemProfileRate = 0
	stampVersion()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type flags struct {
	profile, configFile string
	configCheck, once   bool
	intervalFlag        string
	mode                string
	namespace, procfs   string
	listen              []string
	webConfig, path     string
	maxRequests         int
	scrapeTimeout       time.Duration
	pprof               bool
	log                 promslog.Config
	otlp                otlp.Flags
	otlpConfig          otlp.Config // checked by effectiveConfig
}

func parseFlags(args []string, stdout, stderr io.Writer) (*flags, int, bool) {
	f := &flags{log: promslog.Config{}}
	app := kingpin.New("ebpf-metrics", "Exports every eBPF map, program and link in the kernel, with their memory, to Prometheus.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("ebpf-metrics"))

	app.Flag("profile", "Resource profile: "+fmt.Sprint(config.Profiles())+".").
		Default(config.DefaultProfile).StringVar(&f.profile)
	app.Flag("config.file", "YAML file overriding the profile's settings; unknown keys are rejected.").
		StringVar(&f.configFile)
	app.Flag("config.check", "Validate flags and configuration, print the effective configuration and exit (0 valid, 2 invalid).").
		BoolVar(&f.configCheck)
	app.Flag("collection.interval", "Time between collection cycles, overriding the profile (minimum 100ms).").
		PlaceHolder("DURATION").StringVar(&f.intervalFlag)
	app.Flag("collection.mode", "How objects are read: auto, iterator or syscall (overrides the profile).").
		StringVar(&f.mode)
	app.Flag("once", "Run one collection, print it in the Prometheus text format on stdout, and exit.").
		BoolVar(&f.once)
	app.Flag("metrics.namespace", "Prefix of every metric name.").
		Default(exposition.DefaultNamespace).StringVar(&f.namespace)
	app.Flag("path.procfs", "Mount point of procfs: the agent's own (it reads <procfs>/self); checked at start.").
		Default("/proc").StringVar(&f.procfs)
	app.Flag("web.listen-address", "Address to listen on for the web interface and telemetry; repeatable.").
		Default(":9436").StringsVar(&f.listen)
	app.Flag("web.config.file", "Path to an exporter-toolkit web configuration file enabling TLS or authentication.").
		StringVar(&f.webConfig)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").
		Default("/metrics").StringVar(&f.path)
	app.Flag("web.max-requests", "Maximum number of scrapes served at once; more get 503 (0 means no limit).").
		Default("10").SetValue(&intFlag{"web.max-requests", &f.maxRequests})
	app.Flag("web.scrape-timeout", "Longest time to serve one scrape.").
		Default("10s").SetValue(&durationFlag{"web.scrape-timeout", &f.scrapeTimeout})
	app.Flag("web.enable-pprof", "Serve Go profiling under /debug/pprof/ on the metrics port.").
		BoolVar(&f.pprof)
	otlp.AddFlags(app, &f.otlp)
	promslogflag.AddFlags(app, &f.log)

	exited := false
	app.Terminate(func(int) { exited = true })
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
		return nil, exitUsage, true
	}
	if exited { // --help or --version
		return nil, exitOK, true
	}
	return f, 0, false
}

// intFlag and durationFlag parse a flag's value as kingpin's IntVar and
// DurationVar do, with an error that names the flag (kingpin's does not).
type intFlag struct {
	name string
	v    *int
}

func (f *intFlag) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("--%s: want an integer, got %q", f.name, s)
	}
	*f.v = v
	return nil
}

func (f *intFlag) String() string { return strconv.Itoa(*f.v) }

type durationFlag struct {
	name string
	v    *time.Duration
}

func (f *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("--%s: want a duration such as 10s, got %q", f.name, s)
	}
	*f.v = v
	return nil
}

func (f *durationFlag) String() string { return f.v.String() }

// effectiveConfig is the profile, then the file, then the flags, validated.
// It reports every problem at once: those of the file, of each flag, and of
// the values that result.
func (f *flags) effectiveConfig() (config.Config, error) {
	var errs []error
	cfg, err := config.Load(f.profile, f.configFile)
	if err != nil {
		errs = append(errs, err)
	}
	if f.intervalFlag != "" {
		if d, err := time.ParseDuration(f.intervalFlag); err != nil {
			errs = append(errs, fmt.Errorf("--collection.interval: %w", err))
		} else {
			cfg.CollectionInterval = d
		}
	}
	if f.mode != "" {
		cfg.CollectionMode = f.mode
	}
	if err := errors.Join(cfg.Validate(), inventory.CheckBudget(&cfg)); err != nil {
		errs = append(errs, err)
	}
	// Every mode reads procfs: fdinfo (syscall mode, and map memory the
	// iterator cannot compute), free fds before loading the iterators, and
	// the process metrics.
	if err := kernel.CheckProcFS(f.procfs); err != nil {
		errs = append(errs, fmt.Errorf("--path.procfs: %w", err))
	}
	if err := exposition.CheckNamespace(f.namespace); err != nil {
		errs = append(errs, fmt.Errorf("--metrics.namespace: %w", err))
	}
	// An empty namespace means the default, here once for every consumer.
	f.namespace = cmp.Or(f.namespace, exposition.DefaultNamespace)
	for _, a := range f.listen {
		if err := exposition.CheckListenAddress(a); err != nil {
			errs = append(errs, fmt.Errorf("--web.listen-address: %w", err))
		}
	}
	if err := exposition.CheckTelemetryPath(f.path); err != nil {
		errs = append(errs, fmt.Errorf("--web.telemetry-path: %w", err))
	}
	if f.webConfig != "" {
		if err := exposition.ValidateWebConfig(f.webConfig); err != nil {
			errs = append(errs, fmt.Errorf("--web.config.file %s: %w", f.webConfig, err))
		}
	}
	if f.maxRequests < 0 {
		errs = append(errs, fmt.Errorf("--web.max-requests: must not be negative, got %d", f.maxRequests))
	}
	if f.scrapeTimeout < 0 {
		errs = append(errs, fmt.Errorf("--web.scrape-timeout: must not be negative, got %v", f.scrapeTimeout))
	}
	if f.otlpConfig, err = f.otlp.Config(cfg.CollectionInterval); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

func run(args []string, stdout, stderr io.Writer) int {
	started := time.Now()
	f, code, exit := parseFlags(args, stdout, stderr)
	if exit {
		return code
	}
	cfg, err := f.effectiveConfig()
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-metrics: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if f.configCheck {
		fmt.Fprint(stdout, cfg.String())
		return exitOK
	}

	f.log.Writer = stderr
	logger := promslog.New(&f.log)
	// Scrapes are served from a cache that the collector has refreshed at
	// the end of each cycle: a scrape collects nothing and reads no file.
	// The registry it gathers from needs the collector, hence the late
	// binding.
	var reg *prometheus.Registry
	cache := exposition.NewCache(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return reg.Gather() }))
	// The history records a cycle before the cache gathers it: whatever
	// cycle /metrics shows, the history has it.
	var rec *history.Recorder
	var loaded time.Duration // start-up up to a collector ready to collect
	first := true            // touched by the cycle's goroutine only
	onPublish := func(s *snapshot.Snapshot) {
		rec.Record(s)
		cache.Notify()
		if first {
			first = false
			logger.Info("first collection published", "since_start", time.Since(started),
				"collector_ready", loaded, "first_cycle", time.Since(started)-loaded)
		}
	}
	if f.once {
		// Loading the BPF programs and a cycle touch some 8 MiB for the
		// first time: one madvise instead of ~2,000 page faults. Not for
		// the agent that serves: its tables, cut from those resident
		// pages, would be zeroed whole and stay resident (+10 MiB with
		// tables for every object), where fresh pages stay untouched
		// until used.
		if err := warmup.PrefaultHeap(warmup.StartupHeap); err != nil {
			logger.Debug("heap not prefaulted", "err", err)
		}
	}
	// Both --once and the agent's Run collect as soon as New returns.
	c, err := collector.New(collector.Options{Config: cfg, ProcFS: f.procfs, Logger: logger, OnPublish: onPublish,
		FirstCycle: true, BTF: warmup.TakeBTF()})
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
		return exitRuntime
	}
	// Every return closes the collector, but the shutdown's, which closes it
	// within the grace period and may leave without it.
	closeOnReturn := true
	defer func() {
		if closeOnReturn {
			c.Close()
		}
	}()
	loaded = time.Since(started)
	reg = exposition.NewRegistry(exposition.NewMetrics(c.Publisher(), f.namespace), f.namespace, f.procfs)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if f.once {
		if err := c.Cycle(ctx); err != nil {
			fmt.Fprintf(stderr, "ebpf-metrics: collection failed: %v\n", err)
			return exitRuntime
		}
		if err := exposition.WriteText(stdout, reg); err != nil {
			fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
			return exitRuntime
		}
		return exitOK
	}

	hist, recorder, err := newHistory(&cfg, f.namespace, reg)
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
		return exitRuntime
	}
	rec = recorder
	var push *otlp.Pusher
	if f.otlpConfig.Enabled() {
		if push, err = otlp.New(f.otlpConfig, cache, f.namespace, logger); err != nil {
			fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
			return exitRuntime
		}
		reg.MustRegister(push)
	}
	landing, routes := webRoutes(f, cache, hist)
	// The server binds its addresses before the first cycle starts: a
	// cycle opens an fd per object it reads, and under a tight
	// RLIMIT_NOFILE those must not take the listener's.
	srv, err := exposition.NewServer(exposition.ServerConfig{
		ListenAddresses:     f.listen,
		TelemetryPath:       f.path,
		WebConfigFile:       f.webConfig,
		MaxRequestsInFlight: f.maxRequests,
		ScrapeTimeout:       f.scrapeTimeout,
		EnablePprof:         f.pprof,
		Ready:               cache.Ready(exposition.SnapshotReady(c.Publisher())),
		Landing:             landing,
		Handlers:            routes,
	}, cache, logger)
	if err != nil {
		fmt.Fprintf(stderr, "ebpf-metrics: %v\n", err)
		return exitRuntime
	}
	// The first cycle runs beside the rest of start-up, with the holders
	// pass New took; its snapshot waits in the cache's notification until
	// the server is up. Any early return cancels ctx and closes c, which
	// waits for the cycle.
	go c.Run(ctx)
	debug.FreeOSMemory() // the kernel BTF parsed for loading, garbage now
	// The soft memory limit comes once the BPF programs are loaded: the
	// kernel's BTF, parsed for them, is garbage now, and the limit would
	// have made the collector run all along the loading.
	limitMemory(cfg.MaxMemoryBytes, f.pprof, logger)

	cache.Refresh()
	logger.Info("starting ebpf-metrics", "version", version.Info(), "profile", cfg.Profile,
		"mode", cfg.CollectionMode, "interval", cfg.CollectionInterval, "listen", f.listen)

	go cache.Run(ctx)
	if push != nil {
		push.Start()
		logger.Info("pushing OTLP", "endpoint", f.otlpConfig.Endpoint, "protocol", f.otlpConfig.Protocol,
			"interval", f.otlpConfig.Interval)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx) }()

	code = exitOK
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		if err != nil {
			logger.Error("web server failed", "err", err)
			code = exitRuntime
		}
		stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("web server shutdown", "err", err)
	}
	// Close stops the cycle in progress and waits for it before it releases
	// anything the cycle uses. If that takes longer than the grace, exit
	// without it: the process's exit releases every fd, and nothing is
	// closed under a running cycle.
	closeOnReturn = false
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-sctx.Done():
		logger.Warn("the collection cycle did not stop in time: exiting without waiting for it")
	}
	if push != nil { // a last push, in what is left of the grace
		if err := push.Shutdown(sctx); err != nil {
			logger.Warn("last OTLP push", "err", err)
		}
	}
	return code
}
