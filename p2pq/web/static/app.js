// The p2pq dashboard: plain JavaScript, no build step, no outside resources.
//
// Data comes from the node that served this page: one server-sent event stream
// (/api/stream: "hello", then a "snapshot" every second and each "note" as it
// happens) plus JSON calls for the task table and a task's detail. The node
// forwards what only the leader knows, so the page keeps working when its node
// loses the leadership; if the node itself goes away the page says so and
// reconnects. The stream is read with fetch (not EventSource) so the cluster
// token can travel in a header rather than in the URL.
"use strict";

const state = {
  token: null, snapshot: null, chart: [], filter: "", offset: 0, limit: 15,
  selected: null, leader: undefined, lastData: 0, tasksDue: true, tasksBusy: false,
};
const $ = (id) => document.getElementById(id);
const STATES = ["blocked", "queued", "running", "succeeded", "failed", "cancelled"];

// -- the token (needed to submit and cancel; to read too when the API is exposed) --
function loadToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {            // #token=... : keep it, and take it out of the address bar
    localStorage.setItem("p2pq.token", hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = localStorage.getItem("p2pq.token");
}

// What the page says when the node wants the token, in words for the person at the screen
// (the server's own message is written for scripts: "send Authorization: Bearer ...").
const TOKEN_FILE = "the file named token in the cluster directory (made by p2pq init; " +
  "~/.config/p2pq/cluster/token unless P2PQ_CLUSTER_DIR says otherwise)";
const TOKEN_WORDS = {
  write: "To submit or cancel from this page, paste the cluster's token below: the text of " + TOKEN_FILE + ".",
  read: "This node's dashboard is open to the network, so it shows the cluster only to those who have the " +
    "cluster's token. Paste it below: the text of " + TOKEN_FILE + ".",
  wrong: "That token was not accepted: it must be the whole text of " + TOKEN_FILE + ". Paste it again.",
  missing: "This node has no cluster token file, so nothing can be submitted from this page; whoever runs the " +
    "node can create one with p2pq init.",
  replace: "A token is set. Paste another one to replace it.",
};

function tokenWords(message, reading) {
  const text = message || "";
  if (text.startsWith("wrong token")) return TOKEN_WORDS.wrong;
  if (text.includes("is missing")) return TOKEN_WORDS.missing;
  return reading ? TOKEN_WORDS.read : TOKEN_WORDS.write;
}

function askForToken(why) {
  $("token-row").hidden = false;
  $("token-input").focus();
  setStatus(why, true);
}

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  return headers;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: authHeaders((options || {}).headers) }));
  let body;
  try { body = await response.json(); } catch (e) { body = { ok: false, message: response.statusText }; }
  if (response.status === 401) { body.message = tokenWords(body.message, false); askForToken(body.message); }
  if (!body.ok) { const err = new Error(body.message || "request failed"); err.status = response.status; throw err; }
  return body;
}

