// DriftGuard dashboard: plain JavaScript, no dependencies. Every value from the API is put in
// the page with textContent (never as HTML). Views: #/ (overview), #/drift?… (list),
// #/resource/<resource id> (one resource). Live updates come from GET /api/v1/events.
"use strict";

const SEVERITY_RANK = { high: 3, medium: 2, low: 1 };
const view = () => document.getElementById("view");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new Error("unauthorized");
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function ago(time) {
  if (!time) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(time)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function duration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  return `${(seconds / 3600).toFixed(1)}h`;
}

function value(v) {
  if (v === undefined || v === null) return "∅";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function severity(s) {
  return el("span", { class: s ? `sev-${s}` : "muted" }, s || "–");
}

function resourceLink(id) {
  return el("a", { href: `#/resource/${encodeURIComponent(id)}` }, id);
}

function headline(record) {
  const change = (record.drift_details || [])[0];
  if (!change) return "";
  return `${change.field || "(whole object)"}: ${value(change.from)} → ${value(change.to)}`;
}

function manager(record) {
  const names = new Set((record.drift_details || []).map((c) => c.manager).filter(Boolean));
  return [...names].join(", ");
}

function table(caption, headers, rows) {
  return el("table", {},
    el("caption", { class: "muted" }, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

function card(label, n, cls) {
  return el("div", { class: "card" }, el("span", { class: `n ${cls || ""}` }, n), label);
}

// === Overview ===

async function overview() {
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const [statistics, ready, recent] = await Promise.all([
    api("/api/v1/statistics"),
    fetch("/ready").then((r) => r.json()),
    api(`/api/v1/drift-records?since=${encodeURIComponent(since)}&limit=500`),
  ]);
  const stats = statistics.statistics || statistics;
  const commit = ((ready.components || {}).git || {}).message || "–";
  const events = (recent.drift_records || [])
    .filter((r) => r.drift_status !== "none")
    .sort((a, b) => Date.parse(b.last_updated) - Date.parse(a.last_updated))
    .slice(0, 20);
  const bySeverity = Object.entries(stats.by_severity || {});
  const byType = Object.entries(stats.by_type || {});
  const mttr = Object.entries(stats.mttr_seconds || {});
  view().replaceChildren(
    el("h2", {}, "Overview"),
    el("section", { "aria-label": "Counts", class: "cards" },
      card("active drift", stats.active_drift, "st-active"),
      card("resolved", stats.resolved_drift, "st-resolved"),
      card("in sync", stats.no_drift),
      card("resources", stats.total_records),
      card("detected (24h)", stats.recent_active_drift),
      card("resolved (24h)", stats.recent_resolutions)),
    el("h3", {}, "Active drift by severity"),
    table("Active drift by severity", ["severity", "resources"],
      bySeverity.map(([s, n]) => el("tr", {}, el("td", {}, severity(s)), el("td", {}, n)))),
    el("h3", {}, "Active drift by type"),
    table("Active drift by type", ["type", "resources"],
      byType.map(([t, n]) => el("tr", {}, el("td", {}, t), el("td", {}, n)))),
    el("h3", {}, "Time to resolve"),
    table("Mean time to resolve", ["type or severity", "mean"],
      mttr.map(([k, s]) => el("tr", {}, el("td", {}, k), el("td", {}, duration(s))))),
    el("h3", {}, "Recent detections and resolutions"),
    table("Last 24 hours, newest first", ["when", "resource", "status", "severity", "change"],
      events.map((r) => el("tr", { "data-id": r.resource_id },
        el("td", {}, ago(r.last_updated)),
        el("td", {}, resourceLink(r.resource_id)),
        el("td", { class: `st-${r.drift_status}` }, r.drift_status),
        el("td", {}, severity(r.severity)),
        el("td", {}, headline(r))))),
    el("h3", {}, "Components"),
    el("p", {}, "Git: ", el("code", {}, commit)),
    table("Component health", ["component", "status", "since", "detail"],
      Object.entries(ready.components || {}).map(([name, c]) => el("tr", {},
        el("td", {}, name), el("td", {}, c.status), el("td", {}, ago(c.since)), el("td", {}, c.message)))));
}

// === Drift list ===

const FILTERS = ["namespace", "kind", "status", "severity", "type"];

async function driftList(params) {
  const query = new URLSearchParams();
  for (const key of FILTERS) if (params.get(key)) query.set(key, params.get(key));
  if (!params.get("status")) query.set("drift_detected", "true");
  const limit = 50;
  const page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  const text = (params.get("q") || "").toLowerCase();
  // The API filters by field; a text search reads the largest page the API serves and
  // searches and pages it here.
  query.set("limit", text ? "10000" : String(limit));
  query.set("offset", text ? "0" : String(page * limit));
  const data = await api(`/api/v1/drift-records?${query}`);
  const sort = params.get("sort") || "severity";
  let rows = (data.drift_records || [])
    .filter((r) => !text || r.name.toLowerCase().includes(text))
    .sort((a, b) => sort === "time"
      ? Date.parse(b.last_updated) - Date.parse(a.last_updated)
      : (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0));
  if (text) {
    data.total = rows.length;
    rows = rows.slice(page * limit, (page + 1) * limit);
  }
  const field = (name, label, options) => {
    const id = `f-${name}`;
    const input = options
      ? el("select", { id, name }, ["", ...options].map((o) => el("option", { value: o }, o || "any")))
      : el("input", { id, name, type: "search", value: params.get(name) || "" });
    if (options) input.value = params.get(name) || "";
    return el("label", { for: id }, label, input);
  };
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filters" },
    field("q", "name contains"),
    field("namespace", "namespace"),
    field("kind", "kind"),
    field("status", "status", ["active", "resolved", "none"]),
    field("severity", "severity", ["high", "medium", "low"]),
    field("type", "type"),
    field("sort", "sort by", ["severity", "time"]),
    el("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    window.location.hash = `#/drift?${next}`;
  });
  const pageLink = (n, label) => {
    const next = new URLSearchParams(params);
    next.set("page", String(n));
    return el("a", { href: `#/drift?${next}` }, label);
  };
  const pages = Math.max(1, Math.ceil(data.total / limit));
  view().replaceChildren(
    el("h2", {}, "Drift"),
    form,
    table(`${data.total} matching resources`, ["resource", "status", "severity", "type", "headline change", "manager", "age"],
      rows.map((r) => el("tr", { "data-id": r.resource_id },
        el("td", {}, resourceLink(r.resource_id)),
        el("td", { class: `st-${r.drift_status}` }, r.drift_status),
        el("td", {}, severity(r.severity)),
        el("td", {}, r.drift_type || "–"),
        el("td", {}, el("code", {}, headline(r))),
        el("td", {}, manager(r)),
        el("td", {}, ago(r.first_detected || r.last_updated))))),
    el("nav", { "aria-label": "Pages" },
      page > 0 ? pageLink(page - 1, "← previous") : null, ` page ${page + 1} of ${pages} `,
      page + 1 < pages ? pageLink(page + 1, "next →") : null));
}

// === Resource ===

/// `file:line` in Git — `line` is a change's own line (where Git writes that field), else the
/// line of the record's document — linked to the file at its commit when the repository's web
/// address is known (a `<meta name="driftguard-source">` the server fills).
function sourceLink(record, line = record.source_line) {
  if (!record.source_path) return el("span", { class: "muted" }, "not in Git");
  const path = record.source_path.split("#")[0];
  const label = line ? `${path}:${line}` : record.source_path;
  const meta = document.querySelector('meta[name="driftguard-source"]');
  const base = meta ? meta.content : "";
  if (!base || !/^https?:\/\//.test(base) || !record.git_commit) return el("code", {}, label);
  const href = `${base}/blob/${encodeURIComponent(record.git_commit)}/` +
    path.split("/").map(encodeURIComponent).join("/") +
    (line ? `#L${line}` : "");
  return el("a", { href, rel: "noreferrer" }, el("code", {}, label));
}

function lastKey(field) {
  const match = /([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?$/.exec(field || "");
  if (!match) return null;
  const parts = match[1].split(".");
  return parts[parts.length - 1];
}

function objectView(title, object, keys) {
  const lines = JSON.stringify(object ?? null, null, 2).split("\n");
  return el("section", { "aria-label": title }, el("h3", {}, title),
    el("pre", { tabindex: "0", "aria-label": title }, lines.map((line) => {
      const hit = keys.some((k) => line.trimStart().startsWith(`"${k}":`));
      return el("span", { class: hit ? "changed" : null }, `${line}\n`);
    })));
}

async function resource(id) {
  const [record, history] = await Promise.all([
    api(`/api/v1/drift-records/${encodeURIComponent(id)}`),
    api(`/api/v1/drift-records/${encodeURIComponent(id)}/history`).catch(() => ({ episodes: [] })),
  ]);
  const changes = record.drift_details || [];
  const keys = changes.map((c) => lastKey(c.field)).filter(Boolean);
  const episodes = history.episodes || history.history || [];
  view().replaceChildren(...[
    el("h2", {}, record.resource_id),
    el("p", {},
      el("span", { class: `st-${record.drift_status}` }, record.drift_status), " · ",
      severity(record.severity), " · ", record.drift_type || "no drift", " · source ",
      sourceLink(record),
      record.helm_release ? ` (Helm release ${record.helm_release})` : "",
      record.git_commit ? ` at ${record.git_commit.slice(0, 7)}` : ""),
    el("h3", {}, "Changes"),
    table(`${changes.length} changed fields`, ["field", "from", "to", "type", "severity", "manager", "when", "in Git"],
      changes.map((c) => el("tr", {},
        el("td", {}, el("code", {}, c.field || "(whole object)")),
        el("td", {}, el("code", {}, value(c.from))),
        el("td", {}, el("code", {}, value(c.to))),
        el("td", {}, c.type),
        el("td", {}, severity(c.severity)),
        el("td", {}, c.manager || "unknown"),
        el("td", {}, c.changed_at ? `${ago(c.changed_at)} (${c.changed_at})` : "–"),
        el("td", {}, sourceLink(record, c.source_line || record.source_line))))),
    (record.warnings || []).length ? el("h3", {}, "Warnings") : null,
    (record.warnings || []).length ? table("Not drift", ["field", "code", "message"],
      record.warnings.map((w) => el("tr", {}, el("td", {}, el("code", {}, w.field)), el("td", {}, w.code), el("td", {}, w.message)))) : null,
    el("div", { class: "side" },
      objectView("Desired (Git)", record.desired_state, keys),
      objectView("Live (cluster)", record.live_state, keys)),
    el("h3", {}, "Episodes"),
    el("ol", { class: "timeline", "aria-label": "Episodes, newest first" },
      episodes.map((e) => el("li", {},
        el("strong", {}, e.resolved_at ? "resolved" : "open"), " ",
        `opened ${e.first_detected}`, e.resolved_at ? `, resolved ${e.resolved_at}` : "",
        e.resolution_message ? ` — ${e.resolution_message}` : "",
        e.git_commit ? ` (commit ${e.git_commit.slice(0, 7)})` : "",
        el("br"), `${e.drift_type || ""} ${e.severity || ""}: `,
        (e.changes || []).map((c) => c.field).join(", ")))),
  ].filter(Boolean));
}

// === Routing and live updates ===

let rendering = Promise.resolve();

function render() {
  const hash = window.location.hash || "#/";
  rendering = rendering.then(async () => {
    try {
      if (hash.startsWith("#/resource/")) await resource(decodeURIComponent(hash.slice(11)));
      else if (hash.startsWith("#/drift")) await driftList(new URLSearchParams(hash.split("?")[1] || ""));
      else await overview();
    } catch (error) {
      view().replaceChildren(el("p", { role: "alert" }, `Could not load: ${error.message}`));
    }
  });
  return rendering;
}

let pending = null;
function refreshSoon(id) {
  clearTimeout(pending);
  pending = setTimeout(async () => {
    await render();
    const row = id && view().querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    if (row) row.classList.add("new");
  }, 150);
}

function live() {
  const status = document.getElementById("live");
  const source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => { status.textContent = "live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  for (const name of ["detected", "changed", "resolved"]) {
    source.addEventListener(name, (event) => {
      let id = null;
      try { id = JSON.parse(event.data).resource_id; } catch (_) { /* keep null */ }
      status.textContent = `live · ${name} ${id || ""}`;
      refreshSoon(id);
    });
  }
  source.addEventListener("analysis", () => refreshSoon(null));
}

window.addEventListener("hashchange", () => { render(); view().focus(); });
document.addEventListener("DOMContentLoaded", () => { render(); live(); });
