package otlp

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// parse registers the flags on a new application and parses args.
func parse(t *testing.T, args ...string) *Flags {
	t.Helper()
	var f Flags
	app := kingpin.New("test", "")
	app.UsageWriter(&bytes.Buffer{})
	AddFlags(app, &f)
	if _, err := app.Parse(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &f
}

func TestConfigDefaults(t *testing.T) {
	c, err := parse(t).Config(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if c.Enabled() {
		t.Error("push on without --otlp.endpoint")
	}

	for _, tc := range []struct {
		args               []string
		interval           time.Duration // the collection interval
		hostPort, path     string
		tls                bool
		wantInterval, wait time.Duration
	}{
		{[]string{"--otlp.endpoint=http://collector:4318"}, time.Minute, "collector:4318", "/v1/metrics", false, time.Minute, 10 * time.Second},
		{[]string{"--otlp.endpoint=http://collector:4318/"}, time.Minute, "collector:4318", "/v1/metrics", false, time.Minute, 10 * time.Second},
		{[]string{"--otlp.endpoint=https://collector/otlp/v1/metrics"}, time.Second, "collector:443", "/otlp/v1/metrics", true, time.Second, 10 * time.Second},
		{[]string{"--otlp.endpoint=HTTP://[::1]"}, time.Minute, "[::1]:80", "/v1/metrics", false, time.Minute, 10 * time.Second},
		{[]string{"--otlp.endpoint=http://collector:4317", "--otlp.protocol=grpc", "--otlp.interval=15s", "--otlp.timeout=30s"}, time.Minute, "collector:4317", "/v1/metrics", false, 15 * time.Second, 30 * time.Second},
		{[]string{"--otlp.endpoint=https://collector:4317", "--otlp.protocol=grpc", "--otlp.interval=2s"}, time.Minute, "collector:4317", "/v1/metrics", true, 2 * time.Second, 10 * time.Second},
	} {
		c, err := parse(t, tc.args...).Config(tc.interval)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if !c.Enabled() || c.hostPort != tc.hostPort || c.path != tc.path || (c.TLS != nil) != tc.tls ||
			c.Interval != tc.wantInterval || c.Timeout != tc.wait {
			t.Errorf("%v: got %s %s tls=%v every %v within %v, want %s %s tls=%v every %v within %v", tc.args,
				c.hostPort, c.path, c.TLS != nil, c.Interval, c.Timeout,
				tc.hostPort, tc.path, tc.tls, tc.wantInterval, tc.wait)
		}
	}
}

func TestConfigHeaders(t *testing.T) {
	c, err := parse(t, "--otlp.endpoint=http://c:4318", "--otlp.header=Authorization=Bearer a=b",
		"--otlp.header", "X-Scope-OrgID=tenant-1").Config(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"authorization": "Bearer a=b", "x-scope-orgid": "tenant-1"}
	if len(c.Headers) != len(want) {
		t.Errorf("headers %v, want %v", c.Headers, want)
	}
	for k, v := range want {
		if c.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, c.Headers[k], v)
		}
	}
}

// TestConfigErrors: every bad value is an error naming its flag, and every
// problem is reported at once.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--otlp.endpoint=collector:4318"}, []string{"--otlp.endpoint: want an http:// or https:// URL"}},
		{[]string{"--otlp.endpoint=grpc://collector:4317"}, []string{"--otlp.endpoint: want an http:// or https:// URL"}},
		{[]string{"--otlp.endpoint=http://"}, []string{"--otlp.endpoint: no host"}},
		{[]string{"--otlp.endpoint=http://u:p@c:4318"}, []string{"--otlp.endpoint: credentials in the URL"}},
		{[]string{"--otlp.endpoint=http://c:4318/v1/metrics?x=1"}, []string{"--otlp.endpoint: a query or fragment"}},
		{[]string{"--otlp.endpoint=http://c:4317/v1/metrics", "--otlp.protocol=grpc"}, []string{"--otlp.endpoint: gRPC takes no path"}},
		{[]string{"--otlp.endpoint=http://c :4318"}, []string{"--otlp.endpoint: not a URL"}},
		{[]string{"--otlp.protocol=http/json"}, []string{"--otlp.protocol: want http/protobuf or grpc"}},
		{[]string{"--otlp.interval=10"}, []string{"--otlp.interval: want a duration"}},
		{[]string{"--otlp.interval=10ms"}, []string{"--otlp.interval: minimum 100ms"}},
		{[]string{"--otlp.timeout=0s"}, []string{"--otlp.timeout: must be positive"}},
		{[]string{"--otlp.timeout=soon"}, []string{"--otlp.timeout: want a duration"}},
		{[]string{"--otlp.header=Authorization"}, []string{"--otlp.header: want KEY=VALUE"}},
		{[]string{"--otlp.header=Bad Name=x"}, []string{"--otlp.header: invalid header name"}},
		{[]string{"--otlp.header=X=a\nb"}, []string{"--otlp.header X: invalid header value"}},
		{[]string{"--otlp.header=X=a", "--otlp.header=x=b"}, []string{"--otlp.header: x given twice"}},
		{[]string{"--otlp.endpoint=http://c:4318", "--otlp.tls.insecure-skip-verify"}, []string{"--otlp.tls.*: the endpoint is http://"}},
		{[]string{"--otlp.tls.ca-file=" + filepath.Join(dir, "missing.pem")}, []string{"--otlp.tls.ca-file: open"}},
		{[]string{"--otlp.tls.ca-file=" + notPEM}, []string{"--otlp.tls.ca-file " + notPEM + ": no PEM certificate"}},
		{[]string{"--otlp.tls.cert-file=" + notPEM}, []string{"--otlp.tls.cert-file: needs --otlp.tls.key-file"}},
		{[]string{"--otlp.tls.key-file=" + notPEM}, []string{"--otlp.tls.key-file: needs --otlp.tls.cert-file"}},
		{[]string{"--otlp.tls.cert-file=" + notPEM, "--otlp.tls.key-file=" + notPEM}, []string{"--otlp.tls.cert-file, --otlp.tls.key-file: tls: failed to find any PEM data"}},
		{[]string{"--otlp.endpoint=ftp://c", "--otlp.interval=1ms", "--otlp.header=nokey"},
			[]string{"--otlp.endpoint:", "--otlp.interval:", "--otlp.header:"}},
	} {
		_, err := parse(t, tc.args...).Config(time.Minute)
		if err == nil {
			t.Errorf("%q: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q, want it to contain %q", tc.args, err, w)
			}
		}
	}
}

func TestConfigTLS(t *testing.T) {
	pki := newPKI(t)
	c, err := parse(t, "--otlp.endpoint=https://127.0.0.1:4318", "--otlp.tls.ca-file="+pki.caFile,
		"--otlp.tls.cert-file="+pki.clientCert, "--otlp.tls.key-file="+pki.clientKey).Config(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS == nil || c.TLS.RootCAs == nil || len(c.TLS.Certificates) != 1 || c.TLS.InsecureSkipVerify ||
		c.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS configuration %+v", c.TLS)
	}
}
