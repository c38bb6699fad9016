package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Path is where the agent serves its history.
const Path = "/api/v1/history"

// DefaultMaxInFlight bounds the history queries served at once; more get
// 503. Each holds a copy of the rows in range (at most history_bytes) and
// at most 1 MiB of decoded points.
const DefaultMaxInFlight = 2

// NewHandler serves GET /api/v1/history: the series of h as JSON,
//
//	{"series":[{"name":"odigos_ebpf_objects","labels":{"type":"map"},"points":[[1700000000000,42],...]},...]}
//
// with points as [unix milliseconds, value], oldest first. Parameters:
// name (repeatable) keeps the series of those names; start and end (unix
// seconds, possibly fractional, or RFC 3339, as in Prometheus' HTTP API)
// bound the points, inclusive; points (1 to 11,000, default 11,000) is the
// most points per series: more rows in range are thinned evenly to that
// many, keeping the newest (a chart asks for about its width in pixels).
// maxInFlight ≤ 0 means DefaultMaxInFlight.
func NewHandler(h *History, maxInFlight int) http.Handler {
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight
	}
	return &handler{h: h, sem: make(chan struct{}, maxInFlight)}
}

type handler struct {
	h   *History
	sem chan struct{}
}

func (hd *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case hd.sem <- struct{}{}:
		defer func() { <-hd.sem }()
	default:
		jsonError(w, http.StatusServiceUnavailable, errors.New("too many history queries at once; retry"))
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 32<<10)
	var buf []byte
	buf = append(buf, `{"series":[`...)
	first := true
	err = hd.h.Query(q, func(p *Points) error {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendSeries(buf, p)
		_, err := bw.Write(buf)
		buf = buf[:0]
		return err
	})
	if err != nil {
		// Headers are gone: end the body so that the client's JSON
		// parser fails rather than reads a truncated list as whole.
		bw.WriteString("\n")
		bw.Flush()
		return
	}
	buf = append(buf, "]}\n"...)
	bw.Write(buf)
	bw.Flush()
}

func appendSeries(b []byte, p *Points) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"labels":{`...)
	for i, l := range p.Labels {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, l.Name)
		b = append(b, ':')
		b = appendString(b, l.Value)
	}
	b = append(b, `},"points":[`...)
	for i, t := range p.T {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, t, 10)
		b = append(b, ',')
		b = appendNumber(b, p.V[i])
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// appendNumber writes v as a JSON number, or null for what JSON has no
// number for (NaN, infinities).
func appendNumber(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return append(b, "null"...)
	case v == math.Trunc(v) && math.Abs(v) < 1<<53: // counts and bytes, written whole
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendString(b []byte, s string) []byte {
	enc, _ := json.Marshal(s) // a string always marshals
	return append(b, enc...)
}

func jsonError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b := append([]byte(`{"error":`), appendString(nil, err.Error())...)
	w.Write(append(b, "}\n"...))
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Names: v["name"]}
	if s := v.Get("start"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return q, fmt.Errorf("start: %w", err)
		}
		q.Start = ceilMilli(t)
	}
	if s := v.Get("end"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return q, fmt.Errorf("end: %w", err)
		}
		q.End = t.UnixMilli() // floor for times after 1970
		if q.End < q.Start {
			return q, errors.New("end: before start")
		}
		if q.End == 0 { // 0 means no bound to Query
			q.End = 1
		}
	}
	if s := v.Get("points"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > DefaultMaxPoints {
			return q, fmt.Errorf("points: want an integer from 1 to %d, got %q", DefaultMaxPoints, s)
		}
		q.MaxPoints = n
	}
	return q, nil
}

func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms
}

// parseTime reads a time as Prometheus' HTTP API does: unix seconds,
// possibly fractional, or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
			return time.Time{}, fmt.Errorf("%q is not a time", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want unix seconds (1700000000.5) or RFC 3339 (2023-11-14T22:13:20Z)", s)
	}
	return t, nil
}
