// The descentlab explorer: one front end for two hosts.
//
// It is an anywidget module (`export default { render }`): in a notebook the host is the
// widget's model; in `descentlab explore` the page gives it a model of the same shape backed by
// the URL hash and fetch (see page.js). It only ever uses: model.get/set/save_changes,
// model.on("change:KEY"), model.on("msg:custom") and model.send. Every change sends one small
// request ({type: "run", id, request}); Python answers {type: "result", id, reply}.

const COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const STATE = ["f", "opt", "lr", "hyper", "start", "grid", "steps", "box", "schedule"];
const LR_MIN = -5, LR_MAX = 1; // the learning-rate sliders are log10 scales

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

function decode(packed) {
  const bin = atob(packed.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return { data: new Float32Array(bytes.buffer), shape: packed.shape };
}

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

const fmt = (v, p = 4) => (Number.isFinite(v) ? Number(v.toPrecision(p)).toString() : String(v));
const fmtLr = (v) => Number(v.toPrecision(2)).toString();
const ordinal = (k) => `${k}${[11, 12, 13].includes(k % 100) ? "th" : { 1: "st", 2: "nd", 3: "rd" }[k % 10] || "th"}`;

function render({ model, el }) {
  const ui = {};
  let data = null; // the last good reply, decoded
  let surface = null; // {key, trace}
  let step = 0, selected = 0, playing = false, inflight = false, dirty = false, seq = 0;
  let every = 1; // every k-th step recorded: the server asks for it when a reply would be too large
  const catalog = model.get("catalog") || { functions: [], optimizers: {}, limits: {} };

  // --- layout ---
  const root = h("div", { class: "dlx" });
  el.append(root);
  ui.fselect = h("select", { class: "dlx-f", "aria-label": "function", onchange: () => {
    if (ui.fselect.value === "(formula)") { ui.formula.focus(); return; }
    ui.formula.value = "";
    update({ f: ui.fselect.value, start: [], box: [] });
  } });
  for (const name of [...catalog.functions, ...(model.get("f") === "python" ? ["python"] : []), "(formula)"])
    ui.fselect.append(h("option", { value: name }, name === "python" ? "your Python function" : name));
  ui.formula = h("input", { class: "dlx-formula", type: "text", spellcheck: "false",
    placeholder: "or type a formula in x and y, e.g. x**2 + 10*y**2, then Enter",
    onkeydown: (e) => { if (e.key === "Enter") applyFormula(); }, onchange: applyFormula });
  ui.error = h("div", { class: "dlx-error", role: "alert" });
  ui.opts = h("div", { class: "dlx-opts" });
  ui.add = h("button", { class: "dlx-add", onclick: addOptimizer }, "+ optimizer");
  ui.steps = h("input", { class: "dlx-steps", type: "number", min: "1", max: String(catalog.limits.steps || 5000),
    onchange: () => update({ steps: Math.max(1, Math.round(Number(ui.steps.value) || 1)) }) });
  ui.sched = h("select", { class: "dlx-schedule", "aria-label": "learning-rate schedule", onchange: applySchedule });
  ui.sched.append(h("option", { value: "" }, "constant rate"));
  for (const name of Object.keys(catalog.schedules || {}).filter((n) => n !== "constant")) ui.sched.append(h("option", { value: name }, name));
  ui.schedSettings = h("input", { class: "dlx-schedule-settings", type: "text", spellcheck: "false", size: "22",
    placeholder: "settings, e.g. warmup=5", onchange: applySchedule, onkeydown: (e) => { if (e.key === "Enter") applySchedule(); } });
  ui.play = h("button", { class: "dlx-play", onclick: () => (playing ? pause() : play()) }, "▶ play");
  ui.next = h("button", { class: "dlx-next", title: "one step", onclick: () => { pause(); setStep(step + 1); } }, "step ▸");
  ui.reset = h("button", { class: "dlx-reset", title: "back to the start", onclick: () => { pause(); setStep(0); } }, "|◂ start");
  ui.slider = h("input", { class: "dlx-slider", type: "range", min: "0", max: "0", value: "0",
    oninput: () => { pause(); setStep(Number(ui.slider.value)); } });
  ui.stepText = h("span", { class: "dlx-steptext" });
  ui.gridN = h("input", { class: "dlx-gridn", type: "number", min: "2", max: String(catalog.limits.grid || 50), value: "12" });
  ui.gridBtn = h("button", { class: "dlx-grid", onclick: toggleGrid }, "grid of starts");
  ui.clear = h("button", { class: "dlx-clear", onclick: () => update({ start: [], grid: 0 }) }, "reset starts");
  ui.map = h("div", { class: "dlx-map" });
  ui.curve = h("div", { class: "dlx-curve" });
  ui.readout = h("div", { class: "dlx-readout" });
  ui.key = h("div", { class: "dlx-key" });
  ui.code = h("pre", { class: "dlx-code" });
  ui.copyPy = h("button", { class: "dlx-copy-python", onclick: () => copy("python") }, "copy as Python");
  ui.copyCli = h("button", { class: "dlx-copy-cli", onclick: () => copy("cli") }, "copy as CLI");
  ui.info = h("span", { class: "dlx-info" });
  root.append(
    h("div", { class: "dlx-row" }, h("b", {}, "f "), ui.fselect, ui.formula),
    ui.error,
    ui.opts,
    h("div", { class: "dlx-row" }, ui.add, h("span", { class: "dlx-sep" }), "steps ", ui.steps,
      h("span", { class: "dlx-sep" }), "grid ", ui.gridN, " per axis ", ui.gridBtn, ui.clear),
    h("div", { class: "dlx-row" }, "schedule ", ui.sched, ui.schedSettings),
    h("div", { class: "dlx-row" }, ui.reset, ui.play, ui.next, ui.slider, ui.stepText),
    h("div", { class: "dlx-main" }, ui.map, h("div", { class: "dlx-side" }, ui.curve, ui.readout)),
    ui.key,
    h("div", { class: "dlx-row" }, ui.copyPy, ui.copyCli, ui.info),
    ui.code,
  );

  // --- state ---
  function state() {
    const s = {};
    for (const k of STATE) s[k] = model.get(k);
    return s;
  }
  let updating = false; // our own changes: the change events they raise are not news
  function update(changes) {
    updating = true;
    try { for (const [k, v] of Object.entries(changes)) model.set(k, v); model.save_changes(); } finally { updating = false; }
    if ("f" in changes || "box" in changes) surface = null;
    syncControls();
    request();
  }
  // "warmup=5, gamma=0.5" or "milestones=[30,60]" -> {warmup: 5, ...}; a value that is not
  // JSON is sent as text, and the server says what is wrong with it
  function parseSettings(text) {
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
  function applySchedule() {
    const name = ui.sched.value;
    update({ schedule: name ? { name, ...parseSettings(ui.schedSettings.value) } : null });
  }
  function applyFormula() {
    const text = ui.formula.value.trim();
    if (text && text !== model.get("f")) update({ f: text, start: [], box: [] });
  }
  function optimizerRow(i) {
    const s = state();
    const name = s.opt[i], info = catalog.optimizers[name] || { lr: 0.01, hyper: {} };
    const lr = s.lr[i] ?? info.lr;
    const hyper = { ...info.hyper, ...(s.hyper[i] || {}) };
    const colour = COLOURS[i % COLOURS.length];
    const select = h("select", { class: "dlx-opt", "aria-label": `optimizer ${i + 1}`, onchange: () => {
      const o = [...model.get("opt")]; o[i] = select.value;
      const l = [...model.get("lr")]; l[i] = (catalog.optimizers[select.value] || {}).lr ?? 0.01;
      const hp = [...model.get("hyper")]; hp[i] = {};
      update({ opt: o, lr: l, hyper: hp });
    } });
    for (const n of Object.keys(catalog.optimizers)) select.append(h("option", { value: n }, n));
    select.value = name;
    const value = h("span", { class: "dlx-lrtext" }, fmtLr(lr));
    const slider = h("input", { class: "dlx-lr", type: "range", min: String(LR_MIN), max: String(LR_MAX), step: "0.01",
      value: String(Math.log10(lr)), "aria-label": `learning rate ${i + 1}`,
      oninput: () => {
        const v = Number(fmtLr(10 ** Number(slider.value)));
        value.textContent = fmtLr(v);
        const l = [...model.get("lr")]; while (l.length <= i) l.push(null); l[i] = v;
        update({ lr: l });
      } });
    const row = h("div", { class: "dlx-optrow" }, h("span", { class: "dlx-swatch", style: `background:${colour}` }),
      select, " lr ", slider, value);
    for (const [key, def] of Object.entries(hyper)) {
      const parts = Array.isArray(def) ? def.map((v, j) => [`${key === "betas" ? "β" + (j + 1) : key}`, v, j]) : [[key, def, -1]];
      for (const [label, v, j] of parts) {
        const input = h("input", { class: `dlx-hp dlx-hp-${key}`, type: "number", step: "0.01", min: "0", max: "0.9999", value: String(v),
          "aria-label": `${label} ${i + 1}`, onchange: () => {
            const hp = [...model.get("hyper")]; while (hp.length <= i) hp.push({});
            const cur = { ...(hp[i] || {}) };
            const num = Number(input.value);
            if (j >= 0) { const pair = [...(cur[key] || info.hyper[key])]; pair[j] = num; cur[key] = pair; } else cur[key] = num;
            hp[i] = cur; update({ hyper: hp });
          } });
        row.append(` ${label} `, input);
      }
    }
    if (s.opt.length > 1) row.append(h("button", { class: "dlx-remove", title: "remove", onclick: () => {
      const drop = (a) => a.filter((_, j) => j !== i);
      update({ opt: drop(model.get("opt")), lr: drop(model.get("lr")), hyper: drop(model.get("hyper")) });
    } }, "×"));
    return row;
  }
  function addOptimizer() {
    const used = new Set(model.get("opt"));
    const next = ["adam", "momentum", "rmsprop", "gd", "nesterov", "adagrad", "nadam", "rprop"].find((n) => !used.has(n)) || "gd";
    update({ opt: [...model.get("opt"), next], lr: [...model.get("lr"), catalog.optimizers[next]?.lr ?? 0.01],
      hyper: [...model.get("hyper"), {}] });
  }
  function toggleGrid() {
    if (model.get("grid")) update({ grid: 0 });
    else update({ grid: Math.max(2, Math.min(catalog.limits.grid || 50, Math.round(Number(ui.gridN.value) || 12))) });
  }
  function syncControls() {
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
    // rebuild the optimizer rows only when the optimizers change: a slider being dragged
    // must stay the same element
    const signature = JSON.stringify([model.get("opt"), model.get("hyper")]);
    if (signature !== ui.signature) {
      ui.signature = signature;
      ui.opts.replaceChildren(...model.get("opt").map((_, i) => optimizerRow(i)));
    } else {
      const lrs = model.get("lr");
      ui.opts.querySelectorAll(".dlx-optrow").forEach((row, i) => {
        const v = lrs[i] ?? (catalog.optimizers[model.get("opt")[i]] || {}).lr ?? 0.01;
        const slider = row.querySelector(".dlx-lr");
        if (slider !== document.activeElement) slider.value = String(Math.log10(v));
        row.querySelector(".dlx-lrtext").textContent = fmtLr(v);
      });
    }
  }

  // --- talking to Python ---
  function request() {
    if (inflight) { dirty = true; return; }
    inflight = true; dirty = false;
    root.dataset.busy = "1"; // (tests and screenshots wait for "0": the reply drawn)
    const s = state();
    const id = ++seq;
    const req = { ...s, surface: surface ? 0 : 1 };
    if (!req.box || !req.box.length) delete req.box;
    if (!req.start || !req.start.length) delete req.start;
    if (every > 1) req.every = every;
    model.send({ type: "run", id, request: req });
  }
  model.on("msg:custom", (msg) => {
    if (!msg || msg.type !== "result") return;
    inflight = false;
    receive(msg.reply);
    if (inflight) return; // it asked again, for every k-th step
    if (dirty) request();
    else root.dataset.busy = "0";
  });
  for (const k of STATE) model.on(`change:${k}`, () => {
    if (updating) return;
    if (k === "f" || k === "box") surface = null;
    if (k === "f" || k === "grid" || k === "steps" || k === "opt") every = 1;
    syncControls();
    request();
  });

  function receive(reply) {
    if (reply.error && reply.every && reply.every > every) { every = reply.every; request(); return; }
    if (reply.error) {
      let text = reply.error;
      ui.error.replaceChildren(text);
      if (reply.column && model.get("f")) {
        const f = model.get("f");
        ui.error.append(h("pre", { class: "dlx-caret" }, f + "\n" + " ".repeat(reply.column - 1) + "^"));
      }
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
    const T = runs[0].path.shape[0], N = runs[0].path.shape[1];
    data = { f: reply.f, runs, T, N, python: reply.python, cli: reply.cli, recorded: runs[0].recorded || null };
    if (reply.f.surface) surface = { key: reply.f.key, f: reply.f };
    if (selected >= N) selected = 0;
    ui.slider.max = String(T - 1);
    if (step > T - 1) step = T - 1;
    ui.code.textContent = ui.code.dataset.which === "cli" ? reply.cli || "" : reply.python;
    const budget = catalog.limits.seconds ? ` of ${catalog.limits.seconds} s allowed` : "";
    ui.info.textContent = `server ${reply.ms} ms${budget} · ${runs.map((r) => r.kernel).join(", ")}`;
    draw();
  }

  // --- drawing ---
  const at = (arr, t, i) => { const N = arr.shape[1], d = arr.shape[2]; const o = (t * N + i) * d; return [arr.data[o], arr.data[o + 1]]; };
  const value = (arr, t, i) => arr.data[t * arr.shape[1] + i];
  // the step a recorded row shows (rows are steps unless every k-th step was asked for)
  const rec = (row) => (data && data.recorded ? data.recorded[row] : row);
  const taken = (r, i) => (r.taken ? r.taken[i] : r.steps[i]);

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

  function pathTraces() {
    const traces = [];
    const many = data.N > 16;
    data.runs.forEach((r, k) => {
      const xs = [], ys = [];
      for (let i = 0; i < data.N; i++) {
        const last = Math.min(data.T - 1, r.steps[i]);
        for (let t = 0; t <= last; t++) { const [x, y] = at(r.path, t, i); xs.push(x); ys.push(y); }
        xs.push(null); ys.push(null);
      }
      traces.push({ type: many ? "scattergl" : "scatter", mode: "lines", x: xs, y: ys, name: r.label, legendgroup: `r${k}`,
        line: { color: COLOURS[k % COLOURS.length], width: many ? 1 : 2.5 }, opacity: many ? 0.6 : 0.95, hoverinfo: "skip" });
    });
    return traces;
  }

  function nowTraces() {
    return data.runs.map((r, k) => {
      const xs = [], ys = [], text = [];
      for (let i = 0; i < data.N; i++) { const [x, y] = at(r.path, step, i); xs.push(x); ys.push(y); text.push(`${r.label}<br>f = ${fmt(value(r.values, step, i))}`); }
      return { type: data.N > 16 ? "scattergl" : "scatter", mode: "markers", x: xs, y: ys, text, hoverinfo: "text", showlegend: false,
        legendgroup: `r${k}`, marker: { color: COLOURS[k % COLOURS.length], size: data.N > 16 ? 5 : 10, line: { color: "white", width: 1.5 } } };
    });
  }

  function startTrace() {
    const pts = model.get("grid") ? [] : data.runs[0] ? Array.from({ length: data.N }, (_, i) => at(data.runs[0].path, 0, i)) : [];
    return { type: "scatter", mode: "markers", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), name: "starts (drag)", hoverinfo: "skip",
      marker: { symbol: "circle-open", size: 14, color: "black", line: { width: 2.5 } } };
  }

  function arrows() {
    const out = [];
    if (!data || model.get("grid")) return out;
    const styles = { gradient: ["#333", 1.2], update: [null, 2.5], momentum: ["#8e24aa", 1.6], "first moment": ["#8e24aa", 1.6] };
    data.runs.forEach((r, k) => {
      if (!r.glyphs) return;
      const [x, y] = at(r.path, step, selected);
      for (const [name, arr] of Object.entries(r.glyphs.arrows)) {
        let [dx, dy] = at(arr, step, selected);
        if (!(Math.hypot(dx, dy) > 1e-9)) continue;
        // an arrow longer than the view is drawn to its edge (the table has the numbers)
        const [[x0, x1], [y0, y1]] = data.f.box;
        let s = 1;
        if (x + dx > x1) s = Math.min(s, (x1 - x) / dx);
        if (x + dx < x0) s = Math.min(s, (x0 - x) / dx);
        if (y + dy > y1) s = Math.min(s, (y1 - y) / dy);
        if (y + dy < y0) s = Math.min(s, (y0 - y) / dy);
        if (s < 1) { s = Math.max(s, 0); dx *= s; dy *= s; }
        const [colour, width] = styles[name] || ["#555", 1.2];
        out.push({ x: x + dx, y: y + dy, ax: x, ay: y, xref: "x", yref: "y", axref: "x", ayref: "y", showarrow: true,
          arrowhead: 2, arrowsize: 1, arrowwidth: width, arrowcolor: colour || COLOURS[k % COLOURS.length], text: "", standoff: 0 });
      }
    });
    return out;
  }

  function mapLayout() {
    const [[x0, x1], [y0, y1]] = data.f.box;
    return {
      margin: { l: 45, r: 10, t: 30, b: 35 }, dragmode: false, hovermode: "closest", uirevision: data.f.key,
      title: { text: `${data.f.name === data.f.formula ? "" : data.f.name + ": "}${data.f.formula}`, font: { size: 13 } },
      xaxis: { range: [x0, x1], fixedrange: true, zeroline: false, title: { text: "x", standoff: 2 } },
      yaxis: { range: [y0, y1], fixedrange: true, zeroline: false, title: { text: "y", standoff: 2 } },
      showlegend: true, legend: { orientation: "h", y: -0.12, x: 0 }, annotations: arrows(),
    };
  }

  function draw() {
    const P = window.Plotly;
    const f = surface ? surface.f : data.f;
    const minima = { type: "scatter", mode: "markers", x: f.minima.map((m) => m[0]), y: f.minima.map((m) => m[1]), name: "minima",
      hoverinfo: "x+y", marker: { symbol: "star", size: 13, color: "gold", line: { color: "black", width: 1 } } };
    // the minima above the paths, the walkers and the starts above all
    const traces = [contourTrace(f), ...pathTraces(), minima, ...nowTraces(), startTrace()];
    ui.mapTraces = { now: data.runs.map((_, k) => 2 + data.runs.length + k), start: 2 + 2 * data.runs.length };
    P.react(ui.map, traces, mapLayout(), { displayModeBar: false, responsive: true });
    drawCurve();
    drawStep();
  }

  function drawCurve() {
    const P = window.Plotly, fstar = data.f.fmin;
    const traces = [];
    const many = data.N > 10;
    data.runs.forEach((r, k) => {
      const lines = many ? [null] : [...Array(data.N).keys()];
      for (const i of lines) {
        const ys = [];
        for (let t = 0; t < data.T; t++) {
          let v;
          if (i === null) { const col = []; for (let j = 0; j < data.N; j++) col.push(value(r.values, t, j)); col.sort((a, b) => a - b); v = col[col.length >> 1]; }
          else v = value(r.values, Math.min(t, r.steps[i]), i);
          ys.push(fstar != null ? Math.max(v - fstar, 1e-16) : v);
        }
        const status = i === null ? summaryStatus(r) : statusText(r.status[i], taken(r, i));
        traces.push({ type: "scatter", mode: "lines", x: ys.map((_, t) => rec(t)), y: ys, name: `${r.name}: ${status}`, line: { color: COLOURS[k % COLOURS.length], width: 2, dash: i ? ["solid", "dot", "dash", "dashdot"][i % 4] : "solid" },
          showlegend: i === null || i === 0 });
      }
    });
    // a schedule's rate per step, dotted, on the right-hand axis
    const scheduled = data.runs.some((r) => r.rates && r.rates.length);
    data.runs.forEach((r, k) => {
      if (!r.rates || !r.rates.length) return;
      traces.push({ type: "scatter", mode: "lines", x: r.rates.map((_, t) => rec(t)), y: r.rates, yaxis: "y2", name: `${r.name} lr`, showlegend: false,
        hovertemplate: `${r.name} lr %{y:.3g} at step %{x}<extra></extra>`, line: { color: COLOURS[k % COLOURS.length], width: 1.5, dash: "dot" } });
    });
    const title = (many ? "median f over the grid" : "f at each step") + (scheduled ? " · dotted: lr (right axis)" : "");
    const layout = {
      margin: { l: 55, r: scheduled ? 50 : 10, t: 30, b: 35 }, title: { text: title, font: { size: 13 } },
      ...(scheduled ? { yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, title: { text: "lr", standoff: 2 }, tickformat: ".2g", nticks: 4 } } : {}),
      xaxis: { title: { text: "step", standoff: 2 }, range: [0, rec(data.T - 1)] },
      yaxis: { type: fstar != null ? "log" : "linear", title: { text: fstar != null ? "f − f*" : "f", standoff: 2 }, exponentformat: "power" },
      legend: { orientation: "h", y: -0.2, x: 0, font: { size: 11 } }, showlegend: true,
      shapes: [{ type: "line", x0: rec(step), x1: rec(step), y0: 0, y1: 1, yref: "paper", line: { color: "#888", width: 1, dash: "dot" } }],
    };
    P.react(ui.curve, traces, layout, { displayModeBar: false, responsive: true });
  }

  const statusText = (s, n) =>
    s === "running" ? `step limit (${n})` : s === "diverging" ? `diverging (f grew ≥1000×; step limit ${n})` : `${s} at ${n}`;
  function summaryStatus(r) {
    const counts = {};
    for (const s of r.status) counts[s] = (counts[s] || 0) + 1;
    const said = { running: "at step limit", diverging: "diverging (f grew ≥1000×)" };
    return Object.entries(counts).map(([s, c]) => `${c} ${said[s] || s}`).join(", ");
  }

  function drawStep() {
    const P = window.Plotly;
    if (!data) return;
    ui.slider.value = String(step);
    ui.stepText.textContent = `step ${rec(step)} / ${rec(data.T - 1)}` + (data.recorded ? ` (every ${ordinal(every)} step shown)` : "");
    const now = nowTraces();
    P.restyle(ui.map, { x: now.map((t) => t.x), y: now.map((t) => t.y), text: now.map((t) => t.text) }, ui.mapTraces.now);
    P.relayout(ui.map, { annotations: arrows() });
    P.relayout(ui.curve, { "shapes[0].x0": rec(step), "shapes[0].x1": rec(step) });
    drawReadout();
  }

  function drawReadout() {
    if (model.get("grid")) {
      ui.readout.replaceChildren(h("p", {}, `${data.N} starts on a grid: every path drawn; the arrows and this table are for single starts.`));
      ui.key.textContent = "";
      return;
    }
    const head = h("tr", {}, ...["", "x, y", "f", "∇f", "update", "state"].map((c) => h("th", {}, c)));
    const rows = data.runs.map((r, k) => {
      const t = Math.min(step, r.steps[selected]);
      const [x, y] = at(r.path, t, selected);
      const g = r.glyphs ? at(r.glyphs.gradient, t, selected) : [NaN, NaN];
      const u = r.glyphs ? at(r.glyphs.arrows.update, t, selected) : [NaN, NaN];
      const extra = [];
      if (r.glyphs) for (const [name, arr] of Object.entries(r.glyphs.readouts)) { const [a, b] = at(arr, t, selected); extra.push(`${name} = (${fmt(a, 3)}, ${fmt(b, 3)})`); }
      if (r.rates && r.rates.length) extra.unshift(`lr = ${fmt(r.rates[Math.min(t, r.rates.length - 1)], 3)}`);
      if (r.glyphs && r.glyphs.arrows.momentum) { const [a, b] = at(r.glyphs.arrows.momentum, t, selected); extra.push(`momentum share = (${fmt(a, 3)}, ${fmt(b, 3)})`); }
      const status = step >= r.steps[selected] ? statusText(r.status[selected], taken(r, selected)) : "";
      return h("tr", {}, h("td", { class: "dlx-name" }, h("span", { class: "dlx-swatch", style: `background:${COLOURS[k % COLOURS.length]}` }), ` ${r.name}`, status ? h("br") : "", status),
        h("td", {}, `${fmt(x)}, ${fmt(y)}`), h("td", {}, fmt(value(r.values, t, selected))),
        h("td", {}, `${fmt(g[0], 3)}, ${fmt(g[1], 3)}`), h("td", {}, `${fmt(u[0], 3)}, ${fmt(u[1], 3)}`), h("td", {}, extra.join("; ")));
    });
    ui.readout.replaceChildren(h("div", { class: "dlx-caption" }, `start ${selected + 1} of ${data.N} at step ${rec(step)} (click a start to choose it)`), h("table", {}, head, ...rows));
    ui.key.replaceChildren("Arrows at the current step: ", h("span", { style: "color:#333" }, "thin dark: −lr·∇f (plain gradient step)"), " · ",
      h("b", {}, "thick, the optimizer's colour: the update taken"), " · ", h("span", { style: "color:#8e24aa" }, "purple: momentum's share (momentum, nesterov) or −lr·m̂ (Adam family)"),
      ". Click the map to add a start, drag one to move it, shift-click one to remove it.");
  }

  function setStep(t) {
    if (!data) return;
    step = Math.max(0, Math.min(data.T - 1, Math.round(t)));
    drawStep();
  }
  function play() {
    if (!data) return;
    if (step >= data.T - 1) step = 0;
    playing = true; ui.play.textContent = "⏸ pause";
    const inc = Math.max(1, Math.round((data.T - 1) / 240));
    const tick = () => {
      if (!playing) return;
      if (step >= data.T - 1) { pause(); return; }
      setStep(step + inc);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }
  function pause() { playing = false; ui.play.textContent = "▶ play"; }

  function copy(which) {
    if (!data) return;
    const text = which === "cli" ? data.cli : data.python;
    ui.code.dataset.which = which;
    ui.code.textContent = text || "(a Python function has no command-line form)";
    ui.code.style.display = "block";
    if (navigator.clipboard && text) navigator.clipboard.writeText(text).then(() => { ui.info.textContent = `copied the ${which === "cli" ? "command" : "Python"}`; }, () => {});
  }

  // --- the mouse on the map: click adds a start, drag moves one, shift-click removes one ---
  function toData(ev) {
    const lay = ui.map._fullLayout;
    if (!lay) return null;
    const rect = ui.map.getBoundingClientRect();
    const px = ev.clientX - rect.left - lay._size.l, py = ev.clientY - rect.top - lay._size.t;
    if (px < 0 || py < 0 || px > lay._size.w || py > lay._size.h) return null;
    return [lay.xaxis.p2d(px), lay.yaxis.p2d(py), px, py];
  }
  function nearestStart(px, py) {
    const lay = ui.map._fullLayout, pts = model.get("start") || [];
    let best = -1, dist = 12;
    pts.forEach(([x, y], i) => { const d = Math.hypot(lay.xaxis.d2p(x) - px, lay.yaxis.d2p(y) - py); if (d < dist) { dist = d; best = i; } });
    return best;
  }
  let drag = null;
  ui.map.addEventListener("pointerdown", (ev) => {
    if (!data || ev.button !== 0) return;
    const p = toData(ev);
    if (!p) return;
    ev.stopPropagation(); ev.preventDefault();
    const grid = model.get("grid");
    const pts = grid ? [] : (model.get("start") && model.get("start").length ? model.get("start") : Array.from({ length: data.N }, (_, i) => at(data.runs[0].path, 0, i)));
    if (!grid && !(model.get("start") || []).length) model.set("start", pts);
    const hit = grid ? -1 : nearestStart(p[2], p[3]);
    drag = { index: hit, moved: false, shift: ev.shiftKey };
    if (hit >= 0) { selected = hit; drawStep(); }
    ui.map.setPointerCapture?.(ev.pointerId);
  }, true);
  ui.map.addEventListener("pointermove", (ev) => {
    if (!drag || drag.index < 0) return;
    const p = toData(ev);
    if (!p) return;
    drag.moved = true;
    const pts = model.get("start").map((q) => [...q]);
    pts[drag.index] = [Number(p[0].toPrecision(5)), Number(p[1].toPrecision(5))];
    window.Plotly.restyle(ui.map, { x: [pts.map((q) => q[0])], y: [pts.map((q) => q[1])] }, [ui.mapTraces.start]);
    update({ start: pts });
  }, true);
  ui.map.addEventListener("pointerup", (ev) => {
    if (!drag) return;
    const d = drag; drag = null;
    if (d.moved) return;
    const p = toData(ev);
    if (!p) return;
    const pts = model.get("grid") ? [] : (model.get("start") || []).map((q) => [...q]);
    if (d.index >= 0) {
      if (d.shift && pts.length > 1) { pts.splice(d.index, 1); selected = 0; update({ start: pts }); }
      return;
    }
    if (pts.length >= (catalog.limits.points || 64)) { ui.info.textContent = `at most ${catalog.limits.points} starts: use a grid for more`; return; }
    pts.push([Number(p[0].toPrecision(5)), Number(p[1].toPrecision(5))]);
    selected = pts.length - 1;
    update({ start: pts, grid: 0 });
  }, true);

  syncControls();
  ensurePlotly(model).then(() => request(), (e) => { ui.error.textContent = String(e); ui.error.style.display = "block"; });
  return () => { playing = false; };
}

export default { render };
