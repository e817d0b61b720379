"""The cluster-wide channel state in Redis: counts, presence, signed-in users, cache.

:class:`ClusterState` is one node's handle on it. Writes go through the Lua scripts of
:mod:`.scripts` and return the transitions they decided (exactly once in the cluster);
reads are plain commands that never wait on another node. Every method is one Redis
round trip and raises :class:`redis.exceptions.RedisError` (a ``ConnectionError`` when
Redis is unreachable); the caller owns retrying and reporting.

What a node contributes is tied to its lease (``P:nodes``): :meth:`renew` keeps it,
:meth:`reap` lets any node remove a lapsed node's contributions in one atomic step, and
a node that finds itself reaped (:meth:`still_registered` is false, :meth:`renew`
returns False, a write raises :class:`NodeNotRegistered`) calls :meth:`sync` with a
snapshot of what is still live.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from pusherd.adapters.cluster import scripts
from pusherd.adapters.cluster.keys import KeyLayout
from pusherd.core.ids import AppId


class NodeNotRegistered(Exception):
    """This node is not in ``P:nodes``: it was reaped (frozen, partitioned, or Redis lost
    its data). Nothing was written; :meth:`ClusterState.sync` registers it again."""


class PresenceFull(Exception):
    """A new distinct user would exceed the channel's ``max_presence_members`` (§8)."""


class ChangeKind(enum.Enum):
    """What a script decided changed (see :mod:`.scripts`)."""
    OCCUPIED = "occupied"  # 0 -> 1 subscriber in the cluster
    COUNT = "count"  # the cluster's subscription count changed, still occupied
    VACATED = "vacated"  # 1 -> 0
    MEMBER_ADDED = "member_added"  # a user's first socket anywhere joined
    MEMBER_REMOVED = "member_removed"  # its last socket anywhere left
    ONLINE = "online"  # a user's first signed-in socket anywhere
    OFFLINE = "offline"  # its last one closed


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition decided by a script.

    ``channel`` is empty for ONLINE/OFFLINE, whose user id is ``user_key``. ``member`` is
    the stored JSON ``[user_id, user_info]`` of a presence member (MEMBER_ADDED/REMOVED);
    ``count`` the cluster's subscription count after the change (0 for the others).
    """

    kind: ChangeKind
    app_id: AppId
    channel: str
    user_key: str | None = None
    member: bytes | None = None
    count: int = 0

    def member_value(self) -> tuple[Any, Any]:
        """``(user_id, user_info)`` of a member change, as the member joined with them."""
        if not self.member:
            return self.user_key, None
        user_id, user_info = orjson.loads(self.member)
        return user_id, user_info


def encode_member(user_id: Any, user_info: Any) -> bytes:
    """The stored form of a presence member: JSON ``[user_id, user_info]``."""
    return orjson.dumps([user_id, user_info])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_changes(raw: Sequence[Any]) -> list[StateChange]:
    """Turn a script's transition arrays (six fields, "" where none) into values."""
    changes = []
    for kind, app_id, channel, user_key, member, count in raw:
        member_bytes = member.encode() if isinstance(member, str) else member
        changes.append(StateChange(
            ChangeKind(_text(kind)), AppId(_text(app_id)), _text(channel),
            _text(user_key) or None, member_bytes or None, int(count)))
    return changes


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """What the SUBSCRIBE script answered: transitions, roster, cached event."""
    changes: list[StateChange]
    # Presence only: member key -> (user_id, user_info), every node's members.
    roster: dict[str, tuple[Any, Any]] | None
    # Cache channels: (stored JSON [event, data], milliseconds left) of the last event.
    cached: tuple[bytes, int] | None


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What the SIGN_IN script answered: transitions, and who of the watchlist is online."""
    changes: list[StateChange]
    online: dict[str, bool]  # each watched user id -> signed in anywhere


@dataclass(frozen=True, slots=True)
class ChannelCounts:
    """One channel's cluster-wide counts (§12.1)."""
    subscription_count: int  # 0: not occupied
    user_count: int | None  # presence channels only


