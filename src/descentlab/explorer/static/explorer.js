// The descentlab explorer: one front end for two hosts.
//
// One file, because anywidget ships a widget's module (`_esm`) as one text. It is an anywidget
// module (`export default { render }`): in a notebook the host is the widget's model; in
// `descentlab explore` the page gives it a model of the same shape backed by the URL hash and
// fetch (page.js). It only ever uses model.get/set/save_changes, model.on("change:KEY"),
// model.on("msg:custom") and model.send. Every change sends one small request
// ({type: "run", id, request}); Python answers {type: "result", id, reply}.
//
// The file reads top to bottom: pure helpers (exported, and tested with `node --test` in
// tests/explorer/js/), the one helper that reads Plotly's private layout, then the parts of the
// page, each a function of the shared `app` (its model, catalog, elements and state):
// controls, connection, map, overlay (the walkers and arrows, drawn on a canvas so that a step
// redraws neither the contour nor the paths), curve, readout, pointer and player. `render`
// composes them.

const STATE = ["f", "opt", "lr", "hyper", "start", "grid", "steps", "box", "schedule"];
export const LR_MIN = -5, LR_MAX = 1; // the learning-rate sliders are log10 scales
const OUTCOMES = ["converged", "step limit", "diverging", "diverged", "interrupted"];
// optimizers whose update is −lr·(gradient + carried momentum): their arrows are its parts
const ADDITIVE = new Set(["gd", "momentum", "nesterov"]);
const KERNELS = { c: "the C loop", inductor: "torch.compile", eager: "torch.optim (eager)" };
const MIN_ARROW_PX = 10;

// --- pure helpers ---------------------------------------------------------------------------

// a number for the page: 4 significant figures, in exponent form when large or small
// (4.97e13, not 49710000000000)
export function fmt(v, p = 4) {
  if (v == null) return "—";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-4)) {
    const [m, e] = v.toExponential(p - 1).split("e");
    return `${m.includes(".") ? m.replace(/\.?0+$/, "") : m}e${Number(e)}`;
  }
  return Number(v.toPrecision(p)).toString();
}
export const fmtLr = (v) => Number(Number(v).toPrecision(3)).toString();
export const ordinal = (k) => `${k}${[11, 12, 13].includes(k % 100) ? "th" : { 1: "st", 2: "nd", 3: "rd" }[k % 10] || "th"}`;

// "warmup=5, gamma=0.5" or "milestones=[30,60]" -> {warmup: 5, ...}; a value that is not JSON
// is sent as text, and the server says what is wrong with it
export function parseSettings(text) {
  const out = {};
  let depth = 0, item = "";
  const items = [];
  for (const ch of text) {
    depth += "[(".includes(ch) - "])".includes(ch);
    if (ch === "," && depth === 0) { items.push(item); item = ""; } else item += ch;
  }
  items.push(item);
  for (const it of items.map((x) => x.trim()).filter(Boolean)) {
    const [k, ...rest] = it.split("=");
    // Python's (50,) and [30, 60,] read as JSON lists
    const raw = rest.join("=").trim().replace(/^\(/, "[").replace(/\)$/, "]").replace(/,\s*\]$/, "]");
    try { out[k.trim()] = JSON.parse(raw); } catch { out[k.trim()] = raw; }
  }
  return out;
}

export function decode(packed) {
  const bin = atob(packed.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return { data: new Float32Array(bytes.buffer), shape: packed.shape };
}

// an array's point at row t (clamped to its rows) for start i
export function at(arr, t, i) {
  const [rows, N, d] = arr.shape;
  const o = (Math.min(t, rows - 1) * N + i) * d;
  return [arr.data[o], arr.data[o + 1]];
}
export const value = (arr, t, i) => arr.data[Math.min(t, arr.shape[0] - 1) * arr.shape[1] + i];

const inside = ([x, y], [[x0, x1], [y0, y1]]) => x >= x0 && x <= x1 && y >= y0 && y <= y1;

// where the segment from p (inside the box) towards q first meets the box's edge
export function exitPoint(p, q, [[x0, x1], [y0, y1]]) {
  const dx = q[0] - p[0], dy = q[1] - p[1];
  if (!Number.isFinite(dx) || !Number.isFinite(dy)) return [...p];
  let t = 1;
  if (dx > 0) t = Math.min(t, (x1 - p[0]) / dx);
  if (dx < 0) t = Math.min(t, (x0 - p[0]) / dx);
  if (dy > 0) t = Math.min(t, (y1 - p[1]) / dy);
  if (dy < 0) t = Math.min(t, (y0 - p[1]) / dy);
  t = Math.max(0, t);
  // (exactly on the box: Plotly leaves out a marker a rounding error outside its axes)
  return [Math.min(Math.max(p[0] + t * dx, x0), x1), Math.min(Math.max(p[1] + t * dy, y0), y1)];
}

// the row a walk first is outside the box (or not finite), and where it crossed the edge;
// null if it stays inside up to row `last`
export function leaving(path, i, last, box) {
  let prev = at(path, 0, i);
  if (!inside(prev, box)) return { row: 0, at: prev.map((v, j) => Math.min(Math.max(v, box[j][0]), box[j][1])) };
  for (let t = 1; t <= last; t++) {
    const p = at(path, t, i);
    if (!inside(p, box)) return { row: t, at: exitPoint(prev, p, box) };
    prev = p;
  }
  return null;
}

// a walk's outcome in words (the vocabulary of descentlab.status), n its steps taken
export function statusText(s, n) {
  if (s === "step limit") return `step limit (${n})`;
  if (s === "diverging") return `diverging: f grew ≥1000× (step limit ${n})`;
  return `${s} at step ${n}`;
}
export function summaryStatus(statuses) {
  const counts = {};
  for (const s of statuses) counts[s] = (counts[s] || 0) + 1;
  return OUTCOMES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ");
}

// what the curve plots: f − f* where f* is known, else f where f stays positive, else f less
// the lowest f seen; and whether a log axis reads it best (its values span two decades)
export function curveValues(series, fstar) {
  let lo = Infinity, hi = -Infinity;
  for (const ys of series) for (const v of ys) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  let base = 0, label = "f";
  if (fstar != null) { base = fstar; label = "f − f*"; } else if (!(lo > 0)) { base = lo; label = "f − lowest f seen"; }
  // (f − f* is at least a rounding error of f*; f less the lowest seen is 0 at that point)
  const floor = label === "f" ? 0 : Math.max(Math.abs(base), 1) * 1e-16;
  const out = series.map((ys) => ys.map((v) => (Number.isFinite(v) ? Math.max(v - base, floor) : null)));
  let plo = Infinity, phi = 0;
  for (const ys of out) for (const v of ys) if (v > 0) { plo = Math.min(plo, v); phi = Math.max(phi, v); }
  return { series: out, label, log: phi > 0 && phi / plo > 100 };
}

// an arrow (dx, dy) in pixels at least `min` long (0 stays 0)
export function visibleArrow(dx, dy, min = MIN_ARROW_PX) {
  const len = Math.hypot(dx, dy);
  if (!(len > 0)) return [0, 0];
  return len >= min ? [dx, dy] : [(dx * min) / len, (dy * min) / len];
}

// the box holding every point of the walks, with a margin (null if none is finite)
export function fitBox(points, margin = 0.08) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of points) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (!(x1 >= x0)) return null;
  const w = Math.max(x1 - x0, y1 - y0, 1e-3) * margin;
  const nice = (v) => Number(v.toPrecision(4));
  return [nice(x0 - w), nice(x1 + w), nice(y0 - w), nice(y1 + w)];
}

