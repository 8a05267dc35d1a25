// plantstream dashboard: plain JS; trends drawn by uPlot (vendored in static/vendor: hover, zoom, synced cursors).
"use strict";

const S = {
  plant: null, byPath: {}, info: {}, selected: null, status: {}, treeOee: {}, live: null, oee: null, shift: null,
  history: null, range: "auto", custom: null, zoom: null, alerts: new Map(), alarmErrors: new Map(), health: null, feed: null, me: null,
  es: null, lastEvent: 0, everOpen: false, charts: [], drawnOnce: false, redrawPending: false, parents: {},
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
};
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : v === null || v === undefined ? "–" : String(v));
const fmtShort = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const hhmm = (us) => new Date(us / 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const when = (us) => new Date(us / 1000).toLocaleString();
const dur = (s) => (s >= 86400 ? (s / 86400).toFixed(1) + " d" : s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? (s / 60).toFixed(0) + " min" : s.toFixed(0) + " s");
const nowUs = () => Date.now() * 1000;
const STATE_NAMES = { RUNNING: "RUNNING", IDLE: "IDLE", PLANNED_STOP: "PLANNED STOP", UNPLANNED_STOP: "UNPLANNED STOP", NO_DATA: "NO DATA" };

async function api(path, opts) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  if (r.status === 401) { signedOut(); throw new Error("signed out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return body;
}
function signedOut() {
  if (S.me && S.me.sign_in) location.href = "login";
  setConn("disconnected", "signed out", "your session ended; reload to sign in again");
}

// --- who is at the page ---
function renderWho() {
  const u = S.me && S.me.user;
  if (!u) return;
  $("#who").textContent = u.via === "local" ? "local access (no sign-in configured)" : `${u.name} · ${u.role}`;
  $("#signout").hidden = u.via !== "session";
}
$("#signout").addEventListener("click", async () => {
  await fetch("api/logout", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: "{}" });
  location.href = "login";
});
const can = (action) => !!(S.me && S.me.user && S.me.user.can.includes(action));

// --- asset tree: branches render their children when opened, so 1,000 assets cost what is visible ---
function indexTree(nodes, parent) {
  for (const n of nodes) {
    if (parent) S.parents[n.path] = parent;
    if (n.children.length) indexTree(n.children, n.path);
  }
}
function leafNode(path, full) {
  const a = S.byPath[path];
  const leaf = el("div", { class: "leaf", "data-asset": path, title: `${path}${a && a.description ? " · " + a.description : ""}` },
    el("span", { class: "dot" }), el("span", { text: full ? path.split(".").slice(-2).join(".") : path.split(".").pop() }),
    full ? el("span", { class: "full", text: path.split(".").slice(0, -2).join(".") }) : null, el("span", { class: "oee" }));
  leaf.addEventListener("click", () => select(path));
  return leaf;
}
function branchList(nodes) {
  const ul = el("ul");
  for (const n of nodes) {
    const li = el("li", { "data-path": n.path });
    if (n.children.length) {
      const head = el("span", { class: "branch", "data-branch": n.path }, el("span", { text: n.name }), el("span", { class: "off" }));
      head.addEventListener("click", () => toggle(li, n));
      li.append(head);
    } else {
      li.append(leafNode(n.path, false));
    }
    ul.append(li);
  }
  return ul;
}
function toggle(li, n, open) {
  const isOpen = li.classList.contains("open");
  if (open === undefined) open = !isOpen;
  if (open && !li.querySelector(":scope > ul")) li.append(branchList(n.children));
  li.classList.toggle("open", open);
  const ul = li.querySelector(":scope > ul");
  if (ul) ul.hidden = !open;
  renderTreeStatus();
}
function findNode(path, nodes = S.plant.tree) {
  for (const n of nodes) {
    if (n.path === path) return n;
    if (path.startsWith(n.path + ".")) return findNode(path, n.children);
  }
  return null;
}
function reveal(path) {  // open the branches down to an asset
  const chain = [];
  for (let p = S.parents[path]; p; p = S.parents[p]) chain.unshift(p);
  for (const p of chain) {
    const li = document.querySelector(`#tree li[data-path="${CSS.escape(p)}"]`);
    if (li && !li.classList.contains("open")) toggle(li, findNode(p), true);
  }
}
function renderTree() {
  $("#tree").replaceWith(Object.assign(branchList(S.plant.tree), { id: "tree" }));
  const small = S.plant.assets.length <= 40;
  const openAll = (nodes) => {
    for (const n of nodes) {
      if (!n.children.length) continue;
      const li = document.querySelector(`#tree li[data-path="${CSS.escape(n.path)}"]`);
      if (li) { toggle(li, n, true); openAll(n.children); }
    }
  };
  if (small) openAll(S.plant.tree);
  $("#asset-count").textContent = `${S.plant.assets.length}`;
  renderTreeStatus();
  performance.mark("tree-drawn");
}
function renderTreeStatus() {
  for (const leaf of document.querySelectorAll(".leaf")) {
    const a = leaf.dataset.asset, st = S.status[a];
    leaf.classList.toggle("online", !!(st && st.online));
    leaf.classList.toggle("offline", !(st && st.online));
    leaf.classList.toggle("selected", a === S.selected);
    const o = S.treeOee[a];
    leaf.querySelector(".oee").textContent = o === undefined ? "" : pct(o);
  }
  // offline counts on the branches shown
  const off = {};
  for (const a of S.plant.assets) {
    const st = S.status[a.path];
    if (st && st.online) continue;
    for (let p = S.parents[a.path]; p; p = S.parents[p]) off[p] = (off[p] || 0) + 1;
  }
  for (const b of document.querySelectorAll(".branch")) {
    const n = off[b.dataset.branch] || 0;
    b.querySelector(".off").textContent = n ? `${n} offline` : "";
  }
  renderAssetStatus();
}
let searchTimer = null;
$("#search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(runSearch, 80); });
function runSearch() {
  const q = $("#search").value.trim().toLowerCase();
  const res = $("#results");
  if (!q) { res.hidden = true; $("#tree").hidden = false; return; }
  const words = q.split(/\s+/);
  const hits = S.plant.assets.filter((a) => {
    const hay = (a.path + " " + (a.description || "") + " " + (a.kind || "")).toLowerCase();
    return words.every((w) => hay.includes(w));
  });
  const ul = el("ul", { id: "results" });
  for (const a of hits.slice(0, 200)) ul.append(el("li", {}, leafNode(a.path, true)));
  if (!hits.length) ul.append(el("li", { class: "empty", text: "no asset matches" }));
  else if (hits.length > 200) ul.append(el("li", { class: "empty", text: `${hits.length - 200} more: type more of the name` }));
  res.replaceWith(ul);
  ul.dataset.count = String(hits.length);
  $("#tree").hidden = true;
  renderTreeStatus();
}

// --- the selected asset ---
async function select(path) {
  if (!S.byPath[path]) return;
  S.selected = path; S.live = null; S.oee = null; S.shift = null; S.history = null; S.zoom = null;
  history.replaceState(null, "", "#asset=" + encodeURIComponent(path));
  $("#asset-title").textContent = path;
  reveal(path);
  renderTreeStatus();
  if (!S.info[path]) S.info[path] = await api(`api/asset?asset=${encodeURIComponent(path)}`);
  if (path !== S.selected) return;
  renderValues(); renderOee(); renderMachine();
  connect();
  loadHistory();
  loadShift();
}

function renderAssetStatus() {
  const st = S.status[S.selected], box = $("#asset-status");
  if (!st) { box.textContent = ""; return; }
  const t = S.live && S.live.values && S.live.values.time;
  const age = t ? Math.max(0, (nowUs() - t) / 1e6) : st.age_s;
  box.textContent = st.online ? `online · last frame ${age === null ? "?" : age.toFixed(0)} s ago`
    : age === null || age === undefined ? "offline · no frame seen" : `offline · no frame for ${dur(age)}`;
  box.dataset.online = st.online ? "1" : "0";
  box.className = "status " + (st.online ? "stage-running" : "stage-stopped");
}

function machineNow() {  // the live tracker's state, its start made earlier by the shift timeline when known
  const m = S.live && S.live.machine, sh = S.shift, st = S.status[S.selected];
  const last = sh && sh.timeline.length ? sh.timeline[sh.timeline.length - 1] : null;
  if (last && last.state === "NO_DATA" && !(st && st.online)) {
    // silent since a known state: say so, and what it was, rather than the last state as if it still held
    const held = [...sh.timeline].reverse().find((s) => s.state !== "NO_DATA");
    if (held) return { state: "NO_DATA", since: last.start, since_known: true, before: held.state };
  }
  if (!m && last && last.state !== "NO_DATA") return { state: last.state, reason: last.reason, since: sh.since || last.start, since_known: true };
  return m || null;
}
function renderMachine() {
  const m = machineNow(), badge = $("#machine-state"), sinceBox = $("#state-since");
  const info = S.info[S.selected];
  if (!m) {
    badge.textContent = ""; badge.dataset.state = "";
    sinceBox.textContent = info && info.state_tag ? "state not seen yet" : "";
    return;
  }
  badge.textContent = STATE_NAMES[m.state] + (m.reason && m.state === "UNPLANNED_STOP" ? ` · ${m.reason}` : "");
  badge.dataset.state = m.state;
  badge.className = "state st-" + m.state;
  const age = Math.max(0, (nowUs() - m.since) / 1e6);
  sinceBox.textContent = `${m.since_known ? "since" : "since at least"} ${hhmm(m.since)} (${dur(age)})` +
    (m.before ? ` · ${STATE_NAMES[m.before]} before` : "");
  sinceBox.dataset.since = String(m.since);
}

function renderValues() {
  const tb = el("tbody");
  const a = S.info[S.selected];
  const live = (S.live && S.live.values) || { values: {}, quality: {} };
  const rates = (S.live && S.live.rates) || {};
  for (const t of a ? a.tags : []) {
    const v = live.values[t.name], q = live.quality[t.name];
    let shown = fmt(v);
    if (t.name === a.state_tag && S.live && S.live.machine && v !== undefined) shown = `${STATE_NAMES[S.live.machine.state] || ""} (${fmt(v)})`;
    const rate = t.role.startsWith("counter") ? rates[t.name] : undefined;
    tb.append(el("tr", { "data-tag": t.name },
      el("td", { text: t.name }),
      el("td", { class: "num value", text: shown }),
      el("td", { text: t.unit }),
      el("td", { class: "num rate", text: rate === undefined ? "" : rate === null ? "–/min" : `${rate.toFixed(1)}/min` }),
      el("td", { class: q && q !== "GOOD" ? "sev-WARNING" : "dim small", text: q || "" })));
  }
  $("#values tbody").replaceWith(tb);
}

// --- OEE: this shift so far (summed times and counts), the last window, the last shifts ---
function kpiRow(label, x, reason, cls = "") {
  return el("div", { class: "kpi " + cls, "data-kpi": label },
    el("span", { text: label }),
    el("div", { class: "bar" }, el("div", { style: `width:${x === null || x === undefined ? 0 : Math.max(0, Math.min(100, 100 * x))}%` })),
    el("span", { class: "num", text: pct(x) }),
    x === null || x === undefined ? el("div", { class: "reason", text: reason || "undefined" }) : null);
}
function renderOee() {
  const box = $("#oee");
  box.replaceChildren();
  const sh = S.shift, w = S.oee;
  const src = sh && sh.oee && sh.oee.windows ? sh.oee : null;
  if (!src && !w) { box.append(el("div", { class: "empty", text: "no OEE window yet" })); $("#oee-scope").textContent = ""; $("#oee-window").textContent = ""; return; }
  const o = src || w, r = o.reasons || {};
  box.append(kpiRow("OEE", o.oee, r.oee, "main"), kpiRow("Availability", o.availability, r.availability),
    kpiRow("Effectiveness", o.effectiveness, r.effectiveness), kpiRow("Quality", o.quality, r.quality));
  $("#oee-scope").textContent = src ? `${sh.shift.name ? sh.shift.name + " shift" : "last 8 h"} so far · ${src.windows} window${src.windows === 1 ? "" : "s"}` : `window ending ${hhmm(w.window_end)}`;
  const line = $("#oee-window");
  if (w && src) {
    const why = w.oee === null ? ` (${(w.reasons || {}).oee || "undefined"})` : "";
    line.textContent = `last window ${hhmm(w.window_start)}–${hhmm(w.window_end)}: OEE ${pct(w.oee)}${why}`;
  } else line.textContent = "";
}
function renderShifts() {
  const tb = el("tbody");
  const sh = S.shift;
  const rows = [];
  if (sh && sh.oee && sh.oee.windows) rows.push({ label: `${sh.shift.name || "last 8 h"} (so far)`, o: sh.oee, cls: "current" });
  for (const r of (sh && sh.last_shifts) || []) rows.push({ label: `${r.name} · ${new Date(r.window_start / 1000).toLocaleDateString([], { weekday: "short" })} ${hhmm(r.window_start)}–${hhmm(r.window_end)}`, o: r });
  if (!rows.length) tb.append(el("tr", {}, el("td", { class: "empty", colspan: "5", text: "no shift closed yet" })));
  for (const { label, o, cls } of rows) {
    const rs = o.reasons || {};
    const cell = (x, k) => el("td", { class: "num", title: x === null || x === undefined ? rs[k] || "undefined" : "" }, pct(x),
      x === null || x === undefined ? el("div", { class: "why", text: rs[k] || "" }) : null);
    tb.append(el("tr", { class: cls || "" }, el("td", { text: label }), cell(o.oee, "oee"), cell(o.availability, "availability"),
      cell(o.effectiveness, "effectiveness"), cell(o.quality, "quality")));
  }
  $("#shifts tbody").replaceWith(tb);
}

// --- the shift's state timeline ---
const LEGEND = [["RUNNING", "running"], ["IDLE", "idle"], ["PLANNED_STOP", "planned stop"], ["UNPLANNED_STOP", "unplanned stop"], ["NO_DATA", "no data"]];
function renderTimeline() {
  const box = el("div", { id: "timeline" }), sh = S.shift;
  const info = S.info[S.selected];
  if (!sh || !info || !info.state_tag) {
    box.append(el("div", { class: "empty small", style: "padding:.5rem", text: info && !info.state_tag ? "this asset has no machine_state tag" : "" }));
    $("#timeline").replaceWith(box); $("#shift-label").textContent = ""; return;
  }
  const t0 = sh.shift.start, t1 = Math.max(sh.shift.end, nowUs()), span = t1 - t0;
  const x = (t) => (100 * (t - t0)) / span;
  const segs = sh.timeline.map((s) => ({ ...s }));
  const m = S.live && S.live.machine;  // stretch the strip to now with the live state
  if (segs.length && m) {
    const last = segs[segs.length - 1];
    if (last.state === m.state) last.end = Math.max(last.end, nowUs());
    else if (m.since >= last.start) { last.end = Math.min(last.end, m.since); segs.push({ start: m.since, end: nowUs(), state: m.state, reason: m.reason }); }
  }
  for (const s of segs) {
    box.append(el("div", { class: `seg st-${s.state}`, "data-state": s.state, style: `left:${x(s.start)}%;width:${Math.max(0.15, x(s.end) - x(s.start))}%`,
      title: `${STATE_NAMES[s.state]}${s.reason && s.state !== "RUNNING" ? " (" + s.reason + ")" : ""} ${hhmm(s.start)}–${hhmm(s.end)} · ${dur((s.end - s.start) / 1e6)}` }));
  }
  for (const mk of sh.marks) {
    box.append(el("div", { class: "mark", "data-kind": mk.kind, style: `left:${x(mk.start)}%;width:${x(mk.end) - x(mk.start)}%`,
      title: mk.kind === "BREAK" ? `planned break ${hhmm(mk.start)}–${hhmm(mk.end)}` : "outside the shift calendar" }));
  }
  box.append(el("div", { class: "now", style: `left:${x(nowUs())}%`, title: "now" }));
  const hour = 3600e6;
  for (let t = Math.ceil(t0 / hour) * hour; t <= t1; t += span > 12 * hour ? 2 * hour : hour) {
    const edge = x(t) < 4 ? "transform:none" : x(t) > 96 ? "transform:translateX(-100%)" : "";  // not cut off
    box.append(el("span", { class: "tick", style: `left:${x(t)}%;${edge}`, text: hhmm(t) }));
  }
  $("#timeline").replaceWith(box);
  $("#shift-label").textContent = sh.shift.name ? `${sh.shift.name} · ${hhmm(sh.shift.start)}–${hhmm(sh.shift.end)}` : sh.shift.note;
  const legend = el("div", { id: "timeline-legend", class: "legend" });
  for (const [k, label] of LEGEND) legend.append(el("span", {}, el("i", { class: "st-" + k }), label));
  if (sh.marks.some((mk) => mk.kind === "BREAK")) legend.append(el("span", {}, el("i", { class: "mark-key", style: "background:repeating-linear-gradient(-45deg,rgba(255,255,255,.4) 0 2px,transparent 2px 4px)" }), "planned break"));
  $("#timeline-legend").replaceWith(legend);
}
async function loadShift() {
  const asset = S.selected;
  try {
    const sh = await api(`api/shift?asset=${encodeURIComponent(asset)}`);
    if (asset !== S.selected) return;
    S.shift = sh;
    if (sh.machine) (S.live || (S.live = { values: { values: {}, quality: {}, time: 0 }, rates: {} })).machine = sh.machine;
  } catch (e) { console.error(e); return; }
  renderTimeline(); renderOee(); renderShifts(); renderMachine();
}

// --- trends (uPlot) ---
function rangeButtons() {
  for (const b of document.querySelectorAll(".range-btn")) {
    const active = S.history && S.history.range.name === b.dataset.range;
    b.setAttribute("aria-pressed", active ? "true" : "false");
  }
}
for (const b of document.querySelectorAll(".range-btn")) {
  b.addEventListener("click", () => {
    if (b.dataset.range === "custom") {
      const f = $("#custom-range");
      f.hidden = !f.hidden;
      if (!f.hidden && S.history) {
        const iso = (us) => { const d = new Date(us / 1000); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); };
        $("#custom-from").value = iso(S.history.start); $("#custom-to").value = iso(S.history.end);
      }
      return;
    }
    S.range = b.dataset.range; S.zoom = null; $("#custom-range").hidden = true;
    loadHistory();
  });
}
$("#custom-range").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const from = new Date($("#custom-from").value).getTime() * 1000, to = new Date($("#custom-to").value).getTime() * 1000;
  if (!(to > from)) return;
  S.range = "custom"; S.custom = [from, to]; S.zoom = null;
  loadHistory();
});

