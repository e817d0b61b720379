"""The adapter seam: what the server needs from channel state, whatever engine keeps it.

An adapter has two halves. The *state decision* (who is subscribed where, presence members
ref-counted per user, counts, the cache) decides each transition once
(:mod:`pusherd.core.transitions`); the *local fan-out* (:mod:`pusherd.adapters.fanout`)
writes frames to this node's sockets. The in-memory adapter
(:mod:`pusherd.adapters.memory`) keeps the state in this process; a distributed adapter
keeps it in shared storage and every node fans out to its own sockets.

The methods a connection calls are synchronous on purpose: the hot path (a trigger's
fan-out, a subscription) must not await per recipient or per message. An adapter whose
decisions need I/O completes them in the background and delivers the frames when they are
decided, in the order stated below for each method.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pusherd.core.api import Trigger
from pusherd.core.app import App
from pusherd.core.ids import SocketId
from pusherd.core.outbound import Outbound
from pusherd.core.session import SignedInUser, SubscriptionGrant
from pusherd.core.transitions import Transition, TransitionListener

log = logging.getLogger("pusherd.adapter")


def notify_listeners(listeners: list[TransitionListener], transition: Transition) -> None:
    """Hand `transition` to each listener in order; a failing listener is logged and never
    breaks delivery or the listeners after it."""
    for listener in listeners:
        try:
            listener(transition)
        except Exception:  # a listener must never break delivery
            log.exception("transition listener failed on %s", transition.name)


class Subscriber(Protocol):
    """One client connection as the adapter sees it (a transport-independent handle)."""

    socket_id: SocketId

    def deliver(self, frame: Outbound) -> None:
        """Queue `frame` without blocking; a slow socket over its buffer cap is cut off."""

    def terminate(self, code: int, message: str) -> None:
        """Send ``pusher:error`` with `code`, then close with the same code (§1.4)."""


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """What the HTTP API reports of one channel (§12.1)."""

    occupied: bool
    subscription_count: int  # sockets subscribed, on every node
    user_count: int | None  # distinct presence members; None on other kinds


@dataclass(frozen=True, slots=True)
class Occupancy:
    """One app's figures for the metrics' gauges, by channel type
    (:func:`~pusherd.core.channels.channel_type`). Adapters keep them up to date as
    subscriptions change, so reading them costs nothing in proportion to sockets or
    channels."""

    subscriptions: dict[str, int]  # subscriptions of this node's sockets
    channels: dict[str, int]  # occupied channels (``#`` channels not counted)
    presence_members: int  # distinct members, summed over the presence channels


@dataclass(frozen=True, slots=True)
class CachedEventView:
    """A cache channel's last event (§11.1) and the milliseconds it has left to live."""

    event: str
    data: str
    ttl_ms: int


class Adapter(Protocol):
    """Channel state and delivery for every app of the server.

    ``now_ms`` is wall-clock milliseconds since the Unix epoch. No method raises on a
    connection it does not know (it may have been removed concurrently) except where said.
    """

    async def start(self) -> None:
        """Connect what the adapter needs (nothing for the in-memory one)."""

    async def close(self) -> None:
        """Release what :meth:`start` acquired; the adapter is not used afterwards."""

    @property
    def ready(self) -> bool:
        """Whether the adapter can serve the whole cluster view now (its shared state
        reachable: false while a Redis adapter's Redis is unreachable). ``/ready`` answers
        503 while it is not. Cheap: read on every readiness probe."""

    def add_listener(self, listener: TransitionListener) -> None:
        """Receive every transition this node decides, in order (webhooks, metrics)."""

    def add_connection(self, app: App, subscriber: Subscriber) -> bool:
        """Admit a new connection; False when the app is at ``max_connections`` (4004)."""

    def remove_connection(self, app: App, subscriber: Subscriber) -> None:
        """Forget a closed connection. Its channels and user are released before, by
        :meth:`unsubscribe` and :meth:`sign_out` (the session's close actions)."""

    def connection_count(self, app: App | None = None) -> int:
        """Connections this node holds, of `app` or of every app."""

    def subscribe(
        self, app: App, subscriber: Subscriber, grant: SubscriptionGrant, now_ms: int
    ) -> None:
        """Apply a granted subscription. Frames, in order: ``member_added`` to the other
        members (a user's first socket), then to the subscriber
        ``pusher_internal:subscription_succeeded`` (with the roster on presence
        channels), then the cached event or ``pusher:cache_miss`` on cache channels,
        then ``pusher_internal:subscription_count`` to the channel where enabled (§3.2, §8,
        §11). A repeated subscribe of the same socket answers subscription_succeeded again
        and changes nothing.

        Raises :class:`~pusherd.errors.SubscriptionRefused` (4100) when a new user would
        exceed the presence channel's ``max_presence_members``; nothing changes then.
        """

    def unsubscribe(self, app: App, subscriber: Subscriber, channel: str, now_ms: int) -> None:
        """Remove the socket from `channel`: ``member_removed`` to the remaining members
        when it was the user's last socket there, then the new subscription count."""

    def sign_in(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """Record the signed-in user (§10.1): ``pusher:signin_success`` to the subscriber,
        then its watchlist's ``online``/``offline`` events, then ``online`` to the user's
        watchers when this is the user's first socket (§10.3)."""

    def sign_out(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """Forget the user's socket; ``offline`` to its watchers after its last socket."""

    def trigger(self, app: App, trigger: Trigger, now_ms: int) -> asyncio.Future[None] | None:
        """Publish an HTTP API event to each of its channels: encoded once per channel,
        never to ``trigger.socket_id``; cache channels keep it as their last event.

        Returns None when the event is delivered and stored on return. An adapter that
        stores a cache channel's last event elsewhere returns a future instead, done
        once it is stored (a subscriber anywhere then gets it), or failed with an
        exception saying why it may not be; the HTTP API answers when it is done."""

    def client_event(
        self, app: App, subscriber: Subscriber, event: str, channel: str, data: Any,
        user_id: str | None, now_ms: int,
    ) -> None:
        """Relay a client event to every other subscriber of `channel` (§9), never back
        to the sender; ``user_id`` is attached on presence channels."""

    def terminate_user(self, app: App, user_id: str) -> int:
        """Close every socket signed in as `user_id` with 4009; return how many (§13.4)."""

    def channel_snapshot(self, app: App, channel: str) -> ChannelSnapshot:
        """Occupancy and counts of one channel (§12.1)."""

    def occupied_channels(self, app: App, prefix: str) -> Iterator[tuple[str, ChannelSnapshot]]:
        """Every occupied channel whose name starts with `prefix` (``#`` channels hidden)."""

    def occupancy(self, app: App) -> Occupancy:
        """The app's subscriptions on this node, occupied channels and presence members,
        as counted while they changed (copies: O(channel types) to read). Which
        channels and members are counted (this process's, or the cluster's) is the
        adapter's to say, as for :meth:`occupied_channels`."""

    def presence_user_ids(self, app: App, channel: str) -> list[str]:
        """The distinct member keys of a presence channel, in join order."""

    def cached_event(self, app: App, channel: str, now_ms: int) -> CachedEventView | None:
        """The last event of a cache channel while its TTL runs (§11.1)."""

    def tick(self, now_ms: int) -> None:
        """Housekeeping, called about once a second: expire cached events, announce
        throttled subscription counts that are due."""
