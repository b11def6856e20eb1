// The live view: polls this server's JSON once a second and draws the graph, the stage
// table and the charts as inline SVG. No external scripts; read-only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fde", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#c0392b",
  "#16a085", "#7f8c8d", "#d35400", "#2c3e50", "#6c5ce7", "#00a8cc"];
const POLL_MS = 1000;
const MAX_POINTS = 600; // per series, client side
const view = { graph: null, topics: {}, series: [], charts: [] };

function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function html(tag, text, cls, parent) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

// ---- graph ----------------------------------------------------------------------------

function drawGraph(graph) {
  const nodes = new Map();
  const edges = [];
  const node = (id, kind, label, sub) => {
    if (!nodes.has(id)) nodes.set(id, { id, kind, label, sub, layer: 0, preds: [] });
    return nodes.get(id);
  };
  for (const s of graph.stages) node("s:" + s.name, "stage", s.name, s.connector);
  for (const s of graph.stages) {
    const me = nodes.get("s:" + s.name);
    for (const t of s.inputs) {
      const topic = node("t:" + t, "topic", t, "topic");
      me.preds.push(topic);
      edges.push([topic, me, ""]);
    }
    const outs = [[s.output, ""], [s.dead_letter, "dlq"]];
    for (const [t, cls] of outs) {
      if (!t) continue;
      const topic = node("t:" + t, "topic", t, cls ? "dead letters" : "topic");
      topic.preds.push(me);
      edges.push([me, topic, cls]);
    }
  }
  // Longest-path layering (bounded passes, so a cyclic graph still draws).
  for (let pass = 0; pass < nodes.size; pass++) {
    let changed = false;
    for (const n of nodes.values()) {
      for (const p of n.preds) {
        if (p.layer + 1 > n.layer && p.layer + 1 < nodes.size) { n.layer = p.layer + 1; changed = true; }
      }
    }
    if (!changed) break;
  }
  const layers = [];
  for (const n of nodes.values()) (layers[n.layer] = layers[n.layer] || []).push(n);
  const W = 136, H = 40, DX = 166, DY = 54;
  let rows = 1;
  layers.forEach((list, i) => {
    (list || []).forEach((n, j) => { n.x = 10 + i * DX; n.y = 10 + j * DY; });
    rows = Math.max(rows, (list || []).length);
  });
  const width = 20 + layers.length * DX - (DX - W), height = 20 + rows * DY - (DY - H);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, id: "graph-svg" });
  for (const [a, b, cls] of edges) {
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge " + cls }, root);
  }
  for (const n of nodes.values()) {
    const g = svg("g", { class: n.kind, transform: `translate(${n.x},${n.y})` }, root);
    if (n.kind === "stage") g.setAttribute("data-stage", n.label);
    svg("rect", { width: W, height: H, rx: n.kind === "topic" ? 16 : 4 }, g);
    const name = svg("text", { x: 8, y: 16 }, g);
    name.textContent = n.label.length > 20 ? n.label.slice(0, 19) + "…" : n.label;
    svg("title", {}, g).textContent = n.label;
    const sub = svg("text", { x: 8, y: 32, class: "sub" }, g);
    sub.textContent = n.sub;
    n.element = g;
  }
  const box = document.getElementById("graph");
  box.replaceChildren(root);
}

function colorGraph(stages) {
  for (const g of document.querySelectorAll("#graph-svg g.stage")) {
    const name = g.getAttribute("data-stage");
    const row = stages[name];
    const here = view.graph.stages.find((s) => s.name === name);
    g.setAttribute("class", "stage " + (row ? row.state : (here && here.here ? "starting" : "elsewhere")));
  }
}

// ---- stage table ------------------------------------------------------------------------

function fmtRate(v) {
  if (v == null || !isFinite(v)) return "–";
  return v >= 10000 ? (v / 1000).toFixed(1) + "k" : v >= 100 ? v.toFixed(0) : v.toFixed(1);
}
function fmtCount(v) { return v == null ? "–" : v >= 1e6 ? (v / 1e6).toFixed(2) + "M" : String(Math.round(v)); }
function fmtTime(ms) { return ms == null ? "–" : new Date(ms).toISOString().slice(11, 23); }
function fmtSeconds(s) { return s == null ? "–" : s < 100 ? s.toFixed(1) + " s" : Math.round(s) + " s"; }

function drawStages(snapshot) {
  const body = document.querySelector("#stages tbody");
  body.replaceChildren();
  let failed = 0, ready = 0, total = 0;
  for (const [name, s] of Object.entries(snapshot.stages)) {
    total++;
    if (s.state === "failed") failed++;
    if (s.state === "ready" || s.state === "finished") ready++;
    const tr = html("tr", null, null, body);
    tr.setAttribute("data-stage", name);
    html("td", name, null, tr);
    html("td", s.connector, null, tr);
    const st = html("td", s.state, "state-" + s.state, tr);
    if (s.error) st.title = s.error;
    html("td", fmtRate(s.in_per_s), null, tr);
    html("td", fmtRate(s.out_per_s), null, tr);
    html("td", fmtCount(s.rejected), null, tr);
    html("td", fmtCount(s.dead_lettered), null, tr);
    html("td", fmtCount(s.consumer_lag), null, tr);
    html("td", fmtTime(s.watermark_ms), null, tr);
    html("td", fmtSeconds(s.event_time_lag_s), null, tr);
  }
  const badge = document.getElementById("health");
  badge.className = "badge " + (failed ? "bad" : ready === total && total ? "ok" : "warn");
  badge.textContent = failed ? failed + " failed" : ready === total && total ? "all ready" : "starting";
  colorGraph(snapshot.stages);
}

