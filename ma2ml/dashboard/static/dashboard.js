// ma2ml dashboard: polls the read-only JSON API and draws with the bundled plotly.js.
// Stored text (names, pipelines, errors) is only ever put in the page as text
// (textContent), and escaped before plotly sees it (plotly reads a little HTML).
"use strict";

// Poll periods; `?poll=MS` (250..60000) sets the first, the others scale with it.
const POLL_MS = Math.min(60000, Math.max(250,
  Number(new URLSearchParams(location.search).get("poll")) || 2000));  // summary, trials
const POLICY_POLL_MS = 2 * POLL_MS;   // policy history (re-read only when a version is new)
const DECISIONS_POLL_MS = 5 * POLL_MS;
const PLOT_CONFIG = {displayModeBar: false, responsive: true};
const $ = (id) => document.getElementById(id);

const state = {
  statuses: null,  // the status vocabulary and colours, sent by the server (/api/statuses)
  route: null, searchId: null, search: null, trials: [], sort: {key: "number", desc: false},
  policy: null, decisions: null, timers: [], detailsId: null,
};

// ---- helpers ------------------------------------------------------------------------
function esc(text) {  // for plotly labels and hover text
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0)
      ? value.toExponential(2) : value.toFixed(digits);
  }
  return String(value);
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}
// The statuses are the server's (/api/statuses): read once, before a search page draws.
async function loadStatuses() {
  if (!state.statuses) state.statuses = await api("/api/statuses");
  return state.statuses;
}
function colour(status, fallback) { return (state.statuses && state.statuses.colours[status]) || fallback; }
function statusBadge(status) { return el("span", status, "status " + status); }
function setText(id, text) { const node = $(id); if (node.textContent !== text) node.textContent = text; }

async function api(path) {
  const response = await fetch(path, {cache: "no-store"});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}
function live(ok, message) {
  const node = $("live");
  node.className = "live " + (ok ? "ok" : "down");
  node.textContent = ok ? "live · " + new Date().toLocaleTimeString() : "store unavailable";
  const banner = $("banner");
  banner.hidden = ok;
  if (!ok) banner.textContent = message;
}
// Runs fn now and every ms milliseconds (never overlapping), until the route changes.
function every(ms, fn) {
  const route = state.route;
  const tick = async () => {
    if (state.route !== route) return;
    try { await fn(); live(true); }
    catch (error) {
      if (error.status === 404 || error.status === 400) { live(true); showMissing(error.message); return; }
      live(false, "Cannot read the store: " + error.message + " (retrying)");
    }
    if (state.route === route) state.timers.push(setTimeout(tick, ms));
  };
  tick();
}
function showMissing(message) {
  const banner = $("banner");
  banner.hidden = false;
  banner.textContent = message;
}
function plot(id, traces, layout) {
  const base = {margin: {l: 50, r: 15, t: 10, b: 40}, font: {size: 11},
                legend: {orientation: "h", y: -0.2}, paper_bgcolor: "#fff", plot_bgcolor: "#fff"};
  Plotly.react($(id), traces, Object.assign(base, layout || {}), PLOT_CONFIG);
}
function emptyPlot(id, message) {
  plot(id, [], {xaxis: {visible: false}, yaxis: {visible: false},
                annotations: [{text: esc(message), showarrow: false, font: {color: "#6b7280"}}]});
}

