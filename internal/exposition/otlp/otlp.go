// Package otlp pushes the agent's registry to an OpenTelemetry Collector
// with OTLP (HTTP/protobuf or gRPC), so that OTLP carries exactly what
// /metrics shows.
//
// It converts what the exposition Cache gathered at the end of the last
// cycle with the OpenTelemetry Prometheus bridge: a push gathers nothing,
// reads neither the kernel nor /proc, and shares the cached families with
// the scrapes. An OTel SDK PeriodicReader pushes them on its own goroutine,
// each push bounded by a timeout, so that an endpoint that refuses or never
// answers costs collection and scrapes nothing.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	promBridge "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"google.golang.org/grpc/credentials"
)

// ServiceName is the service.name of the pushed resource.
const ServiceName = "ebpf-metrics"

// The environment variables that the Kubernetes Downward API sets in the
// agent's pod, and the resource attributes they become.
var k8sEnv = []struct {
	env string
	key attribute.Key
}{
	{"K8S_NODE_NAME", semconv.K8SNodeNameKey},
	{"K8S_POD_NAME", semconv.K8SPodNameKey},
	{"K8S_POD_NAMESPACE", semconv.K8SNamespaceNameKey},
}

// Pusher pushes what a gatherer (the exposition Cache) holds, every
// Config.Interval, from the moment Start is called. It is a
// prometheus.Collector of its own exports counter, to register in the
// agent's registry: /metrics and OTLP then both show it.
type Pusher struct {
	cfg      Config
	gatherer prometheus.Gatherer
	res      *resource.Resource
	exporter *countingExporter
	exports  *prometheus.CounterVec
	sdkErrs  *failureLog // errors the SDK hands to otel.Handle other than failed exports
	provider *sdkmetric.MeterProvider
}

// New returns a Pusher of g to cfg's endpoint; the exports counter is named
// <namespace>_otlp_exports_total. It opens no connection: the first push,
// after Start, does.
func New(cfg Config, g prometheus.Gatherer, namespace string, logger *slog.Logger) (*Pusher, error) {
	if !cfg.Enabled() {
		return nil, errors.New("no OTLP endpoint")
	}
	exp, err := newExporter(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	res, err := newResource()
	if err != nil {
		return nil, fmt.Errorf("building the OTLP resource: %w", err)
	}
	exports := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "otlp_exports_total",
		Help:      "OTLP pushes to --otlp.endpoint since the agent started, by result (success or failure).",
	}, []string{"result"})
	logger = logger.With("endpoint", cfg.Endpoint, "protocol", cfg.Protocol)
	return &Pusher{
		cfg:      cfg,
		gatherer: g,
		res:      res,
		exporter: &countingExporter{
			Exporter: exp,
			success:  exports.WithLabelValues("success"),
			failure:  exports.WithLabelValues("failure"),
			log:      newFailureLog(logger, "OTLP export failed"),
		},
		exports: exports,
		sdkErrs: newFailureLog(logger, "OpenTelemetry SDK error"),
	}, nil
}

func newExporter(cfg Config) (sdkmetric.Exporter, error) {
	ctx := context.Background() // neither exporter connects in New
	if cfg.Protocol == ProtocolGRPC {
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithEndpoint(cfg.hostPort),
			otlpmetricgrpc.WithTimeout(cfg.Timeout),
			// The next push resends every value (all are cumulative or
			// gauges): a retry would only delay it.
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}),
		}
		if cfg.TLS != nil {
			opts = append(opts, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(cfg.TLS)))
		} else {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		if cfg.Headers != nil {
			opts = append(opts, otlpmetricgrpc.WithHeaders(cfg.Headers))
		}
		return otlpmetricgrpc.New(ctx, opts...)
	}
	opts := []otlpmetrichttp.Option{
		otlpmetrichttp.WithEndpoint(cfg.hostPort),
		otlpmetrichttp.WithURLPath(cfg.path),
		otlpmetrichttp.WithTimeout(cfg.Timeout),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
	}
	if cfg.TLS != nil {
		opts = append(opts, otlpmetrichttp.WithTLSClientConfig(cfg.TLS))
	} else {
		opts = append(opts, otlpmetrichttp.WithInsecure())
	}
	if cfg.Headers != nil {
		opts = append(opts, otlpmetrichttp.WithHeaders(cfg.Headers))
	}
	return otlpmetrichttp.New(ctx, opts...)
}

// newResource describes the agent: service.name, service.version (the
// version label of build_info, when the build sets one), host.name, and the pod's Kubernetes names from the
// Downward API's environment variables when they are set. host.name is the
// node's name when K8S_NODE_NAME is set: in a pod, the hostname is the pod's,
// while the agent's metrics describe the node's kernel. Attributes of
// OTEL_RESOURCE_ATTRIBUTES are added, without overriding these.
func newResource() (*resource.Resource, error) {
	host := os.Getenv("K8S_NODE_NAME")
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("reading the host name: %w", err)
		}
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(ServiceName), semconv.HostName(host)}
	if version.Version != "" { // set at link time, as for build_info
		attrs = append(attrs, semconv.ServiceVersion(version.Version))
	}
	for _, e := range k8sEnv {
		if v := os.Getenv(e.env); v != "" {
			attrs = append(attrs, e.key.String(v))
		}
	}
	// Later detectors override earlier ones: the environment's first.
	return resource.New(context.Background(),
		resource.WithFromEnv(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...))
}

// Describe and Collect make the Pusher the collector of its exports counter.
func (p *Pusher) Describe(ch chan<- *prometheus.Desc) { p.exports.Describe(ch) }
func (p *Pusher) Collect(ch chan<- prometheus.Metric) { p.exports.Collect(ch) }

// Start starts pushing: the first push comes one interval later, then one
// every interval.
func (p *Pusher) Start() {
	// The SDK hands the reader's errors to the process-wide otel error
	// handler, which would log each failed export a second time, without
	// backoff: failed exports are logged by countingExporter, anything else
	// with a backoff of its own.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		var e *exportError
		if !errors.As(err, &e) {
			p.sdkErrs.failure(err)
		}
	}))
	reader := sdkmetric.NewPeriodicReader(p.exporter,
		sdkmetric.WithInterval(p.cfg.Interval),
		sdkmetric.WithTimeout(p.cfg.Timeout),
		sdkmetric.WithProducer(promBridge.NewMetricProducer(promBridge.WithGatherer(p.gatherer))))
	p.provider = sdkmetric.NewMeterProvider(sdkmetric.WithResource(p.res), sdkmetric.WithReader(reader))
}

// Shutdown makes a last push of what the gatherer holds and stops, both
// within ctx.
func (p *Pusher) Shutdown(ctx context.Context) error {
	if p.provider == nil {
		return p.exporter.Shutdown(ctx)
	}
	return p.provider.Shutdown(ctx)
}

// countingExporter counts the exports of the exporter it wraps, by result,
// and logs failures with backoff.
type countingExporter struct {
	sdkmetric.Exporter
	success, failure prometheus.Counter
	log              *failureLog
}

// exportError marks a failed export that countingExporter has counted and
// logged already.
type exportError struct{ err error }

func (e *exportError) Error() string { return e.err.Error() }
func (e *exportError) Unwrap() error { return e.err }

func (e *countingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	if err := e.Exporter.Export(ctx, rm); err != nil {
		e.failure.Inc()
		e.log.failure(err)
		return &exportError{err}
	}
	e.success.Inc()
	e.log.success()
	return nil
}
