// Package statuspage serves the agent's status page at /: the node's eBPF
// objects and memory now, the agent's health, the top owners, maps and
// programs where those metrics exist, and charts over the history.
//
// The numbers are rendered on the server from the metric families of the
// exposition cache's current generation, the very ones /metrics serves, so
// they are equal to a scrape of the same cycle by construction and need no
// JavaScript. A script adds the charts (uPlot, vendored and embedded: no
// build step, no CDN) over GET /api/v1/history, and refreshes the page
// when a new cycle has completed.
package statuspage

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

//go:embed page.html.tmpl
var pageTemplate string

//go:embed static
var static embed.FS

// StaticPrefix is where the page's scripts and styles are served.
const StaticPrefix = "/static/"

// Options configure the page.
type Options struct {
	// Namespace prefixes the metric names ("" means odigos_ebpf).
	Namespace string
	// TelemetryPath is where /metrics is served, for the link.
	TelemetryPath string
	// HistoryPath is where the history is served; "" when the history is
	// off: the page then has no charts.
	HistoryPath string
	// Pprof links /debug/pprof/.
	Pprof bool
	// Version is shown in the footer.
	Version string
	// Now is the clock, for "10s ago"; nil means time.Now.
	Now func() time.Time
}

// Page serves the status page. Mount it at "GET /{$}" and Static at
// StaticPrefix.
type Page struct {
	g    prometheus.Gatherer
	opts Options
	tmpl *template.Template
	host string
}

// New returns the page over g: give it the exposition Cache, whose Gather
// returns the families /metrics serves.
func New(g prometheus.Gatherer, opts Options) *Page {
	if opts.Namespace == "" {
		opts.Namespace = "odigos_ebpf"
	}
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	host, _ := os.Hostname()
	return &Page{
		g: g, opts: opts, host: host,
		tmpl: template.Must(template.New("page").Funcs(template.FuncMap{"pct": pct}).Parse(pageTemplate)),
	}
}

// Static serves the embedded scripts and styles under StaticPrefix.
func Static() http.Handler {
	sub, _ := fs.Sub(static, "static") // the directory is embedded
	files := http.StripPrefix(StaticPrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Embedded files have no modification time to revalidate with:
		// they change only with the binary, whose version names them.
		w.Header().Set("Cache-Control", "max-age=300")
		files.ServeHTTP(w, r)
	})
}

func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mfs, _ := p.g.Gather() // what was gathered, even in part, is shown
	v := p.build(mfs)
	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, v); err != nil {
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// view is what the template renders.
type view struct {
	NS, Host, Version string
	Telemetry         string
	HistoryPath       string
	Pprof             bool
	Ready             bool
	Cycles            Cell
	Headline          []headline
	Kinds             []kindRow
	Types             []typeTable
	Health            []healthRow
	Modes, Features   []flag
	Tops              []topTable
	Generated         string
}

type headline struct {
	Title string
	Cell  Cell
	Note  string
}

type kindRow struct {
	Kind                                          string
	Objects, Memory, Created, Removed             Cell
	Tracked, Capacity, Untracked, Unreadable, Own Cell
}

type typeTable struct {
	Title, Label string
	Memory       bool
	Rows         []typeRow
}

type typeRow struct {
	Type            string
	Objects, Memory Cell
	Share           float64 // of the kind's memory, for the bar
}

type healthRow struct {
	Name  string
	Cells []captioned
	Note  string
	Bad   bool
}

// captioned is a number with a word after it: "3 errors".
type captioned struct {
	Cell    Cell
	Caption string
}

func cs(pairs ...any) []captioned {
	var out []captioned
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, captioned{pairs[i].(Cell), pairs[i+1].(string)})
	}
	return out
}

type flag struct {
	Name string
	On   bool
	Cell Cell
}

type topTable struct {
	Title   string
	Columns []string
	Rows    []topRow
}

type topRow struct {
	Labels []string
	Cell   Cell
}

