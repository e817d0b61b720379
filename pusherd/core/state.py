"""The state decision of one app: channels, presence members, cached events, signed-in users.

Pure and synchronous, and free of socket handles: the state knows sockets by their
``socket_id`` only, and each mutation returns the typed transitions it caused
(:mod:`pusherd.core.transitions`). Who receives which frame is the local fan-out's
business (:mod:`pusherd.adapters.fanout`); a distributed adapter makes the same decisions
against shared state instead of this module.

Time is passed in as wall-clock milliseconds (``time_ms``/``now_ms``) so that a decision
(a cache entry's expiry, a transition's timestamp) means the same on every node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pusherd.core.app import App
from pusherd.core.channels import CHANNEL_TYPES, ChannelKind, classify_channel
from pusherd.core.ids import AppId
from pusherd.core.transitions import (
    CacheMiss,
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    SubscriptionCountChanged,
    Transition,
)
from pusherd.errors import SubscriptionRefused

# Above this many subscribers, subscription_count is announced at most every 5 s (§11.2).
SUBSCRIPTION_COUNT_THROTTLE_ABOVE = 100
SUBSCRIPTION_COUNT_INTERVAL_MS = 5_000


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


class Channel:
    """One occupied channel. Deleted from the registry as soon as it is vacated."""

    __slots__ = ("name", "kind", "socket_ids", "members")

    def __init__(self, name: str, kind: ChannelKind) -> None:
        self.name = name
        self.kind = kind
        # socket_id -> the presence member key it joined as (None on other kinds), in
        # join order: what a socket holds is recorded where it is released.
        self.socket_ids: dict[str, str | None] = {}
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
    """What one subscribe changed in a :class:`ChannelRegistry`."""

    already_subscribed: bool
    occupied: bool  # the channel went from 0 to 1 subscriber
    member_added: PresenceMember | None  # the user's first socket joined
    subscription_count: int


@dataclass(frozen=True, slots=True)
class UnsubscribeTransition:
    """What one unsubscribe changed in a :class:`ChannelRegistry`."""

    vacated: bool  # the channel went from 1 to 0 subscribers
    member_removed: PresenceMember | None  # the user's last socket left
    member_key: str | None  # the member key the socket had joined as
    subscription_count: int


class ChannelRegistry:
    """Every occupied channel of one app, by name."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        # Kept as channels are occupied and vacated (``#`` channels excluded, as in
        # :meth:`occupied`), so that metrics never walk the channels: channel type
        # (:func:`~pusherd.core.channels.channel_type`) -> occupied channels, and the
        # presence members summed over the presence channels.
        self.occupied_by_type: dict[str, int] = dict.fromkeys(CHANNEL_TYPES, 0)
        self.presence_members = 0

    def get(self, name: str) -> Channel | None:
        """The occupied channel `name`, or None."""
        return self.channels.get(name)

    def subscribe(
        self,
        name: str,
        kind: ChannelKind,
        socket_id: str,
        member: MemberJoin | None = None,
        max_members: int = 100,
    ) -> SubscribeTransition:
        """Add `socket_id` to `name`. Idempotent: a second subscribe changes nothing, not
        even the member the socket joined as.

        Raises :class:`SubscriptionRefused` (status 4100) when a new distinct user would
        exceed `max_members` (§8); the state is left unchanged then.
        """
        channel = self.channels.get(name)
        if channel is not None and socket_id in channel.socket_ids:
            return SubscribeTransition(True, False, None, len(channel.socket_ids))
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
            if not kind.server_to_user:  # the only # channels
                self.occupied_by_type[kind.label] += 1
        added = None
        if member is not None:
            channel.socket_ids[socket_id] = member.key
            present = channel.members.get(member.key)
            if present is None:
                present = channel.members[member.key] = PresenceMember(
                    member.user_id, member.user_info
                )
                added = present
                self.presence_members += 1
            present.socket_ids.add(socket_id)
        else:
            channel.socket_ids[socket_id] = None
        return SubscribeTransition(False, occupied, added, len(channel.socket_ids))

    def unsubscribe(self, name: str, socket_id: str) -> UnsubscribeTransition | None:
        """Remove `socket_id` from `name` and release the member it joined as; ``None`` if
        it was not subscribed."""
        channel = self.channels.get(name)
        if channel is None or socket_id not in channel.socket_ids:
            return None
        member_key = channel.socket_ids.pop(socket_id)
        removed = None
        if member_key is not None:
            present = channel.members.get(member_key)
            if present is not None:
                present.socket_ids.discard(socket_id)
                if not present.socket_ids:
                    del channel.members[member_key]
                    removed = present
                    self.presence_members -= 1
        vacated = not channel.socket_ids
        if vacated:
            del self.channels[name]
            if not channel.kind.server_to_user:
                self.occupied_by_type[channel.kind.label] -= 1
        return UnsubscribeTransition(vacated, removed, member_key, len(channel.socket_ids))

    def occupied(self, prefix: str = "") -> Iterator[Channel]:
        """Occupied channels whose name starts with `prefix`, ``#`` channels excluded."""
        for name, channel in self.channels.items():
            if name.startswith(prefix) and not name.startswith("#"):
                yield channel


