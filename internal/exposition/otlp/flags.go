package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/net/http/httpguts"

	agentconfig "github.com/ebpf-metrics/ebpf-metrics/internal/config"
)

// Protocols of --otlp.protocol.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// DefaultTimeout bounds one export when --otlp.timeout is not given, as in
// the OTel SDKs. It is not capped at a shorter push interval: pushes never
// overlap, a slow one only delays the next, and a push to a loaded
// Collector at a 100 ms interval would fail for no reason.
const DefaultTimeout = 10 * time.Second

// MinInterval is the shortest --otlp.interval, the shortest collection
// interval: pushing more often than the agent collects sends the same
// values again.
const MinInterval = agentconfig.MinCollectionInterval

// defaultHTTPPath is where an OTLP/HTTP receiver takes metrics; an endpoint
// URL without a path gets it, as OTEL_EXPORTER_OTLP_ENDPOINT does.
const defaultHTTPPath = "/v1/metrics"

// Flags are the --otlp.* flags as given on the command line; Config checks
// them.
type Flags struct {
	Endpoint              string
	Protocol              string
	Interval              string // a duration; "" means the collection interval
	Headers               []string
	Timeout               string // a duration; "" means DefaultTimeout
	TLSCAFile             string
	TLSCertFile           string
	TLSKeyFile            string
	TLSInsecureSkipVerify bool
}

// AddFlags registers the --otlp.* flags of app into f.
func AddFlags(app *kingpin.Application, f *Flags) {
	app.Flag("otlp.endpoint", "Push every metric of /metrics with OTLP to this URL (http:// or https://; with http/protobuf, /v1/metrics when the URL has no path). Push is off without it.").
		PlaceHolder("URL").StringVar(&f.Endpoint)
	app.Flag("otlp.protocol", "OTLP transport: http/protobuf or grpc.").
		Default(ProtocolHTTP).StringVar(&f.Protocol)
	app.Flag("otlp.interval", "Time between pushes (default: the collection interval; minimum 100ms).").
		PlaceHolder("DURATION").StringVar(&f.Interval)
	app.Flag("otlp.header", "Header (gRPC metadata) sent with every push, such as Authorization=Bearer ...; repeatable.").
		PlaceHolder("KEY=VALUE").StringsVar(&f.Headers)
	app.Flag("otlp.timeout", "Longest time one push may take.").
		Default(DefaultTimeout.String()).StringVar(&f.Timeout)
	app.Flag("otlp.tls.ca-file", "PEM file of the CA certificates that verify the OTLP endpoint, instead of the system's.").
		PlaceHolder("FILE").StringVar(&f.TLSCAFile)
	app.Flag("otlp.tls.cert-file", "PEM file of the client certificate presented to the OTLP endpoint (with --otlp.tls.key-file).").
		PlaceHolder("FILE").StringVar(&f.TLSCertFile)
	app.Flag("otlp.tls.key-file", "PEM file of the client certificate's private key.").
		PlaceHolder("FILE").StringVar(&f.TLSKeyFile)
	app.Flag("otlp.tls.insecure-skip-verify", "Do not verify the OTLP endpoint's certificate (testing only).").
		BoolVar(&f.TLSInsecureSkipVerify)
}

// Config is a checked OTLP push configuration. The zero Config is push
// turned off.
type Config struct {
	// Endpoint is the URL as given; "" means no push.
	Endpoint string
	Protocol string
	Interval time.Duration
	Timeout  time.Duration
	// Headers are sent with every export; nil leaves the OTel SDK's
	// OTEL_EXPORTER_OTLP_HEADERS in force.
	Headers map[string]string
	// TLS is the client configuration of an https:// endpoint; nil for
	// http://, which is sent in clear text.
	TLS *tls.Config

	hostPort string // host:port of Endpoint, with the scheme's port if it had none
	path     string // URL path of an OTLP/HTTP export
}

// Enabled reports whether push is on (--otlp.endpoint was given).
func (c Config) Enabled() bool { return c.Endpoint != "" }