// a box zoomed by `factor` (< 1: in) about the point (cx, cy)
export function zoomBox([[x0, x1], [y0, y1]], cx, cy, factor) {
  const nice = (v) => Number(v.toPrecision(5));
  return [nice(cx + (x0 - cx) * factor), nice(cx + (x1 - cx) * factor), nice(cy + (y0 - cy) * factor), nice(cy + (y1 - cy) * factor)];
}

export function kernelWords(kernels) {
  const seen = [...new Set(kernels.filter(Boolean))];
  return seen.map((k) => KERNELS[k] || k).join(" and ");
}

// --- Plotly's private layout ------------------------------------------------------------------
// No public Plotly API maps data to pixels; its full layout (`_fullLayout`, with each axis's
// d2p/p2d and the plot area `_size`) has done so since plotly.js 1.x. This is the one place that
// reads it: the plot area in the div's pixels, and the maps between data and pixels.
function plotArea(div) {
  const l = div && div._fullLayout;
  if (!l || !l._size || !l.xaxis || !l.xaxis.d2p) return null;
  const { l: left, t: top, w: width, h: height } = l._size;
  return { left, top, width, height, px: (x) => l.xaxis.d2p(x), py: (y) => l.yaxis.d2p(y),
    x: (px) => l.xaxis.p2d(px), y: (py) => l.yaxis.p2d(py), box: [[...l.xaxis.range], [...l.yaxis.range]] };
}

// --- the page ---------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}

async function ensurePlotly(model) {
  if (window.Plotly) return window.Plotly;
  if (!window.__descentlabPlotly) {
    window.__descentlabPlotly = new Promise((resolve, reject) => {
      const onMessage = (msg) => {
        if (!msg || msg.type !== "plotly") return;
        model.off("msg:custom", onMessage);
        const url = URL.createObjectURL(new Blob([msg.source], { type: "text/javascript" }));
        const script = document.createElement("script");
        script.src = url;
        script.onload = () => resolve(window.Plotly);
        script.onerror = () => reject(new Error("plotly.js did not load"));
        document.head.appendChild(script);
      };
      model.on("msg:custom", onMessage);
      model.send({ type: "plotly" });
    });
  }
  return window.__descentlabPlotly;
}

// entrant k's colour, as every picture of descentlab colours it (one walk alone: `single`)
function colourOf(app, k) {
  const { palette = ["#e6194b"], single = "#ff5a36" } = app.catalog;
  return (app.model.get("opt") || []).length === 1 ? single : palette[k % palette.length];
}
// the step a recorded row shows (rows are steps unless every k-th step was asked for)
const rec = (app, row) => (app.data && app.data.recorded ? app.data.recorded[row] : row);
const taken = (r, i) => (r.taken ? r.taken[i] : r.steps[i]);

// --- controls: the function, optimizers, steps, grid, schedule, play, copy -------------------
function controls(app) {
  const { model, catalog, ui } = app;
  ui.fselect = h("select", { class: "dlx-f", "aria-label": "function", onchange: () => {
    if (ui.fselect.value === "(formula)") { ui.formula.focus(); return; }
    ui.formula.value = "";
    app.update({ f: ui.fselect.value, start: [], box: [] });
  } });
  for (const name of [...catalog.functions, ...(model.get("f") === "python" ? ["python"] : []), "(formula)"])
    ui.fselect.append(h("option", { value: name }, name === "python" ? "your Python function" : name));
  const applyFormula = () => {
    const text = ui.formula.value.trim();
    if (text && text !== model.get("f")) app.update({ f: text, start: [], box: [] });
  };
  ui.formula = h("input", { class: "dlx-formula", type: "text", spellcheck: "false",
    placeholder: "or type a formula in x and y, e.g. x**2 + 10*y**2, then Enter",
    onkeydown: (e) => { if (e.key === "Enter") applyFormula(); }, onchange: applyFormula });
  ui.error = h("div", { class: "dlx-error", role: "alert" });
  ui.opts = h("div", { class: "dlx-opts" });
  ui.add = h("button", { class: "dlx-add", onclick: () => addOptimizer(app) }, "+ optimizer");
  ui.steps = h("input", { class: "dlx-steps", type: "number", min: "1", max: String(catalog.limits.steps || 5000),
    onchange: () => app.update({ steps: Math.max(1, Math.round(Number(ui.steps.value) || 1)) }) });
  const applySchedule = () => {
    const name = ui.sched.value;
    app.update({ schedule: name ? { name, ...parseSettings(ui.schedSettings.value) } : null });
  };
  ui.sched = h("select", { class: "dlx-schedule", "aria-label": "learning-rate schedule", onchange: applySchedule });
  ui.sched.append(h("option", { value: "" }, "constant rate"));
  for (const name of Object.keys(catalog.schedules || {}).filter((n) => n !== "constant")) ui.sched.append(h("option", { value: name }, name));
  ui.schedSettings = h("input", { class: "dlx-schedule-settings", type: "text", spellcheck: "false", size: "22",
    placeholder: "settings, e.g. warmup=5", onchange: applySchedule, onkeydown: (e) => { if (e.key === "Enter") applySchedule(); } });
  const gridSize = () => Math.max(2, Math.min(catalog.limits.grid || 50, Math.round(Number(ui.gridN.value) || 12)));
  ui.gridN = h("input", { class: "dlx-gridn", type: "number", min: "2", max: String(catalog.limits.grid || 50), value: "12",
    onchange: () => { if (model.get("grid")) app.update({ grid: gridSize() }); } });
  ui.gridBtn = h("button", { class: "dlx-grid", onclick: () => app.update({ grid: model.get("grid") ? 0 : gridSize() }) }, "grid of starts");
  ui.clear = h("button", { class: "dlx-clear", onclick: () => app.update({ start: [], grid: 0 }) }, "reset starts");
  ui.fit = h("button", { class: "dlx-fit", title: "zoom the map to the walks", onclick: () => fitWalks(app) }, "fit the walks");
  ui.whole = h("button", { class: "dlx-whole", title: "the function's own view", onclick: () => app.update({ box: [] }) }, "whole view");
  ui.code = h("pre", { class: "dlx-code" });
  const copy = (which) => {
    if (!app.data) return;
    const text = which === "cli" ? app.data.cli : app.data.python;
    ui.code.dataset.which = which;
    ui.code.textContent = text || "(a Python function has no command-line form)";
    ui.code.style.display = "block";
    if (navigator.clipboard && text) navigator.clipboard.writeText(text).then(() => { ui.info.textContent = `copied the ${which === "cli" ? "command" : "Python"}`; }, () => {});
  };
  ui.copyPy = h("button", { class: "dlx-copy-python", onclick: () => copy("python") }, "copy as Python");
  ui.copyCli = h("button", { class: "dlx-copy-cli", onclick: () => copy("cli") }, "copy as CLI");
  ui.info = h("span", { class: "dlx-info" });
}

