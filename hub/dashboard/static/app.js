// The Ferry hub's web dashboard: plain JavaScript, no build step, nothing fetched from
// elsewhere. Everything it shows comes from the hub's JSON API with the user's own token
// (sent in the Authorization header, kept in sessionStorage, never in a URL), so the
// hub's rules decide what a user sees and may do; the buttons shown follow the user's
// rules (GET /dashboard/me) and the hub still decides every click.
// Live: GET /dashboard/events read with fetch (a stream of "which topic changed"); the
// page then reads the changed view again. Without a stream it polls.
"use strict";

const API = document.querySelector('meta[name="ferry-api"]').content;
const PAGE = 50;            // agents or jobs a page
const TASK_PAGE = 100;      // tasks a page
const BUCKET_PAGE = 1000;   // buckets on the timeline at once
const POLL_MS = 5000;       // polling, when no event stream can be had
const JOB_STATUSES = ["init", "pending", "waiting", "running", "paused", "failed", "aborted", "done"];
const TASK_STATUSES = ["pending", "queued", "booting", "executing", "failed", "onhold", "excluded", "done"];

const state = { token: sessionStorage.getItem("ferry.token"), me: null, user: null, view: null };

// ---------------------------------------------------------------- small helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) if (child) el.append(child);
  return el;
}

function statusBadge(status) {
  return h("span", { class: `status st-${status}`, "data-status": status }, status);
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso.endsWith("Z") ? iso : iso + "Z")) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : ""; }
function parseTime(iso) { return iso ? Date.parse(iso.endsWith("Z") ? iso : iso + "Z") : NaN; }
function num(value, digits = 1) { return typeof value === "number" && value >= 0 ? value.toFixed(digits) : "–"; }
function bytes(n) {
  if (typeof n !== "number" || n < 0) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
// a value for the query language: quoted, with \ and " escaped
function quoted(text) { return `"${String(text).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`; }

function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

// ---------------------------------------------------------------- the API
class ApiFailure extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : "";
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  const text = await response.text();
  let data = text;
  if ((response.headers.get("Content-Type") || "").includes("application/json")) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (response.status === 401 && state.token) {
    logout(data && data.error ? data.error.message : "please log in again");
    throw new ApiFailure(401, data);
  }
  if (!response.ok) throw new ApiFailure(response.status, data);
  return data;
}

function find(query, params = {}) {
  return api("POST", "/find", { query, ...params });
}

// may the user do ``operation`` to this record? The widest scope of its rule decides;
// the hub decides again on the click.
function can(operation, resource, record) {
  const scope = state.me && state.me.rules[resource] && state.me.rules[resource][operation];
  if (!scope) return false;
  if (scope === "global" || !record) return true;
  const mine = record.organization !== undefined ? record.organization === state.me.organization : null;
  if (scope === "own") return record.user === state.me.id;
  if (mine === null) return true;  // a record that does not say: the hub knows
  if (scope === "organization") return mine;
  return mine || (!!record.collaboration && state.me.collaborations.includes(record.collaboration));
}

async function act(what, call) {
  try {
    await call();
    toast(`${what}: done`);
    refreshSoon();
  } catch (err) {
    toast(`${what}: ${err.message}`);
  }
}

// ---------------------------------------------------------------- log in and out
async function login(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const answer = await api("POST", "/token", {
      username: form.username.value, password: form.password.value });
    state.token = answer.token;
    state.user = answer.user;
    sessionStorage.setItem("ferry.token", answer.token);
    form.password.value = "";
    await start();
  } catch (err) {
    error.textContent = err.message;
  }
}

function logout(message) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("ferry.token");
  live.stop();
  document.getElementById("top").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = typeof message === "string" ? message : "";
}

async function start() {
  state.me = await api("GET", "/dashboard/me");
  if (!state.user) state.user = await api("GET", `/user/${encodeURIComponent(state.me.id)}`);
  document.getElementById("login").hidden = true;
  document.getElementById("top").hidden = false;
  document.getElementById("whoami").textContent = state.user.username;
  if (!location.hash || location.hash === "#") location.hash = "#/farm";
  else route();
}

