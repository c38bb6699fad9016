package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// RepoRoot returns the root of the repository: the directory of go.mod
// above this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RequireTool returns the path of the command name, installed by the Debian
// package pkg. Without it the test skips, or fails in CI, which installs it.
func RequireTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			tb.Fatalf("%s not found; CI installs Debian's %s package (.ci/run)", name, pkg)
		}
		tb.Skipf("%s not found (Debian package %s)", name, pkg)
	}
	return p
}

// MetricRef is one row of the metrics reference (docs/metrics.md).
type MetricRef struct {
	Name    string
	Type    string   // gauge, counter, histogram
	Labels  []string // sorted; nil when the row says —
	Unit    string
	Present string // always, after a cycle, with system stats, with element counts
}

// MetricsReference is docs/metrics.md, parsed.
type MetricsReference struct {
	Metrics []MetricRef
	// Groups are the name prefixes of the standard metrics ("go_",
	// "process_"...), listed as `go_*`.
	Groups []string
}

// The header rows of the two tables of docs/metrics.md.
const (
	metricsHeader = "| metric | type | labels | unit | present | meaning |"
	groupsHeader  = "| group | source | meaning |"
)

var backticked = regexp.MustCompile("`([^`]*)`")

// LoadMetricsReference parses the tables of the metrics reference at path.
func LoadMetricsReference(path string) (*MetricsReference, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ref := &MetricsReference{}
	var table string // the header of the table being read, or ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == metricsHeader || line == groupsHeader:
			table = line
			continue
		case !strings.HasPrefix(line, "|"):
			table = ""
			continue
		case table == "" || strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		name := strings.Trim(cells[0], "`")
		if table == groupsHeader {
			if len(cells) != 3 || !strings.HasSuffix(name, "*") {
				return nil, fmt.Errorf("%s:%d: want | `prefix*` | source | meaning |", path, n)
			}
			ref.Groups = append(ref.Groups, strings.TrimSuffix(name, "*"))
			continue
		}
		if len(cells) != 6 || name == "" || name == cells[0] {
			return nil, fmt.Errorf("%s:%d: want | `name` | type | labels | unit | present | meaning |", path, n)
		}
		m := MetricRef{Name: name, Type: cells[1], Unit: cells[3], Present: cells[4]}
		for _, l := range backticked.FindAllStringSubmatch(cells[2], -1) {
			m.Labels = append(m.Labels, l[1])
		}
		slices.Sort(m.Labels)
		ref.Metrics = append(ref.Metrics, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ref.Metrics) == 0 {
		return nil, fmt.Errorf("%s: no metrics table (header %q)", path, metricsHeader)
	}
	return ref, nil
}

// Metric returns the row of name, where name may also be one of the
// series of a histogram (_bucket, _sum, _count).
func (r *MetricsReference) Metric(name string) (MetricRef, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := r.Metric(base); ok && m.Type == "histogram" {
				return m, true
			}
		}
	}
	return MetricRef{}, false
}

// InGroup reports whether name belongs to one of the groups of standard
// metrics.
func (r *MetricsReference) InGroup(name string) bool {
	return slices.ContainsFunc(r.Groups, func(p string) bool { return strings.HasPrefix(name, p) })
}

var (
	promqlStrings   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	grafanaVariable = regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]`)
	promqlToken     = regexp.MustCompile(`[a-zA-Z0-9_:]+`)
)

// MetricNames returns the names in a PromQL expression that name metrics
// of this project's world: the agent's (prefix namespace + "_"), recording
// rules (level:metric:operation, names with a colon) and the standard
// groups (go_, process_, promhttp_). Label values, durations, functions,
// keywords, label names and Grafana variables are not metric names.
func MetricNames(expr, namespace string) []string {
	expr = promqlStrings.ReplaceAllString(expr, `""`)
	expr = grafanaVariable.ReplaceAllString(expr, " ")
	var names []string
	for _, tok := range promqlToken.FindAllString(expr, -1) {
		if tok[0] >= '0' && tok[0] <= '9' {
			continue // a number or a duration (5m, 1h:5m)
		}
		if strings.HasPrefix(tok, namespace+"_") || strings.Contains(tok, ":") ||
			strings.HasPrefix(tok, "go_") || strings.HasPrefix(tok, "process_") || strings.HasPrefix(tok, "promhttp_") {
			if !slices.Contains(names, tok) {
				names = append(names, tok)
			}
		}
	}
	return names
}

// PanelQuery is one PromQL query of a Grafana dashboard.
type PanelQuery struct {
	Panel string // the panel's title, or "variable <name>"
	Expr  string
}

// DashboardQueries returns every query of the Grafana dashboard at path:
// each target's expr in every panel (rows included), and each query
// variable's query. It fails on a panel, other than a row or a text panel,
// that has no query.
func DashboardQueries(path string) ([]PanelQuery, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var qs []PanelQuery
	var walk func([]dashboardPanel) error
	walk = func(panels []dashboardPanel) error {
		for _, p := range panels {
			if err := walk(p.Panels); err != nil {
				return err
			}
			n := 0
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					qs = append(qs, PanelQuery{Panel: p.Title, Expr: t.Expr})
					n++
				}
			}
			if n == 0 && p.Type != "row" && p.Type != "text" {
				return fmt.Errorf("%s: panel %q (%s) has no query", path, p.Title, p.Type)
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		if q == "" {
			return nil, fmt.Errorf("%s: variable %q has no query", path, v.Name)
		}
		qs = append(qs, PanelQuery{Panel: "variable " + v.Name, Expr: q})
	}
	return qs, nil
}

type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// GrafanaToPromQL replaces the Grafana variables of a query so that
// Prometheus can run it: interval variables become rateWindow, any other
// variable (a label value) ".*". Variable queries (label_values(metric,
// label)) become the metric selector they list.
func GrafanaToPromQL(expr, rateWindow string) string {
	if inner, ok := strings.CutPrefix(strings.TrimSpace(expr), "label_values("); ok {
		inner = strings.TrimSuffix(inner, ")")
		if i := strings.LastIndex(inner, ","); i >= 0 {
			inner = inner[:i]
		}
		expr = inner
	}
	for _, v := range []string{"$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}", "$__range", "${__range}"} {
		expr = strings.ReplaceAll(expr, v, rateWindow)
	}
	return grafanaVariable.ReplaceAllString(expr, ".*")
}

// LockedBuffer is a bytes.Buffer safe for concurrent writers and readers:
// the output of a process or a logger that a test reads while it runs.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
