"""The dashboard: one static HTML page with inline CSS and JS, served by the read API at /dashboard.

The page itself is public (it holds no data); it reads the JSON endpoints of the same API with the
bearer token it was given in the URL fragment (``/dashboard#token=…``, which browsers never send to
the server), keeps it in sessionStorage and reads the API again POLL_MS milliseconds after each
refresh ends (one at a time, so an older answer never overwrites a newer one). Everything it
renders goes through ``textContent`` (never ``innerHTML``), so reasons and other user-controlled
text are shown, not interpreted; the Content-Security-Policy allows only this page's own script and style
(by hash) and requests to the same origin.
"""

from __future__ import annotations

import base64
import hashlib

from shared.api.http import ApiResponse

PATH = "/dashboard"
POLL_MS = 1500
HISTORY_LIMIT = 8

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
  align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
#state { color: #b8c0cc; font-size: 12px; }
main { padding: 16px 20px; display: grid; gap: 16px; }
#error { background: #fde2e1; color: #8a1c14; border: 1px solid #f3a29c; padding: 10px 14px;
  border-radius: 6px; }
#error:empty { display: none; }
.service { background: #fff; border-radius: 8px; padding: 14px 18px;
  box-shadow: 0 1px 3px rgba(0,0,0,.12); }
.service.deleted { opacity: .6; }
.service h2 { margin: 0 0 4px; font-size: 17px; }
.meta { color: #5a6373; font-size: 12px; }
h3 { font-size: 13px; margin: 12px 0 6px; text-transform: uppercase; letter-spacing: .04em;
  color: #5a6373; }
.bar-row { display: grid; grid-template-columns: 260px 1fr 48px; gap: 8px; align-items: center;
  margin: 3px 0; }
.bar-label { font-family: ui-monospace, monospace; font-size: 12px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.bar-track { background: #e6e9ee; border-radius: 4px; height: 16px; overflow: hidden; }
.bar { background: #3b7ddd; height: 100%; transition: width .4s; }
.bar.candidate { background: #e8a33d; }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
.phase { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px;
  font-weight: 600; background: #e6e9ee; }
.phase.PROMOTED { background: #d5f0dc; color: #19692c; }
.phase.ROLLED_BACK, .phase.FAILED { background: #fde2e1; color: #8a1c14; }
.phase.SHIFTING, .phase.VALIDATING, .phase.DEPLOYING, .phase.WAITING_READY, .phase.PROMOTING {
  background: #fff1d6; color: #7a4d00; }
.live { background: #f7f8fa; border-left: 3px solid #e8a33d; padding: 6px 10px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed; }
td, th { text-align: left; padding: 4px 6px; border-top: 1px solid #e6e9ee; vertical-align: top; }
th:nth-child(1) { width: 120px; } th:nth-child(2) { width: 260px; } th:nth-child(4) { width: 150px; }
tr.log td { border-top: none; padding-top: 0; }
th { color: #5a6373; font-weight: 600; }
td.reason { white-space: pre-wrap; word-break: break-word; }
details summary { cursor: pointer; color: #3b7ddd; }
details li { white-space: pre-wrap; word-break: break-word; }
.none { color: #8a93a3; }
"""

_SCRIPT = """
"use strict";
const KEY = "hekaton.dashboard.token";
const POLL_MS = __POLL_MS__;
const HISTORY = __HISTORY__;
const opened = new Set();

function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class AuthError extends Error {}

async function get(path) {
  const token = sessionStorage.getItem(KEY);
  const headers = token ? {"Authorization": "Bearer " + token} : {};
  const r = await fetch(path, {headers, cache: "no-store"});
  let body = null;
  try { body = await r.json(); } catch (e) { body = {error: r.statusText}; }
  if (r.status === 401 || r.status === 403) throw new AuthError(r.status + ": " + body.error);
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (body && body.error));
  return body;
}

function counts(c) {
  if (!c) return "none";
  const parts = [];
  for (const k of ["requests", "errors", "slow"]) if (k in c) parts.push(k + " " + c[k]);
  return parts.join(", ") || JSON.stringify(c);
}

function bars(traffic) {
  if (!traffic.length) return el("div", {class: "none"}, "no traffic reported by the cluster");
  const box = el("div", {class: "traffic"});
  for (const t of traffic) {
    const bar = el("div", {class: "bar" + (t.tag === "candidate" ? " candidate" : "")});
    bar.style.width = Math.max(0, Math.min(100, t.percent)) + "%";
    const label = t.revision + (t.tag ? " (" + t.tag + ")" : "");
    box.append(el("div", {class: "bar-row", "data-revision": t.revision, "data-percent": t.percent},
      el("span", {class: "bar-label", title: label}, label),
      el("div", {class: "bar-track"}, bar),
      el("span", {class: "pct"}, t.percent + "%")));
  }
  return box;
}

function shortImage(image) {
  const [name, digest] = String(image || "").split("@");
  const short = name.slice(name.lastIndexOf("/") + 1);
  return digest ? short + " · " + digest.slice(0, 19) : short;
}

function phase(p) { return el("span", {class: "phase " + p, "data-phase": p}, p); }

function active(r) {
  if (!r) return el("div", {class: "none active-rollout"}, "no rollout in flight");
  const step = r.steps.length ? "step " + (r.step + 1) + "/" + r.steps.length + " (" +
    r.steps[r.step] + "%)" : "first deploy";
  const box = el("div", {class: "active-rollout", "data-rollout": r.id},
    el("div", {}, phase(r.phase), " ",
      el("span", {class: "step", "data-step": r.step}, step),
      " · candidate takes ", el("b", {class: "candidate-pct"}, r.traffic_percent + "%"),
      " · ", el("span", {title: r.image}, shortImage(r.image))),
    el("div", {class: "meta"}, "rollout " + r.id + " · revision " + r.revision));
  const a = r.analysis;
  if (a) {
    box.append(el("div", {class: "live"},
      el("div", {}, el("b", {class: "verdict"}, String(a.verdict || "").toUpperCase()), " ",
        el("span", {class: "live-reason"}, a.reason || "")),
      el("div", {class: "meta"}, "candidate: " + counts(a.candidate) + " · stable: " +
        counts(a.stable) + (a.needed_requests ? " · needs ~" + a.needed_requests +
        " more candidate requests" : "")),
      a.problem ? el("div", {class: "meta"}, a.problem) : null));
  }
  return box;
}

function historyTable(name, rollouts) {
  if (!rollouts.length) return el("div", {class: "none"}, "no rollouts yet");
  const body = el("tbody");
  for (const r of rollouts) {
    const list = el("ol");
    for (const d of r.decisions || []) {
      list.append(el("li", {}, (d.at || "").slice(11, 23) + "  " + (d.phase_from || "NEW") +
        " → " + d.phase_to + "  " + d.reason));
    }
    const details = el("details", {}, el("summary", {}, (r.decisions || []).length +
      " decision(s)"), list);
    const key = name + "/" + r.id;
    details.open = opened.has(key);
    details.addEventListener("toggle", () => details.open ? opened.add(key) : opened.delete(key));
    body.append(el("tr", {class: "rollout", "data-rollout": r.id, "data-phase": r.phase},
      el("td", {}, phase(r.phase)),
      el("td", {title: r.image}, shortImage(r.image)),
      el("td", {class: "reason"}, r.reason || ""),
      el("td", {}, (r.started_at || "").slice(0, 19).replace("T", " "))),
      el("tr", {class: "log"}, el("td", {colSpan: 4}, details)));
  }
  return el("table", {class: "history"},
    el("thead", {}, el("tr", {}, ...["phase", "image", "reason", "started"].map(
      (h) => el("th", {}, h)))), body);
}

async function service(item) {
  const name = encodeURIComponent(item.service);
  const [status, page] = await Promise.all([
    get("services/" + name), get("services/" + name + "/rollouts?limit=" + HISTORY)]);
  return el("section", {class: "service" + (status.deleted_at ? " deleted" : ""),
      "data-service": item.service},
    el("h2", {}, item.service),
    el("div", {class: "meta"}, status.namespace + " · " + status.image_repository +
      " · stable " + (status.stable_revision || "none") +
      (status.ready === null ? "" : status.ready ? " · ready" : " · not ready") +
      (status.deleted_at ? " · deleted " + status.deleted_at : "") +
      (status.cluster_error ? " · " + status.cluster_error : "")),
    el("h3", {}, "Traffic"), bars(status.traffic),
    el("h3", {}, "Active rollout"), active(status.active_rollout),
    el("h3", {}, "History"), historyTable(item.service, page.rollouts));
}

async function refresh() {
  const error = document.getElementById("error");
  const root = document.getElementById("services");
  try {
    const list = await get("services?limit=100");
    const cards = await Promise.all(list.services.map(service));
    root.replaceChildren(...(cards.length ? cards :
      [el("div", {class: "none"}, "no services registered")]));
    error.textContent = "";
    document.getElementById("state").textContent =
      "updated " + new Date().toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s";
  } catch (e) {
    if (e instanceof AuthError) {
      root.replaceChildren();
      error.textContent = "Not signed in (" + e.message + "). Open the link printed by " +
        "`hekaton dashboard` to sign in.";
    } else {
      error.textContent = "Cannot read the API: " + e.message;
    }
  }
}

// One refresh at a time, the next POLL_MS after the last one ended: with a fixed interval, a slow
// answer could land after a newer one and draw the older state over it.
async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

takeToken();
poll();
""".replace("__POLL_MS__", str(POLL_MS)).replace("__HISTORY__", str(HISTORY_LIMIT))

_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>hekaton dashboard</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>hekaton</h1><span id="state">loading…</span></header>
<main>
<div id="error" role="alert"></div>
<div id="services"></div>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_hash(_SCRIPT)}",
        f"style-src {_hash(_STYLE)}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def page() -> ApiResponse:
    """The dashboard's HTML (no data in it: the page fetches that with its token)."""
    return ApiResponse(
        200,
        _HTML.encode(),
        {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": POLICY,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