function optimizerRow(app, i) {
  const { model, catalog } = app;
  const name = model.get("opt")[i], info = catalog.optimizers[name] || { lr: 0.01, hyper: {} };
  const lr = model.get("lr")[i] ?? info.lr;
  const hyper = { ...info.hyper, ...(model.get("hyper")[i] || {}) };
  const setLr = (v) => {
    const l = [...model.get("lr")]; while (l.length <= i) l.push(null); l[i] = v;
    app.update({ lr: l });
  };
  const select = h("select", { class: "dlx-opt", "aria-label": `optimizer ${i + 1}`, onchange: () => {
    const o = [...model.get("opt")]; o[i] = select.value;
    const l = [...model.get("lr")]; l[i] = (catalog.optimizers[select.value] || {}).lr ?? 0.01;
    const hp = [...model.get("hyper")]; hp[i] = {};
    app.update({ opt: o, lr: l, hyper: hp });
  } });
  for (const n of Object.keys(catalog.optimizers)) select.append(h("option", { value: n }, n));
  select.value = name;
  // the slider rounds to 3 significant figures; the box beside it takes any rate typed
  const typed = h("input", { class: "dlx-lrtext", type: "number", min: "0", step: "any", value: fmtLr(lr),
    "aria-label": `learning rate ${i + 1} (typed)`, onchange: () => {
      const v = Number(typed.value);
      if (Number.isFinite(v) && v > 0) setLr(v);
    } });
  const slider = h("input", { class: "dlx-lr", type: "range", min: String(LR_MIN), max: String(LR_MAX), step: "0.001",
    value: String(Math.log10(lr)), "aria-label": `learning rate ${i + 1}`,
    oninput: () => { const v = Number(fmtLr(10 ** Number(slider.value))); typed.value = fmtLr(v); setLr(v); } });
  const row = h("div", { class: "dlx-optrow" }, h("span", { class: "dlx-swatch", style: `background:${colourOf(app, i)}` }),
    select, " lr ", slider, typed);
  for (const [key, def] of Object.entries(hyper)) {
    const parts = Array.isArray(def) ? def.map((v, j) => [`${key === "betas" ? "β" + (j + 1) : key}`, v, j]) : [[key, def, -1]];
    for (const [label, v, j] of parts) {
      const input = h("input", { class: `dlx-hp dlx-hp-${key}`, type: "number", step: "0.01", min: "0", max: "0.9999", value: String(v),
        "aria-label": `${label} ${i + 1}`, onchange: () => {
          const hp = [...model.get("hyper")]; while (hp.length <= i) hp.push({});
          const cur = { ...(hp[i] || {}) };
          const num = Number(input.value);
          if (j >= 0) { const pair = [...(cur[key] || info.hyper[key])]; pair[j] = num; cur[key] = pair; } else cur[key] = num;
          hp[i] = cur; app.update({ hyper: hp });
        } });
      row.append(` ${label} `, input);
    }
  }
  if (model.get("opt").length > 1) row.append(h("button", { class: "dlx-remove", title: "remove", onclick: () => {
    const drop = (a) => a.filter((_, j) => j !== i);
    app.update({ opt: drop(model.get("opt")), lr: drop(model.get("lr")), hyper: drop(model.get("hyper")) });
  } }, "×"));
  return row;
}

function addOptimizer(app) {
  const { model, catalog } = app;
  const used = new Set(model.get("opt"));
  const next = ["adam", "momentum", "rmsprop", "gd", "nesterov", "adagrad", "nadam", "rprop"].find((n) => !used.has(n)) || "gd";
  app.update({ opt: [...model.get("opt"), next], lr: [...model.get("lr"), catalog.optimizers[next]?.lr ?? 0.01],
    hyper: [...model.get("hyper"), {}] });
}

function syncControls(app) {
  const { model, catalog, ui } = app;
  const f = model.get("f");
  const listed = [...ui.fselect.options].some((o) => o.value === f);
  ui.fselect.value = listed ? f : "(formula)";
  if (!listed && document.activeElement !== ui.formula) ui.formula.value = f;
  ui.steps.value = String(model.get("steps"));
  const sched = model.get("schedule");
  ui.sched.value = sched && sched.name ? sched.name : "";
  if (document.activeElement !== ui.schedSettings)
    ui.schedSettings.value = sched ? Object.entries(sched).filter(([k]) => k !== "name").map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ") : "";
  ui.gridBtn.textContent = model.get("grid") ? "single starts" : "grid of starts";
  if (model.get("grid")) ui.gridN.value = String(model.get("grid"));
  ui.fit.disabled = Boolean(model.get("grid"));
  // rebuild the optimizer rows only when the optimizers change: a slider being dragged must
  // stay the same element
  const signature = JSON.stringify([model.get("opt"), model.get("hyper")]);
  if (signature !== ui.signature) {
    ui.signature = signature;
    ui.opts.replaceChildren(...model.get("opt").map((_, i) => optimizerRow(app, i)));
  } else {
    const lrs = model.get("lr");
    ui.opts.querySelectorAll(".dlx-optrow").forEach((row, i) => {
      const v = lrs[i] ?? (catalog.optimizers[model.get("opt")[i]] || {}).lr ?? 0.01;
      const slider = row.querySelector(".dlx-lr"), typed = row.querySelector(".dlx-lrtext");
      if (slider !== document.activeElement) slider.value = String(Math.log10(v));
      if (typed !== document.activeElement) typed.value = fmtLr(v);
    });
  }
}

