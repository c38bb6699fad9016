// Package deploy holds no code: its tests check the Prometheus rules and the
// Grafana dashboard of this directory with promtool and against the metrics
// reference (docs/metrics.md).
package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ebpf-metrics/ebpf-metrics/internal/testutil"
)

const namespace = "odigos_ebpf"

var (
	ruleFiles = []string{"prometheus/alerts.yml", "prometheus/recording.yml"}
	dashboard = filepath.Join("grafana", "ebpf-metrics.json")
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(testutil.RequireTool(t, "promtool", "prometheus"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, append([]string{"check", "rules"}, ruleFiles...)...)
}

// TestPromtoolCheckConfig checks the example configuration of README.md's
// walkthrough, and the rule files it loads.
func TestPromtoolCheckConfig(t *testing.T) {
	promtool(t, "check", "config", "prometheus/prometheus.yml")
}

func TestPromtoolTestRules(t *testing.T) {
	tests, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in prometheus/tests: %v", err)
	}
	promtool(t, append([]string{"test", "rules"}, tests...)...)
}

type rule struct {
	Alert  string `yaml:"alert"`
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

func (r rule) name() string { return r.Alert + r.Record }

func loadRules(t *testing.T) []rule {
	t.Helper()
	var rules []rule
	for _, f := range ruleFiles {
		var file struct {
			Groups []struct {
				Rules []rule `yaml:"rules"`
			} `yaml:"groups"`
		}
		readYAML(t, f, &file)
		for _, g := range file.Groups {
			rules = append(rules, g.Rules...)
		}
	}
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	return rules
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryRuleIsTested requires, for every alert, a promtool test where it
// fires and one where it does not; for every recording rule, a test where it
// records samples and one where it records none.
func TestEveryRuleIsTested(t *testing.T) {
	type outcome struct{ fires, silent bool }
	seen := make(map[string]*outcome)
	get := func(name string) *outcome {
		if seen[name] == nil {
			seen[name] = &outcome{}
		}
		return seen[name]
	}
	files, _ := filepath.Glob("prometheus/tests/*.yml")
	for _, f := range files {
		var file struct {
			Tests []struct {
				Alerts []struct {
					Name   string `yaml:"alertname"`
					Alerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
				Exprs []struct {
					Expr    string `yaml:"expr"`
					Samples []any  `yaml:"exp_samples"`
				} `yaml:"promql_expr_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &file)
		for _, tc := range file.Tests {
			for _, a := range tc.Alerts {
				o := get(a.Name)
				o.fires = o.fires || len(a.Alerts) > 0
				o.silent = o.silent || len(a.Alerts) == 0
			}
			for _, e := range tc.Exprs {
				for _, name := range testutil.MetricNames(e.Expr, namespace) {
					o := get(name)
					o.fires = o.fires || len(e.Samples) > 0
					o.silent = o.silent || len(e.Samples) == 0
				}
			}
		}
	}
	for _, r := range loadRules(t) {
		o := get(r.name())
		if !o.fires {
			t.Errorf("%s: no promtool test where it fires (records samples)", r.name())
		}
		if !o.silent {
			t.Errorf("%s: no promtool test where it stays silent (records nothing)", r.name())
		}
	}
}

// checkNames fails a query that names a metric neither in the metrics
// reference nor recorded by recording.yml, or that names no metric at all.
func checkNames(t *testing.T, what, expr string, ref *testutil.MetricsReference, recorded []string) {
	t.Helper()
	names := testutil.MetricNames(expr, namespace)
	if len(names) == 0 {
		t.Errorf("%s: queries no metric of ebpf-metrics: %s", what, expr)
	}
	for _, n := range names {
		_, documented := ref.Metric(n)
		if !documented && !ref.InGroup(n) && !slices.Contains(recorded, n) {
			t.Errorf("%s: %s is neither in docs/metrics.md nor recorded in recording.yml", what, n)
		}
	}
}

func reference(t *testing.T) (*testutil.MetricsReference, []string) {
	t.Helper()
	ref, err := testutil.LoadMetricsReference(filepath.Join(testutil.RepoRoot(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, r := range loadRules(t) {
		if r.Record != "" {
			recorded = append(recorded, r.Record)
		}
	}
	return ref, recorded
}

func TestRulesQueryExportedMetrics(t *testing.T) {
	ref, recorded := reference(t)
	for _, r := range loadRules(t) {
		checkNames(t, r.name(), r.Expr, ref, recorded)
	}
}

func TestDashboardQueriesExportedMetrics(t *testing.T) {
	ref, recorded := reference(t)
	queries, err := testutil.DashboardQueries(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 20 {
		t.Fatalf("only %d queries in %s", len(queries), dashboard)
	}
	for _, q := range queries {
		checkNames(t, fmt.Sprintf("panel %q", q.Panel), q.Expr, ref, recorded)
	}
}

// TestDashboardQueriesParse has promtool parse every query of the
// dashboard, written as recording rules with the Grafana variables
// replaced.
func TestDashboardQueriesParse(t *testing.T) {
	queries, err := testutil.DashboardQueries(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range queries {
		expr := testutil.GrafanaToPromQL(q.Expr, "5m")
		if strings.Contains(expr, "$") {
			t.Errorf("panel %q: variable left in %s", q.Panel, expr)
		}
		quoted, err := yaml.Marshal(expr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      # panel %q\n      - record: dashboard:query_%d:expr\n        expr: %s", q.Panel, i, quoted)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", file)
}
