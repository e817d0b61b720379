"""Channel state of one app: subscriptions, presence members, cached events, signed-in users.

Pure and synchronous. Each mutation returns the *transition* it caused (channel occupied
or vacated, member added or removed, the new subscription count) so that the caller can
send frames and feed webhooks from the one place that knows a transition happened.

``S`` is the caller's handle for a subscriber (a connection object); this module stores
it and hands it back, and never calls anything on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pusherd.core.channels import ChannelKind
from pusherd.errors import SubscriptionRefused

S = TypeVar("S")


@dataclass(slots=True)
class PresenceMember:
    """One distinct user in a presence channel, ref-counted by the sockets it holds (§8)."""

    user_id: Any  # the JSON value as given (a string from Laravel; numbers are possible)
    user_info: Any  # kept from the user's first socket (stable, spec §8)
    socket_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class MemberJoin:
    """Who a presence subscription is for: ``key`` is the string form of ``user_id``."""

    key: str
    user_id: Any
    user_info: Any


class Channel(Generic[S]):
    """One occupied channel. Deleted from the registry as soon as it is vacated."""

    __slots__ = ("name", "kind", "subscribers", "members")

    def __init__(self, name: str, kind: ChannelKind) -> None:
        self.name = name
        self.kind = kind
        self.subscribers: dict[str, S] = {}  # socket_id -> handle, in join order
        self.members: dict[str, PresenceMember] = {}  # presence only; key = str(user_id)

    def roster(self) -> dict[str, Any]:
        """``{"ids", "hash", "count"}`` for presence ``subscription_succeeded`` (§3.2)."""
        return {
            "ids": list(self.members),
            "hash": {key: m.user_info for key, m in self.members.items()},
            "count": len(self.members),
        }


@dataclass(frozen=True, slots=True)
class SubscribeTransition:
    already_subscribed: bool
    occupied: bool  # the channel went from 0 to 1 subscriber
    member_added: PresenceMember | None  # the user's first socket joined
    subscription_count: int


@dataclass(frozen=True, slots=True)
class UnsubscribeTransition:
    vacated: bool  # the channel went from 1 to 0 subscribers
    member_removed: PresenceMember | None  # the user's last socket left
    subscription_count: int


class ChannelRegistry(Generic[S]):
    """Every occupied channel of one app."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel[S]] = {}

    def get(self, name: str) -> Channel[S] | None:
        return self.channels.get(name)

    def subscribe(
        self,
        name: str,
        kind: ChannelKind,
        socket_id: str,
        handle: S,
        member: MemberJoin | None = None,
        max_members: int = 100,
    ) -> SubscribeTransition:
        """Add `socket_id` to `name`. Idempotent: a second subscribe changes nothing.

        Raises :class:`SubscriptionRefused` when a new distinct user would exceed
        `max_members` (§8); the state is left unchanged then.
        """
        channel = self.channels.get(name)
        if channel is not None and socket_id in channel.subscribers:
            return SubscribeTransition(True, False, None, len(channel.subscribers))
        if (
            member is not None
            and channel is not None
            and member.key not in channel.members
            and len(channel.members) >= max_members
        ):
            raise SubscriptionRefused(
                f"Presence channel {name} is full: at most {max_members} members",
                channel=name, status=4100,
            )
        occupied = channel is None
        if channel is None:
            channel = self.channels[name] = Channel(name, kind)
        channel.subscribers[socket_id] = handle
        added = None
        if member is not None:
            present = channel.members.get(member.key)
            if present is None:
                present = channel.members[member.key] = PresenceMember(
                    member.user_id, member.user_info
                )
                added = present
            present.socket_ids.add(socket_id)
        return SubscribeTransition(False, occupied, added, len(channel.subscribers))

    def unsubscribe(
        self, name: str, socket_id: str, member_key: str | None = None
    ) -> UnsubscribeTransition | None:
        """Remove `socket_id` from `name`; ``None`` if it was not subscribed."""
        channel = self.channels.get(name)
        if channel is None or channel.subscribers.pop(socket_id, None) is None:
            return None
        removed = None
        if member_key is not None:
            present = channel.members.get(member_key)
            if present is not None:
                present.socket_ids.discard(socket_id)
                if not present.socket_ids:
                    del channel.members[member_key]
                    removed = present
        vacated = not channel.subscribers
        if vacated:
            del self.channels[name]
        return UnsubscribeTransition(vacated, removed, len(channel.subscribers))

    def occupied(self, prefix: str = "") -> Iterator[Channel[S]]:
        """Occupied channels whose name starts with `prefix`, ``#`` channels excluded."""
        for name, channel in self.channels.items():
            if name.startswith(prefix) and not name.startswith("#"):
                yield channel


@dataclass(frozen=True, slots=True)
class CachedEvent:
    event: str
    data: str
    expires_at: float


class EventCache:
    """The last HTTP-API event of each cache channel, with a TTL (§11.1).

    It survives the channel becoming empty (as hosted Pusher's does); entries expire at
    ``expires_at``, checked on read and purged by :meth:`purge`.
    """

    def __init__(self) -> None:
        self._events: dict[str, CachedEvent] = {}

    def put(self, channel: str, event: str, data: str, now: float, ttl: float) -> None:
        self._events[channel] = CachedEvent(event, data, now + ttl)

    def get(self, channel: str, now: float) -> CachedEvent | None:
        cached = self._events.get(channel)
        if cached is None:
            return None
        if cached.expires_at <= now:
            del self._events[channel]
            return None
        return cached

    def purge(self, now: float) -> int:
        expired = [name for name, c in self._events.items() if c.expires_at <= now]
        for name in expired:
            del self._events[name]
        return len(expired)

    def __len__(self) -> int:
        return len(self._events)


class UserRegistry(Generic[S]):
    """Signed-in users (§10): user id -> sockets, and who watches whom (§10.3)."""

    def __init__(self) -> None:
        self.sockets: dict[str, dict[str, S]] = {}
        self.watchers: dict[str, dict[str, S]] = {}  # watched id -> watcher socket -> handle

    def sign_in(self, user_id: str, socket_id: str, handle: S) -> bool:
        """Record the socket; True when the user just came online (first socket)."""
        sockets = self.sockets.setdefault(user_id, {})
        first = not sockets
        sockets[socket_id] = handle
        return first

    def sign_out(self, user_id: str, socket_id: str) -> bool:
        """Forget the socket; True when the user just went offline (last socket)."""
        sockets = self.sockets.get(user_id)
        if sockets is None or sockets.pop(socket_id, None) is None:
            return False
        if sockets:
            return False
        del self.sockets[user_id]
        return True

    def is_online(self, user_id: str) -> bool:
        return user_id in self.sockets

    def watch(self, watched: list[str], socket_id: str, handle: S) -> None:
        for user_id in watched:
            self.watchers.setdefault(user_id, {})[socket_id] = handle

    def unwatch(self, watched: list[str], socket_id: str) -> None:
        for user_id in watched:
            handles = self.watchers.get(user_id)
            if handles is not None:
                handles.pop(socket_id, None)
                if not handles:
                    del self.watchers[user_id]