// -- the live stream -------------------------------------------------------------------
async function connect() {
  let delay = 500;
  for (;;) {
    try {
      const response = await fetch("/api/stream", { headers: authHeaders({ Accept: "text/event-stream" }) });
      if (response.status === 401) { askForToken(TOKEN_WORDS.read); }
      if (!response.ok) throw new Error("HTTP " + response.status);
      setLive(true, "live");
      delay = 500;
      await readEvents(response.body.getReader());
    } catch (e) { /* the node went away or refused: try again below */ }
    setLive(false, "reconnecting to the node…");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 3000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      handleFrame(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
}

function handleFrame(frame) {
  let kind = "message", data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const body = JSON.parse(data);
  if (kind === "hello") onHello(body);
  else if (kind === "snapshot") onSnapshot(body);
  else if (kind === "note") onNote(body, true);
}

function onHello(body) {
  state.chart = body.chart || [];
  $("events").innerHTML = "";
  for (const note of body.events || []) onNote(note, false);
  onSnapshot(body);
}

function onSnapshot(snap) {
  const previous = state.snapshot;
  state.snapshot = snap;
  state.lastData = Date.now();
  if (previous && snap.point) state.chart.push(snap.point);
  state.chart = state.chart.slice(-240);
  renderHeader(snap, previous);
  renderCluster(snap);
  renderCounters(snap);
  renderChart();
  state.tasksDue = true;
}

function onNote(note, live) {
  const list = $("events");
  const item = document.createElement("li");
  item.className = "kind-" + note.kind + (note.failover ? " failover" : "") + (live ? " fresh" : "");
  item.dataset.kind = note.kind;
  item.innerHTML = "<time></time><span></span>";
  item.firstChild.textContent = clock(note.at);
  item.lastChild.textContent = note.text;
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
  $("events-seen-by").textContent = "as seen by " + note.seen_by;
  if (live && note.kind === "node_dead" && state.snapshot && note.node === state.snapshot.cluster.leader) {
    showBanner("Failover: leader " + note.node + " is down — electing a new leader…", true);
  }
}

// -- header and banner ---------------------------------------------------------------------
function renderHeader(snap, previous) {
  const c = snap.cluster;
  $("leader-name").textContent = c.leader || "none (election in progress)";
  $("term").textContent = "term " + c.term;
  $("node-name").textContent = snap.node;
  // The same word as this node's circle in the picture (a follower's core role is "member");
  // an election in progress shows too.
  const me = c.members.find((m) => m.self);
  const role = me ? me.role : c.role;
  $("node-role").textContent = ["leader", "member"].includes(c.role) || c.role === role ? role : role + " (" + c.role + ")";
  if (state.leader !== undefined && c.leader && c.leader !== state.leader) {
    const was = state.leader ? " (was " + state.leader + ")" : "";
    showBanner("New leader: " + c.leader + ", term " + c.term + was, true);
  }
  if (c.leader) state.leader = c.leader;
  else if (state.leader === undefined) state.leader = null;
  if (!snap.leader_reachable) setLive(true, "live — leader not reachable: " + (snap.leader_error || ""));
  else setLive(true, "live");
}

function showBanner(text, failover) {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = failover ? "failover" : "";
  banner.hidden = false;
  clearTimeout(showBanner.timer);
  showBanner.timer = setTimeout(() => { banner.hidden = true; }, 20000);
}

function setLive(up, text) {
  $("live-dot").className = "dot " + (up ? "live" : "down");
  $("live-text").textContent = text;
}

// -- the cluster picture (SVG) ------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function layout(members) {
  const cx = 210, cy = 150, r = members.length > 1 ? 105 : 0;
  return members.map((m, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / members.length;
    return { m, x: cx + r * Math.cos(angle), y: cy + r * Math.sin(angle) };
  });
}

function renderCluster(snap) {
  const root = $("cluster");
  root.innerHTML = "";
  const spots = layout(snap.cluster.members);
  const leader = spots.find((s) => s.m.node === snap.cluster.leader);
  if (leader) {
    for (const s of spots) {
      if (s === leader) continue;
      const up = s.m.alive && leader.m.alive;
      root.append(svg("line", { x1: leader.x, y1: leader.y, x2: s.x, y2: s.y, "stroke-width": 3,
        stroke: up ? "var(--up)" : "var(--dead)", "stroke-dasharray": up ? "" : "6 5",
        class: "link " + (up ? "up" : "down"), "data-to": s.m.node }));
    }
  } else {
    root.append(svg("text", { x: 210, y: 290, "text-anchor": "middle", class: "role" }, "no leader: election in progress"));
  }
  for (const s of spots) root.append(nodeShape(s, snap.node));
}

function nodeShape(spot, here) {
  const m = spot.m, role = m.alive ? m.role : "dead";
  const g = svg("g", { class: "node", "data-node": m.node, "data-role": role, "data-alive": m.alive });
  const color = { leader: "var(--leader)", follower: "var(--follower)", member: "var(--member)", dead: "var(--dead)" }[role];
  g.append(svg("circle", { cx: spot.x, cy: spot.y, r: 30, fill: "#fff", stroke: color, "stroke-width": role === "leader" ? 6 : 4 }));
  if (role === "leader") g.append(svg("text", { x: spot.x, y: spot.y - 36, "text-anchor": "middle" }, "★"));
  if (!m.alive) g.append(svg("text", { x: spot.x, y: spot.y + 6, "text-anchor": "middle", fill: "var(--dead)", "font-size": 26 }, "✕"));
  g.append(svg("text", { x: spot.x, y: spot.y + (m.alive ? -2 : -12), "text-anchor": "middle", "font-weight": 600 }, m.node));
  // Running over slots: tasks the leader sent ahead (prefetch) wait at the node for a slot.
  const known = !(m.running === null || m.running === undefined);
  const busy = known ? Math.min(m.running, m.slots) : 0, waiting = known ? m.running - busy : 0;
  const load = known ? busy + "/" + m.slots + (waiting > 0 ? " +" + waiting + " waiting" : "") : "";
  if (m.alive) g.append(svg("text", { x: spot.x, y: spot.y + 13, "text-anchor": "middle", class: "role" }, load));
  g.append(svg("text", { x: spot.x, y: spot.y + 46, "text-anchor": "middle", class: "role" }, role + " · prio " + m.priority));
  if (m.node === here) g.append(svg("text", { x: spot.x, y: spot.y + 58, "text-anchor": "middle", class: "here" }, "this page's node"));
  return g;
}

// -- counters, rates, priorities -----------------------------------------------------------------
function renderCounters(snap) {
  const q = snap.queue;
  for (const s of STATES) $("count-" + s).textContent = q ? q.counts[s] : "–";
  const r = snap.rates, rep = snap.replication;
  const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(1));
  $("rates").innerHTML = "";
  const parts = [["submitted/s", fmt(r.submitted_per_s)], ["finished/s", fmt(r.finished_per_s)],
    ["dispatched/s", fmt(r.dispatched_per_s)], ["tasks", q ? q.total : "–"],
    ["replication lag", rep.lag === null ? "–" : rep.lag]];
  for (const [label, value] of parts) {
    const span = document.createElement("span");
    span.innerHTML = "<b></b> " + label + " &nbsp; ";
    span.firstChild.textContent = value;
    $("rates").append(span);
  }
  renderPriorities(q);
}