// Config checks f and returns the configuration it sets, with
// collectionInterval as the default push interval. Every flag is checked
// even without --otlp.endpoint, so that --config.check catches a mistake
// before the endpoint is added; the error joins every problem, each naming
// its flag.
func (f *Flags) Config(collectionInterval time.Duration) (Config, error) {
	var errs []error
	c := Config{Endpoint: f.Endpoint, Protocol: f.Protocol}

	switch f.Protocol {
	case ProtocolHTTP, ProtocolGRPC:
	default:
		errs = append(errs, fmt.Errorf("--otlp.protocol: want %s or %s, got %q", ProtocolHTTP, ProtocolGRPC, f.Protocol))
	}

	secure := true
	if f.Endpoint != "" {
		var err error
		if c.hostPort, c.path, secure, err = parseEndpoint(f.Endpoint, f.Protocol); err != nil {
			errs = append(errs, fmt.Errorf("--otlp.endpoint: %w", err))
		}
	}

	c.Interval = collectionInterval
	if f.Interval != "" {
		d, err := time.ParseDuration(f.Interval)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--otlp.interval: want a duration such as 30s, got %q", f.Interval))
		case d < MinInterval:
			errs = append(errs, fmt.Errorf("--otlp.interval: minimum %v, got %v", MinInterval, d))
		default:
			c.Interval = d
		}
	}

	c.Timeout = DefaultTimeout
	if f.Timeout != "" {
		d, err := time.ParseDuration(f.Timeout)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--otlp.timeout: want a duration such as 10s, got %q", f.Timeout))
		case d <= 0:
			errs = append(errs, fmt.Errorf("--otlp.timeout: must be positive, got %v", d))
		default:
			c.Timeout = d
		}
	}

	for _, h := range f.Headers {
		k, v, ok := strings.Cut(h, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("--otlp.header: want KEY=VALUE, got %q", h))
		case !httpguts.ValidHeaderFieldName(k):
			errs = append(errs, fmt.Errorf("--otlp.header: invalid header name %q", k))
		case !httpguts.ValidHeaderFieldValue(v):
			errs = append(errs, fmt.Errorf("--otlp.header %s: invalid header value", k))
		default:
			if c.Headers == nil {
				c.Headers = make(map[string]string)
			}
			key := strings.ToLower(k) // HTTP names are case-insensitive, gRPC metadata lower case
			if _, dup := c.Headers[key]; dup {
				errs = append(errs, fmt.Errorf("--otlp.header: %s given twice", k))
			}
			c.Headers[key] = v
		}
	}

	tlsCfg, err := f.tlsConfig()
	if err != nil {
		errs = append(errs, err)
	}
	if secure {
		c.TLS = tlsCfg
	} else if f.TLSCAFile != "" || f.TLSCertFile != "" || f.TLSKeyFile != "" || f.TLSInsecureSkipVerify {
		errs = append(errs, errors.New("--otlp.tls.*: the endpoint is http://, in clear text: use https:// for TLS"))
	}

	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseEndpoint checks an endpoint URL and returns its host:port (the
// scheme's default port if it names none), the path an OTLP/HTTP export
// posts to, and whether it is https.
func parseEndpoint(endpoint, protocol string) (hostPort, path string, secure bool, err error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", false, fmt.Errorf("not a URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
	case "https":
		secure = true
	default:
		return "", "", false, fmt.Errorf("want an http:// or https:// URL, got %q", endpoint)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", "", false, fmt.Errorf("no host in %q", endpoint)
	}
	if u.User != nil {
		return "", "", false, errors.New("credentials in the URL: pass them with --otlp.header")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "", false, fmt.Errorf("a query or fragment in %q", endpoint)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if secure {
			port = "443"
		}
	}
	hostPort = net.JoinHostPort(u.Hostname(), port)
	path = u.EscapedPath()
	switch {
	case protocol == ProtocolGRPC && path != "" && path != "/":
		return "", "", false, fmt.Errorf("gRPC takes no path, got %q", path)
	case path == "" || path == "/":
		path = defaultHTTPPath
	}
	return hostPort, path, secure, nil
}

// tlsConfig loads the --otlp.tls.* files. The client certificate is read
// once, at start: a rotated certificate needs a restart.
func (f *Flags) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.TLSInsecureSkipVerify}
	var errs []error
	if f.TLSCAFile != "" {
		pem, err := os.ReadFile(f.TLSCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--otlp.tls.ca-file: %w", err))
		} else {
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("--otlp.tls.ca-file %s: no PEM certificate", f.TLSCAFile))
			}
		}
	}
	switch {
	case f.TLSCertFile == "" && f.TLSKeyFile == "":
	case f.TLSCertFile == "":
		errs = append(errs, errors.New("--otlp.tls.key-file: needs --otlp.tls.cert-file"))
	case f.TLSKeyFile == "":
		errs = append(errs, errors.New("--otlp.tls.cert-file: needs --otlp.tls.key-file"))
	default:
		cert, err := tls.LoadX509KeyPair(f.TLSCertFile, f.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--otlp.tls.cert-file, --otlp.tls.key-file: %w", err))
		} else {
			c.Certificates = []tls.Certificate{cert}
		}
	}
	return c, errors.Join(errs...)
}
