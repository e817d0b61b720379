"""Shared checks used by several case modules."""

from __future__ import annotations

import json
from typing import Any

from ..framework import CaseFailed, check, check_eq, short
from ..wire import RawClient, data_of, is_event


def is_rejection(frame: dict[str, Any]) -> bool:
    return frame.get("event") in ("pusher:error", "pusher:subscription_error")


async def expect_rejected(c: RawClient, channel: str, what: str) -> dict[str, Any]:
    """After a subscribe: an error frame arrives, no subscription_succeeded, connection open."""
    frames = await c.sync()
    succeeded = [f for f in frames if f.get("event") == "pusher_internal:subscription_succeeded"]
    check(not succeeded, f"{what}: subscription succeeded but must be refused")
    errors = [f for f in frames if is_rejection(f)]
    check(errors,
          f"{what}: no pusher:error (or pusher:subscription_error) frame; got {short(frames)}")
    for f in errors:
        check(isinstance(f.get("data"), dict),
              f"{what}: {f['event']} data must be an object, got {short(f.get('data'))}")
        if f["event"] == "pusher:error":
            code = f["data"].get("code")
            check(code is None or code == 4009 or code >= 4300,
                  f"{what}: pusher:error code must be 4009 or null, got {code!r}")
    check(c.is_open, f"{what}: connection closed after a refused subscription")
    return errors[0]


async def marker_channel(ctx: Any, c: RawClient) -> str:
    ch = ctx.chan("", "marker")
    await c.subscribe(ch)
    return ch


async def assert_not_delivered(ctx: Any, c: RawClient, channel: str, marker: str,
                               event: str = "probe") -> None:
    """Trigger ``event`` on ``channel`` then a marker; ``c`` must see the marker first."""
    r = await ctx.trigger(channel, event, '{"probe":true}')
    check_eq(r.status, 200, f"trigger to {channel} ({r.describe()})")
    r = await ctx.trigger(marker, "marker", "{}")
    check_eq(r.status, 200, f"trigger to marker ({r.describe()})")
    frame, before = await c.wait_for(is_event("marker", marker), "marker event")
    leaked = [f for f in before if f.get("channel") == channel]
    if leaked:
        raise CaseFailed(f"event on {channel} delivered although not subscribed: {short(leaked)}")


async def trigger_and_receive(ctx: Any, c: RawClient, channel: str, event: str = "ev",
                              data: str = '{"n":1}') -> dict[str, Any]:
    r = await ctx.trigger(channel, event, data)
    check_eq(r.status, 200, f"trigger ({r.describe()})")
    frame, _ = await c.wait_for(is_event(event, channel), f"{event} on {channel}")
    check_eq(frame.get("data"), data, "event data (verbatim string)")
    return frame


def presence_of(frame: dict[str, Any]) -> dict[str, Any]:
    check(isinstance(frame.get("data"), str),
          f"presence subscription_succeeded data must be a JSON string, got {short(frame)}")
    data = json.loads(frame["data"])
    check(isinstance(data, dict) and isinstance(data.get("presence"), dict),
          f"data must hold a presence object: {short(data)}")
    p = data["presence"]
    for k in ("ids", "hash", "count"):
        check(k in p, f"presence data lacks {k!r}: {short(p)}")
    return p


def member_data(frame: dict[str, Any]) -> Any:
    check(isinstance(frame.get("data"), str),
          f"{frame.get('event')} data must be a JSON string: {short(frame)}")
    return data_of(frame)