@dataclass(frozen=True, slots=True)
class CachedEvent:
    """A cache channel's last event and when it expires (wall-clock ms)."""

    event: str
    data: str
    expires_at_ms: int


class EventCache:
    """The last HTTP-API event of each cache channel, with a TTL (§11.1).

    It survives the channel becoming empty (as hosted Pusher's does); entries expire at
    ``expires_at_ms``, checked on read and purged by :meth:`purge`.
    """

    def __init__(self) -> None:
        self._events: dict[str, CachedEvent] = {}

    def put(self, channel: str, event: str, data: str, now_ms: int, ttl_ms: int) -> None:
        """Keep `event`/`data` as the channel's last event for `ttl_ms` from `now_ms`."""
        self._events[channel] = CachedEvent(event, data, now_ms + ttl_ms)

    def get(self, channel: str, now_ms: int) -> CachedEvent | None:
        """The channel's last event at `now_ms`, or None (an expired entry is dropped)."""
        cached = self._events.get(channel)
        if cached is None:
            return None
        if cached.expires_at_ms <= now_ms:
            del self._events[channel]
            return None
        return cached

    def purge(self, now_ms: int) -> int:
        """Drop expired entries; return how many were dropped."""
        expired = [name for name, c in self._events.items() if c.expires_at_ms <= now_ms]
        for name in expired:
            del self._events[name]
        return len(expired)

    def __len__(self) -> int:
        return len(self._events)


class UserRegistry:
    """Signed-in users (§10): user id -> socket ids, and who watches whom (§10.3)."""

    def __init__(self) -> None:
        self.sockets: dict[str, set[str]] = {}
        self.watchers: dict[str, set[str]] = {}  # watched id -> watcher socket ids

    def sign_in(self, user_id: str, socket_id: str) -> bool:
        """Record the socket; True when the user just came online (first socket)."""
        sockets = self.sockets.setdefault(user_id, set())
        first = not sockets
        sockets.add(socket_id)
        return first

    def sign_out(self, user_id: str, socket_id: str) -> bool:
        """Forget the socket; True when the user just went offline (last socket)."""
        sockets = self.sockets.get(user_id)
        if sockets is None or socket_id not in sockets:
            return False
        sockets.discard(socket_id)
        if sockets:
            return False
        del self.sockets[user_id]
        return True

    def is_online(self, user_id: str) -> bool:
        """Whether the user has a signed-in socket."""
        return user_id in self.sockets

    def watch(self, watched: list[str], socket_id: str) -> None:
        """Record `socket_id` as a watcher of each user id in `watched`."""
        for user_id in watched:
            self.watchers.setdefault(user_id, set()).add(socket_id)

    def unwatch(self, watched: list[str], socket_id: str) -> None:
        """Forget `socket_id` as a watcher of each user id in `watched`."""
        for user_id in watched:
            sockets = self.watchers.get(user_id)
            if sockets is not None:
                sockets.discard(socket_id)
                if not sockets:
                    del self.watchers[user_id]


class Subscribed(NamedTuple):
    """What a granted subscription caused: the transitions in order (for listeners),
    the two of them that carry frames, and what the subscriber itself must receive
    (roster for presence, the cached event or a miss).

    A named tuple: one is built per subscribe, and a tuple is cheaper to build than a
    frozen dataclass.
    """

    already_subscribed: bool
    transitions: list[Transition]
    member_added: MemberAdded | None
    count_changed: SubscriptionCountChanged | None
    roster: dict[str, Any] | None
    cached: CachedEvent | None
    cache_miss: bool


