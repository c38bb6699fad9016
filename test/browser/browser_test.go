package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is Debian's browser, which CI installs.
const chromium = "/usr/bin/chromium"

// cycles is how many completed cycles the agent must have before the page is
// checked: the issue asks for at least 20 points per series.
const cycles = 20

func inCI() bool { return os.Getenv("CI") != "" }

// require skips the test for what it lacks, or fails it in CI, where nothing
// may be skipped.
func require(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if inCI() {
		t.Fatalf("CI=%s: %s; this test must not be skipped", os.Getenv("CI"), why)
	}
	t.Skip(why)
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return root
}

func build(t *testing.T, root, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a command until the test ends, then stops it with SIGTERM.
func start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return b
}

// scrape parses /metrics in the text format into name{labels} → value, the
// labels as written (sorted by name, quoted).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(get(t, base+"/metrics"))))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		key := line[:i]
		if !strings.HasSuffix(key, "}") {
			key += "{}"
		}
		out[key] = v
	}
	return out
}

// sum adds the series of a family in a scrape.
func sum(m map[string]float64, name string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

type apiSeries struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Points [][2]float64      `json:"points"`
}

// key is the series' name{labels} as /metrics writes it.
func (s apiSeries) key() string {
	var names []string
	for k := range s.Labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, k+"="+strconv.Quote(s.Labels[k]))
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

