// hfmagic's dashboard: the front end of hfmagic.widget.Dashboard (an anywidget ES module).
// Plain DOM and SVG, no dependencies, so it works offline and inside to_html()'s standalone page.
// The pure functions are exported so they can be checked against their Python twins
// (hfmagic/widget.py: speedups, pareto_front, row_id).

const SVG = "http://www.w3.org/2000/svg";

// -- rules (mirrored in hfmagic/widget.py) -------------------------------------------------------

const isOk = (r) => r.status === "ok" && r.p50_ms != null;
// a generation's rows: p50_ms is TPOT (time per output token); the chart can put TTFT on x instead
const X_AXES = [["p50_ms", "TPOT p50"], ["ttft_p50_ms", "TTFT p50"]];
const prefix = (r) => (r.model ? `${r.model}/` : "");
/** "model/variant/backend" ("variant/backend" for a row that names no model): what a baseline names. */
export const pair = (r) => `${prefix(r)}${r.variant}/${r.backend}`;
// a shape's second axis is the task's: tokens per sequence (seq_len), pixels per side (image_size)
// or seconds of audio (audio_seconds)
const sizeOf = (r) => (r.seq_len != null ? r.seq_len : r.image_size != null ? r.image_size : r.audio_seconds);
const sizeText = (r) => (r.seq_len != null ? `${r.seq_len}` : r.image_size != null ? `${r.image_size}px` : `${r.audio_seconds}s`);
const shapeKey = (r) => (r.batch_size == null ? null : `${r.batch_size}x${sizeOf(r)}`);

/** "@node" for a row a cluster's node measured (--on each gives one per kind of node), else "". */
export const where = (r) => (r.node && r.node !== "local" ? `@${r.node}` : "");

/** "model/variant/backend[@node]/BxS" for a benchmark row, "model/variant/eval" for an evaluated-only one. */
export function rowId(r) {
  return r.batch_size == null ? `${prefix(r)}${r.variant}/eval` : `${pair(r)}${where(r)}/${shapeKey(r)}`;
}

/** Row id -> p50 of the baseline ("model/variant/backend") row of the same shape, measured on the same
 * node, over this row's p50, whichever model the row is of. */
export function speedups(rows, baseline, sweep = null) {
  // against the sweep's own baseline: the speed-up it measured (paired by round when interleaved)
  if (baseline && baseline === sweep && rows.some((r) => r.speedup_measured != null)) {
    return Object.fromEntries(rows.map((r) => [r.id, isOk(r) ? r.speedup_measured ?? null : null]));
  }
  const base = new Map();
  for (const r of rows) {
    if (isOk(r) && pair(r) === baseline && r.p50_ms > 0) base.set(`${shapeKey(r)}${where(r)}`, r.p50_ms);
  }
  const out = {};
  for (const r of rows) {
    const ref = base.get(`${shapeKey(r)}${where(r)}`);
    out[r.id] = ref && isOk(r) && r.p50_ms > 0 ? ref / r.p50_ms : null;
  }
  return out;
}

/** Ids of the points that no other point beats on both lower `x` (p50; a generation's TTFT with
 * "ttft_p50_ms") and a better metric (higher; lower when `lowerIsBetter`, as perplexity). */
export function paretoFront(points, lowerIsBetter = false, x = "p50_ms") {
  const sign = lowerIsBetter ? -1 : 1;
  const ordered = points
    .filter((p) => p[x] != null && p.metric != null)
    .sort((a, b) => a[x] - b[x] || sign * (b.metric - a.metric));
  const front = [];
  let best = -Infinity;
  for (const p of ordered) {
    if (sign * p.metric > best) {
      front.push(p.id);
      best = sign * p.metric;
    }
  }
  return front;
}

