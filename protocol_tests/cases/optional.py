"""Optional features: webhooks (§14), TLS, HTTP fallback transports (§15).

Each is N/A, with the reason, unless the run says the server offers it.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ..framework import NotApplicable, case, check, check_eq
from ..wire import is_event


def receiver(ctx):
    if ctx.webhook_receiver is None:
        raise NotApplicable("webhooks are optional; configure the server to POST webhooks to "
                            "http://<suite host>:PORT/ and pass --webhook-port PORT")
    return ctx.webhook_receiver


def named(name: str, channel: str, **fields):
    return lambda ev: (ev.get("name") == name and ev.get("channel") == channel
                       and all(ev.get(k) == v for k, v in fields.items()))


@case("webhooks.request-format", "14.1",
      "webhook POST: Content-Type exactly application/json, X-Pusher-Key, X-Pusher-Signature "
      "= HMAC-SHA256(secret, raw body), fresh time_ms", timeout=40)
async def request_format(ctx):
    hooks = receiver(ctx)
    c = await ctx.raw()
    ch = ctx.chan("", "hook")
    await c.subscribe(ch)
    delivery, _ = await hooks.wait_event(named("channel_occupied", ch), "channel_occupied")
    check_eq(delivery.header("Content-Type"), "application/json", "Content-Type")
    names = [k for k, _ in delivery.headers]
    check("X-Pusher-Key" in names and "X-Pusher-Signature" in names,
          f"header casing X-Pusher-Key / X-Pusher-Signature: {names}")
    check_eq(delivery.header("X-Pusher-Key"), ctx.app_key, "X-Pusher-Key")
    expected = hmac.new(ctx.app_secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    check_eq(delivery.header("X-Pusher-Signature"), expected, "X-Pusher-Signature")
    body = json.loads(delivery.body)
    check(isinstance(body.get("time_ms"), int), f"time_ms: {body}")
    check(abs(body["time_ms"] / 1000 - delivery.received) < 300, "time_ms more than 300 s off")


@case("webhooks.occupied-vacated", "14.2",
      "channel_occupied on the first subscriber, channel_vacated after the last leaves "
      "(also by disconnect)", timeout=40)
async def occupied_vacated(ctx):
    hooks = receiver(ctx)
    c = await ctx.raw()
    ch = ctx.chan("", "occ")
    await c.subscribe(ch)
    await hooks.wait_event(named("channel_occupied", ch), "channel_occupied")
    await c.close()
    await hooks.wait_event(named("channel_vacated", ch), "channel_vacated", timeout=20)


@case("webhooks.members", "14.2",
      "member_added for a user's first socket, member_removed after its last one left",
      timeout=40)
async def members(ctx):
    hooks = receiver(ctx)
    ch = ctx.chan("presence-", "hook")
    a = await ctx.raw()
    await a.subscribe(ch, user=("hooked", None))
    await hooks.wait_event(named("member_added", ch, user_id="hooked"), "member_added")
    await a.unsubscribe(ch)
    await hooks.wait_event(named("member_removed", ch, user_id="hooked"), "member_removed",
                           timeout=20)


@case("webhooks.client-event", "14.2",
      "client_event webhook with channel, event, data (string), socket_id", timeout=40)
async def client_event(ctx):
    hooks = receiver(ctx)
    ch = ctx.chan("private-", "hook")
    a, b = await ctx.raw(), await ctx.raw()
    await a.subscribe(ch)
    await b.subscribe(ch)
    await a.send({"event": "client-hook", "channel": ch, "data": {"k": 1}})
    await b.expect(is_event("client-hook", ch), "client event")
    _, ev = await hooks.wait_event(named("client_event", ch), "client_event")
    check_eq(ev.get("event"), "client-hook", "event")
    check_eq(ev.get("socket_id"), a.socket_id, "socket_id")
    check(isinstance(ev.get("data"), str) and json.loads(ev["data"]) == {"k": 1},
          f"data must be the JSON string of the client data: {ev}")


@case("webhooks.cache-miss", "14.2", "cache_miss webhook when a cache channel has no value",
      timeout=40)
async def cache_miss(ctx):
    hooks = receiver(ctx)
    c = await ctx.raw()
    ch = ctx.chan("cache-", "hook")
    await c.subscribe(ch)
    await hooks.wait_event(named("cache_miss", ch), "cache_miss")


@case("tls.wss-and-https", "1.1", "the WebSocket over wss:// and the HTTP API over https://")
async def tls(ctx):
    if not ctx.tls:
        raise NotApplicable("TLS not requested (run with --tls against a TLS listener)")
    c = await ctx.raw()
    check(c.socket_id, "no socket id over wss://")
    r = await ctx.trigger(ctx.chan("", "tls"), "e", "{}")
    check_eq(r.status, 200, r.describe())


for _transport in ("xhr_streaming", "xhr_polling"):

    def _make(transport: str):
        @case(f"fallback.{transport}", "15",
              f"pusher-js over the {transport} HTTP fallback transport: connect, subscribe, "
              "receive an event", timeout=60)
        async def fallback(ctx):
            if not ctx.args.http_fallback:
                raise NotApplicable("HTTP fallback transports are optional (§15, P2); pass "
                                    "--http-fallback if the server implements them")
            node = await ctx.node()
            ch = ctx.chan("", "fallback")
            await ctx.js(f"""
              const c = pjs('f', {{options: {{enabledTransports: [{json.dumps(transport)}],
                httpHost: cfg.host, httpPort: cfg.port, httpsPort: cfg.port,
                httpPath: {json.dumps(ctx.args.http_path)}}}}});
              await connected(c, 20000);
              const ch = c.subscribe({json.dumps(ch)});
              ch.bind('e', (d) => emit('f:e', d));
              await new Promise((res) => ch.bind('pusher:subscription_succeeded', res));""",
                         timeout=40)
            await ctx.py(ctx.sdk.trigger, ch, "e", {"via": transport})
            check_eq(await node.event("f:e", timeout=30), {"via": transport}, "event")

    _make(_transport)
