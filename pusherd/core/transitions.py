"""State transitions: what changed in an app's channel state, as typed values.

The state half of an adapter decides each transition once (spec §14.2 names them as
webhook events); the local fan-out turns some of them into frames for this node's sockets,
and listeners (webhooks, metrics) receive every one, in the order they happened.

``time_ms`` is wall-clock milliseconds since the Unix epoch, passed in by the caller, so
that a transition decided on one node reads the same on every other node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pusherd.core.ids import AppId, SocketId


@dataclass(frozen=True, slots=True)
class ChannelOccupied:
    """A channel went from no subscriber to one (webhook ``channel_occupied``)."""

    name: ClassVar[str] = "channel_occupied"
    app_id: AppId
    channel: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class ChannelVacated:
    """A channel's last subscriber left (webhook ``channel_vacated``)."""

    name: ClassVar[str] = "channel_vacated"
    app_id: AppId
    channel: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class MemberAdded:
    """A user's first socket joined a presence channel (§8; webhook ``member_added``).

    `user_id` is the string key of the member; `user_id_value` and `user_info` are the JSON
    values as the user's channel_data gave them (what ``pusher_internal:member_added``
    carries).
    """

    name: ClassVar[str] = "member_added"
    app_id: AppId
    channel: str
    user_id: str
    time_ms: int
    user_id_value: Any = None
    user_info: Any = None


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    """A user's last socket left a presence channel (§8; webhook ``member_removed``)."""

    name: ClassVar[str] = "member_removed"
    app_id: AppId
    channel: str
    user_id: str
    time_ms: int
    user_id_value: Any = None


@dataclass(frozen=True, slots=True)
class SubscriptionCountChanged:
    """The number of sockets subscribed to a channel, to be announced (§11.2)."""

    name: ClassVar[str] = "subscription_count"
    app_id: AppId
    channel: str
    subscription_count: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class CacheMiss:
    """A socket subscribed to a cache channel with nothing cached (§11.1)."""

    name: ClassVar[str] = "cache_miss"
    app_id: AppId
    channel: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class ClientEventSent:
    """A client event was relayed (§9; webhook ``client_event``); `data` is the JSON value."""

    name: ClassVar[str] = "client_event"
    app_id: AppId
    channel: str
    event: str
    data: Any
    socket_id: SocketId
    user_id: str | None
    time_ms: int


Transition = (
    ChannelOccupied | ChannelVacated | MemberAdded | MemberRemoved | SubscriptionCountChanged
    | CacheMiss | ClientEventSent
)

TransitionListener = Callable[[Transition], None]
"""Receives every transition, synchronously, in order; must not block or raise."""