class AppState:
    """The whole state decision of one app (spec §8, §10, §11), transitions out."""

    __slots__ = ("app_id", "channels", "cache", "users", "pending_counts", "count_sent_at")

    def __init__(self, app_id: AppId) -> None:
        self.app_id = app_id
        self.channels = ChannelRegistry()
        self.cache = EventCache()
        self.users = UserRegistry()
        # Busy channels whose subscription_count changed since it was last announced, and
        # when it was last announced: at most every SUBSCRIPTION_COUNT_INTERVAL_MS (§11.2).
        self.pending_counts: set[str] = set()
        self.count_sent_at: dict[str, int] = {}

    def subscribe(
        self, app: App, channel: str, kind: ChannelKind, socket_id: str,
        member: MemberJoin | None, now_ms: int, observed: bool = True,
    ) -> Subscribed:
        """Add `socket_id` to `channel`: transitions in the order listeners must see them
        (occupied, member_added, cache_miss, subscription_count). With `observed` False
        (nobody listens), the transitions that carry no frame (occupied, cache_miss) are
        not built.

        Raises :class:`SubscriptionRefused` (4100) when the presence channel is full.
        """
        change = self.channels.subscribe(channel, kind, socket_id, member,
                                         app.max_presence_members)
        current = self.channels.channels[channel]
        roster = current.roster() if kind.presence else None
        if change.already_subscribed:
            return Subscribed(True, [], None, None, roster, None, False)
        transitions: list[Transition] = []
        if observed and change.occupied and not kind.server_to_user:
            transitions.append(ChannelOccupied(self.app_id, channel, now_ms))
        added = change.member_added
        member_added = None
        if added is not None and member is not None:
            member_added = MemberAdded(self.app_id, channel, member.key, now_ms,
                                       added.user_id, added.user_info)
            transitions.append(member_added)
        cached, miss = None, False
        if kind.cache:
            cached = self.cache.get(channel, now_ms)
            miss = cached is None
            if miss and observed:
                transitions.append(CacheMiss(self.app_id, channel, now_ms))
        count = self._count_changed(app, channel, change.subscription_count, now_ms, True)
        if count is not None:
            transitions.append(count)
        return Subscribed(False, transitions, member_added, count, roster, cached, miss)

    def unsubscribe(self, app: App, channel: str, socket_id: str, now_ms: int,
                    observed: bool = True) -> list[Transition]:
        """Remove `socket_id` from `channel`: the transitions (member_removed, then
        channel_vacated or subscription_count); none if it was not subscribed. With
        `observed` False, channel_vacated (it carries no frame) is not built."""
        change = self.channels.unsubscribe(channel, socket_id)
        if change is None:
            return []
        transitions: list[Transition] = []
        removed = change.member_removed
        if removed is not None and change.member_key is not None:
            transitions.append(MemberRemoved(self.app_id, channel, change.member_key, now_ms,
                                             removed.user_id))
        if change.vacated:
            self.pending_counts.discard(channel)
            self.count_sent_at.pop(channel, None)
            if observed and not classify_channel(channel).server_to_user:
                transitions.append(ChannelVacated(self.app_id, channel, now_ms))
        else:
            count = self._count_changed(app, channel, change.subscription_count, now_ms,
                                        False)
            if count is not None:
                transitions.append(count)
        return transitions

    def _count_changed(self, app: App, channel: str, count: int, now_ms: int,
                       subscribing: bool) -> SubscriptionCountChanged | None:
        """The announcement a new count calls for (§11.2): on a busy channel a subscribe
        announces at most every interval, and an unsubscribe waits for :meth:`tick`."""
        if not app.enable_subscription_count:
            return None
        kind = classify_channel(channel)
        if kind.presence or kind.server_to_user:
            return None
        if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE and (
            not subscribing
            or now_ms - self.count_sent_at.get(channel, 0) < SUBSCRIPTION_COUNT_INTERVAL_MS
        ):
            self.pending_counts.add(channel)
            return None
        if subscribing:
            self.count_sent_at[channel] = now_ms
        return SubscriptionCountChanged(self.app_id, channel, count, now_ms)

    def tick(self, now_ms: int) -> list[Transition]:
        """Housekeeping: expire cached events, announce throttled counts that are due."""
        self.cache.purge(now_ms)
        due: list[Transition] = []
        for channel in list(self.pending_counts):
            if now_ms - self.count_sent_at.get(channel, 0) >= SUBSCRIPTION_COUNT_INTERVAL_MS:
                self.pending_counts.discard(channel)
                self.count_sent_at[channel] = now_ms
                current = self.channels.get(channel)
                if current is not None:
                    due.append(SubscriptionCountChanged(
                        self.app_id, channel, len(current.socket_ids), now_ms))
        return due