/** Shapes present among the rows, smallest (batch x seq) first. */
export function shapes(rows) {
  const seen = new Map();
  for (const r of rows) if (r.batch_size != null) seen.set(shapeKey(r), [r.batch_size, sizeOf(r)]);
  return [...seen.entries()]
    .sort((a, b) => a[1][0] * a[1][1] - b[1][0] * b[1][1] || a[1][0] - b[1][0])
    .map((e) => e[0]);
}

/** Rows sorted by one column; empty values always last. */
export function sortRows(rows, key, dir) {
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    if (x == null || y == null) return (x == null) - (y == null);
    if (typeof x === "number" && typeof y === "number") return dir * (x - y);
    return dir * String(x).localeCompare(String(y), undefined, { numeric: true });
  });
}

// colour by model: Okabe and Ito's colour-blind-safe palette, in the order models first appear
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"];

/** Model name -> colour, in the order the models first appear among the rows. */
export function modelColours(rows) {
  const out = new Map();
  for (const r of rows) if (!out.has(r.model ?? "")) out.set(r.model ?? "", PALETTE[out.size % PALETTE.length]);
  return out;
}

/** A marker's radius, so that its AREA is proportional to the size on disk (largest: rMax). */
export function markerRadius(size, maxSize, rMax = 16, rMin = 2.5) {
  if (!(size > 0) || !(maxSize > 0)) return 5;
  return Math.max(rMin, rMax * Math.sqrt(size / maxSize));
}

export function format(value, fmt) {
  if (value == null || (typeof value === "number" && Number.isNaN(value))) return "";
  if (fmt === "int") return String(value);
  if (fmt === "x") return `${value.toFixed(2)}x`;
  if (fmt === "signed%") return `${value >= 0 ? "+" : ""}${value.toFixed(2)}%`;
  if (fmt === "%") return `${(100 * value).toFixed(2)}%`;
  if (typeof fmt === "number" && typeof value === "number") return value.toFixed(fmt);
  return String(value);
}

// -- DOM helpers ---------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v != null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c != null));
  return node;
}

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) node.setAttribute(k, v);
  node.append(...children.flat().filter((c) => c != null));
  return node;
}

function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function scale(lo, hi, a, b) {
  const span = hi - lo || 1;
  return (v) => a + ((v - lo) / span) * (b - a);
}

function padded([lo, hi]) {
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
  return [lo - pad, hi + pad];
}

// -- the view --------------------------------------------------------------------------------------

