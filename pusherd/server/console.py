"""The live debug console: ``/console``, off unless ``[console] enabled``.

A small page (no build step, no external assets) that shows, per app, the open
connections, the occupied channels with their subscriber and member counts, and a live
stream of connections, subscriptions, channel transitions, client events, API triggers and
errors. The page polls two JSON routes about once a second: ``/console/state`` and
``/console/events?after=N``. Every route requires ``?token=`` equal to ``[console] token``
(compared in constant time); the token is a secret and is never logged.

The feed is a bounded ring (:data:`FEED_SIZE` entries): the console costs memory only
while it is enabled, and nothing per recipient even then.
"""

from __future__ import annotations

import collections
import hmac
from typing import Any

import orjson

from pusherd.adapters.base import Adapter
from pusherd.apps import AppRegistry
from pusherd.core.api import parse_query
from pusherd.core.transitions import ClientEventSent, Transition
from pusherd.server.http_api import HttpResponse, Route, error_response
from pusherd.server.state import ServerState
from pusherd.server.telemetry import channel_type

FEED_SIZE = 1000  # entries kept for pages that poll
MAX_CHANNELS_SHOWN = 500  # per app, in /console/state
DATA_PREVIEW = 200  # characters of an event's data shown in the feed


class DebugConsole:
    """The console's routes and its event feed."""

    def __init__(self, token: str, apps: AppRegistry, adapter: Adapter,
                 state: ServerState) -> None:
        self._token = token.encode()
        self.apps = apps
        self.adapter = adapter
        self.state = state
        self.feed: collections.deque[dict[str, Any]] = collections.deque(maxlen=FEED_SIZE)
        self.sequence = 0
        state.telemetry.sinks.append(self.record)
        adapter.add_listener(self.on_transition)

    def routes(self) -> dict[str, Route]:
        """The console's exact paths and their handlers."""
        return {"/console": self.page, "/console/state": self.snapshot,
                "/console/events": self.events}

    # --- the feed -----------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> None:
        """Append one entry to the feed (a :class:`Telemetry` sink)."""
        self.sequence += 1
        entry["seq"] = self.sequence
        self.feed.append(entry)

    def on_transition(self, transition: Transition) -> None:
        """Channel transitions and client events, as the adapter decided them."""
        fields: dict[str, Any] = {"app_id": transition.app_id, "channel": transition.channel}
        if isinstance(transition, ClientEventSent):
            fields.update(event=transition.event, socket_id=transition.socket_id,
                          data=orjson.dumps(transition.data).decode()[:DATA_PREVIEW])
        elif hasattr(transition, "user_id"):
            fields["user_id"] = transition.user_id
        elif hasattr(transition, "subscription_count"):
            fields["subscription_count"] = transition.subscription_count
        self.state.telemetry.tell(transition.name, **fields)

    # --- routes -------------------------------------------------------------------------

    def _authorized(self, query: str, path: str) -> bool:
        token = next((v for k, v in parse_query(query) if k == "token"), "")
        if hmac.compare_digest(token.encode(), self._token):
            return True
        self.state.telemetry.console_unauthorized(path)  # a guess at the token is no secret
        return False

    def page(self, method: str, query: str) -> HttpResponse:
        """The console page (HTML)."""
        if not self._authorized(query, "/console"):
            return error_response(401, "Open /console?token=<[console] token>")
        return HttpResponse(200, PAGE.encode(), "text/html; charset=utf-8")

    def snapshot(self, method: str, query: str) -> HttpResponse:
        """Per app: connections, and channels with subscriber and member counts."""
        if not self._authorized(query, "/console/state"):
            return error_response(401, "Unauthorized")
        apps = []
        for app in self.apps:
            channels: list[dict[str, Any]] = []
            for name, snap in self.adapter.occupied_channels(app, ""):
                channels.append({"name": name, "type": channel_type(name),
                                 "subscribers": snap.subscription_count,
                                 "members": snap.user_count})
                if len(channels) >= MAX_CHANNELS_SHOWN:
                    break
            channels.sort(key=lambda c: c["name"])
            apps.append({"id": app.id, "name": app.name, "key": app.key,
                         "connections": self.adapter.connection_count(app),
                         "channels": channels})
        return HttpResponse(200, orjson.dumps({"apps": apps, "draining": self.state.draining,
                                               "sequence": self.sequence}))

    def events(self, method: str, query: str) -> HttpResponse:
        """Feed entries after ``?after=N`` (at most the ring's size)."""
        if not self._authorized(query, "/console/events"):
            return error_response(401, "Unauthorized")
        after = next((v for k, v in parse_query(query) if k == "after"), "0")
        try:
            since = int(after)
        except ValueError:
            return error_response(400, "after must be an integer")
        entries = [e for e in self.feed if e["seq"] > since]
        return HttpResponse(200, orjson.dumps({"events": entries, "sequence": self.sequence}))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pusherd debug console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
 header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 18px;
          align-items: baseline; }
 header h1 { font-size: 17px; margin: 0; } header span { opacity: .75; }
 main { display: grid; grid-template-columns: minmax(320px, 1fr) 1.4fr; gap: 16px;
        padding: 16px; }
 section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px;
           min-width: 0; overflow-x: auto; }
 h2 { font-size: 15px; margin: 0 0 8px; } .count { font-size: 22px; font-weight: 600; }
 table { border-collapse: collapse; width: 100%; } td, th { text-align: left;
 padding: 3px 6px; border-bottom: 1px solid #eef0f3; font-size: 13px; }
 th { color: #5b6475; font-weight: 500; } #feed { max-height: 75vh; overflow: auto; }
 .t { color: #5b6475; white-space: nowrap; } .k { font-weight: 600; }
 .k.connection_opened, .k.subscribed, .k.channel_occupied, .k.member_added { color: #137333; }
 .k.connection_closed, .k.unsubscribed, .k.channel_vacated, .k.member_removed { color: #a05a00; }
 .k.connection_refused, .k.client_error, .k.api_error { color: #b3261e; }
 .k.api_event, .k.client_event { color: #174ea6; }
 code { font-size: 12px; overflow-wrap: anywhere; }
</style></head>
<body>
<header><h1>pusherd debug console</h1><span id="status">connecting...</span></header>
<main>
 <div id="apps"></div>
 <section><h2>Live events</h2>
  <table><thead><tr><th>time</th><th>app</th><th>event</th><th>details</th></tr></thead>
  <tbody id="feed"></tbody></table></section>
</main>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const q = (path, extra) => path + "?token=" + encodeURIComponent(token) + (extra || "");
let after = 0;
function el(tag, text, cls) { const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
function details(e) {
  const skip = new Set(["type", "time_ms", "seq", "app_id"]);
  return Object.entries(e).filter(([k]) => !skip.has(k))
    .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  ");
}
async function refreshState() {
  const r = await fetch(q("/console/state")); if (!r.ok) throw new Error(r.status);
  const s = await r.json(); const root = document.getElementById("apps");
  root.replaceChildren();
  for (const app of s.apps) {
    const sec = el("section"); sec.dataset.app = app.id;
    sec.append(el("h2", "App " + app.id + (app.name ? " (" + app.name + ")" : "")));
    const c = el("div"); c.append(el("span", String(app.connections), "count connections"),
                                  el("span", " connections")); sec.append(c);
    const t = el("table"); const head = el("tr");
    for (const h of ["channel", "type", "subscribers", "members"]) head.append(el("th", h));
    t.append(head);
    for (const ch of app.channels) { const row = el("tr"); row.dataset.channel = ch.name;
      row.append(el("td", ch.name), el("td", ch.type), el("td", String(ch.subscribers)),
                 el("td", ch.members === null ? "" : String(ch.members))); t.append(row); }
    if (!app.channels.length) { const row = el("tr"); row.append(el("td", "no channels"));
      t.append(row); }
    sec.append(t); root.append(sec);
  }
  document.getElementById("status").textContent = s.draining ? "draining" : "live";
}
async function refreshEvents() {
  const r = await fetch(q("/console/events", "&after=" + after)); if (!r.ok) return;
  const body = await r.json(); const feed = document.getElementById("feed");
  for (const e of body.events) { after = Math.max(after, e.seq);
    const row = el("tr"); row.className = "entry " + e.type;
    row.append(el("td", new Date(e.time_ms).toLocaleTimeString(), "t"),
               el("td", e.app_id || ""), el("td", e.type, "k " + e.type), el("td"));
    row.lastChild.append(el("code", details(e)));
    feed.prepend(row); }
  while (feed.children.length > 500) feed.lastChild.remove();
}
async function tick() {
  try { await refreshState(); await refreshEvents(); }
  catch (err) {
    document.getElementById("status").textContent = "disconnected (" + err.message + ")";
  }
  setTimeout(tick, 1000);
}
tick();
</script></body></html>
"""