// --- connection: requests out, replies in ---------------------------------------------------
function connection(app) {
  const { model, s } = app;
  app.request = () => {
    if (s.inflight) { s.dirty = true; return; }
    s.inflight = true; s.dirty = false;
    app.root.dataset.busy = "1"; // (tests and screenshots wait for "0": the reply drawn)
    const req = { surface: s.surface ? 0 : 1 };
    for (const k of STATE) req[k] = model.get(k);
    if (!req.box || !req.box.length) delete req.box;
    if (!req.start || !req.start.length) delete req.start;
    if (s.every > 1) req.every = s.every;
    model.send({ type: "run", id: ++s.seq, request: req });
  };
  app.update = (changes) => {
    s.updating = true;
    try { for (const [k, v] of Object.entries(changes)) model.set(k, v); model.save_changes(); } finally { s.updating = false; }
    if ("f" in changes || "box" in changes) s.surface = null;
    if ("f" in changes || "grid" in changes || "steps" in changes || "opt" in changes) s.every = 1;
    syncControls(app);
    app.request();
  };
  model.on("msg:custom", (msg) => {
    if (!msg || msg.type !== "result") return;
    s.inflight = false;
    receive(app, msg.reply);
    if (s.inflight) return; // it asked again, for every k-th step
    if (s.dirty) app.request();
    else app.root.dataset.busy = "0";
  });
  for (const k of STATE) model.on(`change:${k}`, () => {
    if (s.updating) return;
    if (k === "f" || k === "box") s.surface = null;
    if (k === "f" || k === "grid" || k === "steps" || k === "opt") s.every = 1;
    syncControls(app);
    app.request();
  });
}

function receive(app, reply) {
  const { ui, s, model, catalog } = app;
  if (reply.error && reply.every && reply.every > s.every) { s.every = reply.every; app.request(); return; }
  if (reply.error) {
    ui.error.replaceChildren(reply.error);
    if (reply.column && model.get("f"))
      ui.error.append(h("pre", { class: "dlx-caret" }, model.get("f") + "\n" + " ".repeat(reply.column - 1) + "^"));
    ui.error.style.display = "block";
    ui.info.textContent = `server ${reply.ms} ms`;
    return;
  }
  ui.error.style.display = "none";
  ui.error.replaceChildren();
  const runs = reply.runs.map((r) => ({
    ...r,
    path: decode(r.path),
    values: decode(r.values),
    glyphs: r.glyphs && {
      gradient: decode(r.glyphs.gradient_raw),
      arrows: Object.fromEntries(Object.entries(r.glyphs.arrows).map(([k, v]) => [k, decode(v)])),
      readouts: Object.fromEntries(Object.entries(r.glyphs.readouts).map(([k, v]) => [k, decode(v)])),
    },
  }));
  // the timeline runs to the longest walk: a walk that stopped early (converged, diverged)
  // keeps its last place
  const T = Math.max(...runs.map((r) => r.path.shape[0])), N = runs[0].path.shape[1];
  const recorded = runs.reduce((a, r) => (r.recorded && r.recorded.length > (a ? a.length : 0) ? r.recorded : a), null);
  app.data = { f: reply.f, runs, T, N, python: reply.python, cli: reply.cli, recorded };
  if (reply.f.surface) s.surface = { key: reply.f.key, f: reply.f };
  for (const r of runs) {
    const last = (i) => Math.min(r.path.shape[0] - 1, r.steps[i]);
    // where each walk that diverged (or is diverging) left the view
    r.left = r.status.map((st, i) => (st === "diverged" || st === "diverging" ? leaving(r.path, i, last(i), reply.f.box) : null));
  }
  if (s.selected >= N) s.selected = 0;
  ui.slider.max = String(T - 1);
  if (s.step > T - 1) s.step = T - 1;
  ui.code.textContent = ui.code.dataset.which === "cli" ? reply.cli || "" : reply.python;
  const budget = catalog.limits.seconds ? ` of ${catalog.limits.seconds} s allowed` : "";
  ui.info.textContent = `server ${reply.ms} ms${budget} · ran on ${kernelWords(runs.map((r) => r.kernel))}`;
  drawMap(app);
  drawCurve(app);
  drawStep(app);
}

// --- map: the contour, the paths, the minima, the starts (redrawn per reply) ----------------
function contourTrace(f) {
  const z = decode(f.surface.z);
  const [ny, nx] = z.shape;
  let lo = Infinity, hi = -Infinity;
  for (const v of z.data) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const base = f.fmin != null && f.fmin <= lo ? f.fmin : lo;
  const eps = Math.max((hi - base) * 1e-6, 1e-12);
  const rows = [];
  for (let r = 0; r < ny; r++) {
    const row = new Array(nx);
    for (let c = 0; c < nx; c++) { const v = z.data[r * nx + c]; row[c] = Number.isFinite(v) ? Math.log10(v - base + eps) : null; }
    rows.push(row);
  }
  const top = Math.log10(hi - base + eps), bottom = Math.log10(eps);
  const ticks = [];
  for (let k = Math.ceil(Math.max(bottom, top - 12)); k <= Math.floor(top); k++) ticks.push(k);
  return {
    type: "contour", x: f.surface.x, y: f.surface.y, z: rows, zmin: Math.max(bottom, top - 12), zmax: top,
    colorscale: "Viridis", opacity: 0.55, ncontours: 30, line: { width: 0.5, color: "rgba(255,255,255,0.5)" },
    hoverinfo: "skip", showscale: true,
    colorbar: { title: { text: "f − " + (f.fmin != null && f.fmin <= lo ? "f*" : "min"), side: "right" },
      tickvals: ticks, ticktext: ticks.map((k) => `1e${k}`), thickness: 12, len: 0.9 },
  };
}