function renderPriorities(q) {
  const box = $("priorities");
  box.innerHTML = "";
  const entries = q ? Object.entries(q.by_priority) : [];
  if (!entries.length) { box.innerHTML = '<span class="muted">nothing queued</span>'; return; }
  const max = Math.max(...entries.map(([, n]) => n));
  for (const [prio, n] of entries) {
    const row = document.createElement("div");
    row.className = "prio";
    row.innerHTML = '<span class="prio-badge"></span><span class="bar"></span><span></span>';
    row.children[0].textContent = prio;
    row.children[0].classList.toggle("urgent", Number(prio) <= 2);
    row.children[1].style.width = Math.max(2, (160 * n) / max) + "px";
    row.children[2].textContent = n;
    box.append(row);
  }
}

// -- the throughput chart (canvas) -------------------------------------------------------------------
function renderChart() {
  const canvas = $("chart"), ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 560, h = canvas.clientHeight || 200;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, w, h);
  const points = state.chart, left = 36, bottom = h - 18, span = 120;
  const now = points.length ? points[points.length - 1][0] : Date.now() / 1000;
  const top = niceMax(Math.max(1, ...points.map((p) => Math.max(p[1], p[2]))));
  drawAxes(ctx, w, h, left, bottom, top, span);
  const x = (t) => left + ((t - (now - span)) / span) * (w - left - 6);
  const y = (v) => bottom - (v / top) * (bottom - 8);
  // finished first and wider, submitted on top: when the two agree both stay visible
  for (const [index, color, width] of [[2, "#2ea35a", 4], [1, "#2f6fd6", 1.5]]) {
    ctx.beginPath(); ctx.strokeStyle = color; ctx.lineWidth = width;
    points.filter((p) => p[0] >= now - span).forEach((p, i) => {
      if (i === 0) ctx.moveTo(x(p[0]), y(p[index])); else ctx.lineTo(x(p[0]), y(p[index]));
    });
    ctx.stroke();
  }
}

function niceMax(v) {
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function drawAxes(ctx, w, h, left, bottom, top, span) {
  ctx.strokeStyle = "#e1e4ea"; ctx.fillStyle = "#6b7385"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const yy = bottom - (i / 4) * (bottom - 8);
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - 6, yy); ctx.stroke();
    ctx.fillText(String(Math.round((top * i) / 4 * 10) / 10), 2, yy + 4);
  }
  for (let s = 0; s <= span; s += 30) {
    const xx = left + (s / span) * (w - left - 6);
    const label = s === span ? "now" : "-" + (span - s) + " s";
    ctx.fillText(label, Math.min(xx - 10, w - 6 - ctx.measureText(label).width), h - 4);
  }
}