var kinds = []string{"map", "program", "link"}

func (p *Page) build(mfs []*dto.MetricFamily) *view {
	f := families{}
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	ns := p.opts.Namespace
	v := &view{
		NS: ns, Host: p.host, Version: p.opts.Version, Telemetry: p.opts.TelemetryPath,
		HistoryPath: p.opts.HistoryPath, Pprof: p.opts.Pprof,
		Cycles:    p.cell(f, "collection_cycles_total", count),
		Generated: p.opts.Now().UTC().Format(time.RFC3339),
	}
	last := p.cell(f, "last_success_timestamp_seconds", p.age)
	v.Ready = last.Present()

	total := p.cell(f, "total_memory_bytes", bytesText)
	v.Headline = append(v.Headline, headline{"eBPF kernel memory", total, "maps and programs, each object once"})
	for _, k := range kinds {
		v.Headline = append(v.Headline, headline{plural(k), p.cell(f, "objects", count, "type", k), ""})
	}
	budget := p.cell(f, "collector_memory_budget_bytes", bytesText)
	usage := p.cell(f, "collector_memory_usage_bytes", bytesText)
	v.Headline = append(v.Headline, headline{"agent memory", usage, "of " + budget.Text + " budget"})

	for _, k := range kinds {
		row := kindRow{
			Kind:       k,
			Objects:    p.cell(f, "objects", count, "type", k),
			Memory:     p.cell(f, "memory_bytes", bytesText, "type", k),
			Created:    p.cell(f, "objects_created_total", count, "type", k),
			Removed:    p.cell(f, "objects_removed_total", count, "type", k),
			Tracked:    p.cell(f, "tracked_objects", count, "type", k),
			Capacity:   p.cell(f, "tracked_capacity", count, "type", k),
			Untracked:  p.cell(f, "untracked_objects", count, "type", k),
			Unreadable: p.cell(f, "unreadable_objects", count, "type", k),
			Own:        p.cell(f, "own_objects", count, "type", k),
		}
		v.Kinds = append(v.Kinds, row)
		v.Types = append(v.Types, p.types(f, k))
	}

	active := p.cell(f, "collection_active", onOff)
	errs := p.sum(f, "collection_errors_total", count)
	hits := p.cell(f, "collection_memory_limit_hit_total", count)
	v.Health = []healthRow{
		{Name: "collection", Cells: cs(active, ""), Bad: active.Present() && active.Value != 1,
			Note: "suspended at 90% of the memory budget"},
		{Name: "memory budget", Cells: cs(usage, "used", budget, "budget"), Note: budgetNote(usage, budget),
			Bad: budget.Value > 0 && usage.Value >= 0.9*budget.Value},
		{Name: "last cycle", Cells: cs(last, "", p.cell(f, "last_collection_duration_seconds", seconds), "long")},
		{Name: "cycles", Cells: cs(v.Cycles, "completed", p.cell(f, "collection_overruns_total", count), "overran the interval")},
		{Name: "errors", Cells: cs(errs, "failed kernel operations", hits, "cycles stopped by the budget"),
			Bad: errs.Value > 0 || hits.Value > 0},
		{Name: "system calls", Cells: cs(p.sum(f, "syscalls_total", count), "since start")},
	}
	if hb := p.cell(f, "history_bytes", bytesText); hb.Present() {
		samples := p.cell(f, "history_samples", count)
		note := ""
		if samples.Value > 0 {
			note = fmt.Sprintf("%.2f bytes per sample", hb.Value/samples.Value)
		}
		v.Health = append(v.Health, healthRow{Name: "history", Note: note,
			Cells: cs(samples, "samples", hb, "compressed", p.cell(f, "history_memory_bytes", bytesText), "held")})
	}
	for _, k := range kinds {
		if m := f.find(ns+"_collection_mode", "type", k); m != nil {
			v.Modes = append(v.Modes, flag{Name: k, On: true,
				Cell: Cell{Metric: ns + "_collection_mode", Labels: labelString(m), Value: value(m), Text: label(m, "mode")}})
		}
	}
	if mf := f[ns+"_feature_enabled"]; mf != nil {
		for _, m := range mf.GetMetric() {
			v.Features = append(v.Features, flag{Name: label(m, "feature"), On: value(m) == 1,
				Cell: Cell{Metric: ns + "_feature_enabled", Labels: labelString(m), Value: value(m), Text: onOff(value(m))}})
		}
	}
	v.Tops = p.tops(f)
	return v
}