// one trace per optimizer, every walk in it ended by a gap (WebGL beyond 16 walks)
function pathTraces(app) {
  const { data } = app;
  const many = data.N > 16;
  return data.runs.map((r, k) => {
    const xs = [], ys = [];
    for (let i = 0; i < data.N; i++) {
      const last = Math.min(r.path.shape[0] - 1, r.steps[i]);
      for (let t = 0; t <= last; t++) { const [x, y] = at(r.path, t, i); xs.push(x); ys.push(y); }
      xs.push(null); ys.push(null);
    }
    return { type: many ? "scattergl" : "scatter", mode: "lines", x: xs, y: ys, name: r.label, legendgroup: `r${k}`,
      line: { color: colourOf(app, k), width: many ? 1 : 2.5 }, opacity: many ? 0.6 : 0.95, hoverinfo: "skip" };
  });
}

// a ✕ where each diverged or diverging walk left the view, with its step
function leftTrace(app) {
  const xs = [], ys = [], text = [], colours = [], where = [];
  const [[x0, x1], [y0, y1]] = app.data.f.box;
  app.data.runs.forEach((r, k) => r.left.forEach((left, i) => {
    if (!left) return;
    const [x, y] = left.at;
    xs.push(x); ys.push(y); colours.push(colourOf(app, k));
    text.push(app.data.N > 16 ? "" : `${r.status[i]} at ${taken(r, i)}`);
    // the words inside the map, away from the edge the walk crossed
    where.push(x >= x1 ? "middle left" : x <= x0 ? "middle right" : y >= y1 ? "bottom center" : "top center");
  }));
  // (WebGL draws above every SVG trace: over a grid's WebGL paths, the marks are WebGL too)
  return { type: app.data.N > 16 ? "scattergl" : "scatter", mode: app.data.N > 16 ? "markers" : "markers+text", x: xs, y: ys, text, name: "left the view",
    textposition: where, textfont: { size: 11, color: "#b00020" }, cliponaxis: false, hoverinfo: "text",
    marker: { symbol: "x-thin", size: 13, color: colours, line: { width: 3, color: colours } }, showlegend: xs.length > 0 };
}

function startTrace(app) {
  const { data, model } = app;
  const pts = model.get("grid") ? [] : Array.from({ length: data.N }, (_, i) => at(data.runs[0].path, 0, i));
  return { type: "scatter", mode: "markers", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), name: "starts (drag)", hoverinfo: "skip",
    marker: { symbol: "circle-open", size: 14, color: "black", line: { width: 2.5 } } };
}

function mapLayout(app, box) {
  const { data } = app;
  const [[x0, x1], [y0, y1]] = box || data.f.box;
  return {
    margin: { l: 45, r: 10, t: 30, b: 35 }, dragmode: false, hovermode: "closest", uirevision: data.f.key,
    title: { text: `${data.f.name === data.f.formula ? "" : data.f.name + ": "}${data.f.formula}`, font: { size: 13 } },
    xaxis: { range: [x0, x1], fixedrange: true, zeroline: false, title: { text: "x", standoff: 2 } },
    yaxis: { range: [y0, y1], fixedrange: true, zeroline: false, title: { text: "y", standoff: 2 } },
    showlegend: true, legend: { orientation: "h", y: -0.12, x: 0 },
  };
}

function drawMap(app) {
  const { ui, data, s } = app;
  const f = s.surface ? s.surface.f : data.f;
  const minima = { type: data.N > 16 ? "scattergl" : "scatter", mode: "markers", x: f.minima.map((m) => m[0]), y: f.minima.map((m) => m[1]), name: "minima",
    hoverinfo: "x+y", marker: { symbol: "star", size: 13, color: "gold", line: { color: "black", width: 1 } } };
  // the minima above the paths, the starts above all; the walkers are on the overlay
  const traces = [contourTrace(f), ...pathTraces(app), minima, leftTrace(app), startTrace(app)];
  ui.startTrace = traces.length - 1;
  window.Plotly.react(ui.map, traces, mapLayout(app), { displayModeBar: false, responsive: true });
  if (!ui.following) { // the overlay follows the axes whenever Plotly draws them (zoom, pan, resize)
    ui.following = true;
    ui.map.on("plotly_afterplot", () => drawOverlay(app));
  }
}

