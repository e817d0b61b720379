"""The adapter seam under the channel state, and the subscriber handle it delivers to.

The interface is synchronous on purpose: the hot path (a trigger's fan-out, a
subscription) must not await per recipient or per message. A distributed adapter keeps a
local replica of the shared state for its reads and ships its writes asynchronously,
behind this same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pusherd.apps import App
from pusherd.core.api import Trigger
from pusherd.core.outbound import Outbound
from pusherd.core.session import Session, SignedInUser, SubscriptionGrant


class Subscriber(Protocol):
    """One client connection as the adapter sees it (a transport-independent handle)."""

    socket_id: str
    session: Session

    def deliver(self, frame: Outbound) -> None:
        """Queue `frame` without blocking; a slow socket over its buffer cap is cut off."""

    def terminate(self, code: int, message: str) -> None:
        """Send ``pusher:error`` with `code`, then close with the same code (§1.4)."""


@dataclass(frozen=True, slots=True)
class StateEvent:
    """A state transition, as webhooks and metrics consume it (names of spec §14.2)."""

    app_id: str
    name: str  # channel_occupied, channel_vacated, member_added, member_removed, ...
    channel: str
    user_id: str | None = None
    event: str | None = None
    data: Any = None
    socket_id: str | None = None
    subscription_count: int | None = None


StateListener = Callable[[StateEvent], None]


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    occupied: bool
    subscription_count: int
    user_count: int | None  # presence channels only


class Adapter(Protocol):
    def add_listener(self, listener: StateListener) -> None: ...

    def add_connection(self, app: App, subscriber: Subscriber) -> bool:
        """Register a new connection; False when the app is at ``max_connections``."""

    def remove_connection(self, app: App, subscriber: Subscriber) -> None:
        """Forget a closed connection: leave its channels, sign its user out."""

    def connection_count(self, app: App | None = None) -> int: ...

    def subscribe(
        self, app: App, subscriber: Subscriber, grant: SubscriptionGrant, now: float
    ) -> None:
        """Apply a granted subscription and send every frame it causes (§3.2, §8, §11)."""

    def unsubscribe(self, app: App, subscriber: Subscriber, channel: str) -> None: ...

    def sign_in(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None: ...

    def trigger(self, app: App, trigger: Trigger, now: float) -> None:
        """Publish an HTTP API event to each of its channels, encoding once per channel."""

    def client_event(
        self, app: App, subscriber: Subscriber, event: str, channel: str, data: Any,
        user_id: str | None,
    ) -> None: ...

    def channel_snapshot(self, app: App, channel: str) -> ChannelSnapshot: ...

    def occupied_channels(self, app: App, prefix: str) -> Iterator[tuple[str, ChannelSnapshot]]:
        ...

    def presence_user_ids(self, app: App, channel: str) -> list[str]: ...

    def cached_event(self, app: App, channel: str, now: float) -> tuple[str, str, float] | None:
        """(event, data, seconds left) of a cache channel's last event, if any."""

    def terminate_user(self, app: App, user_id: str) -> int:
        """Close every connection signed in as `user_id` with 4009; return how many."""

    def tick(self, now: float) -> None:
        """Periodic housekeeping (cache expiry, throttled subscription counts)."""

    def subscribers(self) -> Iterator[Subscriber]:
        """Every local connection (for the keepalive sweep and the shutdown drain)."""
