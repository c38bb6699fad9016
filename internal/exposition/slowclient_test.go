package exposition

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Slow and broken clients, on loopback, against a server whose timeouts are
// cut to a fraction of a second. Each test checks that the server lets go
// of the connection once the timeout has passed, never before, and within a
// generous bound (the machine may be busy); none asserts a duration of the
// server's own work.

// quickTimeouts are the server's timeouts in these tests.
const (
	quickHeader = 300 * time.Millisecond
	quickWrite  = 500 * time.Millisecond
	quickIdle   = 400 * time.Millisecond
	// patience bounds how long after a timeout the server may take to act
	// on it on a loaded machine.
	patience = 5 * time.Second
)

func quickServer(t *testing.T, g prometheus.Gatherer, maxInFlight int) (*Server, string) {
	t.Helper()
	return startServer(t, ServerConfig{
		ReadHeaderTimeout:   quickHeader,
		WriteTimeout:        quickWrite,
		IdleTimeout:         quickIdle,
		MaxRequestsInFlight: maxInFlight,
	}, g)
}

func cachedTestRegistry(t *testing.T) *Cache {
	t.Helper()
	c := NewCache(testRegistry(publish(testSnapshot())))
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitClosed returns how long after start the server closed conn (a read
// returns EOF or a reset), failing the test if it is still open after
// limit. Data the server sent before closing is discarded.
func waitClosed(t *testing.T, conn net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open %v after the timeout", limit)
	}
	return took
}

// A client that sends its request's headers one byte at a time, and never
// the end of them, is cut off at ReadHeaderTimeout.
func TestSlowClientTrickledHeaders(t *testing.T) {
	_, base := quickServer(t, cachedTestRegistry(t), 0)
	start := time.Now() // before the server can start its clock
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		req := []byte("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000))
		for _, c := range req {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{c}); err != nil {
				return
			}
			n++
		}
	}()
	took := waitClosed(t, conn, start, quickHeader+patience)
	close(stop)
	n := <-wrote
	if took < quickHeader {
		t.Errorf("closed after %v, before ReadHeaderTimeout %v", took, quickHeader)
	}
	t.Logf("closed %v after the first byte, %d bytes of headers sent", took, n)
}

// A request whose headers never end (no blank line), and a connection on
// which nothing is ever sent, are cut off at ReadHeaderTimeout.
func TestSlowClientUnfinishedHeaders(t *testing.T) {
	_, base := quickServer(t, cachedTestRegistry(t), 0)
	for _, sent := range []string{"GET /metrics HTTP/1.1\r\nHost: x\r\n", ""} {
		start := time.Now() // before the server can start its clock
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, sent); err != nil {
			t.Fatal(err)
		}
		took := waitClosed(t, conn, start, quickHeader+patience)
		conn.Close()
		if took < quickHeader {
			t.Errorf("%q: closed after %v, before ReadHeaderTimeout %v", sent, took, quickHeader)
		}
	}
}

// A kept-alive connection that sends no second request is closed at
// IdleTimeout.
func TestSlowClientIdleConnection(t *testing.T) {
	_, base := quickServer(t, cachedTestRegistry(t), 0)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d %v", resp.StatusCode, err)
	}
	start := time.Now()
	conn.SetReadDeadline(start.Add(quickIdle + patience))
	_, err = br.ReadByte()
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle connection still open %v later", quickIdle+patience)
	}
	if took < quickIdle/2 { // the idle clock starts when the server has written the response
		t.Errorf("idle connection closed after %v, IdleTimeout is %v", took, quickIdle)
	}
}

// bigGatherer gathers one family of n series with long labels: a response
// of several MiB, larger than what the loopback socket buffers hold.
func bigGatherer(n int) prometheus.Gatherer {
	name, help, label := "big_series", "A lot of bytes.", "label"
	typ := dto.MetricType_GAUGE
	mf := &dto.MetricFamily{Name: &name, Help: &help, Type: &typ}
	pad := strings.Repeat("x", 100)
	for i := range n {
		v, f := fmt.Sprintf("%s%08d", pad, i), float64(i)
		mf.Metric = append(mf.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: &label, Value: &v}}, Gauge: &dto.Gauge{Value: &f}})
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return []*dto.MetricFamily{mf}, nil })
}

// A client that reads the response one byte at a time (with a small
// receive buffer, so that the server's writes block) is cut off at
// WriteTimeout: the handler stops, counts the failed write as an encoding
// error, and the client gets less than the body. Meanwhile it holds no
// scrape slot: with one slot, other scrapes are served.
func TestSlowClientSlowReader(t *testing.T) {
	cache := NewCache(bigGatherer(40_000)) // ~5 MiB
	if err := cache.Refresh(); err != nil {
		t.Fatal(err)
	}
	_, base := quickServer(t, cache, 1)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read the status line and headers, then one byte every 50 ms.
	br := bufio.NewReaderSize(conn, 1)
	var head bytes.Buffer
	for !bytes.HasSuffix(head.Bytes(), []byte("\r\n\r\n")) {
		c, err := br.ReadByte()
		if err != nil {
			t.Fatalf("reading the headers: %v (%q)", err, head.String())
		}
		head.WriteByte(c)
	}
	var length int
	for line := range strings.SplitSeq(head.String(), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			length, _ = strconv.Atoi(v)
		}
	}
	if !strings.HasPrefix(head.String(), "HTTP/1.1 200") || length < 4<<20 {
		t.Fatalf("response %q: want 200 and a body of several MiB", head.String())
	}

	// While the slow reader's response is being written, other scrapes get
	// the only slot. (They ask only for the handler's series: a whole 5 MiB
	// scrape might not fit in the write timeout of these tests under -race.)
	small := base + "/metrics?name[]=" + handlerErrors + "&name[]=" + handlerInFlight
	if r := get(t, small); r.code != http.StatusOK {
		t.Errorf("scrape while a slow reader is served: %d, want 200", r.code)
	}

	// Trickle until the server has given up: its next scrape shows the
	// failed write as an encoding error.
	read := 0
	for deadline := start.Add(quickWrite + patience); ; {
		if time.Now().After(deadline) {
			t.Fatalf("the server still writes to the slow reader %v after WriteTimeout", quickWrite+patience)
		}
		for range 4 {
			if _, err := br.ReadByte(); err == nil {
				read++
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Since(start) < quickWrite {
			continue
		}
		body := get(t, small).body
		if strings.Contains(body, "promhttp_metric_handler_errors_total{cause=\"encoding\"} 1\n") {
			if !strings.Contains(body, "promhttp_metric_handler_requests_in_flight 1\n") {
				t.Errorf("the slow reader's scrape is still in flight")
			}
			break
		}
	}
	t.Logf("server gave up after %v; the client had read %d bytes", time.Since(start), read)
	// What the kernel had buffered still arrives, then the connection ends
	// short of the body.
	conn.SetReadDeadline(time.Now().Add(patience))
	rest, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after the server gave up")
	}
	if got := read + int(rest); got >= length {
		t.Errorf("the slow reader got the whole body (%d bytes)", got)
	}
}
