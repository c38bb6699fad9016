package exposition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/ebpf-metrics/ebpf-metrics/internal/snapshot"
)

// Defaults of the ServerConfig fields left at their zero value.
const (
	DefaultTelemetryPath = "/metrics"
	DefaultScrapeTimeout = 10 * time.Second
)

// Limits of the HTTP server, the defaults of the ServerConfig timeouts. The
// write timeout is the scrape timeout plus writeTimeoutMargin, so that a
// scrape cut by the scrape timeout still gets its 503 written.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	maxHeaderBytes           = 64 << 10
	writeTimeoutMargin       = 5 * time.Second
	// pprofWriteTimeout replaces a shorter write timeout when pprof is on:
	// a CPU profile runs 30 s by default (60 s from the landing page) and
	// net/http/pprof refuses one that would outlast the write timeout.
	pprofWriteTimeout = 90 * time.Second
)

// ServerConfig configures the HTTP server. Zero values take the defaults
// above.
type ServerConfig struct {
	// ListenAddresses are TCP addresses to listen on (--web.listen-address,
	// repeatable), e.g. ":9435". At least one is required.
	ListenAddresses []string
	// TelemetryPath is where the metrics are served (--web.telemetry-path):
	// an absolute, clean path of [A-Za-z0-9._~/-], outside /-/, /debug/,
	// /api/ and /static/.
	TelemetryPath string
	// WebConfigFile is an exporter-toolkit web configuration file
	// (--web.config.file: TLS, basic auth, headers, rate limit); "" serves
	// plain HTTP. It is validated by NewServer, and its TLS files are read
	// again on every new connection.
	WebConfigFile string
	// MaxRequestsInFlight bounds concurrent scrapes; over it, scrapes are
	// answered 503 at once. 0 means no limit, as in node_exporter.
	MaxRequestsInFlight int
	// ScrapeTimeout bounds the time to gather and encode the metrics; past
	// it, the scrape is answered 503. <= 0 means DefaultScrapeTimeout. (A
	// scrape served from a Cache gathers and encodes nothing.)
	ScrapeTimeout time.Duration
	// ReadHeaderTimeout bounds the time a client takes to send a request's
	// headers, from the moment the server starts reading them: a client
	// that trickles them byte by byte, or never ends them, is cut off then.
	// <= 0 means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time to read a whole request, body included.
	// <= 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's headers to
	// the end of its response: a client that reads the response too slowly
	// is cut off then. <= 0 means ScrapeTimeout plus 5s, and at least 90s
	// with EnablePprof (a CPU profile runs 30s by default).
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection may wait for its
	// next request. <= 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// EnablePprof mounts net/http/pprof under /debug/pprof/ (on the
	// server's own mux: never on http.DefaultServeMux).
	EnablePprof bool
	// Ready answers /-/ready: 200 when it returns true, 503 otherwise. nil
	// means always ready. SnapshotReady(pub) is ready once a cycle has
	// completed.
	Ready func() bool
	// Landing, if set, replaces the exporter-toolkit landing page at /
	// (the status page). It is not served when TelemetryPath is /.
	Landing http.Handler
	// Handlers are served beside the metrics, behind the same TLS and
	// authentication, each on its http.ServeMux pattern ("GET
	// /api/v1/history"). A pattern that conflicts with another is an error
	// of NewServer.
	Handlers map[string]http.Handler
}

// SnapshotReady returns a ServerConfig.Ready that reports whether pub holds
// the snapshot of a complete cycle.
func SnapshotReady(pub *snapshot.Publisher) func() bool {
	return pub.Valid
}

func (cfg *ServerConfig) setDefaults() {
	if cfg.TelemetryPath == "" {
		cfg.TelemetryPath = DefaultTelemetryPath
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = DefaultScrapeTimeout
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = cfg.ScrapeTimeout + writeTimeoutMargin
		if cfg.EnablePprof {
			cfg.WriteTimeout = max(cfg.WriteTimeout, pprofWriteTimeout)
		}
	}
}

// Server serves the metrics, a landing page, /-/healthy, /-/ready and, if
// enabled, pprof, on every listen address.
type Server struct {
	logger    *slog.Logger
	flags     web.FlagConfig
	drain     time.Duration // how long Serve waits for requests in flight when its context ends
	listeners []net.Listener
	// One http.Server per listener: with a web configuration file,
	// web.Serve wraps server.Handler, so listeners cannot share a server.
	servers []*http.Server
	serving atomic.Bool
}

