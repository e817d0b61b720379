"""§9: client events (client-*): who may send, where, how fast, how big, and who receives."""

from __future__ import annotations

import json

from ..framework import NotApplicable, case, check, check_eq
from ..wire import RawClient, is_event
from .common import short


async def pair(ctx, prefix: str, label: str):
    ch = ctx.chan(prefix, label)
    a = await ctx.raw()
    b = await ctx.raw()
    presence = prefix.startswith("presence-")
    await a.subscribe(ch, user=("alice", {"name": "Alice"}) if presence else None)
    await b.subscribe(ch, user=("bob", {"name": "Bob"}) if presence else None)
    if presence:
        await a.expect(is_event("pusher_internal:member_added", ch), "member_added")
    return ch, a, b


async def expect_client_rejected(ctx, sender: RawClient, receiver: RawClient, ch: str,
                                 event: str, what: str) -> None:
    """sender got an error frame (connection open); receiver never got ``event``."""
    frames = await sender.sync()
    errors = [f for f in frames if f.get("event") == "pusher:error"]
    check(errors, f"{what}: no pusher:error to the sender; got {short(frames)}")
    check(isinstance(errors[0].get("data"), dict), f"{what}: error data must be an object")
    check(sender.is_open, f"{what}: sender's connection was closed")
    r = await ctx.trigger(ch, "marker", "{}")
    check_eq(r.status, 200, "marker trigger")
    _, before = await receiver.wait_for(is_event("marker", ch), "marker")
    leaked = [f for f in before if f.get("event") == event]
    check(not leaked, f"{what}: the client event was delivered: {short(leaked)}")


@case("client-events.private-relay", "9",
      "client event on a private channel reaches the other subscriber with data unchanged "
      "(object stays object) and without user_id")
async def private_relay(ctx):
    ch, a, b = await pair(ctx, "private-", "relay")
    data = {"text": "hé 日本", "n": [1, 2.5, None], "nested": {"ok": True}}
    await a.send({"event": "client-typing", "channel": ch, "data": data})
    frame = await b.expect(is_event("client-typing", ch), "client-typing on the receiver")
    check_eq(frame.get("data"), data, "relayed data (same JSON value)")
    check("user_id" not in frame, f"no user_id on private channels: {frame}")
    await a.send({"event": "client-str", "channel": ch, "data": "plain string"})
    frame = await b.expect(is_event("client-str", ch), "client-str on the receiver")
    check_eq(frame.get("data"), "plain string", "string data relayed unchanged")


@case("client-events.not-echoed", "9",
      "the sender never receives its own client event")
async def not_echoed(ctx):
    ch, a, b = await pair(ctx, "private-", "echo")
    await a.send({"event": "client-ping", "channel": ch, "data": {"x": 1}})
    await b.expect(is_event("client-ping", ch), "client event on the receiver")
    r = await ctx.trigger(ch, "marker", "{}")
    check_eq(r.status, 200, "marker trigger")
    _, before = await a.wait_for(is_event("marker", ch), "marker on the sender")
    echoed = [f for f in before if f.get("event") == "client-ping"]
    check(not echoed, f"client event echoed to its sender: {short(echoed)}")


@case("client-events.presence-user-id", "9",
      "on presence channels the receiver gets the sender's user_id at top level")
async def presence_user_id(ctx):
    ch, a, b = await pair(ctx, "presence-", "uid")
    await a.send({"event": "client-wave", "channel": ch, "data": {"w": 1}})
    frame = await b.expect(is_event("client-wave", ch), "client-wave")
    check_eq(frame.get("user_id"), "alice", "user_id of the sender")
    check_eq(frame.get("data"), {"w": 1}, "data")


@case("client-events.public-rejected", "9",
      "client events on public channels are rejected")
async def public_rejected(ctx):
    ch, a, b = await pair(ctx, "", "pub")
    await a.send({"event": "client-x", "channel": ch, "data": {}})
    await expect_client_rejected(ctx, a, b, ch, "client-x", "public channel")


@case("client-events.encrypted-rejected", "9",
      "client events on private-encrypted- channels are rejected")
async def encrypted_rejected(ctx):
    ch, a, b = await pair(ctx, "private-encrypted-", "enc")
    await a.send({"event": "client-x", "channel": ch, "data": {"nonce": "", "ciphertext": ""}})
    await expect_client_rejected(ctx, a, b, ch, "client-x", "encrypted channel")


@case("client-events.not-subscribed", "9",
      "client events to a channel the sender is not subscribed to are rejected")
async def not_subscribed(ctx):
    ch, a, b = await pair(ctx, "private-", "notsub")
    outsider = await ctx.raw()
    await outsider.send({"event": "client-x", "channel": ch, "data": {}})
    await expect_client_rejected(ctx, outsider, b, ch, "client-x", "sender not subscribed")


