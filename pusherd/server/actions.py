"""Carrying out a session's actions: the one interpreter every transport shell shares.

A :class:`~pusherd.core.session.Session` returns actions; a transport (the WebSocket
connection, the HTTP fallback transports) hands them to :func:`carry_out` with itself as
the target. Frames go to the target, requests go to the adapter with the app and the
current wall-clock time, and answers the adapter gives (admitted or not, a refused join)
are fed back to the session, whose further actions are carried out in turn.
"""

from __future__ import annotations

import time
from typing import Protocol

from pusherd.adapters.base import Adapter
from pusherd.core.app import App
from pusherd.core.ids import SocketId
from pusherd.core.outbound import Outbound
from pusherd.core.session import (
    Action,
    Close,
    Join,
    Leave,
    PublishClientEvent,
    Register,
    Send,
    Session,
    SignIn,
    SignOut,
    Unregister,
)
from pusherd.errors import SubscriptionRefused


def wall_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch (the adapter's time)."""
    return time.time_ns() // 1_000_000


class ActionTarget(Protocol):
    """A transport's connection, as :func:`carry_out` drives it (and the adapter's
    :class:`~pusherd.adapters.base.Subscriber`)."""

    socket_id: SocketId
    session: Session
    app: App
    adapter: Adapter

    def deliver(self, frame: Outbound) -> None:
        """Queue `frame` for the client without blocking."""

    def close(self, code: int, reason: str = "") -> None:
        """Close the transport with `code` (the error frame was delivered before)."""

    def terminate(self, code: int, message: str) -> None:
        """``pusher:error`` with `code`, then close with the same code (§1.4)."""


def carry_out(target: ActionTarget, actions: list[Action]) -> None:
    """Carry out `actions` in order on `target` and its adapter."""
    adapter, app, session = target.adapter, target.app, target.session
    for action in actions:
        if isinstance(action, Send):
            target.deliver(action.frame)
        elif isinstance(action, Join):
            try:
                adapter.subscribe(app, target, action.grant, wall_ms())
            except SubscriptionRefused as exc:
                carry_out(target, session.join_refused(exc))
        elif isinstance(action, PublishClientEvent):
            adapter.client_event(app, target, action.event, action.channel, action.data,
                                 action.user_id, wall_ms())
        elif isinstance(action, Leave):
            adapter.unsubscribe(app, target, action.channel, wall_ms())
        elif isinstance(action, Close):
            target.close(action.code, action.reason)
        elif isinstance(action, SignIn):
            adapter.sign_in(app, target, action.user)
        elif isinstance(action, SignOut):
            adapter.sign_out(app, target, action.user)
        elif isinstance(action, Register):
            admitted = adapter.add_connection(app, target)
            carry_out(target, session.established() if admitted else session.refuse(
                4004, "Application is over its connection quota"))
        elif isinstance(action, Unregister):
            adapter.remove_connection(app, target)