// ---- records and series ------------------------------------------------------------------

// Numeric leaves of a record as [path, value]; array elements are named by their first
// string field (e.g. stats[30s].avg_price), else by index.
function flatten(value, prefix, out) {
  if (typeof value === "number" && isFinite(value)) {
    out.push([prefix, value]);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      let label = i;
      if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const k in v) if (typeof v[k] === "string") { label = v[k]; break; }
      }
      flatten(v, prefix + "[" + label + "]", out);
    });
  } else if (value && typeof value === "object") {
    for (const k in value) flatten(value[k], prefix ? prefix + "." + k : k, out);
  }
  return out;
}

function eventTime(record) {
  if (record.timestamp_ms != null) return record.timestamp_ms;
  const t = record.value && record.value.timestamp;
  const parsed = typeof t === "string" ? Date.parse(t) : typeof t === "number" ? t : NaN;
  return isFinite(parsed) ? parsed : null;
}

function addRecords(topic, batch) {
  const t = view.topics[topic];
  // The first answer holds the backlog: what fell out of the ring before is not sampling.
  if (t.after > 0) {
    t.seen += batch.seen;
    t.kept += batch.kept;
  }
  t.after = batch.last_seq;
  for (const record of batch.records) {
    const time = eventTime(record);
    if (time == null) continue;
    for (const [path, value] of flatten(record.value, "", [])) {
      const id = topic + " · " + path;
      let s = t.series.get(id);
      if (!s) {
        s = { id, topic, path, points: [], color: COLORS[view.series.length % COLORS.length],
          order: t.order * 1e6 + t.series.size };
        t.series.set(id, s);
        view.series.push(s);
        // Topics in graph order, fields in the order they were first seen.
        view.series.sort((a, b) => a.order - b.order);
      }
      s.points.push([time, value]);
      if (s.points.length > MAX_POINTS) s.points.splice(0, s.points.length - MAX_POINTS);
    }
  }
}

// ---- charts -------------------------------------------------------------------------------

const leaf = (path) => path.slice(path.lastIndexOf(".") + 1);
const CHART_DEFAULTS = [
  { title: "Values", pick: (s) => leaf(s.path) === "price" || leaf(s.path).startsWith("avg_") },
  { title: "Z-scores", pick: (s) => leaf(s.path).startsWith("zscore") },
];

function setupChart(index) {
  const box = document.getElementById("chart-" + index);
  const controls = html("div", null, "controls", box);
  html("strong", CHART_DEFAULTS[index].title, null, controls);
  const select = html("select", null, null, controls);
  select.multiple = true;
  select.title = "fields to plot (ctrl/cmd-click for several)";
  const bandLabel = html("label", null, null, controls);
  const band = html("input", null, null, bandLabel);
  band.type = "checkbox";
  band.checked = true;
  bandLabel.append(" ±1 std band around avg_* fields");
  const sampling = html("span", "", "sampling", controls);
  const plot = svg("svg", { viewBox: "0 0 900 260", preserveAspectRatio: "none", "data-points": "0" }, box);
  const legend = html("div", null, "legend", box);
  const chart = { index, select, band, sampling, plot, legend, chosen: null };
  select.addEventListener("change", () => {
    chart.chosen = new Set([...select.selectedOptions].map((o) => o.value));
    drawChart(chart);
  });
  band.addEventListener("change", () => drawChart(chart));
  view.charts.push(chart);
}

function chosenSeries(chart) {
  if (chart.chosen) return view.series.filter((s) => chart.chosen.has(s.id));
  // By default a field path is plotted from the first topic that has it (the z-score
  // records repeat the price, for instance).
  const paths = new Set();
  let picked = view.series.filter((s) => {
    if (!CHART_DEFAULTS[chart.index].pick(s) || paths.has(s.path)) return false;
    paths.add(s.path);
    return true;
  });
  if (!picked.length && chart.index === 0 && view.series.length) picked = [view.series[0]];
  return picked;
}

function syncOptions(chart, picked) {
  const select = chart.select;
  if (select.options.length !== view.series.length) {
    select.replaceChildren();
    for (const s of view.series) html("option", s.id, null, select).value = s.id;
  }
  const ids = new Set(picked.map((s) => s.id));
  for (const o of select.options) o.selected = ids.has(o.value);
}