async function loadHistory() {
  const asset = S.selected;
  let q = `api/history?asset=${encodeURIComponent(asset)}&range=${S.range}`;
  if (S.range === "custom") q += `&start=${Math.round(S.custom[0])}&end=${Math.round(S.custom[1])}`;
  let h;
  try { h = await api(q); } catch (e) { $("#trend-range").textContent = String(e.message || e); return; }
  if (asset !== S.selected) return;
  for (const t of Object.values(h.trends)) t.n = t.t.map(() => 0);  // live points merged into a bucket count here
  S.history = h;
  drawTrends();
  renderDowntime(h.downtime);
  rangeButtons();
}

const followsNow = () => S.history && S.history.range.name !== "custom";
function xWindow() {
  const h = S.history;
  if (S.zoom) return S.zoom;
  if (!followsNow()) return [h.start / 1e6, h.end / 1e6];
  const span = h.end - h.start, x1 = nowUs();
  return [(x1 - span) / 1e6, x1 / 1e6];
}
function rangeLabel() {
  const h = S.history, r = h.range, width = h.bucket_us / 1e6;
  const names = { "15m": "last 15 min", "1h": "last hour", "8h": "last 8 h", "24h": "last 24 h", "7d": "last 7 days", shift: "this shift", custom: `${when(h.start)} – ${when(h.end)}`, hours: `last ${((h.end - h.start) / 3.6e9).toFixed(1)} h` };
  let s = `${names[r.name] || r.name} · ${width >= 60 ? width / 60 + " min" : width + " s"} buckets`;
  if (r.fitted) s += " · fitted to the data there is";
  if (S.zoom) s += " · zoomed (double-click a chart to reset)";
  return s;
}
function chartOpts(width, height, series, extra = {}) {
  return {
    width, height, series,
    cursor: { sync: { key: "trends", setSeries: false }, drag: { x: true, y: false, setScale: false },
      bind: { dblclick: () => () => { S.zoom = null; applyWindow(); return null; } } },
    scales: { x: { time: true } },
    axes: [
      { stroke: "#8a96a3", grid: { stroke: "#243040", width: 1 }, ticks: { stroke: "#243040" }, size: 28, space: 70 },
      { stroke: "#8a96a3", grid: { stroke: "#243040", width: 1 }, ticks: { stroke: "#243040" }, size: 52, values: (u, vals) => vals.map(fmtShort) },
    ],
    legend: { live: true },
    hooks: { setSelect: [zoomFromSelection] },
    ...extra,
  };
}
function zoomFromSelection(u) {
  if (u.select.width <= 2) return;
  const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
  S.zoom = [min, max];
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  applyWindow();
}
function applyWindow() {
  const [min, max] = xWindow();
  for (const c of S.charts) c.setScale("x", { min, max });
  $("#trend-range").textContent = rangeLabel();
}
function trendData(t) {
  return [t.t.map((us) => us / 1e6), t.min, t.max, t.avg];
}
function anomalyData(an) {
  return [an.t.map((us) => us / 1e6), an.score, an.threshold, an.score.map((s, i) => (an.anomaly[i] ? s : null))];
}
// warm-up: shaded, labelled; the model learns what normal is and judges nothing yet
function drawWarmup(u) {
  const an = S.history && S.history.anomaly;
  if (!an || !an.warming.some(Boolean)) return;
  const ctx = u.ctx, w = (S.history.bucket_us / 1e6);
  ctx.save();
  ctx.fillStyle = "rgba(210,153,34,0.13)";
  let i = 0;
  while (i < an.t.length) {
    if (!an.warming[i]) { i++; continue; }
    let j = i;
    while (j + 1 < an.t.length && an.warming[j + 1]) j++;
    const x0 = u.valToPos(an.t[i] / 1e6, "x", true), x1 = u.valToPos(an.t[j] / 1e6 + w, "x", true);
    ctx.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
    ctx.fillStyle = "rgba(210,153,34,0.9)";
    ctx.font = `${11 * devicePixelRatio}px system-ui`;
    if (x1 - x0 > 60) ctx.fillText("warm-up", x0 + 4, u.bbox.top + 12 * devicePixelRatio);
    ctx.fillStyle = "rgba(210,153,34,0.13)";
    i = j + 1;
  }
  ctx.restore();
}
function modelNote() {  // readiness of the asset's anomaly model, from its latest score
  const a = S.live && S.live.anomaly, an = S.history && S.history.anomaly;
  if (a && a.warming_up) return { text: `model ${a.model} warming up: learning what normal looks like, not judging yet`, cls: "model" };
  if (a) return { text: `model ${a.model} ready${a.is_anomaly ? " · ANOMALY" : ""}`, cls: a.is_anomaly ? "sev-CRITICAL" : "" };
  if (an && an.t.length) return an.warming[an.warming.length - 1] ? { text: "model warming up: not judging yet", cls: "model" } : { text: "model ready", cls: "" };
  return { text: "no anomaly scores yet", cls: "" };
}
function drawTrends() {
  const h = S.history;
  if (!h || h.asset !== S.selected) return;
  for (const c of S.charts) c.destroy();
  S.charts = [];
  const box = el("div", { id: "trends" });
  $("#trends").replaceWith(box);
  const width = Math.max(300, box.clientWidth || 600);
  const a = S.info[h.asset];
  for (const tag of a.trend_tags) {
    const t = h.trends[tag] || (h.trends[tag] = { t: [], min: [], max: [], avg: [], n: [] });
    const unit = (a.tags.find((x) => x.name === tag) || {}).unit || "";
    const wrap = el("div", { class: "chart", "data-tag": tag }, el("div", { class: "chart-label" }, el("span", { text: `${tag}${unit ? " [" + unit + "]" : ""}` })));
    box.append(wrap);
    const u = new uPlot(chartOpts(width, 100, [
      { value: (u, v) => (v === null ? "" : when(v * 1e6)) },
      { label: "min", stroke: "rgba(88,166,255,0.35)", width: 0.5, value: (u, v) => fmtShort(v), points: { show: false } },
      { label: "max", stroke: "rgba(88,166,255,0.35)", width: 0.5, value: (u, v) => fmtShort(v), points: { show: false } },
      { label: "avg", stroke: "#58a6ff", width: 1.3, value: (u, v) => fmtShort(v), points: { show: false } },
    ], { bands: [{ series: [2, 1], fill: "rgba(88,166,255,0.22)" }] }), trendData(t), wrap);
    u.tag = tag;
    S.charts.push(u);
  }
  const an = h.anomaly;
  const note = modelNote();
  const wrap = el("div", { class: "chart", "data-tag": "anomaly" }, el("div", { class: "chart-label" },
    el("span", { text: "anomaly score / threshold" }), el("span", { class: "model-note " + note.cls, id: "model-note", text: note.text })));
  box.append(wrap);
  const u = new uPlot(chartOpts(width, 100, [
    { value: (u, v) => (v === null ? "" : when(v * 1e6)) },
    { label: "score", stroke: "#d29922", width: 1.2, value: (u, v) => fmtShort(v), points: { show: false } },
    { label: "threshold", stroke: "#f85149", dash: [4, 3], width: 1, value: (u, v) => fmtShort(v), points: { show: false } },
    { label: "alarm", stroke: "transparent", value: (u, v) => (v === null ? "" : "alarm"), points: { show: true, size: 7, fill: "#f85149", stroke: "#f85149" } },
  ], { hooks: { setSelect: [zoomFromSelection], drawClear: [drawWarmup] } }), anomalyData(an), wrap);
  u.tag = "anomaly";
  S.charts.push(u);
  box.dataset.warmup = an.warming.some(Boolean) ? "1" : "0";
  box.dataset.alarms = String(an.anomaly.filter(Boolean).length);
  applyWindow();
  if (!S.drawnOnce) {
    S.drawnOnce = true;
    performance.mark("charts-drawn");
    document.body.dataset.chartsDrawn = "1";
  }
  document.body.dataset.trendsFor = h.asset + "|" + h.range.name;
}
function refreshCharts() {
  const h = S.history;
  if (!h) return;
  for (const u of S.charts) {
    if (u.tag === "anomaly") u.setData(anomalyData(h.anomaly), false);
    else if (h.trends[u.tag]) u.setData(trendData(h.trends[u.tag]), false);
  }
  applyWindow();
  const note = modelNote(), box = $("#model-note");
  if (box) { box.textContent = note.text; box.className = "model-note " + note.cls; }
}
function scheduleRedraw() {
  if (S.redrawPending) return;
  S.redrawPending = true;
  setTimeout(() => { S.redrawPending = false; refreshCharts(); }, 1000);
}
// live points go into the history's buckets (same width), so a long range does not grow by a point a frame
function bucketAdd(series, t, v, width) {
  const b = t - (t % width), n = series.t.length;
  if (n && series.t[n - 1] === b) {
    const k = series.n[n - 1] || 1;
    series.min[n - 1] = Math.min(series.min[n - 1], v); series.max[n - 1] = Math.max(series.max[n - 1], v);
    series.avg[n - 1] = (series.avg[n - 1] * k + v) / (k + 1); series.n[n - 1] = k + 1;
  } else if (!n || b > series.t[n - 1]) {
    series.t.push(b); series.min.push(v); series.max.push(v); series.avg.push(v); series.n.push(1);
  }
}
function appendLive(upd) {
  const h = S.history;
  if (!h || h.asset !== upd.asset || !followsNow()) return;
  for (const [tag, v] of Object.entries(upd.values)) {
    const t = h.trends[tag];
    if (t && typeof v === "number") bucketAdd(t, upd.time, v, h.bucket_us);
  }
  scheduleRedraw();
}
function appendAnomaly(a) {
  const h = S.history, an = h && h.anomaly;
  if (!an || h.asset !== a.asset || !followsNow()) return;
  const b = a.time - (a.time % h.bucket_us), n = an.t.length;
  if (n && an.t[n - 1] === b) {
    an.score[n - 1] = Math.max(an.score[n - 1], a.score); an.threshold[n - 1] = a.threshold;
    an.anomaly[n - 1] = an.anomaly[n - 1] || a.is_anomaly; an.warming[n - 1] = an.warming[n - 1] || a.warming_up;
  } else if (!n || b > an.t[n - 1]) {
    an.t.push(b); an.score.push(a.score); an.threshold.push(a.threshold); an.anomaly.push(a.is_anomaly); an.warming.push(a.warming_up);
  }
  scheduleRedraw();
}
window.addEventListener("resize", () => {
  const w = Math.max(300, $("#trends").clientWidth);
  for (const u of S.charts) u.setSize({ width: w, height: 100 });
});

