package exposition

import (
	"bytes"
	"context"
	"hash/crc32"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Cache serves what a Gatherer gathered at its last refresh, so that a
// scrape does no collecting: it neither reads /proc (the process
// collector's files) nor builds a metric. The collector asks for a refresh
// after every cycle (Notify); a goroutine of the cache does it (Run), off
// both the cycle and the scrape, so that neither the cycle's
// zero-allocation promise nor the scrape's latency pays for it.
//
// A refresh also encodes what it gathered, once, in the formats that
// Prometheus and plain clients negotiate (the text format; OpenMetrics, also
// gzipped, as Prometheus asks for it): a scrape served by the Server then
// only copies bytes. Another format (protobuf; the text format gzipped...)
// is encoded at the first scrape that asks for it and kept until the next
// refresh. Name escaping schemes share one body when no name needs
// escaping, as is the case of the agent's.
//
// go_* and process_* are therefore as of the end of the last cycle, like
// the eBPF metrics themselves.
type Cache struct {
	g      prometheus.Gatherer
	notify chan struct{}
	gen    atomic.Pointer[generation]
	cond   atomic.Pointer[func() bool] // see Ready

	refreshing sync.Mutex // one refresh at a time
}

// generation is what one refresh gathered, and its encodings.
type generation struct {
	mfs []*dto.MetricFamily
	err error
	// ready: Ready's condition held before this generation was gathered.
	ready bool
	// legacyNames: every metric and label name is valid without escaping,
	// so that every escaping scheme encodes the same bytes.
	legacyNames bool

	mu     sync.Mutex                              // held while encoding a format not yet in bodies
	bodies atomic.Pointer[map[expfmt.Format]*body] // copied on write: lookups take no lock
}

// body is a generation's families encoded in one format.
type body struct {
	plain   []byte // the encoded families, without the format's closing (OpenMetrics' "# EOF")
	encErrs int    // families that failed to encode (what they wrote is in plain, as promhttp would send it)
	encErr  error  // the first of those errors

	// gzip: the gzip header then the deflate blocks of plain, flushed to a
	// byte boundary but not final, so that a scrape can append the blocks
	// of its live section and the trailer (crc and size of the whole): one
	// gzip member, readable by every client.
	gzOnce  sync.Once
	gzReady atomic.Bool // gz is built: a scrape can send it without waiting
	gz      []byte
	crc     uint32 // CRC-32 (IEEE) of plain
}

// eagerFormats are encoded at every refresh: what Prometheus (2.x and 3.x)
// and a client without an Accept header negotiate. The OpenMetrics ones are
// gzipped too.
var eagerFormats = func() []expfmt.Format {
	var formats []expfmt.Format
	for _, accept := range []string{
		"",
		"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
	} {
		f := negotiateFormat(http.Header{"Accept": {accept}})
		if !strings.Contains(string(f), "<unknown>") && !contains(formats, f) {
			formats = append(formats, f)
		}
	}
	return formats
}()

func contains(formats []expfmt.Format, f expfmt.Format) bool {
	for _, g := range formats {
		if g == f {
			return true
		}
	}
	return false
}

// NewCache returns a cache of g, empty until the first Refresh.
func NewCache(g prometheus.Gatherer) *Cache {
	c := &Cache{g: g, notify: make(chan struct{}, 1)}
	c.gen.Store(newGeneration(nil, nil))
	return c
}

func newGeneration(mfs []*dto.MetricFamily, err error) *generation {
	gen := &generation{mfs: withoutHandlerFamilies(mfs), err: err, legacyNames: true}
	for _, mf := range gen.mfs {
		if !model.LegacyValidation.IsValidMetricName(mf.GetName()) {
			gen.legacyNames = false
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !model.LegacyValidation.IsValidLabelName(l.GetName()) {
					gen.legacyNames = false
				}
			}
		}
	}
	gen.bodies.Store(&map[expfmt.Format]*body{})
	return gen
}

// key is the body of format f: f itself, or f without its escaping scheme
// when no name needs escaping.
func (gen *generation) key(f expfmt.Format) expfmt.Format {
	if gen.legacyNames {
		if i := strings.Index(string(f), "; escaping="); i >= 0 {
			return f[:i]
		}
	}
	return f
}

