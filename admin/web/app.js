// Sluice web view: live rollouts (server-sent events, polling as a fallback), a chart of
// the canary weight over time with analysis measurements, the xDS fleet, and actions.
// No external resources; every value from the API is inserted as text, never as HTML.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "sluice-token";
let rollouts = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function notice(msg, err) {
  const n = document.getElementById("notice");
  n.textContent = msg;
  n.className = "notice show" + (err ? " err" : "");
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.className = "notice"; }, 4000);
}

// ---- token and actions ----
function askToken() {
  const t = prompt("Bearer token for the admin API (kept in this browser tab only):", "");
  if (t !== null) {
    if (t.trim()) sessionStorage.setItem(TOKEN_KEY, t.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}
async function act(name, action, body) {
  if (action === "abort" && !confirm("Abort " + name + "? Every request goes back to stable.")) return;
  const send = () => {
    const h = { "Content-Type": "application/json" };
    const t = sessionStorage.getItem(TOKEN_KEY);
    if (t) h["Authorization"] = "Bearer " + t;
    return fetch("/api/v1/rollouts/" + encodeURIComponent(name) + "/" + action,
      { method: "POST", headers: h, body: JSON.stringify(body || {}) });
  };
  try {
    let r = await send();
    if (r.status === 401) {
      if (!askToken()) { notice("A token is required for " + action, true); return; }
      r = await send();
    }
    const j = await r.json().catch(() => ({}));
    if (!r.ok) { notice(action + " " + name + ": " + (j.error || r.status), true); return; }
    notice(action + " " + name + ": done");
    refresh();
  } catch (e) {
    notice(action + " " + name + ": " + e, true);
  }
}

// ---- charts ----
function thresholds(cond) {
  const out = [];
  if (!cond) return out;
  const re = /(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/g;
  let m;
  while ((m = re.exec(cond)) !== null) out.push(parseFloat(m[2]));
  return out;
}
function t(s) { return new Date(s).getTime(); }

// localTime shows an API time (UTC) in the browser's local time, with the date when it
// is not today.
function localTime(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime()) || iso.startsWith("0001")) return "-";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

// weightChart draws a release's setWeight (dashed) and actualWeight (solid) as step lines
// from its history, with each measurement of its runs as a tick coloured by its phase.
// The time axis spans the whole release: from its start to its end (a running release:
// to now), labelled in local time.
function weightChart(hist, runs, startIso, endIso) {
  const W = 1000, H = 150, L = 34, R = 8, T = 8, B = 20;
  const s = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": "canary weight over time" });
  hist = hist || [];
  const ms = [];
  for (const run of runs || []) for (const m of run.metrics || [])
    for (const x of m.measurements || []) if (x.finishedAt && !x.finishedAt.startsWith("0001")) ms.push(x);
  const times = hist.map(h => t(h.time)).concat(ms.map(x => t(x.finishedAt)));
  const end = endIso ? t(endIso) : Date.now();
  const now = Math.max(end, ...times);
  let t0 = startIso && !startIso.startsWith("0001") ? t(startIso) : NaN;
  if (isNaN(t0)) t0 = times.length ? Math.min(...times) : now - 60000;
  t0 = Math.min(t0, ...times);
  const t1 = Math.max(now, t0 + 1000);
  const X = v => L + (v - t0) / (t1 - t0) * (W - L - R);
  const Y = w => T + (100 - w) / 100 * (H - T - B);
  for (const g of [0, 25, 50, 75, 100]) {
    s.append(svg("line", { x1: L, x2: W - R, y1: Y(g), y2: Y(g), stroke: "#e3e7ee", "stroke-width": 1 }));
    const lbl = svg("text", { x: 4, y: Y(g) + 3 }); lbl.textContent = g + "%"; s.append(lbl);
  }
  const from = svg("text", { x: L, y: H - 5 }); from.textContent = new Date(t0).toLocaleTimeString(); s.append(from);
  const to = svg("text", { x: W - R - 140, y: H - 5 });
  to.textContent = new Date(t1).toLocaleTimeString() + " (" + Math.round((t1 - t0) / 1000) + " s)"; s.append(to);
  for (const [key, stroke, dash, width] of [["setWeight", "#8fb0ea", "5 4", 2], ["actualWeight", "#2a62c9", "", 2.5]]) {
    if (!hist.length) continue;
    let d = "";
    hist.forEach((h, i) => {
      const x = X(t(h.time)), y = Y(h[key]);
      d += i === 0 ? `M${x},${y}` : `H${x}V${y}`;
    });
    d += `H${X(now)}`;
    s.append(svg("path", { d, fill: "none", stroke, "stroke-width": width, "stroke-dasharray": dash }));
  }
  for (const x of ms) {
    const c = PHASE_COLOURS[x.phase] || "#6b7385";
    const tick = svg("line", { x1: X(t(x.finishedAt)), x2: X(t(x.finishedAt)), y1: H - B, y2: H - B + 7, stroke: c, "stroke-width": 3 });
    const tip = svg("title"); tip.textContent = localTime(x.finishedAt) + " " + x.phase + " " + (x.value || ""); tick.append(tip);
    s.append(tick);
  }
  return s;
}
const PHASE_COLOURS = { Successful: "#1a8f4c", Failed: "#c8332c", Error: "#c8332c", Inconclusive: "#c07d00", LowTraffic: "#c07d00", Terminated: "#7a5ea8" };

// spark draws a metric's recent values as dots (coloured by phase) against the numeric
// thresholds of its success (green) and failure (red) conditions.
function spark(m) {
  const W = 260, H = 54, P = 5;
  const s = svg("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": m.name + " measurements" });
  // Non-finite values arrive as the strings "NaN", "+Inf", "-Inf": listed, not drawn.
  const pts = (m.measurements || []).filter(x => x.values && x.values.length && typeof x.values[0] === "number" && isFinite(x.values[0]));
  const odd = (m.measurements || []).filter(x => x.values && x.values.length && typeof x.values[0] === "string").map(x => x.values[0]);
  const ok = thresholds(m.successCondition), bad = thresholds(m.failureCondition);
  const vals = pts.map(x => x.values[0]).concat(ok, bad);
  if (odd.length) {
    const tx = svg("text", { x: 8, y: 12, class: "nonfinite" });
    tx.textContent = odd.length + " × " + [...new Set(odd)].join("/") + " (not drawn)";
    s.append(tx);
  }
  if (!vals.length) { const tx = svg("text", { x: 8, y: 30 }); tx.textContent = odd.length ? "no finite value" : "no data yet"; s.append(tx); return s; }
  let lo = Math.min(0, ...vals), hi = Math.max(...vals);
  if (hi === lo) hi = lo + 1;
  hi += (hi - lo) * 0.1;
  const Y = v => H - P - (v - lo) / (hi - lo) * (H - 2 * P);
  const n = Math.max(pts.length, 2);
  const X = i => P + i / (n - 1) * (W - 2 * P);
  for (const [list, c] of [[ok, "#1a8f4c"], [bad, "#c8332c"]]) for (const v of list) {
    s.append(svg("line", { x1: 0, x2: W, y1: Y(v), y2: Y(v), stroke: c, "stroke-dasharray": "4 3", "stroke-width": 1 }));
    const tx = svg("text", { x: W - 44, y: Y(v) - 2 }); tx.textContent = String(v); s.append(tx);
  }
  if (pts.length > 1) {
    s.append(svg("polyline", { points: pts.map((x, i) => X(i) + "," + Y(x.values[0])).join(" "), fill: "none", stroke: "#9aa4b8" }));
  }
  pts.forEach((x, i) => {
    const c = PHASE_COLOURS[x.phase] || "#6b7385";
    const dot = svg("circle", { cx: X(i), cy: Y(x.values[0]), r: 3.5, fill: c });
    const tip = svg("title"); tip.textContent = x.value + " — " + (x.message || x.phase); dot.append(tip);
    s.append(dot);
  });
  return s;
}

// ---- rendering ----
function weightBar(ro) {
  const b = el("div", { class: "bar", title: `set ${ro.setWeight}% / applied ${ro.actualWeight}%` });
  const set = el("div", { class: "set" }); set.style.width = Math.max(0, Math.min(100, ro.setWeight)) + "%";
  const a = el("div", { class: "act" }); a.style.width = Math.max(0, Math.min(100, ro.actualWeight)) + "%";
  b.append(set, a);
  return b;
}
// The actions, as the API names them (analyzer.CheckCommand decides which are valid now:
// status lists them in ro.actions), with their buttons.
const ACTIONS = [
  ["promote", "Promote", "primary", {}, "continue past the pause or analysis"],
  ["promoteFull", "Promote full", "", { full: true }, "skip every remaining step"],
  ["abort", "Abort", "danger", {}, "every request back to stable now"],
  ["retry", "Retry", "", {}, "run the aborted release again from step 0"],
  ["start", "Start", "", {}, "start the next release"],
];
function actionButtons(ro) {
  const valid = new Set(ro.actions || []);
  const box = el("div", { class: "actions" });
  for (const [name, label, cls, body, what] of ACTIONS) {
    const api = name === "promoteFull" ? "promote" : name;
    const b = el("button", { type: "button", class: cls, "data-action": name,
      title: valid.has(name) ? what : "not valid now (" + what + ")", onclick: () => act(ro.name, api, body) }, label);
    if (!valid.has(name)) b.disabled = true;
    box.append(b);
  }
  return box;
}
function stepList(ro) {
  const ol = el("ol", { class: "steps", start: "0" });
  for (const s of ro.stepList || []) {
    ol.append(el("li", { class: "step-item " + s.state, "data-state": s.state, title: s.kind + " — " + s.state },
      s.state === "current" ? "▶ " : s.state === "done" ? "✔ " : s.state === "aborted" ? "✘ " : "", s.text));
  }
  return ol;
}
function endpoints(ro) {
  const box = el("div", { class: "endpoints" }, el("span", { class: "why" }, "healthy endpoints "));
  for (const c of ro.clusters || []) {
    const planes = c.planes || [];
    // sick: a data plane has no healthy endpoint of it; degraded: some are not healthy.
    const state = planes.some(p => p.healthy < 1) ? " sick" : planes.some(p => p.healthy < p.total) ? " degraded" : "";
    const chip = el("span", { class: "ep" + state, "data-cluster": c.name },
      el("b", {}, c.name), " (" + c.role + ")");
    if (!planes.length) chip.append(" no data plane reports it");
    for (const p of planes) {
      chip.append(" ", el("span", { class: "count", "data-plane": p.plane }, `${p.healthy}/${p.total}`), " " + p.plane);
      if (p.ejected > 0) chip.append(el("span", { class: "ejected" }, ` (${p.ejected} ejected)`));
    }
    box.append(chip);
  }
  return box;
}
function runTables(parent, runs) {
  for (const run of runs || []) {
    parent.append(el("div", { class: "run-title" }, `Analysis ${run.name} (${run.kind}, step ${run.step}) `,
      el("span", { class: "badge " + run.phase }, run.phase), " ", el("span", { class: "why" }, run.message || "")));
    const tb = el("tbody");
    const runEnded = !["Running", "Pending"].includes(run.phase);
    for (const m of run.metrics || []) {
      const last = (m.measurements || [])[m.measurements ? m.measurements.length - 1 : 0];
      // A metric still measuring when its run ended (another metric decided it) stopped
      // there: the server says Terminated; an older one left it Running or Pending.
      const phase = runEnded && ["Running", "Pending"].includes(m.phase) ? "Terminated" : m.phase;
      const cond = [];
      if (m.successCondition) cond.push(el("div", {}, "success: ", el("code", {}, m.successCondition)));
      if (m.failureCondition) cond.push(el("div", {}, "failure: ", el("code", {}, m.failureCondition)));
      tb.append(el("tr", {},
        el("td", {}, el("b", {}, m.name), m.dryRun ? " (dry run)" : "", el("div", { class: "why" }, m.provider || "")),
        el("td", {}, ...cond),
        el("td", {}, el("span", { class: "badge " + phase }, phase),
          el("div", { class: "why" }, `${m.successful} ok · ${m.failed} failed · ${m.inconclusive} inconclusive · ${m.error} error`)),
        el("td", {}, last ? el("code", { class: "value" }, last.value) : "-",
          el("div", { class: "why" }, (last && last.message) || m.message || ""),
          last && last.finishedAt ? el("div", { class: "why" }, localTime(last.finishedAt)) : null),
        el("td", {}, spark(m))));
    }
    parent.append(el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "metric"), el("th", {}, "condition"), el("th", {}, "phase"), el("th", {}, "latest"), el("th", {}, "recent values"))), tb));
  }
}
function eventList(ro) {
  const evs = (ro.events || []).slice(-8).reverse();
  if (!evs.length) return null;
  const ul = el("ul", { class: "events" });
  for (const e of evs) ul.append(el("li", { class: "event " + e.type }, el("span", { class: "when" }, localTime(e.time)), " ",
    el("b", {}, e.type), " ", e.message));
  return el("details", { class: "events-box", "data-key": "events" }, el("summary", {}, `Recent events (${(ro.events || []).length})`), ul);
}
// releaseHistory lists the earlier releases, newest first: revision, outcome, reason,
// when, and (unfolded) their whole chart and measurements.
function releaseHistory(ro) {
  const rels = (ro.releases || []).slice().reverse();
  if (!rels.length) return null;
  const box = el("div", { class: "releases" }, el("div", { class: "run-title" }, `Earlier releases (${rels.length})`));
  for (const r of rels) {
    const d = el("details", { class: "release", "data-key": "release " + r.startedAt, "data-revision": r.revision, "data-outcome": r.outcome },
      el("summary", {}, el("b", {}, r.revision), " ", el("span", { class: "badge outcome " + r.outcome }, r.outcome), " ",
        el("span", { class: "when" }, localTime(r.startedAt) + " → " + localTime(r.endedAt)), " ",
        el("span", { class: "why" }, `${r.stableService} → ${r.canaryService}, step ${r.step}, weight ${r.weight}%`),
        el("div", { class: "reason" }, r.reason || "")));
    d.append(weightChart(r.history, r.analysisRuns, r.startedAt, r.endedAt));
    runTables(d, r.analysisRuns);
    box.append(d);
  }
  return box;
}
function rolloutCard(ro) {
  const card = el("div", { class: "card rollout", "data-name": ro.name },
    el("div", { class: "card-head" },
      el("h3", {}, ro.name),
      el("span", { class: "badge phase " + ro.phase }, ro.phase),
      ro.aborted ? el("span", { class: "badge Degraded" }, "aborted") : null,
      actionButtons(ro)),
    el("div", { class: "facts" },
      el("span", {}, "step ", el("b", { class: "step" }, `${ro.step}/${ro.steps}`)),
      el("span", {}, "weight ", el("b", { class: "weight" }, `${ro.setWeight}%`), " set, ", el("b", {}, `${ro.actualWeight}%`), " applied"),
      el("span", {}, "stable ", el("b", {}, ro.stableService || "-"), " → canary ", el("b", {}, ro.canaryService || "-")),
      ro.revision ? el("span", {}, "revision ", el("b", {}, ro.revision)) : null,
      ro.startedAt ? el("span", {}, "started ", el("b", {}, localTime(ro.startedAt))) : null,
      ro.abortLatencySeconds != null ? el("span", {}, "abort applied in ", el("b", {}, ro.abortLatencySeconds.toFixed(3) + " s")) : null,
      ro.pauseEndsAt ? el("span", {}, "pause ends ", el("b", {}, localTime(ro.pauseEndsAt))) : null),
    stepList(ro),
    endpoints(ro),
    weightBar(ro),
    ro.persistError ? el("div", { class: "message err" }, "State not saved (only aborts take effect until it is): " + ro.persistError) : null,
    ro.message ? el("div", { class: "message" }, ro.message) : null,
    ro.waiting ? el("div", { class: "waiting" }, "waiting for: ", ro.waiting,
      ro.waitDeadline ? el("span", { class: "why" }, " — deadline " + localTime(ro.waitDeadline)) : null) : null,
    weightChart(ro.history, ro.analysisRuns, ro.startedAt, null),
    el("div", { class: "legend" }, el("span", {}, el("i", { class: "sw set" }), "set weight"),
      el("span", {}, el("i", { class: "sw act" }), "applied weight"), el("span", {}, "ticks: measurements")));
  runTables(card, ro.analysisRuns);
  const evs = eventList(ro);
  if (evs) card.append(evs);
  const rels = releaseHistory(ro);
  if (rels) card.append(rels);
  return card;
}
// reloadBanner shows the last refused configuration reload (the same for every rollout).
function reloadBanner() {
  const re = rollouts.map(r => r.reloadError).find(Boolean);
  if (!re) return null;
  return el("div", { class: "card reload-error" }, el("b", {}, "Configuration reload refused at " + localTime(re.at) + ": "),
    re.message, ...(re.diagnostics || []).map(d => el("div", {}, el("code", {}, d))));
}
// markLoaded sets data-loaded on <body> once rollouts and nodes have both been drawn
// (headless tests wait for it).
const loaded = new Set();
function markLoaded(what) {
  loaded.add(what);
  if (loaded.has("rollouts") && loaded.has("nodes")) document.body.dataset.loaded = "1";
}
function render() {
  markLoaded("rollouts");
  const root = document.getElementById("rollouts");
  const open = [];
  for (const d of root.querySelectorAll("details[open]")) {
    const card = d.closest(".rollout");
    if (!card) continue;
    if (d.dataset.key) open.push(`.rollout[data-name="${CSS.escape(card.dataset.name)}"] details[data-key="${CSS.escape(d.dataset.key)}"]`);
  }
  root.replaceChildren();
  if (!rollouts.length) { root.append(el("p", { class: "empty" }, "No rollouts configured.")); return; }
  const banner = reloadBanner();
  if (banner) root.append(banner);
  // Keep what the reader unfolded (events, earlier releases) across redraws.
  for (const ro of rollouts) root.append(rolloutCard(ro));
  for (const key of open) {
    const d = root.querySelector(key);
    if (d) d.open = true;
  }
}
function renderNodes(body) {
  markLoaded("nodes");
  const nodes = Array.isArray(body) ? body : ((body && body.nodes) || []);
  const root = document.getElementById("nodes");
  root.replaceChildren();
  if (!nodes.length) {
    root.append(el("p", { class: "empty" }, "No xDS clients connected (or xDS not configured)."));
    return;
  }
  const tb = el("tbody");
  for (const n of nodes) {
    const nacked = (n.types || []).some(t => t.nacked);
    const state = !n.connected ? el("span", { class: "badge" }, "gone")
      : nacked || n.reverted ? el("span", { class: "badge Failed" }, "NACK")
      : el("span", { class: "badge Healthy" }, "ACK");
    const types = (n.types || []).map(t => el("div", {},
      `${t.type} ${t.acked || "-"}`, t.sent && t.sent !== t.acked ? ` (sent ${t.sent})` : ""));
    tb.append(el("tr", { class: nacked ? "nack" : "ack" },
      el("td", {}, el("b", {}, n.id || n.key || "?"), el("div", { class: "why" }, [n.shape, n.cluster, n.userAgent].filter(Boolean).join(" · "))),
      el("td", {}, state),
      el("td", {}, String(n.appliedVersion != null ? n.appliedVersion : "-")),
      el("td", {}, ...types),
      el("td", {}, `${n.nacks || 0}`, n.lastNack ? el("div", { class: "why" }, `${n.lastNack.type} v${n.lastNack.snapshotVersion}: ${n.lastNack.message}`) : null)));
  }
  root.append(el("div", { class: "card" }, el("table", {}, el("thead", {}, el("tr", {},
    el("th", {}, "node"), el("th", {}, "state"), el("th", {}, "routes applied (version)"),
    el("th", {}, "ACKed per type"), el("th", {}, "NACKs"))), tb)));
}