// ---- routing -------------------------------------------------------------------------
function route() {
  state.timers.forEach(clearTimeout);
  state.timers = [];
  state.route = location.hash || "#/";
  state.trialsSignature = null;
  state.searchesSignature = null;
  state.progressSignature = null;
  $("banner").hidden = true;
  const match = state.route.match(/^#\/search\/(\d+)$/);
  $("searches-page").hidden = !!match;
  $("search-page").hidden = !match;
  closeDetails();
  const crumbs = $("crumbs");
  crumbs.replaceChildren();
  if (match) {
    state.searchId = Number(match[1]);
    state.search = null; state.policy = null; state.decisions = null;
    // The policy and decision views need the search space: they wait for the first summary.
    state.ready = new Promise((resolve) => { state.resolveReady = resolve; });
    const back = el("a", "searches");
    back.href = "#/";
    crumbs.append(back);
    every(POLL_MS, refreshSearch);
    every(POLICY_POLL_MS, refreshPolicy);
    every(DECISIONS_POLL_MS, refreshDecisions);
  } else {
    every(POLL_MS, refreshSearches);
  }
}

// ---- searches page -------------------------------------------------------------------
async function refreshSearches() {
  const data = await api("/api/searches");
  // Ages change every poll; the rows are rebuilt only when a search changed.
  const signature = JSON.stringify(data.searches.map((s) => [s.id, s.state, s.done, s.counts, s.best]))
    + Math.floor(data.now / 60);
  if (signature === state.searchesSignature) return;
  state.searchesSignature = signature;
  const body = $("searches-table").querySelector("tbody");
  const rows = data.searches.map((s) => {
    const tr = el("tr");
    tr.dataset.id = s.id;
    const link = el("a", s.name);
    link.href = "#/search/" + s.id;
    const name = el("td"); name.append(link);
    const phase = el("td"); phase.append(statusBadge(s.state));
    const progress = el("td", `${s.done}/${s.max_trials}`);
    progress.className = "progress";
    tr.append(name, phase, progress, el("td", String(s.counts.running)),
              el("td", String(s.counts.failed)),
              el("td", s.best ? `${fmt(s.best.reward)} (#${s.best.number})` : "–"),
              el("td", s.algorithm || "–"), el("td", duration(data.now - s.created_at)));
    tr.addEventListener("click", (event) => {
      if (event.target.tagName !== "A") location.hash = "#/search/" + s.id;
    });
    return tr;
  });
  body.replaceChildren(...rows);
  $("no-searches").hidden = rows.length > 0;
  setText("searches-count", data.total > rows.length ? `(newest ${rows.length} of ${data.total})` : "");
}

// ---- search page ---------------------------------------------------------------------
async function refreshSearch() {
  const id = state.searchId;
  const [search, progress] = await Promise.all([
    api(`/api/searches/${id}`), api(`/api/searches/${id}/progress`), loadStatuses()]);
  if (state.searchId !== id) return;
  const first = state.search === null;
  state.search = search;
  if (first) { setupSearch(search); state.resolveReady(); }
  drawSummary(search);
  drawProgress(progress, search);
  await refreshTrials();
}

function setupSearch(search) {
  setText("search-name", search.name);
  document.title = "ma2ml: " + search.name;
  const crumbs = $("crumbs");
  crumbs.append(" / ", el("span", search.name));
  const agents = search.space.map((a) => a.name);
  fillSelect($("policy-agent"), agents);
  fillSelect($("pc-agent"), agents);
  const decisions = [];
  search.space.forEach((a, i) => a.decisions.forEach((d, j) =>
    decisions.push({label: `${a.name}.${d.name}`, agent: i, index: j})));
  state.flatDecisions = decisions;
  fillSelect($("ix-x"), decisions.map((d) => d.label));
  fillSelect($("ix-y"), decisions.map((d) => d.label));
  // A default pair of two different modules: what only a joint search can show.
  const other = decisions.findIndex((d) => d.agent !== decisions[0].agent);
  $("ix-y").value = decisions[other >= 0 ? other : Math.min(1, decisions.length - 1)].label;
  fillDecisionSelect();
  const statuses = $("status-filter");
  if (statuses.options.length === 1) {
    state.statuses.trial.forEach((s) => statuses.append(new Option(s, s)));
  }
  $("details-preview-wrap").hidden = !search.preview;
}

function fillSelect(select, values) {
  const current = select.value;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (values.includes(current)) select.value = current;
}
function fillDecisionSelect() {
  const agent = (state.search.space.find((a) => a.name === $("policy-agent").value)
                 || state.search.space[0]);
  fillSelect($("policy-decision"), agent.decisions.map((d) => d.name));
}

function drawSummary(s) {
  const phase = $("phase");
  phase.replaceChildren(statusBadge(s.state));
  setText("done", `${s.done}/${s.max_trials} trials`);
  $("done-bar").style.width = Math.min(100, 100 * s.done / Math.max(1, s.max_trials)) + "%";
  setText("running", `${s.counts.running} / ${s.counts.pending}`);
  setText("failures", `${s.counts.stopped} / ${s.counts.diverged} / ${s.counts.failed}`);
  setText("best", s.best ? `${fmt(s.best.reward)} (#${s.best.number})` : "–");
  setText("times", `${duration(s.elapsed)} / ${s.eta === null ? "–" : duration(s.eta)}`);
  setText("time-used", s.time_used);  // worded by the server, as ma2ml status words it
  const message = $("search-message");
  const why = s.ended_by ? `${s.ended_by}: ${s.message || ""}` : s.message;
  message.hidden = !why;
  if (why) setText("search-message", why);
}

function drawProgress(p, search) {
  const signature = JSON.stringify([p.finished, p.best, p.random.n, p.points.length]);
  if (signature === state.progressSignature) return;  // plotly redraws cost CPU
  state.progressSignature = signature;
  if (!p.finished) { emptyPlot("plot-progress", "no finished trial yet"); return; }
  const traces = [];
  for (const status of state.statuses.terminal) {
    const pts = p.points.filter((q) => q[2] === status && q[3] !== null);
    if (pts.length) traces.push({type: "scatter", mode: "markers", name: status,
      x: pts.map((q) => q[0]), y: pts.map((q) => q[3]),
      text: pts.map((q) => `trial #${q[1]}`), hovertemplate: "%{text}<br>reward %{y:.4f}<extra></extra>",
      marker: {size: 6, color: colour(status), opacity: 0.7}});
  }
  if (p.best.length) traces.push({type: "scatter", mode: "lines", name: "best so far",
    x: p.best.map((q) => q[0]), y: p.best.map((q) => q[1]), line: {shape: "hv", width: 2.5, color: "#1e3a8a"}});
  const base = p.random.expected_best;  // [n, expected, low, high, extrapolated]
  if (base.length) {
    const within = base.filter((q) => !q[4]), beyond = base.filter((q) => q[4]);
    if (within.length && beyond.length) beyond.unshift(within[within.length - 1]);
    traces.push({type: "scatter", mode: "lines", x: base.map((q) => q[0]), y: base.map((q) => q[3]),
      line: {width: 0}, hoverinfo: "skip", showlegend: false},
      {type: "scatter", mode: "lines", x: base.map((q) => q[0]), y: base.map((q) => q[2]),
      fill: "tonexty", fillcolor: "rgba(107,114,128,0.15)", line: {width: 0}, hoverinfo: "skip",
      name: "random search, 90% interval"});
    if (within.length) traces.push({type: "scatter", mode: "lines", x: within.map((q) => q[0]),
      y: within.map((q) => q[1]), line: {dash: "dash", color: "#4b5563"},
      name: `random search: expected best of as many trials (from ${p.random.n} uniform draws)`});
    if (beyond.length) traces.push({type: "scatter", mode: "lines", x: beyond.map((q) => q[0]),
      y: beyond.map((q) => q[1]), line: {dash: "dot", color: "#9ca3af"},
      name: "extrapolated beyond the uniform draws (too low)"});
  }
  plot("plot-progress", traces, {xaxis: {title: {text: "finished trials"}},
                                 yaxis: {title: {text: "reward"}}});
  setText("progress-note", (p.random.describe
    ? `Random search after ${p.finished} trials: ${p.random.describe}.`
    : "No uniform draws yet to estimate random search from.") + ` Best: ${search.ranking}.`);
}

// ---- trials table --------------------------------------------------------------------
const SERVER_SORTS = {number: "number", reward: "reward"};

async function refreshTrials() {
  const id = state.searchId;
  const params = new URLSearchParams({limit: $("trial-limit").value});
  const status = $("status-filter").value;
  if (status) params.set("status", status);
  // Sorting by number or reward is done by the store, so the limit keeps the right rows.
  const server = SERVER_SORTS[state.sort.key];
  if (server) { params.set("sort", server); params.set("desc", state.sort.desc ? "1" : "0"); }
  const data = await api(`/api/searches/${id}/trials?${params}`);
  if (state.searchId !== id) return;
  state.trials = data.trials;
  state.trialsTotal = data.total;
  drawTrials();
}

function drawTrials() {
  const needle = $("trial-filter").value.trim().toLowerCase();
  const {key, desc} = state.sort;
  let rows = state.trials.filter((t) => !needle || [t.number, t.status, t.reward, t.accuracy,
    t.worker, t.pipeline, t.error].some((v) => v !== null && String(v).toLowerCase().includes(needle)));
  rows = rows.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return a.number - b.number;
    if (x === null || x === undefined) return 1;   // missing values last either way
    if (y === null || y === undefined) return -1;
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return desc ? -order : order;
  });
  // Re-drawn only when something shown changed: a poll keeps hover and text selection.
  const signature = JSON.stringify([rows, state.trialsTotal]);
  if (signature === state.trialsSignature) return;
  state.trialsSignature = signature;
  const body = $("trials-table").querySelector("tbody");
  body.replaceChildren(...rows.map((t) => {
    const tr = el("tr");
    tr.dataset.id = t.id;
    tr.dataset.number = t.number;
    const status = el("td"); status.append(statusBadge(t.status));
    tr.append(el("td", String(t.number)), status, el("td", fmt(t.reward)), el("td", fmt(t.accuracy)),
              el("td", t.seconds === null ? "–" : t.seconds.toFixed(1)), el("td", fmt(t.epochs)),
              el("td", fmt(t.policy_version)), el("td", t.worker || "–"), el("td", t.pipeline, "pipeline"));
    tr.addEventListener("click", () => openDetails(t.id));
    return tr;
  }));
  setText("trials-count", `${rows.length} shown of ${state.trialsTotal}` +
          (state.trials.length < state.trialsTotal ? ` (first ${state.trials.length} read; raise rows for more)` : ""));
  document.querySelectorAll("#trials-table th").forEach((th) => {
    th.classList.toggle("asc", th.dataset.sort === key && !desc);
    th.classList.toggle("desc", th.dataset.sort === key && desc);
  });
}