@dataclass(slots=True)
class NodeSnapshot:
    """What one node holds right now, for :meth:`ClusterState.sync`.

    Built from the node's local sockets: one :meth:`add_subscription` per socket and
    channel, one :meth:`add_user` per signed-in socket.
    """

    subscriptions: dict[tuple[str, str], int] = field(default_factory=dict)
    members: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)
    users: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_subscription(self, app_id: str, channel: str, member_key: str | None = None,
                         member: bytes | None = None) -> None:
        """Count one local socket in `channel` (as presence member `member_key`)."""
        key = (app_id, channel)
        self.subscriptions[key] = self.subscriptions.get(key, 0) + 1
        if member_key is not None:
            entry = self.members.setdefault((app_id, channel, member_key),
                                            [(member or b"").decode(), 0])
            entry[1] += 1

    def add_user(self, app_id: str, user_id: str) -> None:
        """Count one local socket signed in as `user_id`."""
        self.users[(app_id, user_id)] = self.users.get((app_id, user_id), 0) + 1

    def encode(self) -> bytes:
        """The JSON the SYNC script reads (see :mod:`.scripts`)."""
        return orjson.dumps({
            "s": [[a, c, n] for (a, c), n in self.subscriptions.items()],
            "m": [[a, c, k, j, n] for (a, c, k), (j, n) in self.members.items()],
            "u": [[a, u, n] for (a, u), n in self.users.items()],
        })

    def __len__(self) -> int:
        return sum(self.subscriptions.values()) + sum(self.users.values())