// ---- data ----
async function refresh() {
  try {
    const r = await fetch("/api/v1/rollouts", { cache: "no-store" });
    if (r.ok) { rollouts = await r.json(); render(); }
  } catch (e) { /* the event stream reports the connection state */ }
}
async function refreshNodes() {
  try {
    const r = await fetch("/api/v1/xds/nodes", { cache: "no-store" });
    if (r.ok) renderNodes(await r.json());
  } catch (e) { /* keep the last view */ }
}
// connect follows the rollouts with server-sent events, or by polling every N ms with
// ?poll=N in the page's address (for proxies that buffer event streams, and for tests).
function connect() {
  const conn = document.getElementById("conn");
  const poll = parseInt(new URLSearchParams(location.search).get("poll") || "0", 10);
  if (poll > 0 || !window.EventSource) {
    conn.textContent = "polling"; conn.className = "conn live";
    setInterval(refresh, poll > 0 ? poll : 2000);
    return;
  }
  const es = new EventSource("/api/v1/events");
  es.addEventListener("rollouts", ev => {
    conn.textContent = "live"; conn.className = "conn live";
    rollouts = JSON.parse(ev.data); render();
  });
  es.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn"; };
}
document.getElementById("token-btn").addEventListener("click", () => {
  askToken();
  notice(sessionStorage.getItem(TOKEN_KEY) ? "Token set for this tab" : "Token cleared");
});
connect();
refresh();
refreshNodes();
setInterval(refreshNodes, 2000);
setInterval(() => { if (rollouts.length) render(); }, 5000); // keep the time axis moving