function select(testid, label, options, value, onchange) {
  const el = h("select", { "data-testid": testid, onchange: (e) => onchange(e.target.value) },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  return h("label", { class: "hfm-control" }, `${label} `, el);
}

function render({ model, el }) {
  const view = { sortKey: null, sortDir: 1, model: "", node: "", backend: "", level: "", shape: "" };
  const root = h("div", { class: "hfm-dash", "data-testid": "hfmagic-dashboard" });
  const tooltip = h("div", { class: "hfm-tooltip", "data-testid": "tooltip", hidden: true });
  el.append(root);

  const get = (k) => model.get(k) || (k === "progress" ? {} : []);
  const setSelected = (ids) => {
    model.set("selected", ids);
    model.save_changes();
  };

  function visibleRows(rows) {
    return rows.filter((r) =>
      (!view.model || r.model === view.model) &&
      (!view.node || r.node === view.node) &&
      (!view.backend || r.backend === view.backend) &&
      (!view.level || r.variant === view.level) &&
      (!view.shape || shapeKey(r) === view.shape));
  }

  function controls(rows) {
    const distinct = (f) => [...new Set(rows.map(f).filter((v) => v != null))];
    const all = (label) => [["", label]];
    const pairs = distinct((r) => (isOk(r) ? pair(r) : null));
    const baseline = model.get("baseline");
    const models = distinct((r) => r.model);
    const nodes = distinct((r) => r.node);  // the hardware: "local", or each kind of a cluster's nodes
    return h("div", { class: "hfm-controls" },
      models.length ? select("filter-model", "model", all("all").concat(models.map((v) => [v, v])),
        view.model, (v) => { view.model = v; draw(); }) : null,
      nodes.length > 1 ? select("filter-node", "hardware", all("all").concat(nodes.map((v) => [v, v])),
        view.node, (v) => { view.node = v; draw(); }) : null,
      select("filter-backend", "backend", all("all").concat(distinct((r) => r.backend).map((v) => [v, v])),
        view.backend, (v) => { view.backend = v; draw(); }),
      select("filter-level", "level", all("all").concat(distinct((r) => r.variant).map((v) => [v, v])),
        view.level, (v) => { view.level = v; draw(); }),
      select("filter-shape", "shape", all("all").concat(shapes(rows).map((v) => [v, v.replace("x", " × ")])),
        view.shape, (v) => { view.shape = v; draw(); }),
      rows.some((r) => r.ttft_p50_ms != null) ? select("x-axis", "chart x", X_AXES.map(([k, t]) => [k, t]),
        view.x || "p50_ms", (v) => { view.x = v; draw(); }) : null,
      pairs.length ? select("baseline", "speed-up vs", pairs.map((v) => [v, v]), baseline, (v) => {
        model.set("baseline", v);
        model.save_changes();
        draw();
      }) : null);
  }

  function progressBar() {
    const p = get("progress");
    if (!p.total) return null;
    return h("div", { class: "hfm-progress", "data-testid": "progress" },
      h("progress", { max: p.total, value: p.done }),
      h("span", {}, ` ${p.done} / ${p.total}${p.label ? ` · ${p.label}` : ""}`));
  }

  function swatch(colours, m) {
    return h("span", { class: "hfm-swatch", style: `background: ${colours.get(m ?? "")}` });
  }

  // which colour is which model (shown when the rows name their models)
  function legend(colours) {
    const named = [...colours.keys()].filter((m) => m);
    if (!named.length) return null;
    return h("div", { class: "hfm-model-legend", "data-testid": "model-legend" },
      named.map((m) => h("span", { class: "hfm-legend-item", "data-model": m }, swatch(colours, m), ` ${m}`)));
  }

  function table(rows, columns, ratio, colours) {
    const selected = new Set(get("selected"));
    const sweep = model.get("sweep_baseline");
    const baseline = model.get("baseline");
    const used = columns.filter((c) => ["variant", "backend", "status"].includes(c.key) ||
      (c.key === "node" ? rows.some((r) => where(r)) :  // a cluster's node; "local" everywhere goes unsaid
        rows.some((r) => (c.key === "speedup" ? ratio[r.id] : r[c.key]) != null)));
    const shown = rows.map((r) => ({ ...r, speedup: ratio[r.id] }));
    const ordered = view.sortKey ? sortRows(shown, view.sortKey, view.sortDir) : shown;
    const head = h("tr", {}, h("th", {}, ""), used.map((c) => h("th", {
      "data-testid": `sort-${c.key}`, class: `hfm-sortable${c.fmt != null ? " hfm-num" : ""}`,
      title: `sort by ${c.title}`,
      onclick: () => {
        view.sortDir = view.sortKey === c.key ? -view.sortDir : 1;
        view.sortKey = c.key;
        draw();
      },
    }, c.title, view.sortKey === c.key ? (view.sortDir > 0 ? " ▲" : " ▼") : "")));
    const body = ordered.map((r) => {
      const on = selected.has(r.id);
      const ids = get("selected");
      const toggle = () => setSelected(on ? ids.filter((id) => id !== r.id) : [...ids, r.id]);
      const cls = `${on ? "hfm-selected" : ""}${r.status !== "ok" ? " hfm-failed" : ""}`;
      return h("tr", { "data-testid": "row", "data-id": r.id, class: cls, onclick: toggle },
      h("td", {}, h("input", { type: "checkbox", checked: on, "data-testid": "select-row",
        "aria-label": `select ${r.id}` })),
      used.map((c) => {
        let text = format(r[c.key], c.fmt);
        let title = null;
        if (c.key === "speedup" && text && baseline === sweep && r.speedup_low != null && pair(r) !== sweep) {
          title = `95% CI ${format(r.speedup_low, "x")} – ${format(r.speedup_high, "x")}`;
        }
        if (c.key === "metric" && text && r.metric_low != null) {
          title = `95% CI ${format(r.metric_low, 4)} – ${format(r.metric_high, 4)}`;
        }
        if (c.key === "status" && r.status !== "ok") title = r.status;
        if (c.key === "node" && r.hardware) title = r.hardware;
        if (c.key === "status" && text.length > 40) text = `${text.slice(0, 40)}…`;
        if (c.key === "model" && text) {
          if (r.model_sha) title = `weights sha256 ${r.model_sha}…`;
          return h("td", { "data-col": c.key, title }, swatch(colours, r.model), ` ${text}`);
        }
        return h("td", { class: c.fmt != null ? "hfm-num" : null, "data-col": c.key, title }, text);
      }));
    });
    return h("div", { class: "hfm-table-wrap" },
      h("table", { class: "hfm-table", "data-testid": "table" }, h("thead", {}, head), h("tbody", {}, body)));
  }

  function showTip(evt, lines) {
    tooltip.replaceChildren(...lines.map((l) => h("div", {}, l)));
    const box = root.getBoundingClientRect();
    tooltip.style.left = `${evt.clientX - box.left + 12}px`;
    tooltip.style.top = `${evt.clientY - box.top + 12}px`;
    tooltip.hidden = false;
  }

  function tipLines(r, ratio) {
    const metricName = (get("columns").find((c) => c.key === "metric") || {}).title || "metric";
    return [
      r.model ? `model ${r.model}` : null,
      `${r.variant} on ${r.backend} · ${r.batch_size} × ${sizeText(r)}`,
      where(r) ? `on ${r.node}: ${r.hardware || "?"}` : null,
      r.ttft_p50_ms != null ? `TPOT p50 ${format(r.p50_ms, 2)} ms · TTFT p50 ${format(r.ttft_p50_ms, 1)} ms`
        : `p50 ${format(r.p50_ms, 2)} ms · p95 ${format(r.p95_ms, 2)} ms`,
      `${format(r.samples_per_s, 1)} samples/s`,
      r.metric != null ? `${metricName} ${format(r.metric, 4)}` : null,
      r.size_mb != null ? `${format(r.size_mb, 1)} MB on disk` : null,
      r.change_pct != null ? `${format(r.change_pct, "signed%")} vs reference` : null,
      ratio[r.id] != null ? `speed-up ${format(ratio[r.id], "x")} vs ${model.get("baseline")}` : null,
    ].filter(Boolean);
  }

  function scatter(rows, ratio, colours) {
    const all = shapes(rows.filter((r) => isOk(r) && r.metric != null));
    const shape = view.shape || all[0];
    const points = rows.filter((r) => isOk(r) && r.metric != null && shapeKey(r) === shape);
    const wrap = h("div", { class: "hfm-chart", "data-testid": "scatter" });
    const metricName = (get("columns").find((c) => c.key === "metric") || {}).title || "metric";
    if (!points.length) {
      wrap.append(h("div", { class: "hfm-empty" }, rows.some((r) => r.metric != null)
        ? "no latency to plot yet: benchmark these variants and pass both results to Dashboard"
        : "no accuracy to plot: evaluate the variants and pass both results to Dashboard"));
      return wrap;
    }
    const generation = points.some((p) => p.ttft_p50_ms != null);
    const xk = generation ? view.x || "p50_ms" : "p50_ms";
    const xv = (p) => p[xk];
    const front = new Set(paretoFront(points, model.get("metric_lower") === true, xk));  // get() gives [] for false
    const W = 440, H = 270, m = { l: 58, r: 16, t: 14, b: 40 };
    const [x0, x1] = padded([Math.min(...points.map(xv)), Math.max(...points.map(xv))]);
    const [y0, y1] = padded([Math.min(...points.map((p) => p.metric)), Math.max(...points.map((p) => p.metric))]);
    const x = scale(x0, x1, m.l, W - m.r);
    const y = scale(y0, y1, H - m.b, m.t);
    const selected = new Set(get("selected"));
    const maxSize = Math.max(0, ...points.map((p) => p.size_mb || 0));
    const radius = (p) => markerRadius(p.size_mb, maxSize);
    const frontPts = points.filter((p) => front.has(p.id)).sort((a, b) => xv(a) - xv(b));
    const path = frontPts.map((p, i) => {
      const pt = `${x(xv(p)).toFixed(1)},${y(p.metric).toFixed(1)}`;
      return i === 0 ? `M${pt}` : `H${x(xv(p)).toFixed(1)}V${y(p.metric).toFixed(1)}`;
    }).join("");
    const xTitle = generation ? `${xk === "p50_ms" ? "TPOT" : "TTFT"} p50, ms` : "p50 latency, ms";
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "hfm-svg" },
      ticks(x0, x1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: x(v), x2: x(v), y1: m.t, y2: H - m.b }),
        s("text", { x: x(v), y: H - m.b + 14, "text-anchor": "middle" }, String(v)))),
      ticks(y0, y1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)))),
      s("text", { class: "hfm-axis", x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" },
        `${xTitle} (batch × ${generation ? "prompt" : "seq"} ${shape.replace("x", " × ")})`),
      s("text", { class: "hfm-axis", x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
        transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})` }, metricName),
      s("path", { d: path, class: "hfm-front", "data-testid": "pareto-line" }),
      // front points drawn last, and the larger under the smaller, so no point hides another whole
      [...points].sort((a, b) => front.has(a.id) - front.has(b.id) || radius(b) - radius(a)).map((p) => s("circle", {
        cx: x(xv(p)), cy: y(p.metric), r: radius(p).toFixed(2), style: `fill: ${colours.get(p.model ?? "")}`,
        class: `hfm-point${front.has(p.id) ? " hfm-pareto" : ""}${selected.has(p.id) ? " hfm-selected" : ""}`,
        "data-testid": "point", "data-id": p.id, "data-pareto": front.has(p.id) ? "true" : "false",
        "data-model": p.model, "data-size": p.size_mb,
      }, s("title", {}, tipLines(p, ratio).join("\n")))),
      labels(points, (p) => x(xv(p)), y, colours.size > 1));
    for (const c of svg.querySelectorAll("circle")) {
      const p = points.find((q) => q.id === c.dataset.id);
      c.addEventListener("mousemove", (e) => showTip(e, tipLines(p, ratio)));
      c.addEventListener("mouseleave", () => { tooltip.hidden = true; });
      c.addEventListener("click", () => {
        const ids = get("selected");
        setSelected(ids.includes(p.id) ? ids.filter((i) => i !== p.id) : [...ids, p.id]);
      });
    }
    wrap.append(h("div", { class: "hfm-chart-title" }, `${generation ? xTitle.split(" p50")[0] : "latency"} against ${metricName}`,
      h("span", { class: "hfm-legend" }, " · marker area ∝ size on disk · ",
        h("span", { class: "hfm-swatch hfm-pareto" }), " Pareto front (all models)")),
    svg);
    return wrap;
  }

  // a label beside each point, placed above or below it, left out where it would overlap another
  // (the tooltip still names the point)
  function labels(points, px, y, withModel) {  // px: a point's x position
    const placed = [];
    const out = [];
    for (const p of [...points].sort((a, b) => px(a) - px(b))) {
      const text = withModel ? pair(p) : `${p.variant}/${p.backend}`;
      const w = 6.2 * text.length;
      for (const dy of [-7, 15]) {
        const box = { x: px(p) + 8, y: y(p.metric) + dy - 10, w, h: 12 };
        const clash = placed.some((q) =>
          box.x < q.x + q.w && q.x < box.x + box.w && box.y < q.y + q.h && q.y < box.y + box.h);
        if (!clash) {
          placed.push(box);
          out.push(s("text", { x: box.x, y: box.y + 10, class: "hfm-label" }, text));
          break;
        }
      }
    }
    return out;
  }

  function bars(rows, ratio, colours) {
    const shown = rows.filter((r) => ratio[r.id] != null);
    const wrap = h("div", { class: "hfm-chart", "data-testid": "bars" });
    if (!shown.length) return null;
    const W = 480, row = 20, m = { l: 210, r: 56, t: 8, b: 26 };
    const H = m.t + m.b + row * shown.length;
    const hi = Math.max(1, ...shown.map((r) => ratio[r.id])) * 1.05;
    const x = scale(0, hi, m.l, W - m.r);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "hfm-svg" },
      s("line", { x1: x(1), x2: x(1), y1: m.t - 4, y2: H - m.b + 4, class: "hfm-one" }),
      shown.map((r, i) => {
        const v = ratio[r.id];
        const yy = m.t + i * row;
        return s("g", { "data-testid": "bar", "data-id": r.id },
          s("text", { x: m.l - 6, y: yy + row / 2 + 4, "text-anchor": "end", class: "hfm-label" },
            `${pair(r)} ${r.batch_size}×${sizeText(r)}`),
          s("rect", { x: m.l, y: yy + 3, width: Math.max(1, x(v) - m.l), height: row - 6,
            class: `hfm-bar${v >= 1 ? " hfm-faster" : ""}`, style: r.model ? `fill: ${colours.get(r.model)}` : null }, s("title", {}, tipLines(r, ratio).join("\n"))),
          s("text", { x: x(v) + 4, y: yy + row / 2 + 4, class: "hfm-label" }, format(v, "x")));
      }),
      s("text", { x: x(1), y: H - 8, "text-anchor": "middle", class: "hfm-axis" }, "1×"));
    wrap.append(h("div", { class: "hfm-chart-title" }, `speed-up vs ${model.get("baseline")} (p50 ratio)`), svg);
    return wrap;
  }

  // what must not be missed (evaluations of different data): always shown, above the table
  function warnings() {
    const list = get("warnings");
    if (!list.length) return null;
    return h("div", { class: "hfm-warning", "data-testid": "warning", role: "alert" },
      list.map((n) => h("div", {}, `⚠ ${n}`)));
  }

  function notes() {
    const list = get("notes");
    if (!list.length) return null;
    return h("details", { class: "hfm-notes" }, h("summary", {}, `${list.length} note${list.length > 1 ? "s" : ""}`),
      h("ul", {}, list.map((n) => h("li", {}, n))));
  }

  function draw() {
    const rows = get("rows");
    const ratio = speedups(rows, model.get("baseline"), model.get("sweep_baseline"));
    const shown = visibleRows(rows);
    const colours = modelColours(rows); // from every row, so a filter never changes a model's colour
    root.replaceChildren(...[
      model.get("title") ? h("div", { class: "hfm-title" }, model.get("title")) : null,
      warnings(), progressBar(), controls(rows), legend(colours),
      rows.length ? table(shown, get("columns"), ratio, colours)
        : h("div", { class: "hfm-empty" }, "waiting for the first row…"),
      h("div", { class: "hfm-charts" }, scatter(shown, ratio, colours), bars(shown, ratio, colours)),
      notes(), tooltip].filter(Boolean));
    tooltip.hidden = true;
  }

  const events = ["rows", "columns", "selected", "baseline", "progress", "title", "notes", "warnings"].map((k) => `change:${k}`);
  for (const e of events) model.on(e, draw);
  draw();
  return () => { for (const e of events) model.off(e, draw); };
}

export default { render };