// --- overlay: the walkers and the arrows at the step shown, on a canvas over the plot area ---
function drawOverlay(app) {
  const { ui, data, s, model } = app;
  const area = plotArea(ui.map);
  const canvas = ui.overlay;
  if (!area || !data) return;
  const dpr = window.devicePixelRatio || 1;
  Object.assign(canvas.style, { left: `${area.left}px`, top: `${area.top}px`, width: `${area.width}px`, height: `${area.height}px` });
  if (canvas.width !== Math.round(area.width * dpr) || canvas.height !== Math.round(area.height * dpr)) {
    canvas.width = Math.round(area.width * dpr); canvas.height = Math.round(area.height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, area.width, area.height); // (the canvas is the plot area: what leaves it is cut)
  const grid = model.get("grid");
  // (a grid's walkers small beside its spacing, so that the paths show between them)
  const radius = data.N > 16 ? Math.max(1, Math.min(4, area.width / Math.sqrt(data.N) / 8)) : 5.5;
  data.runs.forEach((r, k) => {
    ctx.fillStyle = colourOf(app, k);
    ctx.strokeStyle = "white";
    ctx.lineWidth = data.N > 16 ? 0.5 : 1.5;
    for (let i = 0; i < data.N; i++) {
      if (r.left[i] && s.step >= r.left[i].row) continue; // it has left the view: its ✕ marks it
      const [x, y] = at(r.path, Math.min(s.step, r.steps[i]), i);
      const px = area.px(x), py = area.py(y);
      if (!Number.isFinite(px) || !Number.isFinite(py)) continue;
      ctx.beginPath(); ctx.arc(px, py, radius, 0, 2 * Math.PI); ctx.fill(); if (data.N <= 16) ctx.stroke();
    }
  });
  ui.overlay.dataset.walkers = String(data.runs.reduce((n, r) => n + r.left.filter((l, i) => !(l && s.step >= l.row)).length, 0));
  ui.overlay.dataset.arrows = grid ? "0" : String(drawArrows(app, ctx, area));
}

// the arrows of the chosen start at the step shown, for every optimizer; returns how many
function drawArrows(app, ctx, area) {
  const { data, s } = app;
  const styles = { gradient: ["#333", 1.2], update: [null, 2.5], momentum: ["#8e24aa", 1.6], "first moment": ["#8e24aa", 1.6] };
  const drawn = []; // (kept on the canvas element, for tests: what each arrow was drawn as)
  data.runs.forEach((r, k) => {
    if (!r.glyphs || (r.left[s.selected] && s.step >= r.left[s.selected].row)) return;
    const t = Math.min(s.step, r.steps[s.selected]);
    const [x, y] = at(r.path, t, s.selected);
    const ox = area.px(x), oy = area.py(y);
    const pixels = (name) => { const [dx, dy] = at(r.glyphs.arrows[name], t, s.selected); return [area.px(x + dx) - ox, area.py(y + dy) - oy]; };
    const update = pixels("update");
    const updateLength = Math.hypot(...update);
    for (const name of Object.keys(r.glyphs.arrows)) {
      let [dx, dy] = pixels(name);
      // an adaptive optimizer's step is not −lr·∇f (nor −lr·m̂): those are drawn as directions,
      // at the length of the update it took
      if (!ADDITIVE.has(r.name) && name !== "update" && updateLength > 0) {
        const len = Math.hypot(dx, dy);
        if (len > 0) { dx *= updateLength / len; dy *= updateLength / len; }
      }
      [dx, dy] = visibleArrow(dx, dy);
      if (!(Math.hypot(dx, dy) > 0)) continue;
      const [colour, width] = styles[name] || ["#555", 1.2];
      arrow(ctx, ox, oy, ox + dx, oy + dy, colour || colourOf(app, k), width);
      drawn.push({ run: r.name, name, from: [ox, oy], to: [ox + dx, oy + dy], length: Math.hypot(dx, dy) });
    }
  });
  app.ui.overlay.drawnArrows = drawn;
  return drawn.length;
}

function arrow(ctx, x0, y0, x1, y1, colour, width) {
  const angle = Math.atan2(y1 - y0, x1 - x0), head = 4 + 2 * width;
  ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = width;
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(x1, y1);
  ctx.lineTo(x1 - head * Math.cos(angle - 0.4), y1 - head * Math.sin(angle - 0.4));
  ctx.lineTo(x1 - head * Math.cos(angle + 0.4), y1 - head * Math.sin(angle + 0.4));
  ctx.closePath(); ctx.fill();
}

// --- curve: f against the step for every walk --------------------------------------------------
function drawCurve(app) {
  const { ui, data, s } = app;
  const many = data.N > 10;
  const lines = [];
  data.runs.forEach((r, k) => {
    const rows = r.path.shape[0];
    for (const i of many ? [null] : [...Array(data.N).keys()]) {
      const ys = [];
      for (let t = 0; t < rows; t++) {
        if (i === null) { const col = []; for (let j = 0; j < data.N; j++) col.push(value(r.values, Math.min(t, r.steps[j]), j)); col.sort((a, b) => a - b); ys.push(col[col.length >> 1]); }
        else ys.push(value(r.values, Math.min(t, r.steps[i]), i));
      }
      const last = i === null ? rows - 1 : Math.min(rows - 1, r.steps[i]);
      lines.push({ r, k, i, ys: ys.slice(0, last + 1) });
    }
  });
  const shown = curveValues(lines.map((l) => l.ys), data.f.fmin);
  if (s.curveLog === null || s.curveLogFor !== data.f.key) { s.curveLog = shown.log; s.curveLogFor = data.f.key; }
  const log = s.curveLog && shown.series.some((ys) => ys.some((v) => v > 0));
  const traces = lines.map(({ r, k, i }, n) => ({
    type: "scatter", mode: "lines", x: shown.series[n].map((_, t) => rec(app, t)), y: shown.series[n],
    name: `${r.name}: ${i === null ? summaryStatus(r.status) : statusText(r.status[i], taken(r, i))}`,
    line: { color: colourOf(app, k), width: 2, dash: i ? ["solid", "dot", "dash", "dashdot"][i % 4] : "solid" },
    showlegend: i === null || i === 0 }));
  // a schedule's rate per step, dotted, on the right-hand axis
  const scheduled = data.runs.some((r) => r.rates && r.rates.length);
  data.runs.forEach((r, k) => {
    if (!r.rates || !r.rates.length) return;
    traces.push({ type: "scatter", mode: "lines", x: r.rates.map((_, t) => rec(app, t)), y: r.rates, yaxis: "y2", name: `${r.name} lr`, showlegend: false,
      hovertemplate: `${r.name} lr %{y:.3g} at step %{x}<extra></extra>`, line: { color: colourOf(app, k), width: 1.5, dash: "dot" } });
  });
  const title = (many ? `median ${shown.label} over the grid` : `${shown.label} at each step`) + (scheduled ? " · dotted: lr (right axis)" : "");
  ui.curveScale.textContent = log ? "linear scale" : "log scale";
  window.Plotly.react(ui.curve, traces, {
    margin: { l: 55, r: scheduled ? 50 : 10, t: 30, b: 35 }, title: { text: title, font: { size: 13 } },
    ...(scheduled ? { yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, title: { text: "lr", standoff: 2 }, tickformat: ".2g", nticks: 4 } } : {}),
    xaxis: { title: { text: "step", standoff: 2 }, range: [0, rec(app, data.T - 1)] },
    yaxis: { type: log ? "log" : "linear", title: { text: shown.label, standoff: 2 }, exponentformat: "power" },
    legend: { orientation: "h", y: -0.2, x: 0, font: { size: 11 } }, showlegend: true,
    shapes: [{ type: "line", x0: rec(app, s.step), x1: rec(app, s.step), y0: 0, y1: 1, yref: "paper", line: { color: "#888", width: 1, dash: "dot" } }],
  }, { displayModeBar: false, responsive: true });
}