// -- the task table -------------------------------------------------------------------------------------
async function refreshTasks() {
  if (!state.tasksDue || state.tasksBusy) return;
  state.tasksDue = false; state.tasksBusy = true;
  try {
    const params = new URLSearchParams({ limit: state.limit, offset: state.offset });
    if (state.filter) params.set("state", state.filter);
    const body = await api("/api/tasks?" + params);
    renderTasks(body);
    if (state.selected) await showTask(state.selected, false);
  } catch (e) {
    $("tasks-total").textContent = "(" + e.message + ")";
  } finally { state.tasksBusy = false; }
}

function renderTasks(body) {
  const tbody = $("tasks").querySelector("tbody");
  tbody.innerHTML = "";
  for (const t of body.tasks) tbody.append(taskRow(t));
  $("tasks-total").textContent = body.total + " task(s)";
  const last = Math.min(body.total, body.offset + body.tasks.length);
  $("page").textContent = body.total ? body.offset + 1 + "–" + last : "";
  $("prev").disabled = body.offset === 0;
  $("next").disabled = last >= body.total;
}

function taskRow(t) {
  const row = document.createElement("tr");
  row.dataset.task = t.id;
  row.dataset.state = t.state;
  if (t.id === state.selected) row.className = "selected";
  const last = t.attempts.length ? t.attempts[t.attempts.length - 1].node : "";
  const cells = [t.id, null, null, [t.target].concat(t.args.map(String)).join(" "), t.attempts.length, last, clock(t.submitted_at)];
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    if (i === 1) td.append(badge("state-" + t.state, t.state));
    else if (i === 2) td.append(prioBadge(t.priority));
    else td.textContent = text;
    if (i === 3) td.className = "task";
    row.append(td);
  });
  row.addEventListener("click", () => showTask(t.id, true));
  return row;
}

function badge(cls, text) {
  const span = document.createElement("span");
  span.className = "badge " + cls;
  span.textContent = text;
  return span;
}

function prioBadge(priority) {
  const span = document.createElement("span");
  span.className = "prio-badge" + (priority <= 2 ? " urgent" : "");
  span.textContent = priority;
  return span;
}

// -- one task's detail ----------------------------------------------------------------------------------
async function showTask(id, chosen) {
  state.selected = id;
  for (const row of $("tasks").querySelectorAll("tbody tr")) row.classList.toggle("selected", row.dataset.task === id);
  try {
    const { task } = await api("/api/tasks/" + encodeURIComponent(id));
    let output = null;
    if (task.attempts.length) output = await api("/api/tasks/" + encodeURIComponent(id) + "/output?tail=2000").catch(() => null);
    renderDetail(task, output);
  } catch (e) {
    if (chosen) $("detail").textContent = e.message;
  }
}

function renderDetail(task, output) {
  $("detail-id").textContent = task.id;
  const box = $("detail");
  box.innerHTML = "";
  const dl = document.createElement("dl");
  const value = task.result && task.result.value !== undefined ? JSON.stringify(task.result.value) : "";
  const rows = [["state", badge("state-" + task.state, task.state)], ["task", task.kind + ": " + task.target + " " + task.args.join(" ")],
    ["priority", String(task.priority)], ["retries", String(task.retries)], ["submitted", clock(task.submitted_at)]];
  if (value) rows.push(["value", value.length > 300 ? value.slice(0, 300) + "…" : value]);
  if (task.result && task.result.error) rows.push(["error", task.result.error]);
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.style.margin = 0;
    if (typeof v === "string") dd.textContent = v; else dd.append(v);
    dl.append(dt, dd);
  }
  box.append(dl, attemptsTable(task));
  if (output && (output.stdout || output.stderr)) box.append(outputBlock(output));
  if (["blocked", "queued", "running"].includes(task.state)) box.append(cancelButton(task.id));
}

