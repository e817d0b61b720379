"""Carrying out a session's actions: the one interpreter every transport shell shares.

A :class:`~pusherd.core.session.Session` returns actions; a transport (the WebSocket
connection, the HTTP fallback transports) hands them to :func:`carry_out` with itself as
the target. Frames go to the target, requests go to the adapter with the app and the
current wall-clock time, and answers the adapter gives (admitted or not, a refused join)
are fed back to the session, whose further actions are carried out in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

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


def _send(target: ActionTarget, action: Send) -> None:
    target.deliver(action.frame)


def _join(target: ActionTarget, action: Join) -> None:
    try:
        target.adapter.subscribe(target.app, target, action.grant, wall_ms())
    except SubscriptionRefused as exc:
        carry_out(target, target.session.join_refused(exc))


def _leave(target: ActionTarget, action: Leave) -> None:
    target.adapter.unsubscribe(target.app, target, action.channel, wall_ms())


def _publish_client_event(target: ActionTarget, action: PublishClientEvent) -> None:
    target.adapter.client_event(target.app, target, action.event, action.channel,
                                action.data, action.user_id, wall_ms())


def _register(target: ActionTarget, action: Register) -> None:
    session = target.session
    admitted = target.adapter.add_connection(target.app, target)
    carry_out(target, session.established() if admitted else session.refuse(
        4004, "Application is over its connection quota"))


def _unregister(target: ActionTarget, action: Unregister) -> None:
    target.adapter.remove_connection(target.app, target)


def _close(target: ActionTarget, action: Close) -> None:
    target.close(action.code, action.reason)


def _sign_in(target: ActionTarget, action: SignIn) -> None:
    target.adapter.sign_in(target.app, target, action.user)


def _sign_out(target: ActionTarget, action: SignOut) -> None:
    target.adapter.sign_out(target.app, target, action.user)


# One handler per action class: a dict lookup instead of a chain of isinstance checks
# (every client message and every connect goes through here).
_HANDLERS: dict[type, Callable[[ActionTarget, Any], None]] = {
    Send: _send, Join: _join, Leave: _leave, PublishClientEvent: _publish_client_event,
    Register: _register, Unregister: _unregister, Close: _close, SignIn: _sign_in,
    SignOut: _sign_out,
}


def carry_out(target: ActionTarget, actions: list[Action]) -> None:
    """Carry out `actions` in order on `target` and its adapter."""
    for action in actions:
        _HANDLERS[type(action)](target, action)
