// shipbot dashboard: renders the snapshots that /api/events streams. Text from the
// server only ever goes into textContent, never into HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let rack = new URLSearchParams(location.search).get("rack") || "";
let source = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function pct(a, b) { return b > 0 ? Math.round((100 * a) / b) : 0; }

function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false });
}

function fmtValue(v, unit) {
  if (v === null || v === undefined) return "no data";
  if (unit === "ratio") return (100 * v).toFixed(1) + "%";
  if (unit === "ms") return v.toFixed(0) + " ms";
  return Number(v.toPrecision(3)).toString();
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/events" + (rack ? "?rack=" + encodeURIComponent(rack) : ""));
  source.addEventListener("snapshot", (ev) => {
    $("conn").dataset.state = "live";
    $("conn").textContent = "live";
    render(JSON.parse(ev.data));
  });
  source.onerror = () => {
    $("conn").dataset.state = "reconnecting";
    $("conn").textContent = "reconnecting";
  };
}

function render(s) {
  renderRelease(s.release);
  renderRollout(s.rollout);
  renderPush(s.push, s.racks || []);
  renderHosts(s.rack, s.hosts || []);
  renderEvents(s.events || []);
  renderHistory(s.history || []);
}

function renderRelease(r) {
  if (!r) return;
  $("release-version").textContent = r.version;
  $("release-state").textContent = r.state;
  $("release-state").dataset.state = r.state;
  const meta = [r.commits + " commits (" + r.range + ")"];
  if (r.head) meta.push("shipped by " + r.head + (r.shipped_at ? " at " + when(r.shipped_at) : ""));
  if (r.outcome) meta.push(r.outcome);
  $("release-meta").textContent = meta.join(" · ");
  $("committers").replaceChildren(...(r.committers || []).map((c) =>
    el("li", { "data-person": c.person, "data-ready": String(c.ready), title: c.ready ? "checked in" : "not checked in yet" }, c.person)));
}

function renderRollout(ro) {
  if (!ro) {
    $("rollout-phase").textContent = "none";
    $("rollout-phase").dataset.state = "";
    $("tiers").replaceChildren();
    $("gates").replaceChildren();
    $("rollout-reason").hidden = true;
    return;
  }
  $("rollout-phase").textContent = ro.phase + (ro.paused ? " (paused)" : "");
  $("rollout-phase").dataset.state = ro.phase;
  $("rollout-reason").hidden = !ro.reason;
  $("rollout-reason").textContent = ro.reason ? "Rolled back: " + ro.reason : "";
  $("tiers").replaceChildren(...ro.tiers.map((t) => {
    let state = t.state;
    if (t.state === "baking") state += " · " + Math.ceil(t.bake_left) + "s left";
    return el("li", { "data-tier": t.name, "data-state": t.state },
      el("strong", {}, t.name), " ", el("span", { class: "muted" }, t.size),
      el("span", { class: "state" }, state));
  }));
  $("gates").replaceChildren(...(ro.gates || []).map(chart));
}

// chart draws a gate's canary and baseline readings as two lines.
function chart(g) {
  const W = 260, H = 80, P = 4;
  const pts = g.points || [];
  const vals = pts.flatMap((p) => [p.canary, p.baseline]).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...vals) * 1.1;
  const t0 = pts.length ? Date.parse(pts[0].t) : 0;
  const t1 = pts.length ? Math.max(Date.parse(pts[pts.length - 1].t), t0 + 1) : 1;
  const xy = (p, v) => [P + ((Date.parse(p.t) - t0) / (t1 - t0)) * (W - 2 * P), H - P - (v / max) * (H - 2 * P)];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  for (const [side, color] of [["baseline", "#546e7a"], ["canary", "#d84315"]]) {
    const line = pts.filter((p) => p[side] !== null && p[side] !== undefined).map((p) => xy(p, p[side]).join(",")).join(" ");
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", line);
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", color);
    pl.setAttribute("stroke-width", "2");
    pl.dataset.side = side;
    svg.append(pl);
  }
  const last = pts[pts.length - 1] || {};
  return el("div", { class: "gate", "data-gate": g.name },
    el("div", {}, el("strong", {}, g.name)), svg,
    el("div", { class: "legend" },
      el("span", { class: "canary" }, "canary " + fmtValue(last.canary, g.unit)), " · ",
      el("span", { class: "baseline" }, "baseline " + fmtValue(last.baseline, g.unit)),
      last.tier ? " · tier " + last.tier : ""));
}