// ---- trial details -------------------------------------------------------------------
async function openDetails(trialId) {
  state.detailsId = trialId;
  const t = await api(`/api/searches/${state.searchId}/trials/${trialId}`);
  if (state.detailsId !== trialId) return;
  $("trial-details").hidden = false;
  setText("details-title", `Trial #${t.number}`);
  kv($("details-summary"), {status: t.status, reward: fmt(t.reward), epochs: fmt(t.epochs),
    seconds: t.seconds === null ? "–" : t.seconds.toFixed(1), worker: t.worker || "–",
    attempt: t.attempt, "policy version": t.policy_version});
  const pipeline = {};
  for (const [agent, decisions] of Object.entries(t.pipeline)) {
    if (decisions && typeof decisions === "object") {
      for (const [name, value] of Object.entries(decisions)) pipeline[`${agent}.${name}`] = value;
    } else pipeline[agent] = decisions;
  }
  kv($("details-pipeline"), pipeline);
  kv($("details-metrics"), Object.fromEntries(Object.entries(t.metrics).map(([k, v]) =>
    [k, typeof v === "object" ? JSON.stringify(v) : fmt(v)])));
  if (t.curve.length) {
    plot("plot-curve", [{type: "scatter", mode: "lines+markers", x: t.curve.map((s) => s.step),
      y: t.curve.map((s) => s.value), name: "value", line: {color: colour(t.status, "#2563eb")}}],
      {xaxis: {title: {text: "epoch"}, dtick: 1}, yaxis: {title: {text: "value"}}, showlegend: false});
  } else emptyPlot("plot-curve", "no learning curve recorded for this trial");
  $("details-error-wrap").hidden = !t.error_tail;
  if (t.error_tail) {
    $("details-error").textContent = t.error_tail;
    setText("details-error-note", t.error_truncated ? "(the end of it)" : "");
  }
  const img = $("preview-img");
  img.hidden = true;
  img.removeAttribute("src");
  setText("preview-status", "");
}
function kv(table, mapping) {
  table.replaceChildren(...Object.entries(mapping).map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("th", k), el("td", typeof v === "string" ? v : JSON.stringify(v)));
    return tr;
  }));
}
function closeDetails() { $("trial-details").hidden = true; state.detailsId = null; }
function drawPreview() {
  if (state.detailsId === null) return;
  const img = $("preview-img");
  setText("preview-status", "drawing (the first one loads torch and the data: seconds)…");
  img.onload = () => { img.hidden = false; setText("preview-status", ""); };
  img.onerror = async () => {
    try { await api(img.src); } catch (e) { setText("preview-status", e.message); return; }
    setText("preview-status", "the preview could not be drawn");
  };
  img.src = `/api/searches/${state.searchId}/trials/${state.detailsId}/preview.png`;
}