// ---------------------------------------------------------------- live updates
const live = {
  topics: [], controller: null, pollTimer: null, retryTimer: null,

  watch(topics) {
    const key = topics.join(" ");
    if (key === this.topics.join(" ") && (this.controller || this.pollTimer)) return;
    this.stop();
    this.topics = topics;
    if (topics.length) this.open();
  },

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    this.pollTimer = this.retryTimer = null;
    this.mark("");
  },

  mark(mode) {
    const el = document.getElementById("live");
    el.className = `live ${mode}`;
    el.title = mode === "on" ? "live: event stream" : mode === "polling" ? `live: polling every ${POLL_MS / 1000} s` : "not live";
  },

  async open() {
    const controller = this.controller = new AbortController();
    const query = this.topics.map((t) => `watch=${encodeURIComponent(t)}`).join("&");
    try {
      const response = await fetch(`${API}/dashboard/events?${query}`, {
        headers: { "Authorization": `Bearer ${state.token}`, "Accept": "text/event-stream" },
        signal: controller.signal, cache: "no-store", credentials: "omit",
      });
      if (response.status === 401) { logout("your session ended; please log in again"); return; }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      this.mark("on");
      clearInterval(this.pollTimer);
      this.pollTimer = null;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          this.dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      if (controller === this.controller) this.open();  // the stream's life ended: another
    } catch (err) {
      if (controller.signal.aborted || controller !== this.controller) return;
      this.fallback();
    }
  },

  dispatch(block) {
    let name = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (name === "change") refreshSoon();
    else if (name === "error") {
      const detail = JSON.parse(data || "{}");
      if (detail.status === 401) logout(detail.message);
      else { toast(detail.message || "live updates stopped"); this.fallback(); }
    }
  },

  fallback() {  // poll, and try a stream again later
    this.controller = null;
    this.mark("polling");
    if (!this.pollTimer) this.pollTimer = setInterval(refreshSoon, POLL_MS);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => { if (this.pollTimer) this.open(); }, 30000);
  },
};

let refreshing = null, again = false;
function refreshSoon() {
  if (refreshing) { again = true; return; }
  const view = state.view;
  if (!view || !view.refresh) return;
  refreshing = view.refresh().catch((err) => toast(err.message)).finally(() => {
    refreshing = null;
    if (again) { again = false; refreshSoon(); }
  });
}

// ---------------------------------------------------------------- paging
class Pager {  // cursor paging of /find: the cursors of the pages before are kept
  constructor() { this.cursors = [null]; this.index = 0; this.next = null; }
  get cursor() { return this.cursors[this.index]; }
  reset() { this.cursors = [null]; this.index = 0; this.next = null; }
  controls(onChange, label) {
    const prev = h("button", { type: "button", disabled: this.index === 0, "data-test": "prev",
      onclick: () => { this.index--; onChange(); } }, "‹ Prev");
    const next = h("button", { type: "button", disabled: !this.next, "data-test": "next",
      onclick: () => { this.cursors[this.index + 1] = this.next; this.index++; onChange(); } }, "Next ›");
    return h("div", { class: "pager" }, prev, h("span", {}, `page ${this.index + 1}`, label || ""), next);
  }
}

// ---------------------------------------------------------------- sparklines
function sparkline(values, max) {
  const width = 90, height = 18;
  const points = values.map((v, i) => (v === null ? null : [i, v])).filter(Boolean);
  const box = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` });
  if (points.length < 2) return box;
  const top = max || Math.max(...points.map((p) => p[1]), 0.001);
  const last = values.length - 1 || 1;
  const line = points.map(([i, v]) => `${(i / last * width).toFixed(1)},${(height - 1 - Math.min(v, top) / top * (height - 2)).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points: line }));
  return box;
}

function metricCell(value, text, series, max) {
  return h("td", { class: "metric" }, h("span", { class: "value" }, text), " ", series ? sparkline(series, max) : "");
}

