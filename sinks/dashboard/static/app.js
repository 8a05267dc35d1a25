// plantstream dashboard: plain JS, SVG charts drawn here (no CDN, no framework).
"use strict";

const S = {
  plant: null, assets: {}, selected: null, status: {}, values: {}, oee: {}, anomaly: {},
  alerts: new Map(), history: null, health: null, drawnOnce: false, redrawPending: false,
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v === null || v === undefined ? "–" : String(v));
const when = (us) => new Date(us / 1000).toLocaleString();
const dur = (s) => (s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? (s / 60).toFixed(1) + " min" : s.toFixed(0) + " s");

async function api(path, opts) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// --- asset tree ---
function renderTree() {
  const build = (nodes) => {
    const ul = el("ul");
    for (const n of nodes) {
      const li = el("li");
      if (n.children.length) {
        li.append(el("span", { class: "branch", text: n.name }), build(n.children));
      } else {
        const leaf = el("div", { class: "leaf", "data-asset": n.path, title: n.path },
          el("span", { class: "dot" }), el("span", { text: n.name }), el("span", { class: "oee" }));
        leaf.addEventListener("click", () => select(n.path));
        li.append(leaf);
      }
      ul.append(li);
    }
    return ul;
  };
  $("#tree").replaceWith(Object.assign(build(S.plant.tree), { id: "tree" }));
  renderTreeStatus();
}

function renderTreeStatus() {
  for (const leaf of document.querySelectorAll(".leaf")) {
    const a = leaf.dataset.asset, st = S.status[a];
    leaf.classList.toggle("online", !!(st && st.online));
    leaf.classList.toggle("offline", !(st && st.online));
    leaf.classList.toggle("selected", a === S.selected);
    leaf.querySelector(".oee").textContent = S.oee[a] ? pct(S.oee[a].oee) : "";
  }
  const st = S.status[S.selected];
  const box = $("#asset-status");
  box.textContent = !st ? "" : st.online ? `online · last frame ${st.age_s.toFixed(1)} s ago`
    : st.age_s === null ? `offline · no frame seen` : `offline · no frame for ${dur(st.age_s)}`;
  box.dataset.online = st && st.online ? "1" : "0";
}

// --- selected asset ---
function select(path) {
  S.selected = path;
  history.replaceState(null, "", "#asset=" + encodeURIComponent(path));
  $("#asset-title").textContent = path;
  renderTreeStatus(); renderValues(); renderOee();
  loadHistory();
}

function renderValues() {
  const tb = el("tbody");
  const a = S.assets[S.selected];
  const live = S.values[S.selected] || { values: {}, quality: {} };
  for (const t of a ? a.tags : []) {
    const v = live.values[t.name], q = live.quality[t.name];
    tb.append(el("tr", { "data-tag": t.name },
      el("td", { text: t.name }),
      el("td", { class: "num value", text: fmt(v) }),
      el("td", { text: t.unit }),
      el("td", { class: q && q !== "GOOD" ? "sev-WARNING" : "", text: q || "" })));
  }
  $("#values tbody").replaceWith(tb);
}

function renderOee() {
  const o = S.oee[S.selected], box = $("#oee");
  box.replaceChildren();
  if (!o) { box.append(el("div", { class: "empty", text: "no OEE window yet" })); $("#oee-window").textContent = ""; return; }
  const row = (label, x, cls = "") => el("div", { class: "kpi " + cls, "data-kpi": label },
    el("span", { text: label }), el("div", { class: "bar" }, el("div", { style: `width:${x === null ? 0 : Math.max(0, Math.min(100, 100 * x))}%` })),
    el("span", { class: "num", text: pct(x) }));
  box.append(row("OEE", o.oee, "main"), row("Availability", o.availability), row("Effectiveness", o.effectiveness), row("Quality", o.quality));
  $("#oee-window").textContent = `${o.shift ? o.shift + " · " : ""}window ending ${when(o.window_end)}`;
}