// ---- policies, entropy, credit -------------------------------------------------------
async function refreshPolicy() {
  const id = state.searchId;
  await state.ready;
  const since = state.policy && state.policy.version !== null ? `&since=${state.policy.version}` : "";
  const data = await api(`/api/searches/${id}/policy?versions=100${since}`);
  if (state.searchId !== id || data.unchanged || !state.search) return;
  state.policy = data;
  drawAgentSeries("plot-entropy", data.entropy, "entropy (nats)", "no learner update yet");
  drawAgentSeries("plot-credit", data.credit, "credit", "no credit yet (the critic needs results)");
  drawPolicy();
}
function drawAgentSeries(id, series, ytitle, empty) {
  const traces = Object.entries(series).map(([agent, pts]) => ({type: "scatter", mode: "lines+markers",
    name: esc(agent), x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), marker: {size: 4}}));
  if (!traces.length) { emptyPlot(id, empty); return; }
  plot(id, traces, {xaxis: {title: {text: "policy version (learner update)"}}, yaxis: {title: {text: ytitle}},
                    margin: {l: 50, r: 15, t: 10, b: 80}, legend: {orientation: "h", y: -0.35}});
}
function drawPolicy() {
  const p = state.policy;
  if (!p || !state.search) return;
  setText("policy-version", p.version === null ? "" : `(version ${p.version}, ${p.updates} updates)`);
  const agentName = $("policy-agent").value;
  const agent = state.search.space.find((a) => a.name === agentName);
  if (!p.policy || !p.policy[agentName] || !agent) {
    emptyPlot("plot-policy", p.version === null ? "no policy snapshot yet"
      : "this search's snapshots carry no probabilities (an older ma2ml wrote them)");
    emptyPlot("plot-policy-history", "");
    setText("policy-note", "");
    return;
  }
  const probs = p.policy[agentName];
  const width = Math.max(...agent.decisions.map((d) => d.values.length));
  const names = agent.decisions.map((d) => esc(d.name));
  const z = probs.map((row) => Array.from({length: width}, (_, k) => k < row.length ? row[k] : null));
  const text = agent.decisions.map((d) => Array.from({length: width}, (_, k) =>
    k < d.values.length ? esc(d.values[k]) : ""));
  plot("plot-policy", [{type: "heatmap", z, y: names, x: [...Array(width).keys()], text,
    colorscale: [[0, "#f7fbff"], [0.25, "#c6dbef"], [0.5, "#6baed6"], [1, "#08306b"]], zmin: 0, zmax: 1, hoverongaps: false,
    hovertemplate: "%{y} = %{text}<br>p = %{z:.3f}<extra></extra>", colorbar: {title: {text: "p"}}}],
    {margin: {l: 110, r: 10, t: 25, b: 40}, title: {text: "now: probability of each value", font: {size: 12}},
     xaxis: {title: {text: "value (index; hover for the value)"}, dtick: 1}, yaxis: {autorange: "reversed"}});
  const j = agent.decisions.findIndex((d) => d.name === $("policy-decision").value);
  const decision = agent.decisions[Math.max(0, j)];
  const history = (p.policy_history[agentName] || []).map((rows) => rows ? rows[Math.max(0, j)] : null);
  const keep = history.map((h, i) => [p.policy_versions[i], h]).filter((e) => e[1]);
  plot("plot-policy-history", decision.values.map((value, k) => ({type: "scatter", mode: "lines",
      stackgroup: "one", name: esc(value), x: keep.map((e) => e[0]), y: keep.map((e) => e[1][k]),
      hovertemplate: esc(value) + ": %{y:.3f}<extra></extra>"})),
    {margin: {l: 50, r: 10, t: 25, b: 40}, title: {text: `how ${esc(decision.name)} moved`, font: {size: 12}},
     legend: {orientation: "v", x: 1.02, y: 1, font: {size: 9}},
     xaxis: {title: {text: "policy version"}}, yaxis: {title: {text: "probability"}, range: [0, 1]}});
  setText("policy-note", `Uniform would be ${(1 / decision.values.length).toFixed(3)} for each value of ${decision.name}. ` +
          `${p.sampled} of ${p.updates} versions drawn.`);
}