@case("client-events.name-prefix", "9",
      "a non-client- event name from a client is rejected (not relayed)")
async def name_prefix(ctx):
    ch, a, b = await pair(ctx, "private-", "prefix")
    await a.send({"event": "typing", "channel": ch, "data": {}})
    await expect_client_rejected(ctx, a, b, ch, "typing", "event without client- prefix")


@case("client-events.rate-limit", "9",
      "the 11th client event within one second → pusher:error 4301, dropped, connection kept")
async def rate_limit(ctx):
    limit = ctx.args.client_event_rate
    ch, a, b = await pair(ctx, "private-", "rate")
    for i in range(limit + 1):
        await a.send({"event": "client-burst", "channel": ch, "data": {"i": i}})
    frames = await a.sync()
    errors = [f for f in frames if f.get("event") == "pusher:error"]
    check(errors, f"no pusher:error after {limit + 1} events; got {short(frames)}")
    check_eq((errors[0].get("data") or {}).get("code"), 4301, "error code")
    check(a.is_open, "sender's connection closed")
    # The last allowed event first, then a marker: in cluster mode the receiver and the
    # marker's node may differ from the sender's, and nothing orders a client event relayed
    # by one node against a trigger delivered by another, so the marker alone could overtake
    # the burst. The excess event, had it been relayed, follows event limit-1 on the same path.
    last, early = await b.wait_for(
        lambda f: is_event("client-burst", ch)(f) and (f.get("data") or {}).get("i") == limit - 1,
        f"client-burst {limit - 1}")
    r = await ctx.trigger(ch, "marker", "{}")
    check_eq(r.status, 200, "marker trigger")
    _, before = await b.wait_for(is_event("marker", ch), "marker")
    got = [f["data"]["i"] for f in [*early, last, *before] if f.get("event") == "client-burst"]
    check_eq(got, list(range(limit)), "events delivered (the excess one dropped)")


@case("client-events.oversized", "9",
      "a client event whose data exceeds 10 KB is rejected and not relayed")
async def oversized(ctx):
    ch, a, b = await pair(ctx, "private-", "big")
    await a.send({"event": "client-big", "channel": ch,
                  "data": {"blob": "x" * (ctx.args.max_event_data + 10)}})
    await expect_client_rejected(ctx, a, b, ch, "client-big", "oversized data")


@case("client-events.app-disabled", "9",
      "an app with client events disabled rejects them")
async def app_disabled(ctx):
    spec = ctx.args.client_events_disabled_app
    if not spec:
        raise NotApplicable("needs a second app with client events disabled: "
                            "--client-events-disabled-app ID:KEY:SECRET")
    app_id, key, secret = spec.split(":", 2)

    other = ctx.for_app(app_id, key, secret)
    ch = ctx.chan("private-", "disabled")
    a = await RawClient.open(other)
    b = await RawClient.open(other)
    await a.subscribe(ch)
    await b.subscribe(ch)
    await a.send({"event": "client-x", "channel": ch, "data": {}})
    await expect_client_rejected(other, a, b, ch, "client-x", "client events disabled")


@case("client-events.pusher-js-whisper", "9",
      "pusher-js channel.trigger('client-…') between two node clients on a presence channel")
async def pjs_client_event(ctx):
    ch = ctx.chan("presence-", "pjs")
    node = await ctx.node()
    for name, uid in (("a", "ua"), ("b", "ub")):
        await ctx.js(f"""
          const c = pjs({json.dumps(name)}, {{user: {{user_id: {json.dumps(uid)},
                                                      user_info: {{name: {json.dumps(name)}}}}}}});
          state[{json.dumps(name)}] = c;
          await connected(c);
          const ch = c.subscribe({json.dumps(ch)});
          ch.bind('client-hello', (d, meta) => emit({json.dumps(name)} + ':hello',
                                                     {{d, user_id: meta && meta.user_id}}));
          await new Promise((res, rej) => {{ ch.bind('pusher:subscription_succeeded', res);
                                             ch.bind('pusher:subscription_error', rej); }});
        """)
    ok = await ctx.js(f"return state.a.channel({json.dumps(ch)}).trigger('client-hello', "
                      "{from: 'a'});")
    check(ok is True, f"pusher-js refused to trigger: {ok!r}")
    got = await node.event("b:hello")
    check_eq(got, {"d": {"from": "a"}, "user_id": "ua"}, "event and metadata on b")
    await ctx.js("state.b.channel(" + json.dumps(ch) + ").trigger('client-hello', {from:'b'});")
    got = await node.event("a:hello")
    check_eq(got["d"], {"from": "b"}, "reply on a")
    check_eq([e for e in node.seen("a:hello") if e["d"] == {"from": "a"}], [],
             "a never hears its own event")