// NewServer validates cfg, builds the handlers and binds the listen
// addresses (so that Addrs is known before Serve). g is what /metrics
// serves: give it a Cache, so that a scrape only copies bytes encoded at
// the last refresh; any other Gatherer is gathered and encoded at every
// scrape. Every scrape also carries the promhttp_metric_handler_* series
// about the scrapes themselves, live. logger nil discards logs.
func NewServer(cfg ServerConfig, g prometheus.Gatherer, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ValidateWebConfig(cfg.WebConfigFile); err != nil {
		return nil, fmt.Errorf("web configuration file %s: %w", cfg.WebConfigFile, err)
	}
	handler, err := newHandler(&cfg, newMetricsHandler(g, cfg.MaxRequestsInFlight, cfg.ScrapeTimeout, logger))
	if err != nil {
		return nil, err
	}

	webConfigFile := cfg.WebConfigFile
	s := &Server{
		logger: logger,
		flags: web.FlagConfig{
			WebListenAddresses: &cfg.ListenAddresses,
			WebSystemdSocket:   new(bool),
			WebConfigFile:      &webConfigFile,
		},
		drain: cfg.WriteTimeout,
	}
	for _, addr := range cfg.ListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, l)
		s.servers = append(s.servers, &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		})
	}
	return s, nil
}

// newHandler returns the server's mux: metrics at the telemetry path, the
// landing page, health, readiness and, if enabled, pprof.
func newHandler(cfg *ServerConfig, metrics http.Handler) (http.Handler, error) {
	mux := http.NewServeMux()
	pattern := "GET " + cfg.TelemetryPath
	if strings.HasSuffix(pattern, "/") {
		pattern += "{$}" // exactly this path, not the subtree
	}
	mux.Handle(pattern, metrics)
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Healthy.")
	})
	ready := cfg.Ready
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "Not ready: no collection cycle has completed yet.", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "Ready.")
	})

	for _, pattern := range slices.Sorted(maps.Keys(cfg.Handlers)) {
		if err := handle(mux, pattern, cfg.Handlers[pattern]); err != nil {
			return nil, err
		}
	}
	if cfg.Landing != nil && cfg.TelemetryPath != "/" {
		mux.Handle("GET /{$}", cfg.Landing)
	} else if cfg.TelemetryPath != "/" {
		profiling := "false"
		if cfg.EnablePprof {
			profiling = "true"
		}
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "ebpf-metrics",
			Description: "Every eBPF map, program and link in the kernel, and the kernel memory they hold.",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: cfg.TelemetryPath, Text: "Metrics"},
				{Address: "/-/healthy", Text: "Health", Description: "200 while the agent runs"},
				{Address: "/-/ready", Text: "Readiness", Description: "200 once a collection cycle has completed"},
			},
			Profiling: profiling,
		})
		if err != nil {
			return nil, fmt.Errorf("building the landing page: %w", err)
		}
		mux.Handle("GET /{$}", landing)
	}

	if cfg.EnablePprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine...
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux, nil
}

// handle is mux.Handle, with its panic on a conflicting pattern turned
// into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serving %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Addrs returns the bound addresses, in the order of ListenAddresses: the
// real ports when a listen address asked for port 0.
func (s *Server) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		addrs[i] = l.Addr()
	}
	return addrs
}

// Serve serves on every listener until ctx is done, Shutdown is called, or
// a listener fails. When ctx is done it shuts down gracefully, waiting for
// scrapes in flight for at most the write timeout. When a listener fails
// (for instance a TLS certificate that cannot be loaded) it stops the
// others the same way and returns that error. It returns nil after a clean
// stop, and an error if called more than once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("server already started")
	}
	errc := make(chan error, len(s.servers))
	for i, srv := range s.servers {
		go func() { errc <- web.Serve(s.listeners[i], srv, &s.flags, s.logger) }()
	}

	remaining := len(s.servers)
	var first error
	select {
	case <-ctx.Done():
		first = s.shutdownWithin(s.drain)
	case err := <-errc:
		remaining--
		if !errors.Is(err, http.ErrServerClosed) {
			// A listener failed; stop the others.
			first = fmt.Errorf("serving http: %w", err)
			_ = s.shutdownWithin(s.drain)
		}
		// Otherwise Shutdown was called: every server returns at once.
	}
	for ; remaining > 0; remaining-- {
		if err := <-errc; first == nil && !errors.Is(err, http.ErrServerClosed) {
			first = fmt.Errorf("serving http: %w", err)
		}
	}
	return first
}

func (s *Server) shutdownWithin(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown stops the server gracefully: it closes the listeners, then waits
// for the requests in flight to complete. If ctx ends first, it closes the
// remaining connections and returns ctx's error. Serve returns as soon as
// Shutdown starts; the caller waits for Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	errs := make([]error, len(s.servers))
	var wg sync.WaitGroup
	for i, srv := range s.servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				errs[i] = err
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	// Listeners that Serve never reached are not closed by http.Server.
	s.closeListeners()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("shutting down http server: %w", err)
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close() // net.ErrClosed when http.Server closed it already
	}
}