// ---- decisions against reward ----------------------------------------------------------
async function refreshDecisions() {
  const id = state.searchId;
  await state.ready;
  const data = await api(`/api/searches/${id}/decisions?limit=1000`);
  if (state.searchId !== id || !state.search) return;
  if (state.decisions && JSON.stringify(state.decisions) === JSON.stringify(data)) return;
  state.decisions = data;
  drawDecisions();
}
function drawDecisions() {
  const d = state.decisions;
  if (!d || !state.search) return;
  if (!d.trials.length) {
    emptyPlot("plot-parcoords", "no rewarded trial yet");
    emptyPlot("plot-interaction", "");
    setText("decisions-note", "");
    return;
  }
  drawParcoords(d.trials);
  drawInteraction(d.trials);
  setText("decisions-note", `${d.trials.length} rewarded trials (a uniform sample of at most 1000 finished trials). ` +
          "Lines are coloured by reward, brightest best; the heatmap is the mean reward of each pair of values.");
}
// Parallel coordinates drawn as SVG lines (plotly's parcoords needs WebGL): one trace per
// reward quintile so that a line's colour says how good the pipeline was.
function drawParcoords(trials) {
  const agentName = $("pc-agent").value;
  const agent = state.search.space.find((a) => a.name === agentName) || state.search.space[0];
  const rewards = trials.map((t) => t[2]);
  const lo = Math.min(...rewards), hi = Math.max(...rewards);
  const axes = agent.decisions.length;
  const bins = 5, palette = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];
  const traces = palette.map((colour, b) => ({type: "scatter", mode: "lines", x: [], y: [],
    line: {color: colour, width: 1}, opacity: 0.55, hoverinfo: "skip",
    name: `reward ${fmt(lo + (hi - lo) * b / bins, 3)}–${fmt(lo + (hi - lo) * (b + 1) / bins, 3)}`}));
  trials.forEach((t, i) => {
    const action = t[3][agent.name];
    if (!action) return;
    const level = hi > lo ? (t[2] - lo) / (hi - lo) : 1;
    const trace = traces[Math.min(bins - 1, Math.floor(level * bins))];
    const jitter = ((i * 7919) % 97) / 97 * 0.3 - 0.15;   // spreads lines that share values
    action.forEach((k, a) => {
      const size = agent.decisions[a].values.length;
      trace.x.push(a);
      trace.y.push(size > 1 ? (k + 0.5 + jitter) / size : 0.5);
    });
    trace.x.push(axes); trace.y.push(level);
    trace.x.push(null); trace.y.push(null);
  });
  plot("plot-parcoords", traces.filter((t) => t.x.length), {
    margin: {l: 60, r: 20, t: 10, b: 80},
    xaxis: {tickvals: [...Array(axes + 1).keys()], ticktext: [...agent.decisions.map((x) => esc(x.name)), "reward"],
            tickangle: -45, showgrid: true, gridcolor: "#9ca3af", zeroline: false, range: [-0.2, axes + 0.2]},
    yaxis: {showticklabels: false, range: [0, 1], showgrid: false, zeroline: false},
    legend: {orientation: "h", y: -0.45, font: {size: 9}}});
}
function drawInteraction(trials) {
  const dx = state.flatDecisions.find((d) => d.label === $("ix-x").value) || state.flatDecisions[0];
  const dy = state.flatDecisions.find((d) => d.label === $("ix-y").value) || state.flatDecisions[0];
  const space = state.search.space;
  const xs = space[dx.agent].decisions[dx.index].values, ys = space[dy.agent].decisions[dy.index].values;
  const sum = ys.map(() => xs.map(() => 0)), count = ys.map(() => xs.map(() => 0));
  for (const t of trials) {
    const ax = t[3][space[dx.agent].name], ay = t[3][space[dy.agent].name];
    if (!ax || !ay) continue;
    const i = ay[dy.index], j = ax[dx.index];
    if (sum[i] === undefined || sum[i][j] === undefined) continue;
    sum[i][j] += t[2]; count[i][j] += 1;
  }
  const z = sum.map((row, i) => row.map((v, j) => count[i][j] ? v / count[i][j] : null));
  plot("plot-interaction", [{type: "heatmap", z, x: xs.map(esc), y: ys.map(esc), colorscale: "Viridis",
    customdata: count, hoverongaps: false,
    hovertemplate: `${esc(dx.label)} = %{x}<br>${esc(dy.label)} = %{y}<br>mean reward %{z:.4f} (n=%{customdata})<extra></extra>`,
    colorbar: {title: {text: "mean reward"}}}],
    {margin: {l: 90, r: 10, t: 10, b: 100}, xaxis: {title: {text: esc(dx.label)}, type: "category"},
     yaxis: {title: {text: esc(dy.label)}, type: "category"}});
}

// ---- wiring --------------------------------------------------------------------------
function wire() {
  window.addEventListener("hashchange", route);
  document.querySelectorAll("#trials-table th").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.sort;
    state.sort = {key, desc: state.sort.key === key ? !state.sort.desc : key === "reward"};
    drawTrials();
    if (SERVER_SORTS[key]) refreshTrials().catch(() => {});
  }));
  $("trial-filter").addEventListener("input", drawTrials);
  $("status-filter").addEventListener("change", () => refreshTrials().catch(() => {}));
  $("trial-limit").addEventListener("change", () => refreshTrials().catch(() => {}));
  $("close-details").addEventListener("click", closeDetails);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetails(); });
  $("draw-preview").addEventListener("click", drawPreview);
  $("policy-agent").addEventListener("change", () => { fillDecisionSelect(); drawPolicy(); });
  $("policy-decision").addEventListener("change", drawPolicy);
  for (const id of ["pc-agent", "ix-x", "ix-y"]) $(id).addEventListener("change", drawDecisions);
  route();
}
document.addEventListener("DOMContentLoaded", wire);