function drawChart(chart) {
  const picked = chosenSeries(chart);
  syncOptions(chart, picked);
  const plot = chart.plot;
  plot.replaceChildren();
  chart.legend.replaceChildren();
  const W = 900, H = 260, L = 70, R = 10, T = 10, B = 24;
  // Bands: avg_X with its sibling std_X of the same topic.
  const bands = [];
  if (chart.band.checked) {
    for (const s of picked) {
      const name = leaf(s.path);
      if (!name.startsWith("avg_")) continue;
      const std = view.topics[s.topic].series.get(s.id.slice(0, -name.length) + "std_" + name.slice(4));
      if (!std) continue;
      const byTime = new Map(std.points);
      const pts = s.points.filter(([t]) => byTime.has(t)).map(([t, v]) => [t, v - byTime.get(t), v + byTime.get(t)]);
      if (pts.length) bands.push({ s, pts });
    }
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, count = 0;
  for (const s of picked) for (const [t, v] of s.points) {
    x0 = Math.min(x0, t); x1 = Math.max(x1, t); y0 = Math.min(y0, v); y1 = Math.max(y1, v); count++;
  }
  for (const b of bands) for (const [, lo, hi] of b.pts) { y0 = Math.min(y0, lo); y1 = Math.max(y1, hi); }
  plot.setAttribute("data-points", String(count));
  if (!count) {
    const empty = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, plot);
    empty.textContent = view.series.length ? "no points for the chosen fields yet" : "waiting for records…";
    return;
  }
  if (x1 === x0) { x0 -= 1000; x1 += 1000; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  // Enough decimals to tell the grid lines apart.
  const decimals = Math.min(8, Math.max(0, Math.ceil(-Math.log10((y1 - y0) / 4)) + 1));
  const X = (t) => L + (t - x0) / (x1 - x0) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4, y = Y(v);
    svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }, plot);
    const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, plot);
    label.textContent = v.toFixed(decimals);
    const t = x0 + (x1 - x0) * i / 4;
    const tl = svg("text", { x: X(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, plot);
    tl.textContent = new Date(t).toISOString().slice(11, 19);
  }
  svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, plot);
  for (const b of bands) {
    const upper = b.pts.map(([t, , hi]) => `${X(t).toFixed(1)},${Y(hi).toFixed(1)}`);
    const lower = b.pts.slice().reverse().map(([t, lo]) => `${X(t).toFixed(1)},${Y(lo).toFixed(1)}`);
    svg("polygon", { points: upper.concat(lower).join(" "), fill: b.s.color, "fill-opacity": 0.08, stroke: "none" }, plot);
  }
  for (const s of picked) {
    if (!s.points.length) continue;
    const pts = s.points.slice().sort((a, b) => a[0] - b[0]);
    svg("polyline", { points: pts.map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(" "),
      fill: "none", stroke: s.color, "stroke-width": 1.5, class: "series" }, plot);
    const [lt, lv] = pts[pts.length - 1];
    svg("circle", { cx: X(lt), cy: Y(lv), r: 3, fill: s.color, class: "point" }, plot);
    const item = html("span", null, null, chart.legend);
    const swatch = html("i", null, null, item);
    swatch.setAttribute("data-color", s.color);
    swatch.style.background = s.color;
    item.append(s.id + " = " + (Math.abs(lv) >= 1000 ? lv.toFixed(2) : lv.toPrecision(4)));
  }
  const topics = [...new Set(picked.map((s) => s.topic))];
  chart.sampling.textContent = topics.map((t) => {
    const x = view.topics[t];
    return x.seen > x.kept ? `${t}: sampled, ${x.kept} of ${x.seen} records` : `${t}: every record`;
  }).join("; ");
}

// ---- polling ------------------------------------------------------------------------------

async function poll() {
  try {
    drawStages(await getJSON("/api/stages"));
  } catch (e) {
    const badge = document.getElementById("health");
    badge.className = "badge bad";
    badge.textContent = "unreachable";
  }
  const topics = Object.keys(view.topics);
  const batches = await Promise.all(topics.map((topic) =>
    getJSON(`/api/tap?topic=${encodeURIComponent(topic)}&after=${view.topics[topic].after}&limit=500`)
      .catch(() => null))); // the next poll retries
  topics.forEach((topic, i) => { if (batches[i]) addRecords(topic, batches[i]); });
  for (const chart of view.charts) drawChart(chart);
}

async function start() {
  for (;;) {
    try { view.graph = await getJSON("/api/graph"); break; } catch (e) {
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  document.getElementById("pipeline").textContent = view.graph.pipeline || "pipeline";
  document.title = (view.graph.pipeline || "pipeline") + " · live";
  drawGraph(view.graph);
  for (const s of view.graph.stages) {
    for (const t of s.inputs.concat(s.output ? [s.output] : [])) {
      if (!view.topics[t]) {
        const order = Object.keys(view.topics).length;
        view.topics[t] = { after: 0, seen: 0, kept: 0, series: new Map(), order };
      }
    }
  }
  setupChart(0);
  setupChart(1);
  await poll();
  setInterval(poll, POLL_MS);
}

start();