// types is the table of one kind's types, the largest first.
func (p *Page) types(f families, kind string) typeTable {
	t := typeTable{Title: plural(kind) + " by type", Label: kind + "_type", Memory: kind != "link"}
	mf := f[p.opts.Namespace+"_"+kind+"_objects"]
	if mf == nil {
		return t
	}
	var kindMem float64
	for _, m := range mf.GetMetric() {
		typ := label(m, t.Label)
		row := typeRow{Type: typ, Objects: p.cell(f, kind+"_objects", count, t.Label, typ)}
		if t.Memory {
			row.Memory = p.cell(f, kind+"_memory_bytes", bytesText, t.Label, typ)
			kindMem += row.Memory.Value
		}
		t.Rows = append(t.Rows, row)
	}
	for i := range t.Rows {
		if kindMem > 0 {
			t.Rows[i].Share = t.Rows[i].Memory.Value / kindMem
		}
	}
	slices.SortStableFunc(t.Rows, func(a, b typeRow) int {
		if a.Memory.Value != b.Memory.Value {
			return cmpDesc(a.Memory.Value, b.Memory.Value)
		}
		if a.Objects.Value != b.Objects.Value {
			return cmpDesc(a.Objects.Value, b.Objects.Value)
		}
		return strings.Compare(a.Type, b.Type)
	})
	return t
}

func cmpDesc(a, b float64) int {
	if a > b {
		return -1
	}
	return 1
}

// topTables are the per-owner and per-object families of issue "Whose is
// it", shown when the agent serves them: the ten largest series of each.
var topTables = []struct {
	name, title string
	labels      []string
	fmtv        format
}{
	{"owner_memory_bytes", "Top owners by memory", []string{"owner", "container_id", "pod_uid"}, bytesText},
	{"top_map_memory_bytes", "Largest maps", []string{"id", "name", "map_type", "owner", "container_id"}, bytesText},
	{"top_map_fill_ratio", "Fullest maps", []string{"id", "name", "map_type", "owner", "container_id"}, percent},
	{"top_program_run_time_seconds_total", "Hottest programs", []string{"id", "name", "program_type", "owner", "container_id"}, seconds},
}

const topRows = 10

// noProcess names the owner of the objects no process holds (owner="").
const noProcess = "(no process)"

func (p *Page) tops(f families) []topTable {
	var out []topTable
	for _, tt := range topTables {
		full := p.opts.Namespace + "_" + tt.name
		mf := f[full]
		if mf == nil || len(mf.GetMetric()) == 0 {
			continue
		}
		t := topTable{Title: tt.title, Columns: tt.labels}
		for _, m := range mf.GetMetric() {
			row := topRow{Cell: Cell{Metric: full, Labels: labelString(m), Value: value(m), Text: tt.fmtv(value(m))}}
			for _, l := range tt.labels {
				v := label(m, l)
				if l == "owner" && v == "" {
					v = noProcess // objects no process holds
				}
				row.Labels = append(row.Labels, v)
			}
			t.Rows = append(t.Rows, row)
		}
		slices.SortStableFunc(t.Rows, func(a, b topRow) int {
			if a.Cell.Value == b.Cell.Value {
				return slices.Compare(a.Labels, b.Labels)
			}
			return cmpDesc(a.Cell.Value, b.Cell.Value)
		})
		t.Rows = t.Rows[:min(len(t.Rows), topRows)]
		out = append(out, t)
	}
	return out
}