// withoutHandlerFamilies drops the families that the metrics handler adds
// live to every scrape, should the gathered registry hold them too: they
// would be stale, and twice in the scrape.
func withoutHandlerFamilies(mfs []*dto.MetricFamily) []*dto.MetricFamily {
	for i, mf := range mfs {
		if isHandlerFamily(mf.GetName()) {
			out := append([]*dto.MetricFamily(nil), mfs[:i]...)
			for _, mf := range mfs[i+1:] {
				if !isHandlerFamily(mf.GetName()) {
					out = append(out, mf)
				}
			}
			return out
		}
	}
	return mfs
}

// Refresh gathers from g now, and encodes the result in the eager formats.
func (c *Cache) Refresh() error {
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	// Checked before gathering: what held then is in what is gathered.
	cond := c.cond.Load()
	ready := cond != nil && (*cond)()
	mfs, err := c.g.Gather()
	gen := newGeneration(mfs, err)
	gen.ready = ready
	for _, f := range eagerFormats {
		b := gen.body(f)
		if f.FormatType() == expfmt.TypeOpenMetrics {
			b.gzipped()
		}
	}
	c.gen.Store(gen)
	return err
}

// Ready returns a ServerConfig.Ready that holds once a refresh has
// gathered after cond held (cond must stay true once it is). The
// condition alone would answer 200 in the moment between a first cycle's
// end and the refresh that follows it, while a scrape still gets the
// empty body gathered before.
func (c *Cache) Ready(cond func() bool) func() bool {
	c.cond.Store(&cond)
	return func() bool { return c.gen.Load().ready }
}

// Notify asks Run for a refresh. It never blocks and allocates nothing:
// the collector calls it at the end of each cycle.
func (c *Cache) Notify() {
	select {
	case c.notify <- struct{}{}:
	default: // a refresh is already pending
	}
}

// Run refreshes on each Notify until ctx is done.
func (c *Cache) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.notify:
			c.Refresh()
		}
	}
}

// Gather returns the families of the last refresh. They are shared by
// every scrape and must not be modified.
func (c *Cache) Gather() ([]*dto.MetricFamily, error) {
	gen := c.gen.Load()
	return gen.mfs, gen.err
}

func (c *Cache) current() *generation { return c.gen.Load() }

// lookup returns the body in format if it is encoded already, else nil.
func (gen *generation) lookup(f expfmt.Format) *body {
	return (*gen.bodies.Load())[gen.key(f)]
}

// body returns the body in format, encoding it if it is not yet.
func (gen *generation) body(f expfmt.Format) *body {
	if b := gen.lookup(f); b != nil {
		return b
	}
	gen.mu.Lock()
	defer gen.mu.Unlock()
	k := gen.key(f)
	old := *gen.bodies.Load()
	if b := old[k]; b != nil {
		return b // encoded while this one waited for the lock
	}
	b := encodeBody(gen.mfs, f, nil)
	bodies := make(map[expfmt.Format]*body, len(old)+1)
	for k, v := range old {
		bodies[k] = v
	}
	bodies[k] = b
	gen.bodies.Store(&bodies)
	return b
}

// encodeBody encodes mfs (those named in names, if names is not nil) in
// format f. Like promhttp with ContinueOnError, a family that fails to
// encode is counted and the others are still encoded.
func encodeBody(mfs []*dto.MetricFamily, f expfmt.Format, names map[string]struct{}) *body {
	var buf bytes.Buffer
	b := &body{}
	enc := expfmt.NewEncoder(&buf, f)
	for _, mf := range mfs {
		if names != nil {
			if _, ok := names[mf.GetName()]; !ok {
				continue
			}
		}
		if err := enc.Encode(mf); err != nil {
			if b.encErrs == 0 {
				b.encErr = err
			}
			b.encErrs++
		}
	}
	// Not closed: OpenMetrics' "# EOF" comes after the live section.
	b.plain = buf.Bytes()
	b.crc = crc32.ChecksumIEEE(b.plain)
	return b
}
