package exposition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricsHandler serves the metrics as promhttp.HandlerFor with
// ContinueOnError, MaxRequestsInFlight, Timeout and EnableOpenMetrics,
// wrapped in promhttp.InstrumentMetricHandler, would: the same content
// negotiation (formats and gzip), the same 503 above the in-flight limit or
// past the timeout, the same 500 when gathering failed with nothing
// gathered, the name[] filter, and the promhttp_metric_handler_* series.
//
// What differs is where the bytes come from. Served from a Cache, a scrape
// neither gathers nor encodes: the body was encoded once, at the cache's
// refresh, for each format (and gzipped); the scrape copies it and appends
// the live section, the handler's own promhttp_metric_handler_* series,
// exact for this scrape (in flight now, requests and errors so far), in the
// same format: for gzip, a stored deflate block and the gzip trailer, so
// that the response stays a single gzip member. The live section comes
// last, where promhttp, which sorts families by name, puts it too when the
// other names sort before "promhttp" (odigos_ebpf_*, go_*, process_* do).
// From any other Gatherer, each scrape gathers and encodes, as promhttp
// does.
type metricsHandler struct {
	g      prometheus.Gatherer
	cache  *Cache // g as a *Cache, or nil
	logger *slog.Logger

	slots      chan struct{} // MaxRequestsInFlight
	limitMsg   string
	timeout    time.Duration
	timeoutMsg string

	// The live section.
	inFlight       atomic.Int64
	requests       [len(handlerCodes)]atomic.Uint64
	gatheringFails atomic.Uint64
	encodingFails  atomic.Uint64
}

// The handler's own families, as promhttp names them.
const (
	handlerErrors   = "promhttp_metric_handler_errors_total"
	handlerInFlight = "promhttp_metric_handler_requests_in_flight"
	handlerRequests = "promhttp_metric_handler_requests_total"
)

func isHandlerFamily(name string) bool {
	return name == handlerErrors || name == handlerInFlight || name == handlerRequests
}

// handlerCodes are the status codes the handler answers with, all reported
// from the start (promhttp reports 200, 500 and 503 from the start too).
var handlerCodes = [...]int{http.StatusOK, http.StatusInternalServerError, http.StatusServiceUnavailable}

func newMetricsHandler(g prometheus.Gatherer, maxInFlight int, timeout time.Duration, logger *slog.Logger) *metricsHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &metricsHandler{g: g, logger: logger, timeout: timeout}
	h.cache, _ = g.(*Cache)
	if maxInFlight > 0 {
		h.slots = make(chan struct{}, maxInFlight)
		h.limitMsg = fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", maxInFlight)
	}
	h.timeoutMsg = fmt.Sprintf("Exceeded configured timeout of %v.\n", timeout)
	return h
}

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.inFlight.Add(1)
	code := h.serve(w, r)
	h.inFlight.Add(-1)
	for i, c := range handlerCodes {
		if c == code {
			h.requests[i].Add(1)
		}
	}
}

// prepared is a body ready to be sent, and what gathering it reported.
type prepared struct {
	b        *body
	families int   // families gathered, before the name[] filter
	err      error // from gathering
	panicked any   // what a gatherer panicked with
}

// serve answers one scrape and returns its status code.
func (h *metricsHandler) serve(w http.ResponseWriter, r *http.Request) int {
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
		default:
			http.Error(w, h.limitMsg, http.StatusServiceUnavailable)
			return http.StatusServiceUnavailable
		}
	}
	neg := negotiate(r.Header)
	format := neg.format
	encoding := negotiateEncoding(r.Header)
	gzipped := encoding == "gzip"
	var names map[string]struct{}
	if r.URL != nil && r.URL.RawQuery != "" {
		if list := r.URL.Query()["name[]"]; len(list) > 0 {
			names = make(map[string]struct{}, len(list))
			for _, n := range list {
				names[n] = struct{}{}
			}
		}
	}

	// Prepare the body: a lookup when the cache has it (gzipped if asked),
	// else gathering, encoding or compressing under the timeout. The slot
	// is held while preparing, not while sending: as with promhttp, whose
	// timeout handler buffers the response, a slow reader does not hold one.
	var p prepared
	if b := h.cached(format, names, gzipped); b != nil {
		gen := h.cache.current()
		p = prepared{b: b, families: len(gen.mfs), err: gen.err}
		h.release()
	} else {
		var ok bool
		if p, ok = h.prepareWithin(format, names, gzipped); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, h.timeoutMsg)
			return http.StatusServiceUnavailable
		}
		if p.panicked != nil {
			panic(p.panicked) // as the timeout handler does: net/http recovers and logs it
		}
	}

	if p.err != nil {
		h.logger.Error("error gathering metrics: "+p.err.Error(), "component", "promhttp")
		h.gatheringFails.Add(1)
		if p.families == 0 {
			http.Error(w, "An error has occurred while serving metrics:\n\n"+p.err.Error(), http.StatusInternalServerError)
			return http.StatusInternalServerError
		}
	}
	if p.b.encErrs > 0 {
		h.logger.Error("error encoding and sending metric family: "+p.b.encErr.Error(), "component", "promhttp")
		h.encodingFails.Add(uint64(p.b.encErrs))
	}
	if encoding == "" { // every coding refused (q=0): promhttp logs it and sends identity
		h.logger.Error("error getting writer: no acceptable content encoding in "+
			strings.Join(r.Header.Values("Accept-Encoding"), ", "), "component", "promhttp")
	}
	h.send(w, neg, p.b, names, gzipped)
	return http.StatusOK
}

