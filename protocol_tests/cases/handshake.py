"""§1-§5: handshake, refusals, frame envelope, protocol errors, ping/pong."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from websockets.exceptions import InvalidHandshake, InvalidStatus

from ..framework import NotApplicable, case, check, check_eq, fail
from ..wire import SOCKET_ID_RE, RawClient, is_event


@case("handshake.first-frame", "1.3",
      "first frame is connection_established with string-data, socket_id ^\\d+\\.\\d+$, "
      "activity_timeout > 0")
async def first_frame(ctx):
    c = await ctx.raw()
    first = c.handshake
    check(isinstance(first.get("data"), str),
          f"data must be a JSON string (string-data), got {type(first.get('data')).__name__}")
    data = json.loads(first["data"])
    check(isinstance(data, dict), f"data must decode to an object, got {data!r}")
    check(SOCKET_ID_RE.match(str(data.get("socket_id", ""))) and isinstance(data["socket_id"], str),
          f"socket_id must be a string matching ^\\d+\\.\\d+$, got {data.get('socket_id')!r}")
    timeout = data.get("activity_timeout")
    check(isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > 0,
          f"activity_timeout must be a positive integer, got {timeout!r}")


@case("handshake.unique-socket-ids", "1.3", "concurrent connections get distinct socket ids")
async def unique_ids(ctx):
    clients = [await ctx.raw() for _ in range(5)]
    ids = [c.socket_id for c in clients]
    check_eq(len(set(ids)), len(ids), f"distinct socket ids among {ids}")


@case("handshake.unknown-key", "1.4", "unknown app key: pusher:error 4001 then close 4001")
async def unknown_key(ctx):
    c = await ctx.raw(key="no-such-key-" + ctx.run_id, handshake=False)
    frame = await c.next(10)
    check_eq(frame.get("event"), "pusher:error", "first frame event")
    data = frame.get("data")
    check(isinstance(data, dict), f"pusher:error data must be an object, got {data!r}")
    check_eq(data.get("code"), 4001, "pusher:error code")
    code, _ = await c.closed(10)
    check_eq(code, 4001, "close code")


@case("handshake.protocol-versions", "1.2", "protocol 5, 6 and 7 are accepted")
async def protocol_versions(ctx):
    for version in (5, 6, 7):
        c = await ctx.raw(query=f"protocol={version}&client=js&version=8.6.0&flash=false")
        check(c.socket_id, f"protocol={version}: no socket id")


@case("handshake.protocol-absent", "1.2",
      "no protocol parameter but version=8.6.0 (inferable as 7) is accepted")
async def protocol_absent(ctx):
    c = await ctx.raw(query="client=js&version=8.6.0")
    check(c.socket_id, "no socket id")


@case("handshake.protocol-unsupported", "1.2",
      "unsupported protocol=3 → pusher:error 4007 and close 4007")
async def protocol_unsupported(ctx):
    c = await ctx.raw(query="protocol=3&client=js&version=8.6.0", handshake=False)
    frame = await c.next(10)
    check_eq(frame.get("event"), "pusher:error", "first frame event")
    check_eq((frame.get("data") or {}).get("code"), 4007, "pusher:error code")
    code, _ = await c.closed(10)
    check_eq(code, 4007, "close code")


@case("handshake.wrong-path", "1.1", "a WebSocket upgrade outside /app/{key} is refused "
      "(HTTP 404 or close 4005)")
async def wrong_path(ctx):
    try:
        c = await RawClient.open(ctx, path="/nope/" + ctx.app_key, handshake=False)
    except InvalidStatus as exc:
        check(exc.response.status_code in (400, 404),
              f"expected 404, got HTTP {exc.response.status_code}")
        return
    except InvalidHandshake:
        return
    frame_or_close = None
    with contextlib.suppress(Exception):
        frame_or_close = await c.next(5)
    code, _ = await c.closed(5)
    if frame_or_close and frame_or_close.get("event") == "pusher:connection_established":
        fail("connection established on a wrong path")
    check_eq(code, 4005, "close code")


@case("ping.pong", "3.1", "pusher:ping → pusher:pong with object data {}; also for ping "
      "without data")
async def ping_pong(ctx):
    c = await ctx.raw()
    await c.send({"event": "pusher:ping", "data": {}})
    frame = await c.expect(is_event("pusher:pong"), "pusher:pong")
    check_eq(frame.get("data", {}), {}, "pong data")
    await c.send({"event": "pusher:ping"})
    await c.expect(is_event("pusher:pong"), "pusher:pong for a ping without data")
    await c.send({"event": "pusher:ping", "data": "{}"})
    await c.expect(is_event("pusher:pong"), "pusher:pong for a ping with string data")


@case("protocol.invalid-json", "3.1",
      "invalid JSON → pusher:error (code null), connection stays open")
async def invalid_json(ctx):
    c = await ctx.raw()
    await c.send("{this is not json")
    frame = await c.expect(is_event("pusher:error"), "pusher:error")
    check(isinstance(frame.get("data"), dict), f"error data must be an object: {frame!r}")
    code = frame["data"].get("code")
    check(code is None or (4000 <= code < 4100) or code >= 4300,
          f"code must be null (or a non-reconnect code), got {code!r}")
    check(code != 4200, "4200 means 'reconnect now' and must not be used for bad input")
    extra = await c.sync()
    check_eq(extra, [], "frames after the error")


@case("protocol.unknown-event", "3.1",
      "unknown pusher:* event → pusher:error, connection stays open")
async def unknown_event(ctx):
    c = await ctx.raw()
    await c.send({"event": "pusher:frobnicate", "data": {}})
    frame = await c.expect(is_event("pusher:error"), "pusher:error")
    check((frame.get("data") or {}).get("code") != 4200, "4200 must not be used for bad input")
    await c.sync()


@case("protocol.missing-event", "3.1",
      "a frame without `event` (or not an object) → pusher:error, connection stays open")
async def missing_event(ctx):
    c = await ctx.raw()
    await c.send({"data": {"channel": "x"}})
    await c.expect(is_event("pusher:error"), "pusher:error for a frame without event")
    await c.send("[1,2,3]")
    await c.expect(is_event("pusher:error"), "pusher:error for a JSON array")
    await c.sync()


@case("protocol.subscribe-without-channel", "7.4",
      "pusher:subscribe without a channel → pusher:error, no success, connection open")
async def subscribe_without_channel(ctx):
    c = await ctx.raw()
    await c.send({"event": "pusher:subscribe", "data": {"auth": ""}})
    frame = await c.next()
    check_eq(frame.get("event"), "pusher:error", "reply to subscribe without channel")
    await c.sync()


def other_app(ctx, option: str, value: str | None, parts: int):
    if not value:
        raise NotApplicable(f"needs {option} (an extra app configured on the server for it)")
    fields = value.split(":")
    if len(fields) != parts:
        raise NotApplicable(f"{option} must be {parts} colon-separated fields")
    return ctx.for_app(*fields[:3]), fields[3:]


@case("handshake.over-quota", "4.2",
      "an app at its connection quota refuses the next connection: pusher:error 4004 and "
      "close 4004; a freed slot is usable again")
async def over_quota(ctx):
    app, (limit,) = other_app(ctx, "--quota-app ID:KEY:SECRET:N", ctx.args.quota_app, 4)
    held = [await RawClient.open(app) for _ in range(int(limit))]
    extra = await RawClient.open(app, handshake=False)
    frame = await extra.next(10)
    check_eq(frame.get("event"), "pusher:error", "first frame over quota")
    check_eq((frame.get("data") or {}).get("code"), 4004, "pusher:error code")
    code, _ = await extra.closed(10)
    check_eq(code, 4004, "close code")
    await held[0].close()  # returns after the server answered the close handshake
    if ctx.transport == "ws":
        again = await RawClient.open(app)
        check(again.socket_id, "a freed connection slot was not reusable")
        return
    # An HTTP fallback session has no close message: the server frees its slot when no
    # receive request came back for its session timeout (§15.2, "a few seconds").
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        attempt = await RawClient.open(app, handshake=False)
        first = await attempt.next(10)
        if first.get("event") == "pusher:connection_established":
            return
        check_eq((first.get("data") or {}).get("code"), 4004, "refusal while the slot is held")
        await attempt.closed(10)
        # Nothing on the wire announces the expiry to a third party: retry at a modest
        # pace (bounded by the deadline) instead of opening hundreds of refused sessions.
        await asyncio.sleep(0.25)
    fail("the slot of a dropped fallback session was not freed within 20 s")


@case("handshake.disabled-app", "4.2",
      "a disabled app: WebSocket gets pusher:error 4003 + close 4003; HTTP API answers 403")
async def disabled_app(ctx):
    app, _ = other_app(ctx, "--disabled-app ID:KEY:SECRET", ctx.args.disabled_app, 3)
    c = await RawClient.open(app, handshake=False)
    frame = await c.next(10)
    check_eq((frame.get("event"), (frame.get("data") or {}).get("code")),
             ("pusher:error", 4003), "first frame")
    code, _ = await c.closed(10)
    check_eq(code, 4003, "close code")
    r = await app.trigger("c", "e", "x")
    check_eq(r.status, 403, r.describe())