function renderPush(p, racks) {
  if (p) {
    $("push-release").textContent = p.release;
    $("push-summary").textContent = `${p.staged}/${p.hosts} hosts staged · ${bytes(p.bytes)} of ${bytes(p.total)} · ${bytes(p.rate)}/s`;
    const fromOrigin = p.from_webseed + p.from_seeder;
    const got = p.from_peers + p.from_webseed;
    const p2p = Math.max(0, p.from_peers - p.from_seeder);
    $("push-bytes").replaceChildren(
      el("div", { class: "bar", title: "peer-to-peer share" }, el("span", { style: "" })),
      el("span", { id: "push-p2p" }, `peer-to-peer ${bytes(p2p)} (${pct(p2p, got)}%) · from the origin ${bytes(fromOrigin)}`));
    $("push-bytes").querySelector(".bar span").style.width = pct(p2p, got) + "%";
  }
  $("racks").replaceChildren(...racks.map((r) => {
    const active = Object.entries(r.active || {}).sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v}×${n}`).join(" ");
    const b = el("button", { class: "rack", type: "button", "data-rack": r.name, "aria-pressed": String(r.name === rack) },
      el("div", { class: "name" }, r.name, el("span", { class: "muted" }, ` ${r.hosts} hosts`)),
      el("div", { class: "bar" }, el("span", {})),
      el("div", { class: "line" }, `staged ${r.staged}/${r.hosts}`),
      el("div", { class: "line", "data-active": active }, "active " + (active || "none")),
      r.unhealthy || r.stale ? el("div", { class: "line bad" }, `${r.unhealthy} unhealthy, ${r.stale} stale`) : "");
    b.querySelector(".bar span").style.width = pct(r.bytes, r.total) + "%";
    b.onclick = () => { rack = r.name === rack ? "" : r.name; connect(); };
    return b;
  }));
}

function renderHosts(name, hosts) {
  $("rack-detail").hidden = !name;
  $("rack-name").textContent = name || "";
  $("hosts").tBodies[0].replaceChildren(...hosts.map((h) => {
    const health = h.stale ? "stale" : h.healthy === null || h.healthy === undefined ? "?" : h.healthy ? "healthy" : "unhealthy";
    return el("tr", { "data-host": h.name, "data-active": h.active || "" },
      el("td", {}, h.name), el("td", {}, Math.round(100 * h.staged) + "%"), el("td", {}, h.active || "none"),
      el("td", { class: health === "healthy" ? "ok" : health === "?" ? "" : "bad" }, health));
  }));
}

function renderEvents(evs) {
  $("events").replaceChildren(...evs.map((e) =>
    el("li", { "data-kind": e.kind, "data-decision": e.decision },
      el("time", {}, when(e.at)), `${e.actor}${e.release ? " [" + e.release + "]" : ""}: ${e.text}`)));
}

function renderHistory(rs) {
  $("history").tBodies[0].replaceChildren(...rs.map((r) =>
    el("tr", { "data-release": r.version, "data-state": r.state },
      el("td", {}, r.version), el("td", {}, r.state), el("td", {}, r.head || ""),
      el("td", {}, r.finished_at ? when(r.finished_at) : ""), el("td", {}, r.outcome || ""))));
}

$("rack-close").onclick = () => { rack = ""; connect(); };
connect();