// --- readout: the table of the chosen start at the step shown ---------------------------------
function drawReadout(app) {
  const { ui, data, s, model } = app;
  if (model.get("grid")) {
    ui.readout.replaceChildren(h("p", {}, `${data.N} starts on a grid: every path drawn; the arrows and this table are for single starts.`));
    ui.key.textContent = "";
    return;
  }
  const head = h("tr", {}, ...["", "x, y", "f", "∇f", "update", "state"].map((c) => h("th", {}, c)));
  const rows = data.runs.map((r, k) => {
    const i = s.selected, t = Math.min(s.step, r.steps[i]);
    const [x, y] = at(r.path, t, i);
    const g = r.glyphs ? at(r.glyphs.gradient, t, i) : [NaN, NaN];
    const u = r.glyphs ? at(r.glyphs.arrows.update, t, i) : [NaN, NaN];
    const extra = [];
    if (r.glyphs) for (const [name, arr] of Object.entries(r.glyphs.readouts)) { const [a, b] = at(arr, t, i); extra.push(`${name} = (${fmt(a, 3)}, ${fmt(b, 3)})`); }
    if (r.rates && r.rates.length) extra.unshift(`lr = ${fmt(r.rates[Math.min(t, r.rates.length - 1)], 3)}`);
    if (r.glyphs && r.glyphs.arrows.momentum) { const [a, b] = at(r.glyphs.arrows.momentum, t, i); extra.push(`momentum share = (${fmt(a, 3)}, ${fmt(b, 3)})`); }
    const status = s.step >= r.steps[i] ? statusText(r.status[i], taken(r, i)) : "";
    return h("tr", {}, h("td", { class: "dlx-name" }, h("span", { class: "dlx-swatch", style: `background:${colourOf(app, k)}` }), ` ${r.name}`, status ? h("br") : "", status),
      h("td", {}, `${fmt(x)}, ${fmt(y)}`), h("td", {}, fmt(value(r.values, t, i))),
      h("td", {}, `${fmt(g[0], 3)}, ${fmt(g[1], 3)}`), h("td", {}, `${fmt(u[0], 3)}, ${fmt(u[1], 3)}`), h("td", {}, extra.join("; ")));
  });
  ui.readout.replaceChildren(h("div", { class: "dlx-caption" }, `start ${s.selected + 1} of ${data.N} at step ${rec(app, s.step)} (click a start to choose it)`), h("table", {}, head, ...rows));
  ui.key.replaceChildren("Arrows at the current step: ", h("b", {}, "thick, the optimizer's colour: the update taken"), " · ",
    h("span", { style: "color:#333" }, "thin dark: −lr·∇f, the plain gradient step"), " · ",
    h("span", { style: "color:#8e24aa" }, "purple: momentum's share (momentum, nesterov) or −lr·m̂ (Adam family)"),
    ". For an adaptive optimizer (Adam, RMSprop, …) the thin and purple arrows are directions, drawn at its update's length. ",
    "Click the map to add a start, drag one to move it, shift-click one to remove it; drag elsewhere to pan, scroll to zoom.");
}

function drawStep(app) {
  const { ui, data, s } = app;
  if (!data) return;
  ui.slider.value = String(s.step);
  ui.stepText.textContent = `step ${rec(app, s.step)} / ${rec(app, data.T - 1)}` + (data.recorded ? ` (every ${ordinal(s.every)} step shown)` : "");
  drawOverlay(app);
  window.Plotly.relayout(ui.curve, { "shapes[0].x0": rec(app, s.step), "shapes[0].x1": rec(app, s.step) });
  drawReadout(app);
}

function setStep(app, t) {
  if (!app.data) return;
  app.s.step = Math.max(0, Math.min(app.data.T - 1, Math.round(t)));
  drawStep(app);
}