func history(t *testing.T, base, query string) []apiSeries {
	t.Helper()
	var resp struct {
		Series []apiSeries `json:"series"`
	}
	if err := json.Unmarshal(get(t, base+"/api/v1/history?"+query), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Series
}

// pageState is what the page shows, read in the browser.
type pageState struct {
	Cycles string `json:"cycles"`
	Cells  []struct {
		Metric string `json:"metric"`
		Labels string `json:"labels"`
		Sum    bool   `json:"sum"`
		Value  string `json:"value"`
	} `json:"cells"`
	Charts []struct {
		ID     string `json:"id"`
		Series int    `json:"series"`
		Points int    `json:"points"`
		Canvas int    `json:"canvas"` // canvas pixels drawn (not blank)
		Stroke int    `json:"stroke"` // pixels of the first series' colour
		Title  string `json:"title"`
		Legend []struct {
			Name   string `json:"name"`
			Labels string `json:"labels"`
			Value  string `json:"value"`
			T      string `json:"t"`
		} `json:"legend"`
	} `json:"charts"`
	ChartsCycles string `json:"chartsCycles"`
	ChartsError  string `json:"chartsError"`
}

const readPage = `(() => {
  const colours = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#ea580c", "#4f46e5", "#0d9488", "#9333ea", "#ca8a04", "#e11d48", "#475569", "#059669"]
    .map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const cells = [...document.querySelectorAll("#now span.num[data-metric]")].map((e) => ({
    metric: e.dataset.metric, labels: e.dataset.labels || "", sum: e.dataset.agg === "sum", value: e.dataset.value }));
  const charts = [...document.querySelectorAll("figure.chart")].map((f) => {
    const c = f.querySelector("canvas");
    let canvas = 0, stroke = 0;
    if (c) {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] === 0) continue;
        canvas++;
        // the colour of one of the chart's series (app.js' palette), antialiased
        if (colours.slice(0, +f.dataset.series).some(([r, g, b]) =>
          Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30)) stroke++;
      }
    }
    return { id: f.id, title: f.querySelector("h2").textContent, series: +f.dataset.series, points: +f.dataset.points,
      canvas, stroke,
      legend: [...f.querySelectorAll("table.last tr")].map((r) => ({ name: r.dataset.name, labels: r.dataset.labels, value: r.dataset.value, t: r.dataset.t })) };
  });
  return { cycles: document.getElementById("now").dataset.cycles, cells, charts,
    chartsCycles: document.body.dataset.chartsCycles || "", chartsError: document.body.dataset.chartsError || "" };
})()`

// chartNames are the series names of each chart, as app.js defines them.
var chartNames = map[string][]string{
	"chart-memory":          {"total_memory_bytes", "memory_bytes"},
	"chart-objects":         {"objects"},
	"chart-map-memory":      {"map_memory_bytes"},
	"chart-program-memory":  {"program_memory_bytes"},
	"chart-map-objects":     {"map_objects"},
	"chart-program-objects": {"program_objects"},
	"chart-owner-memory":    {"owner_memory_bytes"},
	"chart-churn":           {"objects_created_total", "objects_removed_total"},
	"chart-agent-memory":    {"collector_memory_usage_bytes"},
	"chart-cycle":           {"last_collection_duration_seconds"},
}

// TestStatusPageInChromium runs the real agent in iterator mode over a
// population held by ebpf-loadgen, waits for 20 cycles, and checks in
// headless Chromium that the charts are drawn with the API's data and that
// the numbers on the page equal /metrics. It also checks the history
// against /metrics: at least 20 points per series, the point of a cycle
// equal to the scrape of that cycle, and the history within history_bytes.
func TestStatusPageInChromium(t *testing.T) {
	require(t, os.Geteuid() == 0, "needs root to load BPF iterators")
	_, err := os.Stat(chromium)
	require(t, err == nil, "needs Debian's chromium at "+chromium)

	root := repoRoot(t)
	dir := t.TempDir()
	agent, loadgen := filepath.Join(dir, "ebpf-metrics"), filepath.Join(dir, "ebpf-loadgen")
	build(t, root, "./cmd/ebpf-metrics", agent)
	build(t, root, "./cmd/ebpf-loadgen", loadgen)

	// A population to look at, held until the end.
	lg := start(t, loadgen, "--maps", "30", "--programs", "6", "--links", "3", "--fill", "0.5")
	out, err := lg.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := lg.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.Contains(line, `"ready":true`) {
		t.Fatalf("ebpf-loadgen: %q %v", line, err)
	}

	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("max_syscalls_per_second: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := "http://" + addr
	ag := start(t, agent, "--collection.mode=iterator", "--collection.interval=500ms",
		"--config.file="+cfg, "--web.listen-address="+addr, "--log.level=warn")
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if resp, err := client.Get(base + "/metrics"); err == nil {
			resp.Body.Close()
			if m := scrape(t, base); m["odigos_ebpf_collection_cycles_total{}"] >= cycles {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d cycles within 2 minutes", cycles)
		}
		time.Sleep(250 * time.Millisecond)
	}

	checkHistory(t, base)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // as root
		chromedp.Headless,
		chromedp.DisableGPU,
		// The machine's network is closed: nothing to fetch in the background.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1400, 2200),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// The page's numbers are those of one cycle; cycles end every 500 ms.
	// Load it between two scrapes until one of them is of the same cycle.
	var st pageState
	var metrics map[string]float64
	for try := 0; ; try++ {
		before := scrape(t, base)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
			t.Fatal(err)
		}
		if st, err = chromedp.Run(ctx, waitCharts); err != nil {
			t.Fatal(err)
		}
		after := scrape(t, base)
		for _, m := range []map[string]float64{before, after} {
			if strconv.FormatFloat(m["odigos_ebpf_collection_cycles_total{}"], 'f', -1, 64) == st.Cycles {
				metrics = m
			}
		}
		if metrics != nil {
			break
		}
		if try == 20 {
			t.Fatalf("the page never showed the cycle of a scrape around it (page cycle %s)", st.Cycles)
		}
	}
	if st.ChartsError != "" {
		t.Fatalf("charts: %s", st.ChartsError)
	}

	// Every number on the page is /metrics' for that cycle.
	if len(st.Cells) < 40 {
		t.Errorf("%d numbers on the page", len(st.Cells))
	}
	for _, c := range st.Cells {
		v, err := strconv.ParseFloat(c.Value, 64)
		if err != nil {
			t.Fatal(err)
		}
		key := c.Metric + "{" + c.Labels + "}"
		want, ok := metrics[key]
		if c.Sum {
			key, want, ok = c.Metric+" (sum)", sum(metrics, c.Metric), true
		}
		if !ok || want != v {
			t.Errorf("page %s = %v, /metrics %v (present %v)", key, v, want, ok)
		}
	}
	for _, k := range []string{`odigos_ebpf_objects{type="map"}`, `odigos_ebpf_total_memory_bytes{}`, `odigos_ebpf_map_memory_bytes{map_type="hash"}`} {
		if !slices.ContainsFunc(st.Cells, func(c struct {
			Metric string `json:"metric"`
			Labels string `json:"labels"`
			Sum    bool   `json:"sum"`
			Value  string `json:"value"`
		}) bool {
			return c.Metric+"{"+c.Labels+"}" == k
		}) {
			t.Errorf("%s: not on the page", k)
		}
	}

	// Every chart is drawn from the API's data: as many series as the API
	// has for its names, each with the API's value at its last time.
	api := map[string]apiSeries{}
	for _, s := range history(t, base, "") {
		api[s.key()] = s
	}
	if len(st.Charts) != len(chartNames) {
		t.Errorf("%d charts, want %d", len(st.Charts), len(chartNames))
	}
	for _, c := range st.Charts {
		names, ok := chartNames[c.ID]
		if !ok {
			t.Errorf("unexpected chart %s", c.ID)
			continue
		}
		want := 0
		for _, s := range api {
			for _, n := range names {
				if s.Name == "odigos_ebpf_"+n {
					want++
				}
			}
		}
		if c.Series != want || len(c.Legend) != want || want == 0 {
			t.Errorf("%s: %d series, %d in the legend; the API has %d", c.ID, c.Series, len(c.Legend), want)
		}
		if c.Points < cycles || c.Canvas == 0 || c.Stroke == 0 {
			t.Errorf("%s: %d points, %d pixels drawn, %d of its series' colours", c.ID, c.Points, c.Canvas, c.Stroke)
		}
		for _, l := range c.Legend {
			s, ok := api[l.Name+"{"+l.Labels+"}"]
			if !ok {
				t.Errorf("%s: %s{%s} not in the API", c.ID, l.Name, l.Labels)
				continue
			}
			tm, _ := strconv.ParseFloat(l.T, 64)
			v, _ := strconv.ParseFloat(l.Value, 64)
			i := slices.IndexFunc(s.Points, func(p [2]float64) bool { return p[0] == tm })
			if i < 0 || s.Points[i][1] != v {
				t.Errorf("%s: %s{%s} shows %v at %v; the API has no such point", c.ID, l.Name, l.Labels, v, tm)
			}
		}
	}

	if path := os.Getenv("SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot in %s", path)
	}
}