// cached returns the cache's body in format, ready to send as is (no
// name[] filter; compressed already if gzipped), or nil if preparing the
// scrape takes work.
func (h *metricsHandler) cached(format expfmt.Format, names map[string]struct{}, gzipped bool) *body {
	if h.cache == nil || names != nil {
		return nil
	}
	b := h.cache.current().lookup(format)
	if b == nil || gzipped && !b.gzReady.Load() {
		return nil
	}
	return b
}

func (h *metricsHandler) release() {
	if h.slots != nil {
		<-h.slots
	}
}

// prepareWithin prepares the body in a goroutine and waits for it at most
// the timeout; the goroutine releases the slot when it ends, so that a
// gatherer that hangs keeps its slot, as with promhttp.
func (h *metricsHandler) prepareWithin(format expfmt.Format, names map[string]struct{}, gzipped bool) (prepared, bool) {
	done := make(chan prepared, 1)
	go func() {
		defer h.release()
		defer func() {
			if v := recover(); v != nil {
				done <- prepared{panicked: v}
			}
		}()
		p := h.prepare(format, names)
		if gzipped {
			p.b.gzipped()
		}
		done <- p
	}()
	if h.timeout <= 0 {
		return <-done, true
	}
	t := time.NewTimer(h.timeout)
	defer t.Stop()
	select {
	case p := <-done:
		return p, true
	case <-t.C:
		return prepared{}, false
	}
}

func (h *metricsHandler) prepare(format expfmt.Format, names map[string]struct{}) prepared {
	if h.cache != nil {
		gen := h.cache.current()
		p := prepared{families: len(gen.mfs), err: gen.err}
		if names == nil {
			p.b = gen.body(format) // encoded once, kept until the next refresh
		} else {
			p.b = encodeBody(gen.mfs, format, names)
		}
		return p
	}
	mfs, err := h.g.Gather()
	return prepared{b: encodeBody(withoutHandlerFamilies(mfs), format, names), families: len(mfs), err: err}
}

// send writes b and the live section in the negotiated format, gzipped or
// as is.
func (h *metricsHandler) send(w http.ResponseWriter, neg *negotiation, b *body, names map[string]struct{}, gzipped bool) {
	live := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(live)
	live.Reset()
	h.writeLive(live, neg, names)

	hdr := w.Header()
	hdr.Add("Vary", "Accept")
	hdr.Add("Vary", "Accept-Encoding")
	hdr.Set("Content-Type", string(neg.format))
	var parts [3][]byte
	if gzipped {
		tail := bufPool.Get().(*bytes.Buffer)
		defer bufPool.Put(tail)
		tail.Reset()
		t := appendStored(tail.AvailableBuffer(), live.Bytes())
		// The gzip trailer: CRC-32 and size of everything, plain.
		t = binary.LittleEndian.AppendUint32(t, crc32.Update(b.crc, crc32.IEEETable, live.Bytes()))
		t = binary.LittleEndian.AppendUint32(t, uint32(len(b.plain)+live.Len()))
		tail.Write(t)
		parts = [3][]byte{b.gzipped(), tail.Bytes()}
		hdr.Set("Content-Encoding", "gzip")
	} else {
		parts = [3][]byte{b.plain, live.Bytes()}
	}
	hdr.Set("Content-Length", strconv.Itoa(len(parts[0])+len(parts[1])+len(parts[2])))
	w.WriteHeader(http.StatusOK)
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		if _, err := w.Write(p); err != nil {
			// The client went away or was too slow (the write timeout).
			h.logger.Error("error encoding and sending metric family: "+err.Error(), "component", "promhttp")
			h.encodingFails.Add(1)
			return
		}
	}
}
