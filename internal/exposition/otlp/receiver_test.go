package otlp

import (
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
)

// receiver is a minimal OTLP metrics receiver (HTTP/protobuf or gRPC) that
// keeps what it receives, for the tests of the exporter's side. The real
// OpenTelemetry Collector is tested against in test/otelcol.
type receiver struct {
	url string

	mu       sync.Mutex
	requests []*colmetricpb.ExportMetricsServiceRequest
	headers  []map[string]string // lower-case names
	arrived  chan struct{}
}

func (r *receiver) keep(req *colmetricpb.ExportMetricsServiceRequest, h map[string]string) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.headers = append(r.headers, h)
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

func (r *receiver) received() ([]*colmetricpb.ExportMetricsServiceRequest, []map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*colmetricpb.ExportMetricsServiceRequest(nil), r.requests...), append([]map[string]string(nil), r.headers...)
}

// newReceiver starts a receiver of protocol on loopback; with tlsCfg, over
// TLS.
func newReceiver(t *testing.T, protocol string, tlsCfg *tls.Config) *receiver {
	t.Helper()
	r := &receiver{arrived: make(chan struct{}, 1)}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	if protocol == ProtocolGRPC {
		// The encoding is no metadata: a stats handler sees it.
		var encoding atomic.Value
		opts := []grpc.ServerOption{grpc.StatsHandler(encodingHandler{&encoding})}
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		}
		srv := grpc.NewServer(opts...)
		colmetricpb.RegisterMetricsServiceServer(srv, grpcReceiver{r: r, encoding: &encoding})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		t.Cleanup(srv.Stop)
		r.url = scheme + "://" + l.Addr().String()
		return r
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body []byte
		var err error
		if req.Header.Get("Content-Encoding") == "gzip" {
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(req.Body); err == nil {
				body, err = io.ReadAll(zr)
			}
		} else {
			body, err = io.ReadAll(req.Body)
		}
		var m colmetricpb.ExportMetricsServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &m)
		}
		if err != nil || req.URL.Path != "/v1/metrics" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		h := make(map[string]string)
		for k, v := range req.Header {
			h[strings.ToLower(k)] = v[0]
		}
		r.keep(&m, h)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		w.Write(out)
	}))
	if tlsCfg != nil {
		srv.TLS = tlsCfg
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	r.url = scheme + "://" + srv.Listener.Addr().String()
	return r
}

type grpcReceiver struct {
	colmetricpb.UnimplementedMetricsServiceServer
	r        *receiver
	encoding *atomic.Value // grpc-encoding of the last request
}

func (g grpcReceiver) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	h := make(map[string]string)
	md, _ := metadata.FromIncomingContext(ctx)
	for k, v := range md {
		if len(v) > 0 {
			h[k] = v[0]
		}
	}
	if e, ok := g.encoding.Load().(string); ok {
		h["grpc-encoding"] = e
	}
	g.r.keep(req, h)
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

// encodingHandler keeps the grpc-encoding of the requests.
type encodingHandler struct{ v *atomic.Value }

func (h encodingHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InHeader); ok {
		h.v.Store(in.Compression)
	}
}

func (encodingHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (encodingHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (encodingHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// blackHole accepts connections and never answers: a collector that hangs.
// Each accepted connection is announced on accepted; close (or the test's
// end) closes the listener and every connection.
type blackHole struct {
	addr     string
	accepted chan struct{}
	l        net.Listener
	once     sync.Once
	mu       sync.Mutex
	conns    []net.Conn
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{addr: l.Addr().String(), accepted: make(chan struct{}, 16), l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			select {
			case b.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *blackHole) close() {
	b.once.Do(func() {
		b.l.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
}

// refusedAddr is a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// pki is a CA, a server certificate for 127.0.0.1 and a client
// certificate, both signed by the CA, in PEM files.
type pki struct {
	caFile, clientCert, clientKey string
	pool                          *x509.CertPool
	server                        tls.Certificate
	// selfSigned is a server certificate for 127.0.0.1 that the CA did not
	// sign.
	selfSigned tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{pool: x509.NewCertPool()}
	caKey, caCert, caDER := newCert(t, "test CA", nil, nil, true)
	p.pool.AddCert(caCert)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)

	srvKey, _, srvDER := newCert(t, "127.0.0.1", caCert, caKey, false)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliKey, _, cliDER := newCert(t, "ebpf-metrics", caCert, caKey, false)
	p.clientCert = writePEM(t, dir, "client.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientKey = writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", keyDER)
	ssKey, _, ssDER := newCert(t, "127.0.0.1", nil, nil, false)
	p.selfSigned = tls.Certificate{Certificate: [][]byte{ssDER}, PrivateKey: ssKey}
	return p
}

// newCert makes a certificate for cn (and IP 127.0.0.1), signed by parent
// (self-signed if nil).
func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:         ca, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