// --- player: play, pause, one step, back to the start ----------------------------------------
function player(app) {
  const { ui, s } = app;
  const pause = () => { s.playing = false; ui.play.textContent = "▶ play"; };
  const play = () => {
    if (!app.data) return;
    if (s.step >= app.data.T - 1) s.step = 0;
    s.playing = true; ui.play.textContent = "⏸ pause";
    const inc = Math.max(1, Math.round((app.data.T - 1) / 240));
    const tick = () => {
      if (!s.playing) return;
      if (s.step >= app.data.T - 1) { pause(); return; }
      setStep(app, s.step + inc);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  };
  ui.play = h("button", { class: "dlx-play", onclick: () => (s.playing ? pause() : play()) }, "▶ play");
  ui.next = h("button", { class: "dlx-next", title: "one step", onclick: () => { pause(); setStep(app, s.step + 1); } }, "step ▸");
  ui.reset = h("button", { class: "dlx-reset", title: "back to the start", onclick: () => { pause(); setStep(app, 0); } }, "|◂ start");
  ui.slider = h("input", { class: "dlx-slider", type: "range", min: "0", max: "0", value: "0",
    oninput: () => { pause(); setStep(app, Number(ui.slider.value)); } });
  ui.stepText = h("span", { class: "dlx-steptext" });
  app.pause = pause;
}

// --- zoom and pan: the view is the hash's box ---------------------------------------------------
function viewBox(app) { // the ranges on screen (mid-gesture, not yet the reply's)
  const area = plotArea(app.ui.map);
  return area ? area.box : app.data.f.box;
}
function showBox(app, box) {
  window.Plotly.relayout(app.ui.map, { "xaxis.range": box[0], "yaxis.range": box[1] });
}
function setBox(app, flat) {
  app.update({ box: flat });
}
function fitWalks(app) {
  const { data } = app;
  if (!data) return;
  const points = [];
  for (const r of data.runs) for (let i = 0; i < data.N; i++) {
    const end = r.left[i] ? r.left[i].row - 1 : Math.min(r.path.shape[0] - 1, r.steps[i]);
    for (let t = 0; t <= end; t++) points.push(at(r.path, t, i));
    if (r.left[i]) points.push(r.left[i].at);
  }
  const box = fitBox(points);
  if (box) setBox(app, box);
}

// --- pointer: click adds a start, drag moves one, shift-click removes one, drag elsewhere pans,
// the wheel zooms ---------------------------------------------------------------------------------
function pointer(app) {
  const { ui, model, catalog, s } = app;
  const toData = (ev) => {
    const area = plotArea(ui.map);
    if (!area) return null;
    const rect = ui.map.getBoundingClientRect();
    const px = ev.clientX - rect.left - area.left, py = ev.clientY - rect.top - area.top;
    if (px < 0 || py < 0 || px > area.width || py > area.height) return null;
    return [area.x(px), area.y(py), px, py];
  };
  const nearestStart = (px, py) => {
    const area = plotArea(ui.map), pts = model.get("start") || [];
    let best = -1, dist = 12;
    pts.forEach(([x, y], i) => { const d = Math.hypot(area.px(x) - px, area.py(y) - py); if (d < dist) { dist = d; best = i; } });
    return best;
  };
  let drag = null;
  ui.map.addEventListener("pointerdown", (ev) => {
    if (!app.data || ev.button !== 0) return;
    const p = toData(ev);
    if (!p) return;
    ev.stopPropagation(); ev.preventDefault();
    const grid = model.get("grid");
    if (!grid && !(model.get("start") || []).length)
      model.set("start", Array.from({ length: app.data.N }, (_, i) => at(app.data.runs[0].path, 0, i)));
    const hit = grid ? -1 : nearestStart(p[2], p[3]);
    drag = { index: hit, moved: false, shift: ev.shiftKey, from: p, box: viewBox(app) };
    if (hit >= 0) { s.selected = hit; drawStep(app); }
    ui.map.setPointerCapture?.(ev.pointerId);
  }, true);
  ui.map.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const rect = ui.map.getBoundingClientRect();
    const area = plotArea(ui.map);
    if (!area) return;
    const px = ev.clientX - rect.left - area.left, py = ev.clientY - rect.top - area.top;
    if (!drag.moved && Math.hypot(px - drag.from[2], py - drag.from[3]) < 4) return;
    drag.moved = true;
    if (drag.index < 0) { // pan: the view follows the pointer
      const [[x0, x1], [y0, y1]] = drag.box;
      const dx = ((px - drag.from[2]) / area.width) * (x1 - x0), dy = ((py - drag.from[3]) / area.height) * (y1 - y0);
      drag.panned = [[x0 - dx, x1 - dx], [y0 + dy, y1 + dy]];
      if (!drag.frame) drag.frame = requestAnimationFrame(() => { if (drag) { drag.frame = 0; showBox(app, drag.panned); } });
      return;
    }
    const p = toData(ev);
    if (!p) return;
    const pts = model.get("start").map((q) => [...q]);
    pts[drag.index] = [Number(p[0].toPrecision(5)), Number(p[1].toPrecision(5))];
    window.Plotly.restyle(ui.map, { x: [pts.map((q) => q[0])], y: [pts.map((q) => q[1])] }, [ui.startTrace]);
    app.update({ start: pts });
  }, true);
  ui.map.addEventListener("pointerup", (ev) => {
    if (!drag) return;
    const d = drag; drag = null;
    if (d.moved) {
      if (d.index < 0 && d.panned) setBox(app, d.panned.flat().map((v) => Number(v.toPrecision(5))));
      return;
    }
    const p = toData(ev);
    if (!p) return;
    const pts = model.get("grid") ? [] : (model.get("start") || []).map((q) => [...q]);
    if (d.index >= 0) {
      if (d.shift && pts.length > 1) { pts.splice(d.index, 1); s.selected = 0; app.update({ start: pts }); }
      return;
    }
    if (pts.length >= (catalog.limits.points || 64)) { ui.info.textContent = `at most ${catalog.limits.points} starts: use a grid for more`; return; }
    pts.push([Number(p[0].toPrecision(5)), Number(p[1].toPrecision(5))]);
    s.selected = pts.length - 1;
    app.update({ start: pts, grid: 0 });
  }, true);
  let wheelTimer = 0, zoomed = null;
  ui.map.addEventListener("wheel", (ev) => {
    const p = app.data && toData(ev);
    if (!p) return;
    ev.preventDefault();
    const flat = zoomBox(zoomed || viewBox(app), p[0], p[1], ev.deltaY > 0 ? 1.2 : 1 / 1.2);
    zoomed = [[flat[0], flat[1]], [flat[2], flat[3]]];
    showBox(app, zoomed);
    clearTimeout(wheelTimer);
    wheelTimer = setTimeout(() => { const box = zoomed; zoomed = null; setBox(app, box.flat()); }, 250);
  }, { passive: false });
}

// --- render: the parts composed ------------------------------------------------------------------
function render({ model, el }) {
  const catalog = model.get("catalog") || { functions: [], optimizers: {}, limits: {} };
  const s = { step: 0, selected: 0, playing: false, inflight: false, dirty: false, updating: false, seq: 0,
    every: 1, // every k-th step recorded: the server asks for it when a reply would be too large
    surface: null, curveLog: null, curveLogFor: null };
  const app = { model, catalog, ui: {}, s, data: null, root: h("div", { class: "dlx" }) };
  const { ui } = app;
  el.append(app.root);
  controls(app);
  player(app);
  connection(app);
  ui.map = h("div", { class: "dlx-map" });
  ui.overlay = h("canvas", { class: "dlx-overlay" });
  ui.curve = h("div", { class: "dlx-curve" });
  ui.curveScale = h("button", { class: "dlx-curve-scale", onclick: () => { s.curveLog = !s.curveLog; if (app.data) drawCurve(app); } }, "log scale");
  ui.readout = h("div", { class: "dlx-readout" });
  ui.key = h("div", { class: "dlx-key" });
  app.root.append(
    h("div", { class: "dlx-row" }, h("b", {}, "f "), ui.fselect, ui.formula),
    ui.error,
    ui.opts,
    h("div", { class: "dlx-row" }, ui.add, h("span", { class: "dlx-sep" }), "steps ", ui.steps,
      h("span", { class: "dlx-sep" }), "grid ", ui.gridN, " per axis ", ui.gridBtn, ui.clear),
    h("div", { class: "dlx-row" }, "schedule ", ui.sched, ui.schedSettings, h("span", { class: "dlx-sep" }), ui.fit, ui.whole),
    h("div", { class: "dlx-row" }, ui.reset, ui.play, ui.next, ui.slider, ui.stepText),
    h("div", { class: "dlx-main" }, h("div", { class: "dlx-mapwrap" }, ui.map, ui.overlay),
      h("div", { class: "dlx-side" }, ui.curve, h("div", { class: "dlx-row dlx-curve-controls" }, ui.curveScale), ui.readout)),
    ui.key,
    h("div", { class: "dlx-row" }, ui.copyPy, ui.copyCli, ui.info),
    ui.code,
  );
  pointer(app);
  syncControls(app);
  ensurePlotly(model).then(() => app.request(), (e) => { ui.error.textContent = String(e); ui.error.style.display = "block"; });
  return () => { s.playing = false; };
}

export default { render };