// ---------------------------------------------------------------- Farm
function farmView() {
  const pager = new Pager();
  const root = h("div", { "data-test": "farm" });
  const view = {
    topics: ["farm"],
    root,
    async refresh() {
      const page = await find("Client where type!=5", { limit: PAGE, cursor: pager.cursor || undefined });
      pager.next = page.next;
      const agents = page.result;
      let lanes = [], history = {};
      if (agents.length) {
        const where = agents.map((a) => `parent=${quoted(a.id)}`).join(" OR ");
        const [found, samples] = await Promise.all([
          find(`Client where ${where}`, { limit: 5000 }),
          api("GET", "/dashboard/history?" + agents.map((a) => `client=${encodeURIComponent(a.id)}`).join("&")),
        ]);
        lanes = found.result;
        history = samples.result;
      }
      const byParent = {};
      for (const lane of lanes) (byParent[lane.parent] ||= []).push(lane);
      const table = h("table", {},
        h("thead", {}, h("tr", {}, ["Agent", "Status", "CPU %", "Memory %", "Load", "Net in MB/s", "Net out MB/s",
          "Last check-in", "Version", "Site", "Tags", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, agents.map((agent) => [
          agentRow(agent, history[agent.id]),
          ...(byParent[agent.id] || []).sort((a, b) => a.code.localeCompare(b.code, undefined, { numeric: true }))
            .map(laneRow),
        ])));
      root.replaceChildren(
        h("div", { class: "toolbar" }, h("h2", {}, "Farm"), h("span", { class: "muted" }, `${agents.length} agents on this page`)),
        table, pager.controls(() => refreshSoon()));
    },
  };
  return view;
}

function agentRow(agent, samples) {
  const m = agent.metrics || {};
  const s = samples || {};
  const load = Array.isArray(m.la) && m.la.length ? m.la[0] : null;
  const netIn = m.in && m.in.s >= 0 ? m.in.s : null, netOut = m.out && m.out.s >= 0 ? m.out.s : null;
  const buttons = [];
  if (can("edit", "client", agent)) {
    const disabled = agent.status === "disabled" || agent.status === "disabled-offline";
    buttons.push(h("button", { type: "button", "data-test": disabled ? "enable" : "disable",
      onclick: () => act(`${disabled ? "enable" : "disable"} ${agent.code}`,
        () => api("PATCH", `/client/${encodeURIComponent(agent.id)}`, { status: disabled ? "online" : "disabled" })) },
      disabled ? "Enable" : "Disable"));
  }
  return h("tr", { class: "agent", "data-test": "agent-row", "data-id": agent.id, "data-code": agent.code },
    h("td", {}, h("strong", {}, agent.code), h("div", { class: "muted" }, agent.type_hr || "")),
    h("td", {}, statusBadge(agent.status),
      reasonNote(agent)),
    metricCell(m.l, num(m.l, 0), s.cpu, 100),
    metricCell(m.m, num(m.m, 0), s.mem, 100),
    metricCell(load, num(load, 2), s.load),
    metricCell(netIn, num(netIn, 2), s.net_in),
    metricCell(netOut, num(netOut, 2), s.net_out),
    h("td", { title: agent.last_checkin || "" }, ago(agent.last_checkin)),
    h("td", {}, agent.version || ""),
    h("td", {}, agent.site_hr || ""),
    h("td", { class: "tags" }, (agent.tags || []).map((t) => h("span", {}, t))),
    h("td", {}, buttons));
}

function laneRow(lane) {
  return h("tr", { class: "lane", "data-test": "lane-row", "data-parent": lane.parent },
    h("td", {}, lane.code), h("td", {}, statusBadge(lane.status)),
    h("td", { colspan: 5 }, lane.description || ""), h("td", {}, ago(lane.last_checkin)),
    h("td", {}, lane.version || ""), h("td", {}, lane.site_hr || ""), h("td", {}), h("td", {}));
}

// ---------------------------------------------------------------- Jobs
function jobsView() {
  const pager = new Pager();
  const filters = { status: "", user: "", finished: false, archived: false };
  const root = h("div", { "data-test": "jobs" });
  const statusSelect = h("select", { "data-test": "filter-status", onchange: (e) => { filters.status = e.target.value; pager.reset(); refreshSoon(); } },
    h("option", { value: "" }, "any status"), JOB_STATUSES.map((s) => h("option", { value: s }, s)));
  const userInput = h("input", { placeholder: "user", "data-test": "filter-user", size: 14,
    onchange: (e) => { filters.user = e.target.value.trim(); pager.reset(); refreshSoon(); } });
  const check = (name) => h("label", {}, h("input", { type: "checkbox", "data-test": `filter-${name}`,
    onchange: (e) => { filters[name] = e.target.checked; pager.reset(); refreshSoon(); } }), ` ${name}`);
  const toolbar = h("div", { class: "toolbar" }, h("h2", {}, "Jobs"), statusSelect, userInput, check("finished"), check("archived"));
  const body = h("div");
  const limits = h("div", { "data-test": "limits" });
  root.append(toolbar, limits, body);
  return {
    topics: ["jobs"],
    root,
    async refresh() {
      // (not while the user types a new max into it)
      if (state.me.rules.limit && state.me.rules.limit.view && !(document.activeElement instanceof HTMLInputElement && limits.contains(document.activeElement))) {
        limits.replaceChildren(...limitsPanel((await find("Limit", { limit: 200 })).result));
      }
      const where = [];
      if (filters.status) where.push(`status=${quoted(filters.status)}`);
      if (filters.user) where.push(`user=${quoted(filters.user)}`);
      const query = "Job" + (where.length ? " where " + where.join(" AND ") : "");
      const page = await find(query, { limit: PAGE, cursor: pager.cursor || undefined,
        finished: filters.finished && !filters.archived, archived: filters.archived });
      pager.next = page.next;
      const rows = page.result.sort((a, b) => (b.created || "").localeCompare(a.created || ""));
      body.replaceChildren(h("table", {},
        h("thead", {}, h("tr", {}, ["Job", "Kind", "Status", "Progress", "Speed", "ETR", "User", "Created", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.map(jobRow))), pager.controls(() => refreshSoon()));
    },
  };
}

function limitsPanel(rows) {  // counted resources: how many of each are held now, of its max
  if (!rows.length) return [];
  return [h("h3", {}, "Limits"), h("table", { class: "limits" },
    h("thead", {}, h("tr", {}, ["Limit", "In use", "Max", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((x) => h("tr", { "data-test": "limit-row", "data-name": x.name, class: x.in_use >= x.max ? "full" : "" },
      h("td", {}, x.name), h("td", { class: "metric" }, String(x.in_use)), h("td", { class: "metric" }, String(x.max)),
      h("td", {}, can("edit", "limit", x) ? maxEditor(x) : "")))))];
}

// a new max for a limit, for a user who may edit it (the hub checks the value and the rule)
function maxEditor(limit) {
  const input = h("input", { type: "number", min: 0, value: limit.max, class: "max", "data-test": "limit-max",
    "aria-label": `new max for ${limit.name}` });
  const set = () => act(`limit ${limit.name}: max ${input.value}`, async () => {
    input.blur();
    await api("PATCH", `/limit/${encodeURIComponent(limit.id)}`, { max: Number(input.value) });
  });
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") set(); });
  return [input, h("button", { type: "button", "data-test": "limit-set", onclick: set }, "Set")];
}

function progressBar(percent) {
  const p = Math.max(0, Math.min(100, percent || 0));
  return h("span", { class: "progress", "data-test": "progress", "data-progress": p },
    h("span", { class: "bar" }, h("span", { style: null, "data-w": p })), ` ${p} %`);
}

function sizeBars(root) {  // widths set as properties: the policy allows no inline style attributes
  for (const el of root.querySelectorAll("[data-w]")) el.style.width = `${el.getAttribute("data-w")}%`;
  return root;
}

function speedText(job) {
  if (job.kind === "transfer") return `${num(job.speed, 2)} MB/s`;
  return typeof job.speed === "number" ? `${job.speed.toFixed(2)} tasks/s` : "–";
}

function jobButtons(job) {
  if (!can("edit", "job", job)) return [];
  const set = (status, label, cls) => h("button", { type: "button", class: cls || "", "data-test": label.toLowerCase(),
    onclick: (event) => {
      event.stopPropagation();
      if (status === "aborted" && !confirm(`Abort job ${job.code}?`)) return;
      act(`${label.toLowerCase()} ${job.code}`, () => api("PATCH", `/job/${encodeURIComponent(job.id)}`, { status }));
    } }, label);
  const out = [];
  if (["init", "waiting", "running", "pending"].includes(job.status)) out.push(set("paused", "Pause"));
  if (job.status === "paused") out.push(set("waiting", "Resume"));
  if (!["done", "failed", "aborted"].includes(job.status)) out.push(set("aborted", "Abort", "danger"));
  return out;
}

// why a job (or an agent) takes no work now: the hub's status_reason, as it says it
function reasonNote(record) {
  return record.status_reason ? h("div", { class: "muted reason", "data-test": "status-reason" }, record.status_reason) : "";
}

function jobRow(job) {
  return sizeBars(h("tr", { class: "clickable", "data-test": "job-row", "data-id": job.id, "data-code": job.code,
    onclick: () => { location.hash = `#/job/${encodeURIComponent(job.id)}`; } },
    h("td", {}, h("a", { href: `#/job/${encodeURIComponent(job.id)}` }, job.code)),
    h("td", {}, job.kind), h("td", {}, statusBadge(job.status), reasonNote(job)), h("td", {}, progressBar(job.progress)),
    h("td", { class: "metric" }, speedText(job)), h("td", {}, job.etr || ""),
    h("td", {}, (job.user_hr || "").replace(/^user:/, "")), h("td", { title: job.created }, ago(job.created)),
    h("td", {}, jobButtons(job))));
}

// ---------------------------------------------------------------- A job
function jobView(jobId) {
  const pager = new Pager();
  const taskFilter = { status: "" };
  const root = h("div", { "data-test": "job" });
  const header = h("div", { class: "card" });
  const timeline = h("div", { class: "card" }, h("h2", {}, "Timeline"));
  const transfer = h("div", { class: "card", hidden: true });
  const tasks = h("div", { class: "card" });
  const logCard = h("div", { class: "card", hidden: true, "data-test": "log-card" });
  let bucketSkip = 0;
  let openTask = null;
  const laneNames = {};  // lane id -> code, from the buckets (lanes the user may view)
  const statusSelect = h("select", { "data-test": "task-filter-status", onchange: (e) => { taskFilter.status = e.target.value; pager.reset(); refreshSoon(); } },
    h("option", { value: "" }, "any status"), TASK_STATUSES.map((s) => h("option", { value: s }, s)));
  root.append(header, logCard, tasks, timeline, transfer);

  async function showLog(task) {
    openTask = task.id;
    view.topics = [`job:${jobId}`, `task:${task.id}`];
    live.watch(view.topics);
    await refreshLog();
  }

  async function refreshLog() {
    if (!openTask) return;
    const [task, text] = await Promise.all([
      api("GET", `/task/${encodeURIComponent(openTask)}`),
      api("GET", `/task/${encodeURIComponent(openTask)}/log`),
    ]);
    const pre = h("pre", { class: "log", "data-test": "log" }, typeof text === "string" ? text : JSON.stringify(text));
    const following = ["booting", "executing"].includes(task.status);
    logCard.hidden = false;
    logCard.replaceChildren(
      h("h2", {}, `Log of task ${task.uri} (item ${task.item}) `, statusBadge(task.status),
        following ? h("span", { class: "muted" }, " following live") : ""),
      h("button", { type: "button", onclick: () => { openTask = null; logCard.hidden = true; view.topics = [`job:${jobId}`]; live.watch(view.topics); } }, "Close"),
      pre);
    pre.scrollTop = pre.scrollHeight;
  }

  const view = {
    topics: [`job:${jobId}`],
    root,
    async refresh() {
      const query = `Task where job.id=${quoted(jobId)}` + (taskFilter.status ? ` AND status=${quoted(taskFilter.status)}` : "");
      const [job, page, buckets] = await Promise.all([
        api("GET", `/job/${encodeURIComponent(jobId)}`),
        find(query, { limit: TASK_PAGE, cursor: pager.cursor || undefined }),
        api("GET", `/job/${encodeURIComponent(jobId)}/buckets?limit=${BUCKET_PAGE}&skip=${bucketSkip}`),
      ]);
      pager.next = page.next;
      for (const b of buckets.result) if (b.lane_hr) laneNames[b.lane || b.client] = b.lane_hr;
      renderHeader(job);
      renderTasks(page.result);
      renderTimeline(buckets);
      if (job.kind === "transfer") renderTransfer(buckets);
      await refreshLog();
    },
  };

  function renderHeader(job) {
    const field = (name, value) => [h("dt", {}, name), h("dd", {}, value)];
    header.replaceChildren(
      h("h2", { "data-test": "job-title" }, `Job ${job.code} `, statusBadge(job.status), " ", jobButtons(job)),
      sizeBars(h("dl", { class: "fields" },
        field("Progress", progressBar(job.progress)), field("Speed", speedText(job)),
        field("ETR", job.etr || "–"), field("Kind", job.kind),
        field("User", (job.user_hr || "").replace(/^user:/, "")), field("Priority", job.priority),
        field("Queue", (job.parent_hr || "").replace(/^queue:/, "")),
        job.engine ? field("Engine", `${job.engine} ${Object.entries(job.args || {}).map(([k, v]) => `${k}=${v}`).join(" ")}`.trim()) : [],
        field("Created", when(job.created)), field("Started", when(job.started)),
        field("Finished", when(job.finished)),
        field("Tasks", Object.entries(job.counts || {}).map(([s, n]) => `${s} ${n}`).join(", ")),
        job.status_reason ? field("Waiting", job.status_reason) : [],
        afterField(job, field),
        job.kind === "transfer" ? field("Size", bytes(job.size)) : [],
        job.kind === "transfer" ? field("Speed limit", job.speed_limit ? `${bytes(job.speed_limit)}/s` : "none") : [],
        // a frame sequence's frames missing from its range, once its agent listed them
        job.frames_missing != null ? field("Missing frames", h("span", { "data-test": "frames-missing" }, job.frames_missing || "none")) : [])));
  }

  // the jobs it waits for, each a link with its status (none when out of the user's sight)
  function afterField(job, field) {
    const statuses = job.after_status || {};
    const named = (id, prefix) => [prefix, h("a", { href: `#/job/${encodeURIComponent(id)}` }, id),
      " ", statuses[id] ? statusBadge(statuses[id]) : "(not in sight)"];
    const parts = (job.after || []).map((id) => named(id, ""));
    if (job.after_items) parts.push(named(job.after_items, "items of "));
    if (!parts.length) return [];
    return field("After", h("span", { "data-test": "job-after" },
      parts.map((part, n) => (n ? [", ", part] : part)), `; if one fails: ${job.after_failed}`));
  }

  function renderTasks(rows) {
    tasks.replaceChildren(
      h("div", { class: "toolbar" }, h("h2", {}, "Tasks"), statusSelect),
      h("table", {},
        h("thead", {}, h("tr", {}, ["#", "Item", "Status", "Progress", "Attempts", "Lane", "Started", "Finished", "Time s", "Exit", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.map((t) => h("tr", { "data-test": "task-row", "data-id": t.id, "data-status": t.status },
          h("td", {}, t.uri), h("td", {}, t.item), h("td", {}, statusBadge(t.status)),
          h("td", { "data-test": "task-progress" }, typeof t.progress === "number" ? progressBar(t.progress) : "",
            t.stage ? h("div", { class: "muted", "data-test": "task-stage" }, t.stage) : ""),
          h("td", {}, t.attempts),
          h("td", { class: "muted" }, laneNames[t.source && t.source.lane] || (t.source && t.source.lane) || ""), h("td", {}, when(t.started)),
          h("td", {}, when(t.finished)), h("td", {}, t.time === null ? "" : (t.time / 1000).toFixed(1)),
          h("td", {}, t.exit_code === null ? "" : t.exit_code),
          h("td", {}, h("button", { type: "button", "data-test": "open-log",
            onclick: () => showLog(t).catch((err) => toast(err.message)) }, "Log")))))),
      pager.controls(() => refreshSoon()));
    sizeBars(tasks);
  }

  function renderTimeline(answer) {
    const rows = answer.result;
    const lanes = [...new Set(rows.map((b) => b.lane || b.client))];
    const names = Object.fromEntries(rows.map((b) => [b.lane || b.client, b.lane_hr || (b.lane || b.client).slice(-8)]));
    const now = parseTime(answer.now);
    const spans = rows.map((b) => [parseTime(b.started), b.ended ? parseTime(b.ended) : now]);
    const t0 = Math.min(...spans.map((s) => s[0])), t1 = Math.max(...spans.map((s) => s[1]), t0 + 1000);
    const left = 130, width = 900, rowHeight = 18;
    const chart = svg("svg", { class: "timeline", "data-test": "timeline", width: left + width + 10,
      height: lanes.length * rowHeight + 24, viewBox: `0 0 ${left + width + 10} ${lanes.length * rowHeight + 24}` });
    lanes.forEach((lane, i) => {
      const label = svg("text", { x: 0, y: i * rowHeight + 13 });
      label.textContent = names[lane];
      chart.append(label);
    });
    const x = (t) => left + (t - t0) / (t1 - t0) * width;
    rows.forEach((b, n) => {
      const [start, end] = spans[n];
      const rect = svg("rect", { class: `bucket st-${b.status}`, x: x(start).toFixed(1), y: lanes.indexOf(b.lane || b.client) * rowHeight + 2,
        width: Math.max(1, x(end) - x(start)).toFixed(1), height: rowHeight - 4, fill: colour(b.status) });
      const title = svg("title");
      title.textContent = `${names[b.lane || b.client]}: ${b.status}, ${b.tasks} task(s): ${b.items.join(", ")}${b.tasks > b.items.length ? ", …" : ""}\n${when(b.started)} → ${when(b.ended) || "running"}`;
      rect.append(title);
      chart.append(rect);
    });
    const axis = svg("text", { x: left, y: lanes.length * rowHeight + 18 });
    axis.textContent = rows.length ? `${when(new Date(t0).toISOString())} → ${when(new Date(t1).toISOString())} (${((t1 - t0) / 1000).toFixed(1)} s)` : "no buckets yet";
    chart.append(axis);
    const more = [];
    if (answer.total > rows.length) {
      more.push(h("div", { class: "pager" },
        h("button", { type: "button", disabled: bucketSkip === 0, onclick: () => { bucketSkip = Math.max(0, bucketSkip - BUCKET_PAGE); refreshSoon(); } }, "‹ Earlier"),
        h("span", {}, `buckets ${bucketSkip + 1}–${bucketSkip + rows.length} of ${answer.total}`),
        h("button", { type: "button", disabled: bucketSkip + rows.length >= answer.total, onclick: () => { bucketSkip += BUCKET_PAGE; refreshSoon(); } }, "Later ›")));
    }
    timeline.replaceChildren(h("h2", {}, `Timeline (${answer.total} buckets on ${lanes.length} lanes)`), chart, more);
  }

  function renderTransfer(answer) {  // bytes moved and MB/s over time, from the buckets
    const rows = answer.result.filter((b) => b.transferred > 0);
    transfer.hidden = false;
    if (!rows.length) { transfer.replaceChildren(h("h2", {}, "Transfer"), h("p", { class: "muted" }, "no bytes moved yet")); return; }
    const now = parseTime(answer.now);
    const spans = rows.map((b) => [parseTime(b.started), b.ended ? parseTime(b.ended) : now, b.transferred]);
    const t0 = Math.min(...spans.map((s) => s[0])), t1 = Math.max(...spans.map((s) => s[1]), t0 + 1000);
    const bins = 60, step = (t1 - t0) / bins, rate = new Array(bins).fill(0);
    for (const [start, end, moved] of spans) {  // each bucket's bytes spread over its time
      const span = Math.max(end - start, 1);
      for (let i = 0; i < bins; i++) {
        const a = t0 + i * step, b = a + step;
        const overlap = Math.max(0, Math.min(b, end) - Math.max(a, start));
        rate[i] += moved * overlap / span;
      }
    }
    const mbps = rate.map((v) => v / (step / 1000) / 1e6);
    let sum = 0;
    const total = rate.map((v) => (sum += v));
    const width = 900, height = 120;
    const line = (values, top) => values.map((v, i) => `${(i / (bins - 1) * width).toFixed(1)},${(height - v / (top || 1) * (height - 4)).toFixed(1)}`).join(" ");
    const topRate = Math.max(...mbps, 0.001);
    const chart = svg("svg", { class: "chart", "data-test": "transfer-chart", width, height: height + 16, viewBox: `0 0 ${width} ${height + 16}` },
      svg("polyline", { points: line(mbps, topRate) }), svg("polyline", { class: "total", points: line(total, sum) }));
    const caption = svg("text", { x: 0, y: height + 14 });
    caption.textContent = `peak ${topRate.toFixed(1)} MB/s (blue); ${bytes(sum)} moved in all (green); ${((t1 - t0) / 1000).toFixed(1)} s`;
    chart.append(caption);
    transfer.replaceChildren(h("h2", {}, "Transfer"), chart);
  }

  return view;
}

function colour(status) {
  return { done: "#15803d", leased: "#2563eb", lost: "#b91c1c", returned: "#6b7280" }[status] || "#6b7280";
}

// ---------------------------------------------------------------- routing
function route() {
  if (!state.token || !state.me) return;
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, arg] = hash.split("/");
  let view;
  if (name === "job" && arg) view = jobView(decodeURIComponent(arg));
  else if (name === "jobs") view = jobsView();
  else view = farmView();
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.id === `nav-${name === "job" ? "jobs" : name || "farm"}`);
  }
  state.view = view;
  document.getElementById("view").replaceChildren(view.root);
  live.watch(view.topics);
  refreshSoon();
}

document.getElementById("login").addEventListener("submit", login);
document.getElementById("logout").addEventListener("click", () => logout("logged out"));
window.addEventListener("hashchange", route);
if (state.token) start().catch(() => logout("please log in"));
else logout("");