function renderDowntime(rows) {
  const box = el("div", { id: "downtime" });
  if (!rows.length) box.append(el("div", { class: "empty", text: "no downtime recorded" }));
  const max = Math.max(1, ...rows.map((r) => r.seconds));
  // a reason that is only a code (no reason configured) also gets its state's name
  const label = (r) => (r.state && /^\d+$/.test(r.reason) ? `${r.reason} · ${STATE_NAMES[r.state].toLowerCase()}` : r.reason);
  for (const r of rows) box.append(el("div", { class: "kpi", "data-reason": r.reason }, el("span", { text: label(r) }),
    el("div", { class: "bar" }, el("div", { style: `width:${(100 * r.seconds) / max}%;background:var(--warn)` })),
    el("span", { class: "num", text: dur(r.seconds) })));
  $("#downtime").replaceWith(box);
  $("#downtime-range").textContent = S.history ? rangeLabel().split(" · ")[0] : "";
}

// --- alerts ---
function renderAlerts() {
  const tb = el("tbody");
  // active alerts, and cleared ones whose alarm waits for an acknowledgement (returned to normal, or latched)
  const waiting = (a) => a.alarm && (a.alarm.state === "RTN_UNACK" || a.alarm.state === "LATCHED");
  const rows = [...S.alerts.values()].filter((a) => a.state === "RAISED" || waiting(a))
    .sort((a, b) => (!!a.ack - !!b.ack) || (b.time - a.time));
  if (!rows.length) tb.append(el("tr", {}, el("td", { class: "empty", text: "no active alerts" })));
  for (const a of rows) {
    // the alarm's lifecycle state comes from Kafka (plant.alarm-state.v1): the same on every dashboard
    const st = a.alarm ? a.alarm.state : "";
    const shelved = st === "SHELVED";
    const actions = el("div", { class: "alarm-actions" });
    if (shelved) actions.append(el("span", { class: "shelved-by small dim", text: `shelved${a.alarm.shelved_by ? " by " + a.alarm.shelved_by : ""} until ${hhmm(a.alarm.shelved_until)}` }));
    else if (st === "SUPPRESSED" || st === "OUT_OF_SERVICE") actions.append(el("span", { class: "small dim", text: st === "SUPPRESSED" ? `suppressed: ${a.alarm.suppressed_reason}` : "out of service" }));
    if (a.ack) actions.append(el("span", { class: "acked-by small dim", text: `acknowledged${a.ack.acked_by ? " by " + a.ack.acked_by : ""} ${hhmm(a.ack.acked_at)}` }));
    else if (can("ack")) actions.append(button("ack", "Acknowledge", () => alarmAction(a.alert_id, "ack", {})));
    if (can("shelve")) {
      if (shelved) actions.append(button("unshelve", "Unshelve", () => alarmAction(a.alert_id, "unshelve", {})));
      else {
        const pick = el("select", { class: "shelve-for", title: "shelve for" },
          ...[[900, "15 min"], [3600, "1 h"], [4 * 3600, "4 h"], [8 * 3600, "8 h"]].map(([s, t]) => el("option", { value: String(s), text: t })));
        actions.append(pick, button("shelve", "Shelve", () => alarmAction(a.alert_id, "shelve", { duration_s: Number(pick.value) })));
      }
    }
    if (!can("ack") && !can("shelve")) actions.append(el("span", { class: "small dim", text: "read-only" }));
    const err = S.alarmErrors.get(a.alert_id);
    if (err) actions.append(el("div", { class: "alarm-error small dead", text: err }));
    tb.append(el("tr", { class: "alert" + (a.ack ? " acked" : "") + (shelved ? " shelved" : ""), "data-alert-id": a.alert_id, "data-rule": a.rule, "data-alarm-state": st },
      el("td", { class: "sev-" + a.severity, text: a.severity }),
      el("td", {}, el("div", { text: `${a.rule} · ${a.asset.split(".").pop()}${waiting(a) ? " · " + (st === "LATCHED" ? "latched" : "returned to normal") : ""}` }),
        el("div", { class: "empty", text: a.message || "" }), el("div", { class: "empty", text: when(a.time) })),
      el("td", {}, actions)));
  }
  $("#alerts tbody").replaceWith(tb);
}
function button(cls, text, onclick) {
  const b = el("button", { class: cls, text });
  b.addEventListener("click", async () => { b.disabled = true; try { await onclick(); } finally { b.disabled = false; } });
  return b;
}
// an operator action: a command to the worker that owns the asset; its answer (or refusal) comes back here
async function alarmAction(id, action, body) {
  S.alarmErrors.delete(id);
  try {
    const r = await api(`api/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const a = S.alerts.get(id);
    if (a && r.ack) a.ack = r.ack;
    if (a && r.event) a.alarm = { ...(a.alarm || {}), state: r.event.to_state };
  } catch (e) { S.alarmErrors.set(id, String(e.message || e)); console.error(e); }
  renderAlerts();
}

// --- pipeline health: the numbers `plantstream status` prints ---
// the ISA-18.2 figures over every alarm of the plant (plant.alarm-state.v1), as the worker's metrics say them
function renderAlarmFigures(f) {
  const tb = el("tbody");
  if (!f) tb.append(el("tr", {}, el("td", { class: "empty", text: "no alarm states yet" })));
  else {
    const row = (k, v, cls) => tb.append(el("tr", { "data-figure": k }, el("td", { text: k }), el("td", { class: "num " + (cls || ""), text: String(v) })));
    row("alarms, last 10 min", f.per_10min, f.per_10min > 2 ? "warn" : "");
    row("per 10 min, 24 h average", f.avg_per_10min_24h.toFixed(2));
    row("standing (active now)", f.standing);
    row("stale (active > 24 h)", f.stale, f.stale ? "warn" : "");
    row("chattering", f.chattering.length, f.chattering.length ? "warn" : "");
    row("shelved · suppressed · out of service", `${f.shelved} · ${f.suppressed} · ${f.out_of_service}`);
    for (const m of f.most_frequent.slice(0, 5)) tb.append(el("tr", { class: "small dim" }, el("td", { text: "↳ " + m.alarm.split(".").pop() }), el("td", { class: "num", text: `${m.activations} (${(100 * m.share).toFixed(0)} %)` })));
  }
  $("#alarm-figures tbody").replaceWith(tb);
}
function renderHealth() {
  const h = S.health;
  if (!h) return;
  renderAlarmFigures(h.alarms);
  const note = $("#health-note");
  note.textContent = h.error ? h.error : (h.feed && h.feed.state !== "live" ? `dashboard feed: ${h.feed.detail}` : "");
  note.className = "small " + (h.error ? "dead" : "dim");
  const tb = el("tbody");
  if (!h.stages.length) tb.append(el("tr", {}, el("td", { class: "empty", text: h.feed && h.feed.state === "off" ? "history only (--no-live)" : "no stage has reported yet" })));
  for (const c of h.stages) {
    const rate = c.rate_per_s === null ? "–" : `${fmtShort(c.rate_per_s)} ${c.rate_name.replace(/_/g, " ")}/s`;
    const lag = c.lag !== null ? `lag ${c.lag}` : c.buffered !== null ? `buffer ${c.buffered}` : "";
    tb.append(el("tr", { "data-component": c.component, "data-state": c.state },
      el("td", { text: c.component }),
      el("td", { class: "stage-" + c.state, text: c.state, title: `counters written ${c.updated_age_s} s ago` }),
      el("td", { class: "num", text: rate }),
      el("td", { class: "small", text: lag + (c.dead_letters ? ` · ${c.dead_letters} dead letters` : "") })));
  }
  $("#health tbody").replaceWith(tb);
  const tt = el("tbody");
  for (const t of h.topics || []) tt.append(el("tr", { "data-topic": t.name }, el("td", { class: "small", text: t.name }),
    el("td", { class: "num small", text: `${fmtShort(t.rate_per_s)}/s` }), el("td", { class: "num small dim", text: String(t.messages) })));
  $("#topics tbody").replaceWith(tt);
}

// --- the header's indicator: the stream's real state, and the server's Kafka feed ---
function setConn(state, text, title) {
  const c = $("#conn");
  c.dataset.state = state; c.textContent = text; c.title = title || "";
}
function updateConn() {
  const es = S.es;
  if (!es) return setConn("connecting", "connecting…");
  if (es.readyState === EventSource.CLOSED) return setConn("disconnected", "disconnected", "the server closed the stream");
  if (es.readyState === EventSource.CONNECTING) return setConn(S.everOpen ? "reconnecting" : "connecting", S.everOpen ? "reconnecting…" : "connecting…", "no stream to the dashboard server");
  const age = (Date.now() - S.lastEvent) / 1000;
  if (age > 5) return setConn("stale", `no word for ${age.toFixed(0)} s`, "the stream is open but the server sends nothing (it ticks every 2 s)");
  const f = S.feed;
  const FEED = { off: "history only", broker: "Kafka unreachable", waiting: "waiting for topics", connecting: "connecting to Kafka" };
  if (f && f.state !== "live") return setConn("degraded", FEED[f.state] || f.state, f.detail);
  setConn("live", "live", f ? `${f.detail}; newest record ${f.last_record_age_s === null ? "–" : f.last_record_age_s + " s"} ago` : "");
}
setInterval(() => { updateConn(); renderAssetStatus(); renderMachine(); }, 1000);
setInterval(() => { if (S.selected && S.shift) renderTimeline(); }, 15000);
setInterval(() => { if (S.selected) loadShift(); }, 60000);

function applySnapshot(s) {
  S.status = s.status; S.treeOee = s.tree_oee;
  S.alerts = new Map(s.alerts.map((a) => [a.alert_id, a]));
  S.health = s.health; S.feed = s.health.feed;
  if (s.asset === S.selected) { S.live = s.live; S.oee = s.oee; }
  renderTreeStatus(); renderValues(); renderOee(); renderAlerts(); renderHealth(); renderMachine();
}
function connect() {
  if (S.es) S.es.close();
  const es = new EventSource(`api/events?asset=${encodeURIComponent(S.selected)}`);
  S.es = es;
  es.onopen = () => { S.everOpen = true; S.lastEvent = Date.now(); updateConn(); };
  es.onerror = () => {
    updateConn();
    if (es.readyState === EventSource.CLOSED) fetch("api/me", { credentials: "same-origin" }).then((r) => { if (r.status === 401) signedOut(); });
  };
  const on = (ev, fn) => es.addEventListener(ev, (m) => { if (S.es !== es) return; S.lastEvent = Date.now(); fn(JSON.parse(m.data)); updateConn(); });
  on("snapshot", (s) => { applySnapshot(s); document.body.dataset.live = "1"; });
  on("tick", (t) => { S.feed = t.feed; });
  on("frames", (list) => {
    for (const u of list) {
      if (u.asset !== S.selected) continue;
      const live = S.live || (S.live = { values: { values: {}, quality: {}, time: 0 }, rates: {} });
      const cur = live.values;
      Object.assign(cur.values, u.values); Object.assign(cur.quality, u.quality); cur.time = Math.max(cur.time, u.time);
      if (u.rates) live.rates = u.rates;
      if (!u.historical && S.status[u.asset]) S.status[u.asset].online = true;
      renderValues(); appendLive(u);
    }
  });
  on("machine", (m) => { if (m.asset === S.selected) { (S.live || (S.live = { values: { values: {}, quality: {}, time: 0 }, rates: {} })).machine = m; renderMachine(); renderTimeline(); renderValues(); } });
  on("anomalies", (list) => { for (const a of list) if (a.asset === S.selected) { if (S.live) S.live.anomaly = a; appendAnomaly(a); } });
  on("oee", (o) => { if (o.asset === S.selected) { S.oee = o; renderOee(); loadShift(); } });
  on("tree_oee", (m) => { Object.assign(S.treeOee, m); renderTreeStatus(); });
  on("shift", (m) => { if (m.asset === S.selected) loadShift(); });
  on("alert", (a) => { S.alerts.set(a.alert_id, a); renderAlerts(); });
  on("ack", (m) => { const a = S.alerts.get(m.alert_id); if (a) { a.ack = m.ack; renderAlerts(); } });
  on("alarm", (row) => { S.alerts.set(row.alert_id, row); renderAlerts(); });
  on("health", (h) => { S.health = h; S.feed = h.feed; renderHealth(); });
  on("status", (changed) => { Object.assign(S.status, changed); renderTreeStatus(); });
}

async function start() {
  S.me = await api("api/me");
  renderWho();
  S.plant = await api("api/plant");
  for (const a of S.plant.assets) S.byPath[a.path] = a;
  indexTree(S.plant.tree, null);
  $("#plant-name").textContent = S.plant.name;
  document.title = `${S.plant.name} · plantstream`;
  renderTree();
  const m = location.hash.match(/asset=([^&]+)/);
  const wanted = m && decodeURIComponent(m[1]);
  await select(S.byPath[wanted] ? wanted : S.plant.assets[0].path);
}
start().catch((e) => { setConn("error", String(e.message || e)); console.error(e); });
