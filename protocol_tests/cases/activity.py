"""§5: activity timeout, server pings, 4201 for silent clients, idle clients that answer stay.

These run in the background, concurrently with the rest of the suite, because they must wait
for the server's idle deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from ..framework import CaseFailed, NotApplicable, case, check, check_eq
from ..wire import is_event

OPCODE_CLOSE, OPCODE_PING, OPCODE_TEXT = 0x8, 0x9, 0x1


def idle_window(ctx) -> float:
    """How long the idle cases watch: the server's expected deadline, within --max-idle-wait."""
    if ctx.activity_timeout is None:
        raise CaseFailed("activity_timeout unknown (handshake failed)")
    needed = ctx.activity_timeout + 60
    if needed > ctx.args.max_idle_wait:
        raise NotApplicable(
            f"activity_timeout {ctx.activity_timeout}s + 60s grace exceeds --max-idle-wait "
            f"{ctx.args.max_idle_wait:g}s; raise it or configure a shorter activity_timeout")
    return ctx.args.max_idle_wait


def done_event(ctx) -> asyncio.Event:
    if not hasattr(ctx, "_idle_done"):
        ctx._idle_done = asyncio.Event()
    return ctx._idle_done


@case("activity.silent-client-closed-4201", "5.2",
      "a client that sends nothing and answers no ping gets a ping, then close 4201",
      timeout=900, background=True)
async def silent_client(ctx):
    try:
        window = idle_window(ctx)
        sock = await ctx.silent()
        start = time.monotonic()
        pinged = None
        texts = []
        while True:
            remaining = window - (time.monotonic() - start)
            if remaining <= 0:
                raise CaseFailed(f"not closed within {window:g}s (activity_timeout "
                                 f"{ctx.activity_timeout}s); pinged: {pinged is not None}")
            try:
                opcode, payload = await asyncio.wait_for(sock.read_frame(), remaining)
            except TimeoutError:
                continue
            except asyncio.IncompleteReadError:
                raise CaseFailed("TCP connection dropped without a close frame") from None
            elapsed = time.monotonic() - start
            if opcode == OPCODE_PING:
                pinged = pinged or f"WebSocket ping after {elapsed:.0f}s"
            elif opcode == OPCODE_TEXT:
                frame = json.loads(payload)
                texts.append(frame)
                if frame.get("event") == "pusher:ping":
                    pinged = pinged or f"pusher:ping after {elapsed:.0f}s"
            elif opcode == OPCODE_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                check(pinged, f"closed after {elapsed:.0f}s without a ping first")
                check_eq(code, 4201, "close code")
                check(elapsed >= ctx.activity_timeout,
                      f"closed after {elapsed:.1f}s, before activity_timeout "
                      f"{ctx.activity_timeout}s")
                errors = [f for f in texts if f.get("event") == "pusher:error"]
                if errors:
                    check_eq((errors[-1].get("data") or {}).get("code"), 4201,
                             "pusher:error code before the close")
                return
    finally:
        done_event(ctx).set()


@case("activity.answering-client-kept", "5.2",
      "a quiet client that answers pusher:ping with pusher:pong stays connected past the "
      "idle deadline", timeout=900, background=True)
async def answering_client(ctx):
    window = idle_window(ctx)
    c = await ctx.raw()
    ch = ctx.chan("", "idle")
    await c.subscribe(ch)
    start = time.monotonic()

    async def answer():
        while True:
            frame = await c.next(window + 30)
            if frame.get("event") == "pusher:ping":
                await c.send({"event": "pusher:pong", "data": {}})

    task = asyncio.create_task(answer())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done_event(ctx).wait(), window + 30)
    task.cancel()
    check(c.is_open, f"closed with {c.close_code} after {time.monotonic() - start:.0f}s")
    r = await ctx.trigger(ch, "still-here", "{}")
    check_eq(r.status, 200, r.describe())
    await c.wait_for(is_event("still-here", ch), "event after the idle period")


@case("activity.pusher-js-idle", "5.1",
      "an idle pusher-js client stays connected (same socket_id) through the idle window",
      timeout=900, background=True)
async def pjs_idle(ctx):
    window = idle_window(ctx)
    node = await ctx.new_node()
    ch = ctx.chan("", "pjsidle")
    try:
        first = await node.run(f"""
          const c = pjs('idle'); state.idle = c;
          const id = await connected(c);
          const ch = c.subscribe({json.dumps(ch)});
          ch.bind('late', (d) => emit('idle:late', d));
          await new Promise((res) => ch.bind('pusher:subscription_succeeded', res));
          return id;""")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done_event(ctx).wait(), window + 30)
        states = [s["current"] for s in node.seen("idle:state")]
        check(states and all(s == "connected" for s in states[-1:]),
              f"state history {states}")
        check("disconnected" not in states and states.count("connected") == 1,
              f"pusher-js reconnected during the idle window: {states}")
        now = await node.run("return state.idle.connection.socket_id;")
        check_eq(now, first, "socket_id after the idle window")
        r = await ctx.trigger(ch, "late", '{"ok":1}')
        check_eq(r.status, 200, r.describe())
        check_eq(await node.event("idle:late"), {"ok": 1}, "event after idling")
    finally:
        await node.stop()
