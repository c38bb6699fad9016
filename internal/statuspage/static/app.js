// The status page's charts and refresh. The numbers are in the HTML the
// server rendered; this script adds the charts over GET /api/v1/history
// and, every few seconds, swaps in the numbers of a newer cycle.
(function () {
  "use strict";
  const body = document.body;
  const ns = body.dataset.ns;
  const historyPath = body.dataset.history;
  const refreshMs = 5000;

  const bytes = (v) => {
    if (v == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(Math.round(v))) + " " + units[i];
  };
  const count = (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US"));
  const seconds = (v) => {
    if (v == null) return "–";
    if (v === 0) return "0 s";
    if (v < 1e-3) return (v * 1e6).toFixed(0) + " µs";
    if (v < 1) return (v * 1e3).toFixed(1) + " ms";
    return v.toFixed(2) + " s";
  };

  // Each chart: the series of these names in the history, one line each.
  const charts = [
    { id: "memory", title: "Kernel memory by kind", fmt: bytes, names: ["total_memory_bytes", "memory_bytes"] },
    { id: "objects", title: "Objects by kind", fmt: count, names: ["objects"] },
    { id: "map-memory", title: "Map memory by map type", fmt: bytes, names: ["map_memory_bytes"] },
    { id: "program-memory", title: "Program memory by program type", fmt: bytes, names: ["program_memory_bytes"] },
    { id: "map-objects", title: "Maps by map type", fmt: count, names: ["map_objects"] },
    { id: "program-objects", title: "Programs by program type", fmt: count, names: ["program_objects"] },
    { id: "owner-memory", title: "Memory by owner", fmt: bytes, names: ["owner_memory_bytes"], optional: true },
    { id: "churn", title: "Objects created and removed since start", fmt: count, names: ["objects_created_total", "objects_removed_total"] },
    { id: "agent-memory", title: "The agent's own memory", fmt: bytes, names: ["collector_memory_usage_bytes"] },
    { id: "cycle", title: "Collection cycle duration", fmt: seconds, names: ["last_collection_duration_seconds"] },
  ];
  for (const c of charts) c.names = c.names.map((n) => ns + "_" + n);

  const palette = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#ea580c", "#4f46e5", "#0d9488", "#9333ea", "#ca8a04", "#e11d48", "#475569", "#059669"];

  // labelText names a series in its chart: its label values, or the part
  // of its name that differs from the chart's other names.
  function labelText(chart, s) {
    // A container ID is shown as its first 12 characters, as docker and crictl do.
    const vals = Object.entries(s.labels).filter(([, v]) => v !== "")
      .map(([k, v]) => (k === "container_id" ? v.slice(0, 12) : v));
    if (vals.length === 0 && "owner" in s.labels) return "(no process)";
    const base = s.name.slice(ns.length + 1).replace(/_(bytes|total|seconds)$/, "").replace(/_total$/, "");
    if (chart.names.length > 1) return vals.length ? base.replace(/^objects_/, "") + " " + vals.join(" ") : base;
    return vals.length ? vals.join(" ") : base;
  }

  // labelString is a series' labels as the server writes them: a="b",c="d".
  const labelString = (labels) => Object.entries(labels).map(([k, v]) => k + "=" + JSON.stringify(v)).join(",");

  // align puts the series on one time axis (they share each cycle's
  // timestamp; a series absent from a cycle gets null there).
  function align(series) {
    const times = new Set();
    for (const s of series) for (const p of s.points) times.add(p[0]);
    const xs = [...times].sort((a, b) => a - b);
    const at = new Map(xs.map((t, i) => [t, i]));
    const data = [xs.map((t) => t / 1000)];
    for (const s of series) {
      const ys = new Array(xs.length).fill(null);
      for (const p of s.points) ys[at.get(p[0])] = p[1];
      data.push(ys);
    }
    return data;
  }

  const plots = new Map(); // chart id -> uPlot

  function figure(chart) {
    let fig = document.getElementById("chart-" + chart.id);
    if (!fig) {
      fig = document.createElement("figure");
      fig.className = "chart";
      fig.id = "chart-" + chart.id;
      fig.innerHTML = "<h2></h2><div class=\"plot\"></div><table class=\"last\"><tbody></tbody></table>";
      fig.querySelector("h2").textContent = chart.title;
      document.getElementById("chart-grid").appendChild(fig);
    }
    return fig;
  }

  function draw(chart, series) {
    const fig = figure(chart);
    const plotEl = fig.querySelector(".plot");
    const old = plots.get(chart.id);
    if (old) { old.destroy(); plots.delete(chart.id); }
    plotEl.textContent = "";
    // Largest last value first: the legend reads as a ranking.
    const last = (s) => s.points[s.points.length - 1];
    series.sort((a, b) => last(b)[1] - last(a)[1]);
    const rows = fig.querySelector("table.last tbody");
    rows.textContent = "";
    fig.dataset.series = String(series.length);
    if (series.length === 0) {
      plotEl.innerHTML = "<p class=\"empty\">no data yet</p>";
      fig.dataset.points = "0";
      return;
    }
    const data = align(series);
    fig.dataset.points = String(data[0].length);
    const width = Math.max(300, plotEl.clientWidth || 460);
    const opts = {
      width: width,
      height: 200,
      legend: { show: false },
      cursor: { points: { size: 5 } },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" } },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 72, values: (u, vals) => vals.map((v) => chart.fmt(v)) },
      ],
      series: [{}].concat(series.map((s, i) => ({
        label: labelText(chart, s),
        stroke: palette[i % palette.length],
        width: 1.5,
        spanGaps: false,
        value: (u, v) => chart.fmt(v),
      }))),
    };
    plots.set(chart.id, new uPlot(opts, data, plotEl));
    series.forEach((s, i) => {
      const p = last(s);
      const tr = document.createElement("tr");
      tr.dataset.name = s.name;
      tr.dataset.labels = labelString(s.labels);
      tr.dataset.value = String(p[1]);
      tr.dataset.t = String(p[0]);
      tr.dataset.points = String(s.points.length);
      const name = document.createElement("td");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = palette[i % palette.length];
      name.append(sw, labelText(chart, s));
      const val = document.createElement("td");
      val.className = "num";
      val.textContent = chart.fmt(p[1]);
      tr.append(name, val);
      rows.appendChild(tr);
    });
  }

  async function loadCharts(cycles) {
    if (!historyPath) return;
    const grid = document.getElementById("chart-grid");
    const names = charts.flatMap((c) => c.names);
    const points = Math.min(11000, Math.max(100, Math.round(grid.clientWidth || 1000)));
    const q = names.map((n) => "name=" + encodeURIComponent(n)).join("&") + "&points=" + points;
    const resp = await fetch(historyPath + "?" + q, { cache: "no-store" });
    if (!resp.ok) throw new Error("history: HTTP " + resp.status);
    const all = (await resp.json()).series;
    let first = Infinity, lastT = -Infinity;
    const shown = [];
    for (const c of charts) {
      const series = all.filter((s) => c.names.includes(s.name));
      if (c.optional && series.length === 0) continue;
      shown.push([c, series]);
      figure(c); // every figure in the grid first, so that each plot gets its column's width
    }
    for (const [c, series] of shown) {
      draw(c, series);
      for (const s of series) {
        first = Math.min(first, s.points[0][0]);
        lastT = Math.max(lastT, s.points[s.points.length - 1][0]);
      }
    }
    const range = document.getElementById("range");
    if (range && isFinite(first)) {
      range.textContent = "from " + new Date(first).toLocaleString() + " to " + new Date(lastT).toLocaleTimeString();
    }
    body.dataset.chartsCycles = cycles;
  }

  const currentCycles = () => document.getElementById("now").dataset.cycles;

  // refresh swaps in the numbers of a newer cycle, then redraws the charts.
  async function refresh() {
    try {
      const resp = await fetch(location.pathname, { cache: "no-store" });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById("now");
      if (fresh && fresh.dataset.cycles !== currentCycles()) {
        document.getElementById("now").replaceWith(document.adoptNode(fresh));
        await loadCharts(currentCycles());
      }
    } catch (e) {
      console.warn("refresh:", e);
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  let resizing;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      for (const [id, u] of plots) {
        const el = document.getElementById("chart-" + id).querySelector(".plot");
        u.setSize({ width: Math.max(300, el.clientWidth), height: 200 });
      }
    }, 150);
  });

  loadCharts(currentCycles()).catch((e) => {
    console.warn("charts:", e);
    body.dataset.chartsError = String(e);
  });
  setTimeout(refresh, refreshMs);
})();
