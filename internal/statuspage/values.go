package statuspage

// Reading gathered families and formatting their values for the page.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// families indexes gathered families by name.
type families map[string]*dto.MetricFamily

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// find returns the series of family name with the given label values
// (pairs of name, value).
func (f families) find(name string, labels ...string) *dto.Metric {
	mf := f[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if label(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// Cell is one number of the page, with what it was read from: the test of
// the page compares data-value with a scrape of /metrics.
type Cell struct {
	Metric string // the family; "" for a cell with no number
	Labels string // the series' labels as in the text format, a="b",c="d"
	Sum    bool   // the sum of every series of the family
	Value  float64
	Text   string
}

// Raw is the value in full, parsed back exactly: whole numbers as
// integers, others as Go formats them.
func (c Cell) Raw() string {
	if c.Value == math.Trunc(c.Value) && math.Abs(c.Value) < 1<<53 {
		return strconv.FormatInt(int64(c.Value), 10)
	}
	return strconv.FormatFloat(c.Value, 'g', -1, 64)
}

// Present tells whether the cell holds a number.
func (c Cell) Present() bool { return c.Metric != "" }

type format func(float64) string

// cell reads a series; a missing one is an empty cell.
func (p *Page) cell(f families, name string, fmtv format, labels ...string) Cell {
	full := p.opts.Namespace + "_" + name
	m := f.find(full, labels...)
	if m == nil {
		return Cell{Text: "–"}
	}
	return Cell{Metric: full, Labels: labelString(m), Value: value(m), Text: fmtv(value(m))}
}

// sum adds every series of a family.
func (p *Page) sum(f families, name string, fmtv format) Cell {
	full := p.opts.Namespace + "_" + name
	mf := f[full]
	if mf == nil {
		return Cell{Text: "–"}
	}
	var s float64
	for _, m := range mf.GetMetric() {
		s += value(m)
	}
	return Cell{Metric: full, Sum: true, Value: s, Text: fmtv(s)}
}

func labelString(m *dto.Metric) string {
	var b strings.Builder
	for i, l := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
	}
	return b.String()
}

func plural(kind string) string { return kind + "s" }

func budgetNote(usage, budget Cell) string {
	if !usage.Present() || !budget.Present() || budget.Value == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%% used; collection is suspended at 90%%", 100*usage.Value/budget.Value)
}

func pct(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) }

// Formats of the numbers shown; the exact value is in data-value.

func count(v float64) string {
	if v != math.Trunc(v) || math.Abs(v) >= 1e15 {
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	s := strconv.FormatInt(int64(math.Abs(v)), 10)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func bytesText(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return count(v) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

func seconds(v float64) string {
	switch {
	case v == 0:
		return "0 s"
	case v < 1e-3:
		return strconv.FormatFloat(v*1e6, 'f', 0, 64) + " µs"
	case v < 1:
		return strconv.FormatFloat(v*1e3, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " s"
}

func percent(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }

func onOff(v float64) string {
	if v == 1 {
		return "on"
	}
	return "off"
}

// age shows a Unix time as how long ago it was.
func (p *Page) age(v float64) string {
	d := p.opts.Now().Sub(time.Unix(0, int64(v*1e9)))
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}
