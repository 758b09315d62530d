// The `descentlab explore` host: a model with the anywidget shape, its state kept in the URL
// hash (the keys are documented in docs/explorer.md) and its requests sent with fetch.
import explorer from "./explorer.js";

function num(s) { const v = Number(s); return Number.isFinite(v) ? v : null; }

export function fromHash(hash, defaults) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const s = structuredClone(defaults);
  if (p.has("f")) s.f = p.get("f");
  if (p.has("opt")) s.opt = p.get("opt").split(",").filter(Boolean);
  if (p.has("lr")) s.lr = p.get("lr").split(",").map((v) => (v === "" ? null : num(v)));
  if (p.has("hp")) s.hyper = p.get("hp").split("|").map((entry) => {
    const out = {};
    for (const item of entry.split(",").filter(Boolean)) {
      const [k, v] = item.split(":");
      if (k === "beta1" || k === "beta2") { out.betas = out.betas || [0.9, 0.999]; out.betas[k === "beta1" ? 0 : 1] = num(v); }
      else out[k] = num(v);
    }
    return out;
  });
  if (p.has("start")) s.start = p.get("start").split(";").filter(Boolean).map((q) => q.split(",").map(num));
  if (p.has("grid")) s.grid = Math.round(num(p.get("grid")) || 0);
  if (p.has("steps")) s.steps = Math.round(num(p.get("steps")) || 1);
  if (p.has("box")) s.box = p.get("box").split(",").map(num);
  // sched=cosine,warmup:5 (a list value: milestones:30;60, a one-item list milestones:50;)
  if (p.has("sched")) {
    const [name, ...items] = p.get("sched").split(",");
    s.schedule = name ? { name } : null;
    for (const item of items) {
      const [k, v] = item.split(":");
      if (s.schedule && k) s.schedule[k] = v.includes(";") ? v.split(";").filter((x) => x !== "").map(num) : num(v);
    }
  }
  while (s.lr.length < s.opt.length) s.lr.push(null);
  while (s.hyper.length < s.opt.length) s.hyper.push({});
  return s;
}

export function toHash(s) {
  const parts = [`f=${encodeURIComponent(s.f)}`, `opt=${s.opt.join(",")}`, `lr=${s.lr.map((v) => (v == null ? "" : v)).join(",")}`];
  const hp = s.hyper.map((h) => Object.entries(h || {}).map(([k, v]) => (k === "betas" ? `beta1:${v[0]},beta2:${v[1]}` : `${k}:${v}`)).join(","));
  if (hp.some(Boolean)) parts.push(`hp=${hp.join("|")}`);
  if (s.grid) parts.push(`grid=${s.grid}`);
  else if (s.start && s.start.length) parts.push(`start=${s.start.map((q) => q.join(",")).join(";")}`);
  parts.push(`steps=${s.steps}`);
  if (s.box && s.box.length) parts.push(`box=${s.box.join(",")}`);
  if (s.schedule && s.schedule.name) {
    const list = (v) => v.join(";") + (v.length === 1 ? ";" : "");
    const items = Object.entries(s.schedule).filter(([k]) => k !== "name").map(([k, v]) => `${k}:${Array.isArray(v) ? list(v) : v}`);
    parts.push(`sched=${[s.schedule.name, ...items].join(",")}`);
  }
  return "#" + parts.join("&");
}

class PageModel {
  constructor(state, catalog) {
    this.state = { ...state, catalog };
    this.handlers = {};
    this.changed = new Set();
  }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.changed.add(k); }
  save_changes() { this.changed.clear(); history.replaceState(null, "", toHash(this.state)); }
  on(evt, cb) { (this.handlers[evt] = this.handlers[evt] || []).push(cb); }
  off(evt, cb) { this.handlers[evt] = (this.handlers[evt] || []).filter((c) => c !== cb); }
  emit(evt, ...args) { for (const cb of [...(this.handlers[evt] || [])]) cb(...args); }
  async send(msg) {
    if (msg.type !== "run") return;
    let reply;
    try {
      const res = await fetch("api/run", { method: "POST", headers: { ...HEADERS, "content-type": "application/json" }, body: JSON.stringify(msg.request) });
      reply = await res.json();
    } catch (e) {
      reply = { error: `the server did not answer (${e.message}); is descentlab explore still running?`, ms: 0 };
    }
    this.emit("msg:custom", { type: "result", id: msg.id, reply });
  }
  replace(state) {
    for (const k of Object.keys(state)) if (JSON.stringify(this.state[k]) !== JSON.stringify(state[k])) { this.state[k] = state[k]; this.emit(`change:${k}`); }
  }
}

// the server's token (the address it printed ends in ?token=...), and this page's own id: a
// newer request from this page stops the one still running
const TOKEN = new URLSearchParams(location.search).get("token");
const HEADERS = { ...(TOKEN ? { authorization: `token ${TOKEN}` } : {}), "x-descentlab-page": Math.random().toString(36).slice(2) };

export async function start(el) {
  const catalog = await (await fetch("api/catalog", { headers: HEADERS })).json();
  if (catalog.error) { el.textContent = catalog.error; return; }
  const model = new PageModel(fromHash(location.hash, catalog.defaults), catalog);
  window.addEventListener("hashchange", () => model.replace(fromHash(location.hash, catalog.defaults)));
  window.descentlabModel = model; // for tests and the curious
  explorer.render({ model, el });
}