function attemptsTable(task) {
  const table = document.createElement("table");
  table.className = "attempts";
  table.innerHTML = "<thead><tr><th>attempt</th><th>node</th><th>start</th><th>end</th><th>outcome</th></tr></thead><tbody></tbody>";
  for (const a of task.attempts) {
    const row = document.createElement("tr");
    for (const text of [a.id, a.node, clock(a.started_at), clock(a.ended_at)]) {
      const td = document.createElement("td"); td.textContent = text; row.append(td);
    }
    const td = document.createElement("td");
    td.append(badge("outcome-" + (a.outcome || "running"), a.outcome || "running"));
    row.append(td);
    table.tBodies[0].append(row);
  }
  if (!task.attempts.length) table.tBodies[0].innerHTML = '<tr><td colspan="5" class="muted">not run yet</td></tr>';
  return table;
}

function outputBlock(output) {
  const pre = document.createElement("pre");
  pre.textContent = (output.stdout || "") + (output.stderr ? "\n[stderr]\n" + output.stderr : "");
  return pre;
}

function cancelButton(id) {
  const button = document.createElement("button");
  button.type = "button"; button.textContent = "cancel task";
  button.addEventListener("click", async () => {
    try { await api("/api/tasks/" + encodeURIComponent(id) + "/cancel", { method: "POST" }); state.tasksDue = true; }
    catch (e) { setStatus(e.message, true); }
  });
  return button;
}

// -- the submit form ---------------------------------------------------------------------------------------
function parseTask(text, kind) {
  const words = text.trim().match(/"[^"]*"|\S+/g) || [];
  const strip = (w) => (w.startsWith('"') && w.endsWith('"') && w.length > 1 ? w.slice(1, -1) : w);
  const args = words.slice(1).map((w) => {
    if (kind === "shell") return strip(w);
    try { return JSON.parse(w); } catch (e) { return strip(w); }   // like the CLI: JSON values, else strings
  });
  return { task: words.length ? strip(words[0]) : "", args };
}

async function onSubmit(event) {
  event.preventDefault();
  const tokenInput = $("token-input").value.trim();
  if (tokenInput) { state.token = tokenInput; localStorage.setItem("p2pq.token", tokenInput); }
  const kind = $("submit-kind").value;
  const body = parseTask($("submit-task").value, kind);
  if (kind) body.kind = kind;
  body.priority = Number($("submit-priority").value || 5);
  body.retries = Number($("submit-retries").value || 0);
  if ($("submit-timeout").value) body.timeout_s = Number($("submit-timeout").value);
  setStatus("submitting…", false);
  try {
    const reply = await api("/api/tasks", { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    setStatus("submitted " + reply.id + (reply.replicated ? "" : " (unreplicated)"), false);
    $("token-row").hidden = true;
    state.tasksDue = true;
    showTask(reply.id, true);
  } catch (e) { setStatus(e.message, true); }
}

function setStatus(text, error) {
  $("submit-status").textContent = text || "";
  $("submit-status").className = error ? "error" : "";
}

// -- small things ----------------------------------------------------------------------------------------------
function clock(t) {
  if (t === null || t === undefined) return "";
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function watchStaleness() {
  // A stream can stall without closing (a frozen node): say so after 5 s without data.
  if (state.lastData && Date.now() - state.lastData > 5000) setLive(false, "no data from the node for " + Math.round((Date.now() - state.lastData) / 1000) + " s");
}

function wireControls() {
  $("submit-form").addEventListener("submit", onSubmit);
  $("token-button").addEventListener("click", () => askForToken(state.token ? TOKEN_WORDS.replace : TOKEN_WORDS.write));
  for (const button of $("filters").querySelectorAll("button[data-state]")) {
    button.addEventListener("click", () => {
      for (const b of $("filters").querySelectorAll("button[data-state]")) b.classList.toggle("active", b === button);
      state.filter = button.dataset.state; state.offset = 0; state.tasksDue = true;
    });
  }
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); state.tasksDue = true; });
  $("next").addEventListener("click", () => { state.offset += state.limit; state.tasksDue = true; });
  window.addEventListener("resize", renderChart);
}

loadToken();
wireControls();
connect();
setInterval(refreshTasks, 1000);
setInterval(watchStaleness, 1000);