// --- trends (SVG) ---
const W = 600, H = 90;
function path(xs, ys, x0, x1, y0, y1) {
  let d = "";
  for (let i = 0; i < xs.length; i++) {
    if (ys[i] === null || ys[i] === undefined) continue;
    const x = ((xs[i] - x0) / (x1 - x0 || 1)) * W, y = H - 4 - ((ys[i] - y0) / (y1 - y0 || 1)) * (H - 8);
    d += (d ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
  }
  return d;
}
function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
function chart(name, label, x0, x1, layers) {
  let lo = Infinity, hi = -Infinity;
  for (const l of layers) for (const arr of l.ys) for (const v of arr) if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const s = svg("svg", { class: "trend", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-tag": name });
  for (const l of layers) {
    if (l.kind === "band") {
      const up = path(l.xs, l.ys[1], x0, x1, lo, hi);
      const down = path([...l.xs].reverse(), [...l.ys[0]].reverse(), x0, x1, lo, hi).replace(/^M/, "L");
      if (up) s.append(svg("path", { class: "band", d: up + down + "Z" }));
    } else {
      s.append(svg("path", { class: l.kind, d: path(l.xs, l.ys[0], x0, x1, lo, hi) }));
    }
  }
  const wrap = el("div", { class: "chart" }, el("div", { class: "trend-label" },
    el("span", { text: label }), el("span", { text: `${fmt(lo)} … ${fmt(hi)}` })));
  wrap.append(s);
  return wrap;
}

function drawTrends() {
  const h = S.history;
  if (!h || h.asset !== S.selected) return;
  const box = el("div", { id: "trends" });
  const x1 = Date.now() * 1000, x0 = x1 - (h.end - h.start);
  const a = S.assets[h.asset];
  for (const tag of a.trend_tags) {
    const t = h.trends[tag] || { t: [], min: [], max: [], avg: [] };
    const unit = (a.tags.find((x) => x.name === tag) || {}).unit || "";
    box.append(chart(tag, `${tag}${unit ? " [" + unit + "]" : ""}`, x0, x1, [
      { kind: "band", xs: t.t, ys: [t.min, t.max] }, { kind: "avg", xs: t.t, ys: [t.avg] }]));
  }
  const an = h.anomaly;
  // readiness of the asset's anomaly model, from its latest AnomalyScore record
  const last = S.anomaly[h.asset];
  const ready = !last ? "no anomaly scores yet" : last.warming_up ? `model ${last.model} warming up: not judging yet`
    : `model ${last.model} ready`;
  box.append(chart("anomaly", `anomaly score / threshold · ${ready}`, x0, x1, [
    { kind: "score", xs: an.t, ys: [an.score] }, { kind: "thr", xs: an.t, ys: [an.threshold] }]));
  $("#trends").replaceWith(box);
  $("#trend-range").textContent = `last ${((h.end - h.start) / 3.6e9).toFixed(1)} h · ${(h.bucket_us / 1e6).toFixed(0)} s buckets`;
  if (!S.drawnOnce) {
    S.drawnOnce = true;
    performance.mark("charts-drawn");
    document.body.dataset.chartsDrawn = "1";
  }
}
function scheduleRedraw() {
  if (S.redrawPending) return;
  S.redrawPending = true;
  setTimeout(() => { S.redrawPending = false; drawTrends(); }, 1000);
}

function renderDowntime(rows) {
  const box = el("div", { id: "downtime" });
  if (!rows.length) box.append(el("div", { class: "empty", text: "no downtime recorded" }));
  const max = Math.max(1, ...rows.map((r) => r.seconds));
  for (const r of rows) box.append(el("div", { class: "kpi", "data-reason": r.reason }, el("span", { text: r.reason }),
    el("div", { class: "bar" }, el("div", { style: `width:${(100 * r.seconds) / max}%;background:var(--warn)` })),
    el("span", { class: "num", text: dur(r.seconds) })));
  $("#downtime").replaceWith(box);
}

async function loadHistory() {
  const asset = S.selected;
  const h = await api(`api/history?asset=${encodeURIComponent(asset)}`);
  if (asset !== S.selected) return;
  S.history = h;
  drawTrends();
  renderDowntime(h.downtime);
}

// live points: appended to the downsampled history (one point per push), oldest trimmed
function appendLive(upd) {
  const h = S.history;
  if (!h || h.asset !== upd.asset) return;
  const cutoff = upd.time - (h.end - h.start);
  for (const [tag, v] of Object.entries(upd.values)) {
    const t = h.trends[tag];
    if (!t || typeof v !== "number") continue;
    t.t.push(upd.time); t.min.push(v); t.max.push(v); t.avg.push(v);
    while (t.t.length && t.t[0] < cutoff) { t.t.shift(); t.min.shift(); t.max.shift(); t.avg.shift(); }
  }
  scheduleRedraw();
}

// --- alerts ---
function renderAlerts() {
  const tb = el("tbody");
  const rows = [...S.alerts.values()].filter((a) => a.state === "RAISED")
    .sort((a, b) => (!!a.ack - !!b.ack) || (b.time - a.time));
  if (!rows.length) tb.append(el("tr", {}, el("td", { class: "empty", text: "no active alerts" })));
  for (const a of rows) {
    const btn = a.ack ? el("span", { class: "acked-by", text: "acknowledged" }) : el("button", { class: "ack", text: "Acknowledge" });
    if (!a.ack) btn.addEventListener("click", () => acknowledge(a.alert_id, btn));
    tb.append(el("tr", { class: "alert" + (a.ack ? " acked" : ""), "data-alert-id": a.alert_id, "data-rule": a.rule },
      el("td", { class: "sev-" + a.severity, text: a.severity }),
      el("td", {}, el("div", { text: `${a.rule} · ${a.asset.split(".").pop()}` }),
        el("div", { class: "empty", text: a.message || "" }), el("div", { class: "empty", text: when(a.time) })),
      el("td", {}, btn)));
  }
  $("#alerts tbody").replaceWith(tb);
}
async function acknowledge(id, btn) {
  btn.disabled = true;
  try {
    const r = await api(`api/alerts/${encodeURIComponent(id)}/ack`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    const a = S.alerts.get(id); if (a) a.ack = r.ack;
    renderAlerts();
  } catch (e) { btn.disabled = false; console.error(e); }
}

// --- pipeline health ---
function renderHealth() {
  const tb = el("tbody");
  const h = S.health;
  if (!h) return;
  tb.append(el("tr", {}, el("td", { text: "dashboard feed" }), el("td", { class: "num", text: h.live.ready ? "live" : "starting" }),
    el("td", { class: "num", text: `${h.live.browsers} browser(s)` })));
  for (const c of h.components) {
    tb.append(el("tr", { "data-component": c.component, class: c.alive ? "" : "dead" },
      el("td", { text: c.component + (c.alive ? "" : " (stale)") }),
      el("td", { class: "num", text: c.rate_per_s === null ? "–" : `${fmt(c.rate_per_s)} ${c.rate_name}/s` }),
      el("td", { class: "num", text: `lag ${c.consumer_lag === null ? "–" : c.consumer_lag}${c.dead_letters ? ` · ${c.dead_letters} dead letters` : ""}` })));
  }
  $("#health tbody").replaceWith(tb);
}

// --- live stream ---
function applySnapshot(s) {
  S.status = s.status; S.values = s.values; S.oee = s.oee; S.anomaly = s.anomaly;
  S.alerts = new Map(s.alerts.map((a) => [a.alert_id, a]));
  S.health = s.health;
  renderTreeStatus(); renderValues(); renderOee(); renderAlerts(); renderHealth();
}
function connect() {
  const es = new EventSource("api/events");
  const conn = $("#conn");
  es.onopen = () => { conn.dataset.state = "open"; conn.textContent = "live"; };
  es.onerror = () => { conn.dataset.state = "error"; conn.textContent = "reconnecting…"; };
  const on = (ev, fn) => es.addEventListener(ev, (m) => fn(JSON.parse(m.data)));
  on("snapshot", (s) => { applySnapshot(s); document.body.dataset.live = "1"; });
  on("frames", (list) => {
    for (const u of list) {
      const cur = S.values[u.asset] || (S.values[u.asset] = { values: {}, quality: {}, time: 0 });
      Object.assign(cur.values, u.values); Object.assign(cur.quality, u.quality); cur.time = Math.max(cur.time, u.time);
      if (!u.historical && S.status[u.asset]) { S.status[u.asset].online = true; S.status[u.asset].age_s = Math.max(0, (Date.now() * 1000 - u.time) / 1e6); }
      if (u.asset === S.selected) { renderValues(); appendLive(u); }
    }
    renderTreeStatus();
  });
  on("anomalies", (list) => {
    for (const a of list) {
      const before = S.anomaly[a.asset];
      S.anomaly[a.asset] = a;
      const h = S.history;
      if (h && h.asset === a.asset && (!before || before.warming_up !== a.warming_up)) scheduleRedraw();
      if (h && h.asset === a.asset) { h.anomaly.t.push(a.time); h.anomaly.score.push(a.score); h.anomaly.threshold.push(a.threshold); scheduleRedraw(); }
    }
  });
  on("oee", (o) => { S.oee[o.asset] = o; renderOee(); renderTreeStatus(); });
  on("alert", (a) => { S.alerts.set(a.alert_id, a); renderAlerts(); });
  on("ack", (m) => { const a = S.alerts.get(m.alert_id); if (a) { a.ack = m.ack; renderAlerts(); } });
  on("health", (h) => { S.health = h; renderHealth(); });
  on("status", (st) => { S.status = st; renderTreeStatus(); });
}

async function start() {
  S.plant = await api("api/plant");
  for (const a of S.plant.assets) S.assets[a.path] = a;
  $("#plant-name").textContent = S.plant.name;
  document.title = `${S.plant.name} · plantstream`;
  renderTree();
  const m = location.hash.match(/asset=([^&]+)/);
  const wanted = m && decodeURIComponent(m[1]);
  select(S.assets[wanted] ? wanted : S.plant.assets[0].path);
  connect();
}
start().catch((e) => { $("#conn").dataset.state = "error"; $("#conn").textContent = String(e); });
