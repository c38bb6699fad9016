// The live section: the handler's own promhttp_metric_handler_* series,
// exact for each scrape, written after the cached body.

package exposition

import (
	"bytes"
	"strconv"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

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

// bufPool holds the buffers of the live section, reused across scrapes.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

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
