// hfmagic's dashboard: the front end of hfmagic.ui.widget.Dashboard (an anywidget ES module).
// Plain DOM and SVG, no dependencies, so it works offline and inside to_html()'s standalone page.
// Every figure and every cell's text comes from Python (rows[].cells, speedups[baseline][id]), and so
// does what each figure is called, in what unit and what it means (columns, fields: the records'
// fields, hfmagic/core/records.py): this file shows them, sorts and filters rows, and plots raw
// values. The one rule it applies itself is the Pareto front of the rows in view; paretoFront is
// exported so a test checks it against its Python twin (hfmagic/ui/rows.py: pareto_front).

const SVG = "http://www.w3.org/2000/svg";

const isOk = (r) => r.status === "ok" && r.p50_ms != null;
/** "model/variant/backend" ("variant/backend" for a row that names no model): what a baseline names. */
export const pair = (r) => `${r.model ? `${r.model}/` : ""}${r.variant}/${r.backend}`;
// a shape's second axis is the task's: tokens per sequence (seq_len), pixels per side (image_size)
// or seconds of audio (audio_seconds)
const sizeOf = (r) => (r.seq_len != null ? r.seq_len : r.image_size != null ? r.image_size : r.audio_seconds);
// a generation's new tokens make a third: 1x128+64 (hfmagic/core/shapes.py: shape_text)
const shapeKey = (r) =>
  r.batch_size == null ? null : `${r.batch_size}x${sizeOf(r)}${r.new_tokens != null ? `+${r.new_tokens}` : ""}`;
const where = (r) => (r.node && r.node !== "local" ? `@${r.node}` : "");

/** Ids of the points that no other point beats on both a better `x` (lower: p50, a generation's TTFT
 * with "ttft_p50_ms"; higher when `higherX`, as its decode tokens/s) and a better metric (higher;
 * lower when `lowerIsBetter`, as perplexity). */