@dataclass(slots=True)
class AppView:
    """Everything of one app's shared state a node mirrors for its reads."""

    counts: dict[str, int]  # occupied channel -> subscription count
    members: dict[str, dict[str, tuple[Any, Any]]]  # presence channel -> key -> member
    online: set[str]  # signed-in user ids
    cache: dict[str, tuple[str, str, int]]  # cache channel -> (event, data, ms left)
    # presence channel -> member key -> sockets of that member on every node
    refs: dict[str, dict[str, int]] = field(default_factory=dict)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class ClusterState:
    """One node's view of the shared state (see the module docstring).

    `lease_ms` is how long the node's entries outlive its last renewal; renew well within
    it (a third is the adapter's default).
    """

    def __init__(self, redis: Redis, keys: KeyLayout, node_id: str, lease_ms: int,
                 announce: bool = True) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.lease_ms = lease_ms
        # Scripts publish what they decide on the bus (``changes`` messages) unless off.
        self.bus = keys.bus if announce else ""
        self._subscribe: AsyncScript = redis.register_script(scripts.SUBSCRIBE)
        self._unsubscribe: AsyncScript = redis.register_script(scripts.UNSUBSCRIBE)
        self._sign_in: AsyncScript = redis.register_script(scripts.SIGN_IN)
        self._sign_out: AsyncScript = redis.register_script(scripts.SIGN_OUT)
        self._renew: AsyncScript = redis.register_script(scripts.RENEW)
        self._sync: AsyncScript = redis.register_script(scripts.SYNC)
        self._reap: AsyncScript = redis.register_script(scripts.REAP)
        self._lapsed: AsyncScript = redis.register_script(scripts.LAPSED)

    def _args(self, socket_id: str, *rest: str | bytes | int) -> list[str | bytes | int]:
        return [self.keys.prefix, self.node_id, self.node_id, self.bus, socket_id, *rest]

    # --- the lease ------------------------------------------------------------------

    async def sync(self, snapshot: NodeSnapshot) -> tuple[bool, list[StateChange]]:
        """Take the lease and make this node's contributions equal to `snapshot`.

        Returns (was still registered, the transitions the difference caused: members
        announced again after a reap, those that left while Redis was unreachable, ...).
        """
        was, raw = await self._sync(args=self._args("", self.lease_ms, snapshot.encode()))
        return bool(was), decode_changes(raw)

    async def renew(self) -> bool:
        """Extend the lease by `lease_ms`; False if this node is no longer registered."""
        return bool(await self._renew(args=self._args("", self.lease_ms)))

    async def leases(self) -> tuple[int, dict[str, int]]:
        """(Redis's clock now, node id -> lease expiry) in milliseconds, for every node in
        ``P:nodes`` (lapsed ones included until they are reaped)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(self.keys.nodes, 0, -1, withscores=True)
            (seconds, micros), entries = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return now_ms, {_text(node): int(score) for node, score in entries}

    async def still_registered(self) -> bool:
        """Whether this node is in ``P:nodes`` (false once it was reaped)."""
        return await self.redis.zscore(self.keys.nodes, self.node_id) is not None

    async def lapsed_nodes(self) -> list[str]:
        """Nodes whose lease has lapsed and that nobody has reaped yet (Redis clock)."""
        return [_text(n) for n in await self._lapsed(args=[self.keys.prefix, "", "", "", ""])]

    async def reap(self, node_id: str) -> list[StateChange]:
        """Remove a lapsed node's contributions; the transitions, or [] if another node
        did it first or the lease was renewed meanwhile. Safe to race: exactly one wins."""
        return decode_changes(await self._reap(
            args=[self.keys.prefix, node_id, self.node_id, self.bus, "", ""]))

    async def leave(self) -> list[StateChange]:
        """Drop this node's contributions and lease now (a clean shutdown)."""
        return decode_changes(await self._reap(
            args=[self.keys.prefix, self.node_id, self.node_id, self.bus, "", "force"]))

    # --- writes -----------------------------------------------------------------------

    async def subscribe(self, app_id: str, channel: str, member_key: str | None = None,
                        member: bytes | None = None, max_members: int = 100,
                        want_cache: bool = False, socket_id: str = "") -> SubscribeResult:
        """Count one more socket of this node in `channel` (and its presence member).
        `socket_id` (the joining socket) travels with the announced transitions, so that
        a new member is not told about itself.

        Raises :class:`PresenceFull` (nothing changed) or :class:`NodeNotRegistered`.
        """
        reply = await self._subscribe(args=self.subscribe_args(
            app_id, channel, member_key, member, max_members, want_cache, socket_id))
        return parse_subscribe(reply, self.node_id, channel, member_key is not None)

    def subscribe_args(self, app_id: str, channel: str, member_key: str | None,
                       member: bytes | None, max_members: int, want_cache: bool,
                       socket_id: str) -> list[str | bytes | int]:
        """ARGV of the SUBSCRIBE script (for :meth:`queue_subscribe`)."""
        return self._args(socket_id, app_id, channel, member_key or "", member or b"",
                          max_members, "1" if want_cache else "0")

    async def unsubscribe(self, app_id: str, channel: str, member_key: str | None = None,
                          socket_id: str = "") -> list[StateChange]:
        """Count one socket fewer; raises :class:`NodeNotRegistered`."""
        reply = await self._unsubscribe(args=self.unsubscribe_args(
            app_id, channel, member_key, socket_id))
        return parse_changes_reply(reply, self.node_id)

    def unsubscribe_args(self, app_id: str, channel: str, member_key: str | None,
                         socket_id: str) -> list[str | bytes | int]:
        """ARGV of the UNSUBSCRIBE script (for :meth:`queue_unsubscribe`)."""
        return self._args(socket_id, app_id, channel, member_key or "")

    async def sign_in(self, app_id: str, user_id: str, watchlist: Iterable[str] = (),
                      socket_id: str = "") -> SignInResult:
        """Count one more signed-in socket of `user_id`; report who of `watchlist` is
        online anywhere (after this change). Raises :class:`NodeNotRegistered`."""
        watched = list(watchlist)
        reply = await self._sign_in(args=self.sign_in_args(app_id, user_id, watched,
                                                            socket_id))
        return parse_sign_in(reply, self.node_id, watched)

    def sign_in_args(self, app_id: str, user_id: str, watched: list[str],
                     socket_id: str) -> list[str | bytes | int]:
        """ARGV of the SIGN_IN script (for :meth:`queue_sign_in`)."""
        return self._args(socket_id, app_id, user_id, *watched)

    async def sign_out(self, app_id: str, user_id: str, socket_id: str = ""
                       ) -> list[StateChange]:
        """Count one signed-in socket of `user_id` fewer; raises :class:`NodeNotRegistered`."""
        reply = await self._sign_out(args=self.sign_out_args(app_id, user_id, socket_id))
        return parse_changes_reply(reply, self.node_id)

    def sign_out_args(self, app_id: str, user_id: str, socket_id: str
                      ) -> list[str | bytes | int]:
        """ARGV of the SIGN_OUT script (for :meth:`queue_sign_out`)."""
        return self._args(socket_id, app_id, user_id)

    # Pipelined forms: queue the script on `pipe`; parse its reply with parse_*.
    async def queue_subscribe(self, pipe: Pipeline, args: list[str | bytes | int]) -> None:
        """Queue SUBSCRIBE on `pipe`; read its reply with :func:`parse_subscribe`."""
        await self._subscribe(args=args, client=pipe)

    async def queue_unsubscribe(self, pipe: Pipeline, args: list[str | bytes | int]) -> None:
        """Queue UNSUBSCRIBE on `pipe`; read it with :func:`parse_changes_reply`."""
        await self._unsubscribe(args=args, client=pipe)

    async def queue_sign_in(self, pipe: Pipeline, args: list[str | bytes | int]) -> None:
        """Queue SIGN_IN on `pipe`; read its reply with :func:`parse_sign_in`."""
        await self._sign_in(args=args, client=pipe)

    async def queue_sign_out(self, pipe: Pipeline, args: list[str | bytes | int]) -> None:
        """Queue SIGN_OUT on `pipe`; read it with :func:`parse_changes_reply`."""
        await self._sign_out(args=args, client=pipe)

    async def put_cached_event(self, app_id: str, channel: str, event: str, data: str,
                               ttl_ms: int) -> None:
        """Keep the last event of a cache channel for `ttl_ms` (§11.1)."""
        await self.redis.set(self.keys.cache(app_id, channel), encode_cached(event, data),
                             px=ttl_ms)

    # --- reads (never wait on another node) -----------------------------------------------

    async def cached_event(self, app_id: str, channel: str) -> tuple[str, str, int] | None:
        """(event, data, milliseconds left) of a cache channel's last event, if any."""
        key = self.keys.cache(app_id, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            value, left = await pipe.execute()
        if value is None or left is None or left < 0:
            return None
        event, data = decode_cached(value)
        return event, data, int(left)

    async def channel_counts(self, app_id: str, channel: str,
                             presence: bool) -> ChannelCounts:
        """Subscription count (and member count of a presence channel) of one channel."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.channels(app_id), channel)
            if presence:
                pipe.hlen(self.keys.presence(app_id, channel))
            replies = await pipe.execute()
        count = int(replies[0] or 0)
        return ChannelCounts(count, int(replies[1]) if presence else None)

    async def occupied_channels(self, app_id: str, prefix: str = "",
                                user_counts: bool = False) -> dict[str, ChannelCounts]:
        """Occupied channels of `app_id` starting with `prefix` (``#`` channels left out),
        with their counts; `user_counts` adds presence channels' member counts."""
        key = self.keys.channels(app_id)
        found: dict[str, int] = {}
        async for name, count in self.redis.hscan_iter(
                key, match=_glob_escape(prefix) + "*", count=1000):
            text = _text(name)
            if not text.startswith("#"):
                found[text] = int(count)
        presence = [c for c in found if c.startswith("presence-")] if user_counts else []
        sizes: list[int] = []
        if presence:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in presence:
                    pipe.hlen(self.keys.presence(app_id, channel))
                sizes = await pipe.execute()
        members = dict(zip(presence, sizes, strict=True))
        return {name: ChannelCounts(count, members.get(name) if user_counts and
                                    name.startswith("presence-") else None)
                for name, count in found.items()}

    async def app_view(self, app_id: str) -> AppView:
        """The whole shared state of `app_id` (a few round trips; used after a
        (re)connection to refill a node's mirror, never per request)."""
        counts = {_text(k): int(v) for k, v in
                  (await self.redis.hgetall(self.keys.channels(app_id))).items()}
        presence = [c for c in counts if c.startswith("presence-")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in presence:
                pipe.hgetall(self.keys.roster(app_id, channel))
                pipe.hgetall(self.keys.presence(app_id, channel))
            pipe.hkeys(self.keys.users(app_id))
            replies = await pipe.execute()
        members = {}
        refs = {}
        for index, channel in enumerate(presence):
            flat, counted = replies[2 * index], replies[2 * index + 1]
            members[channel] = {_text(k): _member_tuple(v) for k, v in flat.items()}
            refs[channel] = {_text(k): int(v) for k, v in counted.items()}
        online = {_text(u) for u in replies[-1]}
        cache_keys = [key async for key in self.redis.scan_iter(
            match=_glob_escape(self.keys.cache(app_id, "")) + "*", count=1000)]
        cache: dict[str, tuple[str, str, int]] = {}
        if cache_keys:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in cache_keys:
                    pipe.get(key)
                    pipe.pttl(key)
                values = await pipe.execute()
            start = len(self.keys.cache(app_id, ""))
            for index, key in enumerate(cache_keys):
                value, left = values[2 * index], values[2 * index + 1]
                if value is not None and left is not None and left > 0:
                    event, data = decode_cached(value)
                    cache[_text(key)[start:]] = (event, data, int(left))
        return AppView(counts, members, online, cache, refs)

    async def presence_members(self, app_id: str, channel: str) -> dict[str, tuple[Any, Any]]:
        """Member key -> (user_id, user_info) of a presence channel, every node's."""
        flat = await self.redis.hgetall(self.keys.roster(app_id, channel))
        members = {}
        for key, value in flat.items():
            user_id, user_info = orjson.loads(value)
            members[_text(key)] = (user_id, user_info)
        return members

    async def presence_user_ids(self, app_id: str, channel: str) -> list[str]:
        """The member keys of a presence channel, every node's."""
        return [_text(k) for k in await self.redis.hkeys(self.keys.presence(app_id, channel))]

    async def user_socket_count(self, app_id: str, user_id: str) -> int:
        """Sockets signed in as `user_id` on every node (0: offline)."""
        return int(await self.redis.hget(self.keys.users(app_id), user_id) or 0)

    async def online_users(self, app_id: str, user_ids: Sequence[str]) -> dict[str, bool]:
        """For each of `user_ids`: signed in on any node."""
        if not user_ids:
            return {}
        values = await self.redis.hmget(self.keys.users(app_id), list(user_ids))
        return {u: v is not None for u, v in zip(user_ids, values, strict=True)}


def parse_subscribe(reply: Any, node_id: str, channel: str, presence: bool
                    ) -> SubscribeResult:
    """The SUBSCRIBE script's reply; raises :class:`PresenceFull`/:class:`NodeNotRegistered`."""
    status = _text(reply[0])
    if status == "unregistered":
        raise NodeNotRegistered(node_id)
    if status == "full":
        raise PresenceFull(channel)
    roster = None
    if presence:
        flat = reply[2]
        roster = {}
        for i in range(0, len(flat), 2):
            user_id, user_info = orjson.loads(flat[i + 1])
            roster[_text(flat[i])] = (user_id, user_info)
    cached = (reply[3][0], int(reply[3][1])) if reply[3] else None
    return SubscribeResult(decode_changes(reply[1]), roster, cached)


def parse_changes_reply(reply: Any, node_id: str) -> list[StateChange]:
    """The UNSUBSCRIBE / SIGN_OUT reply; raises :class:`NodeNotRegistered`."""
    if _text(reply[0]) == "unregistered":
        raise NodeNotRegistered(node_id)
    return decode_changes(reply[1])


def parse_sign_in(reply: Any, node_id: str, watched: list[str]) -> SignInResult:
    """The SIGN_IN script's reply; raises :class:`NodeNotRegistered`."""
    if _text(reply[0]) == "unregistered":
        raise NodeNotRegistered(node_id)
    online = {user: bool(flag) for user, flag in zip(watched, reply[2], strict=True)}
    return SignInResult(decode_changes(reply[1]), online)


def _member_tuple(value: bytes) -> tuple[Any, Any]:
    user_id, user_info = orjson.loads(value)
    return user_id, user_info


def encode_cached(event: str, data: str) -> bytes:
    """The stored form of a cache channel's last event: JSON [event, data]."""
    return orjson.dumps([event, data])


def decode_cached(value: bytes) -> tuple[str, str]:
    """(event, data) from :func:`encode_cached`'s form."""
    event, data = orjson.loads(value)
    return str(event), str(data)
