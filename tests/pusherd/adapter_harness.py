"""Drive an adapter the way a transport does: real sessions, real actions, no socket.

A :class:`Peer` is a connection whose transport is a list: it runs a real
:class:`~pusherd.core.session.Session` and hands its actions to the real
:func:`~pusherd.server.actions.carry_out`, so the adapter under test sees exactly the
calls a WebSocket connection makes. Signatures are computed with :mod:`hmac` directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from typing import Any

import orjson

from pusherd.adapters.base import Adapter
from pusherd.core.app import App
from pusherd.core.outbound import Outbound
from pusherd.core.session import Session
from pusherd.server.actions import carry_out

_SOCKET_IDS = itertools.count(1)


def channel_auth(app: App, socket_id: str, channel: str,
                 channel_data: str | None = None) -> str:
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    digest = hmac.new(app.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"{app.key}:{digest}"


def user_auth(app: App, socket_id: str, user_data: str) -> str:
    text = f"{socket_id}::user::{user_data}"
    return f"{app.key}:{hmac.new(app.secret.encode(), text.encode(), hashlib.sha256).hexdigest()}"


class Peer:
    """One client connection of `app` on `adapter`; `frames` is what it received."""

    def __init__(self, adapter: Adapter, app: App) -> None:
        self.socket_id = f"{next(_SOCKET_IDS)}.{next(_SOCKET_IDS)}"
        self.adapter = adapter
        self.app = app
        self.session = Session(self.socket_id, app, 0.0)
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        carry_out(self, self.session.open({"protocol": "7"}, None, False))

    # --- the transport side (ActionTarget / Subscriber) ---------------------------------

    def deliver(self, frame: Outbound) -> None:
        if self.closed_with is None:
            self.frames.append(orjson.loads(frame.payload))

    def close(self, code: int, reason: str = "") -> None:
        self.closed_with = code

    def terminate(self, code: int, message: str) -> None:
        carry_out(self, self.session.refuse(code, message))

    # --- the client side ----------------------------------------------------------------

    def send(self, message: dict[str, Any], now: float = 0.0) -> None:
        carry_out(self, self.session.receive(orjson.dumps(message), now))

    def subscribe(self, channel: str, user_id: str | None = None,
                  user_info: Any = None) -> None:
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
            data["channel_data"] = channel_data
            data["auth"] = channel_auth(self.app, self.socket_id, channel, channel_data)
        elif channel.startswith("private-"):
            data["auth"] = channel_auth(self.app, self.socket_id, channel)
        self.send({"event": "pusher:subscribe", "data": data})

    def unsubscribe(self, channel: str) -> None:
        self.send({"event": "pusher:unsubscribe", "data": {"channel": channel}})

    def sign_in(self, user_id: str, watchlist: list[str] | None = None) -> None:
        user_data = json.dumps({"id": user_id, "watchlist": watchlist or []})
        self.send({"event": "pusher:signin", "data": {
            "user_data": user_data, "auth": user_auth(self.app, self.socket_id, user_data)}})

    def disconnect(self) -> None:
        carry_out(self, self.session.close())
        self.closed_with = self.closed_with or 1006

    # --- reading what arrived -----------------------------------------------------------

    def events(self, event: str, channel: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames
                if f["event"] == event and (channel is None or f.get("channel") == channel)]

    def data_of(self, event: str, channel: str | None = None) -> list[Any]:
        return [json.loads(f["data"]) if isinstance(f["data"], str) else f["data"]
                for f in self.events(event, channel)]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds (an adapter may decide in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached within the bound")
        await asyncio.sleep(0.005)