export function paretoFront(points, lowerIsBetter = false, x = "p50_ms", higherX = false) {
  const sign = lowerIsBetter ? -1 : 1;
  const xSign = higherX ? -1 : 1;
  const ordered = points
    .filter((p) => p[x] != null && p.metric != null)
    .sort((a, b) => xSign * (a[x] - b[x]) || sign * (b.metric - a.metric));
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

/** A shape key as people read it: 1 × 128, and 1 × 128 + 64 new for a generation's. */
const shapeLabel = (v) => v.replace("x", " × ").replace(/\+(\d+)$/, " + $1 new");

/** Shapes present among the rows, smallest (batch x seq) first. */
export function shapes(rows) {
  const seen = new Map();
  for (const r of rows) if (r.batch_size != null) seen.set(shapeKey(r), [r.batch_size, sizeOf(r), r.new_tokens || 0]);
  return [...seen.entries()]
    .sort((a, b) => a[1][0] * a[1][1] - b[1][0] * b[1][1] || a[1][0] - b[1][0] || a[1][2] - b[1][2])
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

  const get = (k) => model.get(k) || (["progress", "speedups", "speedup_notes", "fields"].includes(k) ? {} : []);
  // what a figure is called (and, on hover, what it is and its unit), as Python's records say
  const titleOf = (k) => (get("fields")[k] || {}).title || k;
  const docOf = (k) => {
    const f = get("fields")[k] || {};
    return f.doc ? `${f.doc}${f.unit ? ` (${f.unit})` : ""}` : null;
  };
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
    const pairs = get("baselines");
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
      select("filter-shape", "shape", all("all").concat(shapes(rows).map((v) => [v, shapeLabel(v)])),
        view.shape, (v) => { view.shape = v; draw(); }),
      get("chart_x").length > 1 ? select("x-axis", "chart x", get("chart_x").map((k) => [k, titleOf(k)]),
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
    const cellText = (r, key) => (key === "speedup" ? ratio[r.id]?.text : r.cells?.[key]) || "";
    const used = columns.filter((c) => ["variant", "backend", "status"].includes(c.key) ||
      rows.some((r) => cellText(r, c.key) !== ""));
    // sorting takes the raw value (the speed-up's, the metric's), the text where there is none
    const shown = rows.map((r) => ({ ...r, speedup: ratio[r.id]?.value ?? null }));
    const ordered = view.sortKey ? sortRows(shown, view.sortKey, view.sortDir) : shown;
    const numeric = (c) => c.align === "right";
    const head = h("tr", {}, h("th", {}, ""), used.map((c) => h("th", {
      "data-testid": `sort-${c.key}`, class: `hfm-sortable${numeric(c) ? " hfm-num" : ""}`,
      title: c.doc ? `${c.doc}${c.unit ? ` (${c.unit})` : ""}; click to sort` : `sort by ${c.title}`,
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
        let text = cellText(r, c.key);
        let title = null;
        const cell = ratio[r.id];
        if (c.key === "speedup" && cell) title = cell.why || null;
        if (c.key === "status" && r.status !== "ok") title = r.status;
        if (c.key === "node" && r.hardware) title = r.hardware;
        if (c.key === "status" && text.length > 40) text = `${text.slice(0, 40)}…`;
        const attrs = { class: numeric(c) ? "hfm-num" : null, "data-col": c.key, title };
        if (c.key === "speedup" && cell?.trust === false) attrs.class += " hfm-untrusted";
        if (c.key === "gate" && text) attrs["data-gate"] = r.gate;
        if (c.key === "model" && text) {
          if (r.model_sha) attrs.title = `weights sha256 ${r.model_sha}…`;
          return h("td", attrs, swatch(colours, r.model), ` ${text}`);
        }
        return h("td", attrs, text);
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

  // each figure as "title cell", as the table titles and writes it
  function tipLines(r, ratio) {
    const c = r.cells || {};
    const line = (...keys) => keys.filter((k) => c[k]).map((k) => `${titleOf(k)} ${c[k]}`).join(" · ") || null;
    const speed = ratio[r.id];
    const latency = get("chart_x").length > 1 ? get("chart_x") : ["p50_ms", "p95_ms"];
    return [
      r.model ? `model ${r.model}` : null,
      `${r.variant} on ${r.backend} · ${r.shape}`,
      where(r) ? `on ${r.node}: ${r.hardware || "?"}` : null,
      line(...latency), line("samples_per_s"),
      c.metric ? `${titleOf("metric")} ${c.metric} ${c.metric_ci || ""}` : null,
      line("size_mb"), line("pct_of_reference", "gate"),
      speed?.text ? `${titleOf("speedup")} ${speed.text} vs ${model.get("baseline")}` : null,
    ].filter(Boolean);
  }

  function scatter(rows, ratio, colours) {
    const all = shapes(rows.filter((r) => isOk(r) && r.metric != null));
    const shape = view.shape || all[0];
    const points = rows.filter((r) => isOk(r) && r.metric != null && shapeKey(r) === shape);
    const wrap = h("div", { class: "hfm-chart", "data-testid": "scatter" });
    const metricName = titleOf("metric");
    if (!points.length) {
      wrap.append(h("div", { class: "hfm-empty" }, rows.some((r) => r.metric != null)
        ? "no latency to plot yet: benchmark these variants and pass both results to Dashboard"
        : "no accuracy to plot: evaluate the variants and pass both results to Dashboard"));
      return wrap;
    }
    const xk = get("chart_x").includes(view.x) ? view.x : "p50_ms";
    const xv = (p) => p[xk];
    const higherX = ((get("fields")[xk] || {}).unit || "").endsWith("/s");  // a rate: more is better
    const front = new Set(paretoFront(points, model.get("metric_lower") === true, xk, higherX));  // get() gives [] for false
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
    const sizeKey = ["seq_len", "image_size", "audio_seconds"].find((k) => points[0][k] != null) || "seq_len";
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "hfm-svg" },
      ticks(x0, x1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: x(v), x2: x(v), y1: m.t, y2: H - m.b }),
        s("text", { x: x(v), y: H - m.b + 14, "text-anchor": "middle" }, String(v)))),
      ticks(y0, y1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)))),
      s("text", { class: "hfm-axis", x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" },
        `${titleOf(xk)} (${titleOf("batch_size")} × ${titleOf(sizeKey)} ${shapeLabel(shape)})`),
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
    wrap.append(h("div", { class: "hfm-chart-title" }, `${titleOf(xk)} against ${metricName}`,
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

  // each bar is the speed-up's value, its whisker the 95% interval; a figure with too few clean
  // rounds is drawn hatched and labelled as the table labels it
  function bars(rows, ratio, colours) {
    const shown = rows.filter((r) => ratio[r.id]?.value != null);
    const wrap = h("div", { class: "hfm-chart", "data-testid": "bars" });
    if (!shown.length) return null;
    const W = 560, row = 20, m = { l: 210, r: 150, t: 8, b: 26 };
    const H = m.t + m.b + row * shown.length;
    const top = (c) => Math.max(c.value, c.high ?? c.value);
    const hi = Math.max(1, ...shown.map((r) => top(ratio[r.id]))) * 1.05;
    const x = scale(0, hi, m.l, W - m.r);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "hfm-svg" },
      s("line", { x1: x(1), x2: x(1), y1: m.t - 4, y2: H - m.b + 4, class: "hfm-one" }),
      shown.map((r, i) => {
        const c = ratio[r.id];
        const v = c.value;
        const yy = m.t + i * row;
        const untrusted = c.trust === false;
        return s("g", { "data-testid": "bar", "data-id": r.id, "data-trust": untrusted ? "false" : "true" },
          s("text", { x: m.l - 6, y: yy + row / 2 + 4, "text-anchor": "end", class: "hfm-label" },
            `${pair(r)} ${r.shape}`),
          s("rect", { x: m.l, y: yy + 3, width: Math.max(1, x(v) - m.l), height: row - 6,
            class: `hfm-bar${v >= 1 ? " hfm-faster" : ""}${untrusted ? " hfm-untrusted" : ""}`,
            style: r.model && !untrusted ? `fill: ${colours.get(r.model)}` : null },
          s("title", {}, tipLines(r, ratio).join("\n"))),
          c.low != null && c.high != null && !untrusted ? s("line", { x1: x(c.low), x2: x(c.high), y1: yy + row / 2,
            y2: yy + row / 2, class: "hfm-whisker", "data-testid": "whisker" }) : null,
          s("text", { x: x(top(c)) + 4, y: yy + row / 2 + 4, class: "hfm-label", "data-testid": "bar-label" }, c.text));
      }),
      s("text", { x: x(1), y: H - 8, "text-anchor": "middle", class: "hfm-axis" }, "1×"));
    wrap.append(h("div", { class: "hfm-chart-title" }, `speed-up vs ${model.get("baseline")} (bars: the figure; `
      + "whiskers: its 95% interval; hatched: not trustworthy)"), svg);
    return wrap;
  }

  // what must not be missed (evaluations of different data): always shown, above the table
  function warnings() {
    const list = get("warnings");
    if (!list.length) return null;
    return h("div", { class: "hfm-warning", "data-testid": "warning", role: "alert" },
      list.map((n) => h("div", {}, `⚠ ${n}`)));
  }

  // how the speed-ups against the chosen baseline were computed (and why rows have none), then the
  // results' own notes
  function notes() {
    const list = [...((get("speedup_notes") || {})[model.get("baseline")] || []), ...get("notes")];
    if (!list.length) return null;
    return h("details", { class: "hfm-notes", "data-testid": "notes" },
      h("summary", {}, `${list.length} note${list.length > 1 ? "s" : ""}`),
      h("ul", {}, list.map((n) => h("li", {}, n))));
  }

  function draw() {
    const rows = get("rows");
    const ratio = (get("speedups") || {})[model.get("baseline")] || {};
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

  const events = ["rows", "columns", "fields", "chart_x", "selected", "baseline", "baselines", "speedups", "speedup_notes", "progress",
    "title", "notes", "warnings"].map((k) => `change:${k}`);
  for (const e of events) model.on(e, draw);
  draw();
  return () => { for (const e of events) model.off(e, draw); };
}

// -- a load test: p99 against achieved requests/s, one line per configuration ---------------------

/** A load test (hfmagic.ui.loadtest): its curves, the SLO across, each configuration's highest rate
 *  inside it ringed, and the table. Every figure comes from Python; this only places them. */
function renderLoadTest({ model, el }) {
  const root = h("div", { class: "hfm-dash", "data-testid": "hfmagic-loadtest" });
  el.append(root);

  function chart(curves, slo) {
    const points = curves.flatMap((c) => c.points);
    const wrap = h("div", { class: "hfm-chart", "data-testid": "loadtest-chart" });
    if (!points.length) {
      wrap.append(h("div", { class: "hfm-empty" }, "no rate was answered: nothing to plot (the table says why)"));
      return wrap;
    }
    const W = 520, H = 300, m = { l: 58, r: 16, t: 14, b: 40 };
    // a saturated rate's p99 can be many times the SLO: the axis stops at 4 × the SLO and such a
    // point sits on the top edge as a triangle (its tooltip says its figure)
    const top = slo != null ? Math.min(Math.max(...points.map((p) => p.y)), 4 * slo) : Math.max(...points.map((p) => p.y));
    const ys = [top].concat(slo != null ? [slo] : []);
    const [x0, x1] = padded([0, Math.max(...points.map((p) => p.x))]);
    const [y0, y1] = padded([0, Math.max(...ys)]);
    const over = (p) => p.y > top;
    const x = scale(Math.max(0, x0), x1, m.l, W - m.r);
    const y = scale(Math.max(0, y0), y1, H - m.b, m.t);
    const colour = (i) => PALETTE[i % PALETTE.length];
    const streamed = curves.some((c) => c.judged === "ttft_p99_ms");
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "hfm-svg" },
      ticks(Math.max(0, x0), x1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: x(v), x2: x(v), y1: m.t, y2: H - m.b }),
        s("text", { x: x(v), y: H - m.b + 14, "text-anchor": "middle" }, String(v)))),
      ticks(Math.max(0, y0), y1).map((v) => s("g", { class: "hfm-tick" },
        s("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)))),
      s("text", { class: "hfm-axis", x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" },
        "achieved requests/s"),
      s("text", { class: "hfm-axis", x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
        transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})` }, streamed ? "p99 ms (TTFT p99 for streams)" : "p99 latency, ms"),
      slo != null ? s("g", { "data-testid": "slo-line" },
        s("line", { x1: m.l, x2: W - m.r, y1: y(slo), y2: y(slo), class: "hfm-slo" }),
        s("text", { x: W - m.r - 4, y: y(slo) - 4, "text-anchor": "end", class: "hfm-slo-label" }, `SLO ${slo} ms`)) : null,
      curves.map((c, i) => s("g", { "data-testid": "curve", "data-config": c.config, "data-best": c.best ?? "" },
        s("path", { d: c.points.map((p, k) => `${k ? "L" : "M"}${x(p.x).toFixed(1)},${y(Math.min(p.y, top)).toFixed(1)}`).join(""),
          class: "hfm-curve", style: `stroke: ${colour(i)}` }),
        c.points.map((p) => over(p)
          ? s("path", { d: `M${x(p.x) - 5},${y(top) + 4}L${x(p.x) + 5},${y(top) + 4}L${x(p.x)},${y(top) - 5}Z`,
            style: `fill: #fff; stroke: ${colour(i)}`, class: "hfm-point hfm-clipped", "data-testid": "rate-point",
            "data-rate": p.rate, "data-ok": "false" }, s("title", {}, p.tip))
          : s("circle", {
            cx: x(p.x), cy: y(p.y), r: p.rate === c.best ? 6 : 3.5, style: `fill: ${p.ok ? colour(i) : "#fff"}; stroke: ${colour(i)}`,
            class: `hfm-point${p.rate === c.best ? " hfm-best" : ""}`, "data-testid": "rate-point",
            "data-rate": p.rate, "data-ok": p.ok ? "true" : "false",
          }, s("title", {}, p.tip))))));
    const legend = h("div", { class: "hfm-legend", "data-testid": "legend" }, curves.map((c, i) => h("span", {},
      h("span", { class: "hfm-swatch", style: `background: ${colour(i)}` }),
      ` ${c.config}` + (c.best != null ? `: ${c.best}/s inside` : ": no rate inside")
      + (c.gate === "fail" ? " (fails the accuracy gate)" : c.gate ? ` (gate ${c.gate})` : "") + "  ")));
    wrap.append(h("div", { class: "hfm-chart-title" }, "p99 latency against achieved throughput ",
      "(filled: the rate was ok; hollow: it was not; ringed: the highest rate inside the SLO; "
      + "a triangle on the top edge: a p99 beyond 4 × the SLO)"), legend, svg);
    return wrap;
  }

  function draw() {
    const headings = model.get("headings") || [];
    const notes = model.get("notes") || [];
    root.replaceChildren(...[
      h("div", { class: "hfm-title" }, model.get("title") || "load test"),
      chart(model.get("curves") || [], model.get("slo_ms")),
      h("table", { class: "hfm-table", "data-testid": "loadtest-table" },
        h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
        h("tbody", {}, (model.get("cells") || []).map((row) => h("tr", {}, row.map((c) => h("td", {}, c)))))),
      notes.length ? h("details", { class: "hfm-notes", "data-testid": "notes", open: true },
        h("summary", {}, `${notes.length} note${notes.length > 1 ? "s" : ""}`),
        h("ul", {}, notes.map((n) => h("li", {}, n)))) : null].filter(Boolean));
  }

  const events = ["curves", "slo_ms", "headings", "cells", "notes", "title"].map((k) => `change:${k}`);
  for (const e of events) model.on(e, draw);
  draw();
  return () => { for (const e of events) model.off(e, draw); };
}

export default { render: (ctx) => (ctx.model.get("view") === "loadtest" ? renderLoadTest(ctx) : render(ctx)) };
