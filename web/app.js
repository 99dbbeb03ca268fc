// revenant's status page: loads /api/* once, then follows /api/events (Server-Sent Events) and
// refetches a table only when an event says it changed. Every value goes into the DOM as text
// (never HTML): process names and paths come from other users' processes.
"use strict";

const MAX_EVENTS = 200;
const TIMELINE_MAX = 32;
const TIMELINE_W = 180;
const TIMELINE_H = 20;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  info: null,
  services: {},
  servicesAt: 0, // performance.now() when the services were fetched (uptimes move on from there)
  ports: [],
  zombies: [],
  zombiesAt: 0,
  timeline: {}, // name -> {events: [...], last_exit: {...}|null}
  events: [], // newest first
  liveFrom: Infinity, // ids from here on are new, not the stream's replay
};
window.revenantLoadId = Math.random().toString(36).slice(2); // tests: the page was not reloaded

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function dur(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function clock(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return ts;
  const p = (n, w) => String(n).padStart(w || 2, "0");
  return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." +
    p(d.getMilliseconds(), 3);
}

// ---- services -------------------------------------------------------------------------------

function exitText(e) {
  if (!e) return null;
  let what, cls;
  if (e.signal) { what = "signal " + e.signal; cls = "exit-signal"; }
  else if (e.code === 0) { what = "exit 0"; cls = "exit-clean"; }
  else { what = "exit " + e.code; cls = "exit-code"; }
  const why = [];
  if (e.killed_by && typeof e.killed_by === "object") {
    why.push("by " + (e.killed_by.comm || "?") + " (pid " + e.killed_by.pid + ")");
  }
  if (e.oom) why.push("out of memory");
  if (e.core_dumped) why.push("core dumped");
  if (e.reason) why.push(e.reason);
  const ago = Date.now() - new Date(e.ts).getTime();
  return { what: what, why: why.join(", "), cls: cls, ago: isNaN(ago) ? null : ago };
}

function userOf(name, pid) {
  // The user a service runs as, when the kernel says so: the owner of one of its sockets.
  let any = null;
  for (const r of state.ports) {
    if (r.service !== name) continue;
    if (r.pid === pid) return r.user;
    any = any || r.user;
  }
  return any;
}

function timelineSvg(name) {
  const h = state.timeline[name];
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "timeline");
  svg.setAttribute("width", TIMELINE_W);
  svg.setAttribute("height", TIMELINE_H);
  svg.setAttribute("viewBox", "0 0 " + TIMELINE_W + " " + TIMELINE_H);
  const axis = document.createElementNS(SVG, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", 0); axis.setAttribute("x2", TIMELINE_W);
  axis.setAttribute("y1", TIMELINE_H / 2); axis.setAttribute("y2", TIMELINE_H / 2);
  svg.appendChild(axis);
  const evs = (h && h.events) || [];
  if (!evs.length) return svg;
  const now = Date.now();
  const first = new Date(evs[0].ts).getTime();
  const span = Math.max(60000, now - first);
  const x = (t) => 4 + (TIMELINE_W - 8) * Math.min(1, Math.max(0, (t - (now - span)) / span));
  let runFrom = null;
  const bar = (a, b) => {
    const l = document.createElementNS(SVG, "line");
    l.setAttribute("class", "run");
    l.setAttribute("x1", a); l.setAttribute("x2", b);
    l.setAttribute("y1", TIMELINE_H / 2); l.setAttribute("y2", TIMELINE_H / 2);
    svg.appendChild(l);
  };
  for (const e of evs) {
    const t = new Date(e.ts).getTime();
    let cls = null, shape = "circle", y = TIMELINE_H / 2, title = e.type;
    switch (e.type) {
      case "service_start":
        cls = "start"; shape = "rect"; runFrom = x(t); title = "start, pid " + e.pid; break;
      case "service_exit":
        if (runFrom !== null) bar(runFrom, x(t));
        runFrom = null;
        cls = e.signal || e.code ? "exit" : "exit0"; shape = "rect";
        title = "exit: " + exitText(e).what; break;
      case "service_restart":
        cls = "restart"; y = 4; title = "restart #" + e.attempt + " in " + e.delay_ms + " ms"; break;
      case "service_give_up":
        cls = "give_up"; shape = "rect"; title = "gave up: " + (e.reason || ""); break;
      case "health":
        cls = e.ok ? "healthy" : "unhealthy"; y = TIMELINE_H - 4;
        title = e.ok ? "healthy" : "unhealthy: " + (e.detail || ""); break;
      case "port_migrated":
        cls = "migrate"; y = 4; title = "moved from port " + e.from + " to " + e.to; break;
      default:
        continue;
    }
    let m;
    if (shape === "rect") {
      m = document.createElementNS(SVG, "rect");
      m.setAttribute("x", x(t) - 1.5); m.setAttribute("y", 2);
      m.setAttribute("width", 3); m.setAttribute("height", TIMELINE_H - 4);
    } else {
      m = document.createElementNS(SVG, "circle");
      m.setAttribute("cx", x(t)); m.setAttribute("cy", y); m.setAttribute("r", 3);
    }
    m.setAttribute("class", cls);
    const tt = document.createElementNS(SVG, "title");
    tt.textContent = clock(e.ts) + " " + title;
    m.appendChild(tt);
    svg.appendChild(m);
  }
  if (runFrom !== null) bar(runFrom, x(now));
  return svg;
}

function controlButtons(name) {
  const td = el("td", "actions");
  if (!state.info || !state.info.control) return td;
  for (const cmd of ["start", "stop", "restart"]) {
    const b = el("button", "act", cmd);
    b.dataset.cmd = cmd;
    b.addEventListener("click", () => control(cmd, name));
    td.appendChild(b);
  }
  return td;
}

function renderServices() {
  const tbody = $("services").tBodies[0];
  const names = Object.keys(state.services);
  const rows = [];
  const elapsed = performance.now() - state.servicesAt;
  for (const name of names) {
    const s = state.services[name];
    const tr = el("tr");
    tr.dataset.service = name;
    tr.dataset.pid = s.pid === null ? "" : s.pid;
    tr.appendChild(el("td", "name", name));
    const st = el("td", "c-state");
    st.appendChild(el("span", "badge " + s.state, s.state));
    tr.appendChild(st);
    tr.appendChild(el("td", "num c-pid", s.pid === null ? "–" : s.pid));
    // The kernel's word (a socket's owner) first, else the configured user (status says it).
    tr.appendChild(el("td", "c-user", (s.pid && userOf(name, s.pid)) || s.user || "–"));
    tr.appendChild(el("td", "num c-port", s.port === null ? "–" : s.port));
    tr.appendChild(el("td", "num c-restarts", s.restarts));
    const he = el("td", "c-health");
    he.appendChild(el("span", "badge " + s.health, s.health));
    tr.appendChild(he);
    const up = el("td", "num c-uptime", s.uptime_ms === undefined ? "–" : dur(s.uptime_ms + elapsed));
    if (s.uptime_ms !== undefined) up.dataset.base = s.uptime_ms;
    tr.appendChild(up);
    const lx = el("td", "c-last-exit");
    // The stream's copy is the newest; status keeps one from before the page's ring of events.
    const last = exitText((state.timeline[name] && state.timeline[name].last_exit) || s.last_exit);
    if (last) {
      lx.appendChild(el("span", last.cls, last.what));
      if (last.why) lx.appendChild(el("span", "muted", " " + last.why));
      if (last.ago !== null) lx.appendChild(el("span", "muted", " · " + dur(last.ago) + " ago"));
      lx.dataset.exit = last.what;
    } else {
      lx.textContent = "–";
    }
    tr.appendChild(lx);
    const tl = el("td", "c-history");
    tl.appendChild(timelineSvg(name));
    tr.appendChild(tl);
    tr.appendChild(controlButtons(name));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  const running = names.filter((n) => state.services[n].state === "running").length;
  $("svc-count").textContent = running + " of " + names.length + " running";
}

function tickUptimes() {
  const elapsed = performance.now() - state.servicesAt;
  for (const td of document.querySelectorAll("td.c-uptime[data-base]")) {
    td.textContent = dur(Number(td.dataset.base) + elapsed);
  }
  for (const td of document.querySelectorAll("td.c-age[data-base]")) {
    td.textContent = dur(Number(td.dataset.base) + performance.now() - state.zombiesAt);
  }
}

// ---- ports and zombies ----------------------------------------------------------------------

function renderPorts() {
  const rows = state.ports.map((r) => {
    const tr = el("tr");
    tr.dataset.port = r.port;
    const addr = r.family === "ipv6" ? "[" + r.addr + "]:" + r.port : r.addr + ":" + r.port;
    tr.appendChild(el("td", "mono", r.proto));
    tr.appendChild(el("td", "mono", addr));
    tr.appendChild(el("td", null, r.state));
    tr.appendChild(el("td", "num", r.pid === null ? "?" : r.pid));
    tr.appendChild(el("td", "mono", r.comm === null ? "?" : r.comm));
    tr.appendChild(el("td", null, r.user));
    tr.appendChild(el("td", r.service ? "name" : "muted", r.service || "–"));
    tr.appendChild(el("td", "num", (r.holders || []).join(",") || "–"));
    return tr;
  });
  $("ports").tBodies[0].replaceChildren(...rows);
  $("port-count").textContent = state.ports.length + " sockets";
}

function renderZombies() {
  const rows = state.zombies.map((z) => {
    const tr = el("tr");
    tr.dataset.pid = z.pid;
    tr.appendChild(el("td", "num", z.pid));
    tr.appendChild(el("td", "mono", z.comm));
    tr.appendChild(el("td", "mono", z.parent_comm + " (" + z.ppid + ")"));
    const age = el("td", "num c-age", dur(z.age_ms));
    if (z.age_ms !== null) age.dataset.base = z.age_ms;
    tr.appendChild(age);
    tr.appendChild(el("td", z.service ? "name" : "muted", z.service || "–"));
    return tr;
  });
  $("zombies").tBodies[0].replaceChildren(...rows);
  $("zombies").hidden = rows.length === 0;
  $("no-zombies").hidden = rows.length !== 0;
  $("zombie-count").textContent = rows.length ? String(rows.length) : "";
}

// ---- events ---------------------------------------------------------------------------------

function summary(e) {
  const parts = [];
  const add = (k, label) => {
    if (e[k] !== undefined && e[k] !== null) parts.push((label || k) + " " + e[k]);
  };
  switch (e.type) {
    case "service_exit": {
      const x = exitText(e);
      parts.push(e.service, "pid " + e.pid, x.what + (x.why ? " (" + x.why + ")" : ""));
      break;
    }
    case "service_start": parts.push(e.service); add("pid"); add("port"); break;
    case "service_restart":
      parts.push(e.service, "attempt " + e.attempt, "in " + e.delay_ms + " ms");
      if (e.reason) parts.push(e.reason);
      break;
    case "health": parts.push(e.service, e.ok ? "ok" : "failing", e.detail || ""); break;
    case "port_collision":
      parts.push((e.comm || "?") + " (" + e.pid + ") lost " + e.addr + ":" + e.port + " to " +
        (e.owner_comm || "?") + " (" + e.owner_pid + ")", e.action);
      break;
    case "port_listen": case "port_release":
      parts.push(e.addr + ":" + e.port, (e.comm || "") + " (" + e.pid + ")");
      if (e.service) parts.push(e.service);
      break;
    case "zombie": case "zombie_reaped":
      parts.push(e.comm + " (" + e.pid + ") of " + (e.parent_comm || "") + " (" + e.ppid + ")",
        "age " + e.age_ms + " ms");
      if (e.action) parts.push(e.action);
      break;
    default:
      for (const k of Object.keys(e)) {
        if (k !== "ts" && k !== "type" && typeof e[k] !== "object") parts.push(k + " " + e[k]);
      }
  }
  return parts.filter((p) => p !== "" && p !== undefined && p !== null).join(" · ");
}

function tone(e) {
  if (e.type === "service_exit" || e.type === "zombie" || e.type === "port_collision" ||
      e.type === "service_give_up" || e.type === "events_lost" || (e.type === "health" && !e.ok))
    return "bad";
  if (e.type === "service_restart" || e.type === "port_migrated" || e.type === "service_warning")
    return "warn";
  if (e.type === "service_start" || (e.type === "health" && e.ok) || e.type === "zombie_reaped")
    return "good";
  return "";
}

function eventItem(e, fresh) {
  const li = el("li", tone(e) + (fresh ? " fresh" : ""));
  li.dataset.type = e.type;
  li.dataset.id = e._id;
  if (e.service) li.dataset.service = e.service;
  li.appendChild(el("time", null, clock(e.ts)));
  li.appendChild(el("span", "type", e.type));
  li.appendChild(el("span", "summary", summary(e)));
  return li;
}

function addEvent(e, fresh) {
  state.events.unshift(e);
  const list = $("events");
  list.insertBefore(eventItem(e, fresh), list.firstChild);
  while (state.events.length > MAX_EVENTS) {
    state.events.pop();
    list.removeChild(list.lastChild);
  }
}

// The stream replays events this page may already know (its timeline came from /api/timeline):
// a lifecycle event is added to a timeline only when newer than what the timeline holds.
function noteLifecycle(e) {
  if (!e.service) return false;
  const kinds = ["service_start", "service_exit", "service_restart", "service_give_up", "health",
    "port_migrated", "service_leftover"];
  if (!kinds.includes(e.type)) return false;
  const h = state.timeline[e.service] || (state.timeline[e.service] = { events: [], last_exit: null });
  const last = h.events[h.events.length - 1];
  if (last && last.ts > e.ts) return true;
  if (last && last.ts === e.ts && last.type === e.type) return true;
  const compact = Object.assign({}, e);
  delete compact.service; delete compact.command; delete compact._id;
  h.events.push(compact);
  if (h.events.length > TIMELINE_MAX) h.events.shift();
  if (e.type === "service_exit") h.last_exit = e;
  return true;
}

// ---- refreshes, at most one in flight per table ---------------------------------------------

const pending = {};
function refresh(what, fn, delay) {
  if (pending[what]) return;
  pending[what] = setTimeout(async () => {
    try { await fn(); } catch (err) { console.warn(err); }
    pending[what] = null;
  }, delay || 100);
}

async function loadServices() {
  const st = await api("/api/status");
  state.services = st.services;
  state.servicesAt = performance.now();
  renderServices();
}
async function loadPorts() {
  state.ports = await api("/api/ports");
  renderPorts();
  renderServices(); // users come from the ports
}
async function loadZombies() {
  state.zombies = await api("/api/zombies");
  state.zombiesAt = performance.now();
  renderZombies();
}

function onEvent(e, fresh) {
  if (noteLifecycle(e)) refresh("services", loadServices);
  if (e.type.startsWith("port_") || e.type === "service_start") refresh("ports", loadPorts, 200);
  if (e.type === "zombie" || e.type === "zombie_reaped") refresh("zombies", loadZombies);
  addEvent(e, fresh);
}

// ---- control --------------------------------------------------------------------------------

async function control(cmd, name) {
  const token = $("token").value.trim();
  const msg = $("control-msg");
  sessionStorage.setItem("revenant-token", token);
  msg.textContent = cmd + " " + name + "…";
  try {
    const r = await fetch("/api/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Revenant-Token": token },
      body: JSON.stringify({ cmd: cmd, service: name }),
    });
    const j = await r.json();
    msg.textContent = r.ok ? cmd + " " + name + ": accepted" : "refused: " + (j.error || r.status);
  } catch (err) {
    msg.textContent = "failed: " + err.message;
  }
}

function setupControl() {
  if (!state.info.control) return;
  // A token may come in the fragment (never sent to the server): #token=...
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("revenant-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  $("token").value = sessionStorage.getItem("revenant-token") || "";
  $("token").title = "root can read it from " + state.info.token_file;
  $("control").hidden = false;
}

// ---- start ----------------------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "live off"; };
  es.addEventListener("agent", (m) => {
    const a = JSON.parse(m.data);
    if (state.info && a.agent_pid !== state.info.agent_pid) location.reload(); // a new agent
    state.liveFrom = a.next_event_id;
  });
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch (err) { return; }
    e._id = m.lastEventId;
    onEvent(e, Number(m.lastEventId) >= state.liveFrom);
  };
}

async function main() {
  state.info = await api("/api/info");
  $("agent").textContent = "agent pid " + state.info.agent_pid + " · " + state.info.config +
    " · v" + state.info.version;
  setupControl();
  const [tl] = await Promise.all([api("/api/timeline"), loadPorts(), loadZombies()]);
  state.timeline = tl.services;
  await loadServices();
  connect();
  setInterval(tickUptimes, 1000);
  document.body.dataset.ready = "1";
}

main().catch((err) => {
  $("agent").textContent = "cannot reach the agent: " + err.message;
});
