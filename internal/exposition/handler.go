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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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

// acceptedFormats are promhttp's with EnableOpenMetrics.
var acceptedFormats = expfmt.DefaultOpenMetricsAcceptedFormats()

func negotiateFormat(h http.Header) expfmt.Format {
	return negotiate(h).format
}

// negotiation is the format negotiated for an Accept header, and how the
// live section is written in it.
type negotiation struct {
	format expfmt.Format
	live   liveKind
}

// negotiated remembers the negotiation of the Accept headers seen, up to
// maxNegotiated of them: scrapers send the same header every time, and
// expfmt's negotiation costs a fifth of a cached scrape.
var (
	negotiated      sync.Map // Accept header → *negotiation
	negotiatedCount atomic.Int32
)

const maxNegotiated = 64

func negotiate(h http.Header) *negotiation {
	accept := h.Get("Accept")
	if n, ok := negotiated.Load(accept); ok {
		return n.(*negotiation)
	}
	f := expfmt.NegotiateAccept(h, acceptedFormats...)
	n := &negotiation{format: f, live: liveKindOf(f)}
	if negotiatedCount.Load() < maxNegotiated && negotiatedCount.Add(1) <= maxNegotiated {
		negotiated.Store(accept, n)
	}
	return n
}

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

// bufPool holds the buffers of the live section, reused across scrapes.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// appendStored appends data as final stored (uncompressed) deflate blocks,
// after a deflate stream flushed to a byte boundary (RFC 1951, 3.2.4): the
// live section (about 1 KiB) costs 5 bytes of framing and no compression
// work, nor a compressor (1.2 MB each). Huffman coding would save ~300
// bytes for twice the cost of a whole cached scrape.
func appendStored(dst, data []byte) []byte {
	for {
		n := min(len(data), 0xffff)
		final := byte(0)
		if n == len(data) {
			final = 1 // BFINAL; BTYPE 00, stored; the rest of the byte is padding
		}
		dst = append(dst, final, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, data[:n]...)
		data = data[n:]
		if final == 1 {
			return dst
		}
	}
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

// negotiateEncoding picks identity or gzip from Accept-Encoding as promhttp
// does (it offers identity first, then gzip; the first best q wins), or ""
// if the client refuses both.
func negotiateEncoding(h http.Header) string {
	best, bestQ := "identity", -1.0
	specs := parseAcceptEncoding(h.Values("Accept-Encoding"))
	for _, offer := range [...]string{"identity", "gzip"} {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	if bestQ == 0 {
		return ""
	}
	return best
}

// lws is what gddo's header parser skips as space.
const lws = " \t\r\n"

type acceptSpec struct {
	value string
	q     float64
}

// parseAcceptEncoding parses Accept-Encoding values as promhttp's copy of
// gddo's header.ParseAccept does: "coding[;q=x]" separated by commas; a
// value stops at the first thing it does not expect.
func parseAcceptEncoding(values []string) []acceptSpec {
	var specs []acceptSpec
	for _, s := range values {
		for {
			var spec acceptSpec
			i := 0
			for i < len(s) && (isTokenByte(s[i]) || s[i] == '/') {
				i++
			}
			spec.value, s = s[:i], s[i:]
			if spec.value == "" {
				break
			}
			spec.q = 1
			s = strings.TrimLeft(s, lws)
			if strings.HasPrefix(s, ";") {
				s = strings.TrimLeft(s[1:], lws)
				if !strings.HasPrefix(s, "q=") {
					break
				}
				spec.q, s = parseQuality(s[2:])
				if spec.q < 0 {
					break
				}
			}
			specs = append(specs, spec)
			s = strings.TrimLeft(s, lws)
			if !strings.HasPrefix(s, ",") {
				break
			}
			s = strings.TrimLeft(s[1:], lws)
		}
	}
	return specs
}

// parseQuality reads a q value: "0", "1", or "0." followed by up to three
// digits ("1." followed by zeros); -1 when it is none of those.
func parseQuality(s string) (float64, string) {
	if s == "" {
		return -1, ""
	}
	var q float64
	switch s[0] {
	case '0':
		q = 0
	case '1':
		q = 1
	default:
		return -1, ""
	}
	s = s[1:]
	if !strings.HasPrefix(s, ".") {
		return q, s
	}
	s = s[1:]
	i, n, d := 0, 0, 1
	for ; i < len(s); i++ {
		b := s[i]
		if b < '0' || b > '9' {
			break
		}
		n = n*10 + int(b) - '0'
		d *= 10
	}
	return q + float64(n)/float64(d), s[i:]
}

// isTokenByte reports whether c may appear in an RFC 7230 token.
func isTokenByte(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("()<>@,;:\\\"/[]?={}", rune(c))
}

// liveKind is how the live section is written in a format.
type liveKind uint8

const (
	liveExpfmt      liveKind = iota // by expfmt, from liveFamilies: protobuf formats
	liveText                        // by appendLive: the text format
	liveOpenMetrics                 // by appendLive: OpenMetrics, "# EOF" included
)

func liveKindOf(f expfmt.Format) liveKind {
	switch f.FormatType() {
	case expfmt.TypeTextPlain:
		return liveText
	case expfmt.TypeOpenMetrics:
		if v := f.Version(); v == expfmt.OpenMetricsVersion_1_0_0 || v == expfmt.OpenMetricsVersion_0_0_1 {
			return liveOpenMetrics
		}
	}
	return liveExpfmt
}

// writeLive writes the live section in the negotiated format, closing it
// (OpenMetrics' "# EOF"). The names of the live families need no escaping
// in any scheme, so the text formats are written by hand, as expfmt would
// (a test holds them to it): a fifth of the cost.
func (h *metricsHandler) writeLive(buf *bytes.Buffer, neg *negotiation, names map[string]struct{}) {
	if neg.live != liveExpfmt {
		buf.Write(h.appendLive(buf.AvailableBuffer(), neg.live == liveOpenMetrics, names))
		return
	}
	enc := expfmt.NewEncoder(buf, neg.format)
	for _, mf := range h.liveFamilies(names) {
		if err := enc.Encode(mf); err != nil { // not reached: the families are well formed
			h.encodingFails.Add(1)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		_ = c.Close()
	}
}

// The live families, in name order: name, help, type, and the label of
// their series.
var liveFamilyDefs = [...]struct {
	name, help, typ, label string
}{
	{handlerErrors, "Total number of internal errors encountered by the promhttp metric handler.", "counter", "cause"},
	{handlerInFlight, "Current number of scrapes being served.", "gauge", ""},
	{handlerRequests, "Total number of scrapes by HTTP status code.", "counter", "code"},
}

var errorCauses = [...]string{"encoding", "gathering"}

// appendLive appends the live section in the text format or OpenMetrics.
func (h *metricsHandler) appendLive(dst []byte, om bool, names map[string]struct{}) []byte {
	for i, f := range liveFamilyDefs {
		if names != nil {
			if _, ok := names[f.name]; !ok {
				continue
			}
		}
		meta := f.name
		if om && f.typ == "counter" {
			meta = strings.TrimSuffix(meta, "_total") // OpenMetrics names the family, not the sample
		}
		dst = append(dst, "# HELP "...)
		dst = append(dst, meta...)
		dst = append(dst, ' ')
		dst = append(dst, f.help...)
		dst = append(dst, "\n# TYPE "...)
		dst = append(dst, meta...)
		dst = append(dst, ' ')
		dst = append(dst, f.typ...)
		dst = append(dst, '\n')
		sample := func(label string, v float64) {
			dst = append(dst, f.name...)
			if label != "" {
				dst = append(dst, '{')
				dst = append(dst, f.label...)
				dst = append(dst, `="`...)
				dst = append(dst, label...)
				dst = append(dst, `"}`...)
			}
			dst = append(dst, ' ')
			dst = appendValue(dst, v, om)
			dst = append(dst, '\n')
		}
		switch i {
		case 0:
			sample(errorCauses[0], float64(h.encodingFails.Load()))
			sample(errorCauses[1], float64(h.gatheringFails.Load()))
		case 1:
			sample("", float64(h.inFlight.Load()))
		case 2:
			for j, code := range handlerCodeNames {
				sample(code, float64(h.requests[j].Load()))
			}
		}
	}
	if om {
		dst = append(dst, "# EOF\n"...)
	}
	return dst
}

var handlerCodeNames = func() (names [len(handlerCodes)]string) {
	for i, c := range handlerCodes {
		names[i] = strconv.Itoa(c)
	}
	return names
}()

// appendValue formats a sample value as expfmt does: the shortest 'g' form,
// and in OpenMetrics with ".0" when that has neither a point nor an
// exponent. (The values here are counts: never NaN or infinite.)
func appendValue(dst []byte, v float64, om bool) []byte {
	n := len(dst)
	dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	if om && !bytes.ContainsAny(dst[n:], "e.") {
		dst = append(dst, ".0"...)
	}
	return dst
}

// liveFamilies returns the handler's own families now (those named in
// names, if not nil), sorted by name, as promhttp's registry would gather
// them.
func (h *metricsHandler) liveFamilies(names map[string]struct{}) []*dto.MetricFamily {
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	label := func(name, value string) []*dto.LabelPair {
		return []*dto.LabelPair{{Name: &name, Value: &value}}
	}
	value := func(v uint64) *float64 { f := float64(v); return &f }
	family := func(name, help string, typ *dto.MetricType, ms ...*dto.Metric) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Help: &help, Type: typ, Metric: ms}
	}
	requests := make([]*dto.Metric, len(handlerCodes))
	for i := range handlerCodes {
		requests[i] = &dto.Metric{Label: label("code", handlerCodeNames[i]), Counter: &dto.Counter{Value: value(h.requests[i].Load())}}
	}
	inFlight := float64(h.inFlight.Load())
	all := []*dto.MetricFamily{
		family(liveFamilyDefs[0].name, liveFamilyDefs[0].help, &counter,
			&dto.Metric{Label: label("cause", errorCauses[0]), Counter: &dto.Counter{Value: value(h.encodingFails.Load())}},
			&dto.Metric{Label: label("cause", errorCauses[1]), Counter: &dto.Counter{Value: value(h.gatheringFails.Load())}}),
		family(liveFamilyDefs[1].name, liveFamilyDefs[1].help, &gauge,
			&dto.Metric{Gauge: &dto.Gauge{Value: &inFlight}}),
		family(liveFamilyDefs[2].name, liveFamilyDefs[2].help, &counter, requests...),
	}
	if names == nil {
		return all
	}
	var out []*dto.MetricFamily
	for _, mf := range all {
		if _, ok := names[mf.GetName()]; ok {
			out = append(out, mf)
		}
	}
	return out
}