// waitCharts waits until the page's script has drawn the charts, and reads
// the page.
func waitCharts(ctx context.Context, t *chromedp.Target) (pageState, error) {
	for {
		st, err := chromedp.Evaluate[pageState](readPage)(ctx, t)
		if err != nil || st.ChartsCycles != "" || st.ChartsError != "" {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("charts never drawn: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkHistory holds the API to /metrics: the history has the cycle of a
// scrape taken before it (the agent records a cycle before its scrape cache
// gathers it) with the same values, at least 20 points for every series
// present from the start, and its memory within history_bytes.
func checkHistory(t *testing.T, base string) {
	t.Helper()
	m := scrape(t, base)
	series := history(t, base, "")
	at := math.Floor(m["odigos_ebpf_last_success_timestamp_seconds{}"] * 1000)
	first := math.Inf(1)
	for _, s := range series {
		first = min(first, s.Points[0][0])
	}
	compared := 0
	for _, s := range series {
		i := slices.IndexFunc(s.Points, func(p [2]float64) bool { return math.Abs(p[0]-at) <= 1 })
		if i < 0 {
			if s.Points[0][0] <= at {
				t.Errorf("%s: no point at %v, the cycle of the scrape", s.key(), at)
			}
			continue
		}
		compared++
		if want, ok := m[s.key()]; !ok || want != s.Points[i][1] {
			t.Errorf("%s: history %v at %v, /metrics %v (present %v)", s.key(), s.Points[i][1], at, want, ok)
		}
		if s.Points[0][0] == first && len(s.Points) < cycles {
			t.Errorf("%s: %d points after %d cycles", s.key(), len(s.Points), cycles)
		}
	}
	if compared < 20 {
		t.Errorf("%d series compared with /metrics", compared)
	}
	mem, limit := m["odigos_ebpf_history_memory_bytes{}"], 256.0*1024 // the production profile's history_bytes
	bps := m["odigos_ebpf_history_bytes{}"] / m["odigos_ebpf_history_samples{}"]
	t.Logf("history: %d series, %.0f samples, %.3f bytes per sample, %.0f bytes held of %.0f", len(series),
		m["odigos_ebpf_history_samples{}"], bps, mem, limit)
	if mem == 0 || mem > limit {
		t.Errorf("history holds %v bytes, history_bytes %v", mem, limit)
	}
}
