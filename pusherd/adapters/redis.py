"""The Redis adapter: many pusherd processes, on one machine or many, serve one cluster.

It composes three parts (see docs/scaling.md):

* the *local fan-out* (:class:`~pusherd.adapters.fanout.LocalFanout`): this node's sockets
  per channel and per user, frames encoded once and written without awaiting;
* the *shared state* (:class:`~pusherd.adapters.cluster.state.ClusterState`): counts,
  presence members and signed-in users of every node in Redis, each transition decided
  exactly once by a Lua script that also publishes it on the bus;
* the *bus* (:class:`~pusherd.adapters.cluster.bus.Bus`) over one pub/sub channel:
  triggers, client events and terminate requests from other nodes, and every decided
  transition, which each node applies to its own sockets and to its *mirror* of the
  shared state (what the HTTP API's queries read, so no query waits on Redis or on
  another node).

The :class:`~pusherd.adapters.base.Adapter` methods stay synchronous. A subscription is
answered once its script has returned (one round trip; the writes are queued in order and
sent several per round trip) and its announcement is back on the bus, with the roster of
every node on a presence channel: by then Redis has sent the change to every node, so
what follows the success frame on another node normally finds the socket counted.

Failures: when Redis is unreachable the node keeps serving its own sockets (local
delivery, subscriptions answered from the mirror, local presence announced to its own
sockets), reports not ready (``ready``), and when Redis returns it re-registers its live
state in one script (:meth:`_resync`), which announces whatever changed meanwhile. A
node whose lease lapsed (frozen, or cut off longer than ``lease_ttl``) finds out at its
next renewal or write and does the same. Every node looks for lapsed leases every
``reap_interval`` and removes a dead node's members and subscriptions exactly once.

The mirror's presence members are also what this node's sockets were told: a member
frame goes out only when it changes them (:meth:`_member_added`, :meth:`_member_removed`),
so the bus, a reload after an outage and local changes during one never announce the
same change twice; a socket is never told about its own member; a removal of a member a
socket here still holds is not passed on (the cluster gets it back from this node).
After an outage, the nodes live before it are awaited (``removal_grace``) before their
leases are reaped or members missing from Redis are announced as removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from pusherd.adapters.base import (
    CachedEventView,
    ChannelSnapshot,
    Occupancy,
    Subscriber,
    notify_listeners,
)
from pusherd.adapters.cluster.bus import (
    Bus,
    BusMessage,
    CachePut,
    ChangesMessage,
    ClientEventMessage,
    RoundTrips,
    TerminateMessage,
    TriggerMessage,
)
from pusherd.adapters.cluster.keys import KeyLayout
from pusherd.adapters.cluster.link import LINK_ERRORS, RedisLink
from pusherd.adapters.cluster.state import (
    AppView,
    ChangeKind,
    ClusterState,
    NodeNotRegistered,
    NodeSnapshot,
    PresenceFull,
    StateChange,
    SubscribeResult,
    decode_cached,
    encode_cached,
    encode_member,
    parse_changes_reply,
    parse_sign_in,
    parse_subscribe,
)
from pusherd.adapters.fanout import LocalFanout, deliver_to
from pusherd.config import RedisConfig
from pusherd.core import messages
from pusherd.core.api import Trigger
from pusherd.core.app import App
from pusherd.core.channels import (
    channel_type,
    classify_channel,
    user_id_of_server_to_user_channel,
)
from pusherd.core.ids import AppId
from pusherd.core.outbound import Outbound
from pusherd.core.session import Send, SignedInUser, SubscriptionGrant
from pusherd.core.state import (
    SUBSCRIPTION_COUNT_INTERVAL_MS,
    SUBSCRIPTION_COUNT_THROTTLE_ABOVE,
    MemberJoin,
)
from pusherd.core.transitions import (
    CacheMiss,
    ChannelOccupied,
    ChannelVacated,
    ClientEventSent,
    MemberAdded,
    MemberRemoved,
    SubscriptionCountChanged,
    Transition,
    TransitionListener,
)
from pusherd.errors import SubscriptionRefused

log = logging.getLogger("pusherd.redis")

OPS_PER_ROUND_TRIP = 128
# Seconds a node that came back from an outage waits for the other nodes on top of the
# reconnect backoff cap: their connect timeout and their re-registration script.
REJOIN_ALLOWANCE = 2.0


def new_node_id() -> str:
    """A node id unique in the cluster and readable in logs: host, pid, random."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())
    return f"{host[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def wall_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch (shared meaning across nodes)."""
    return time.time_ns() // 1_000_000


def _roster(members: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """``{"ids", "hash", "count"}`` of presence ``subscription_succeeded`` (§3.2)."""
    return {"ids": list(members), "hash": {k: info for k, (_, info) in members.items()},
            "count": len(members)}


@dataclass(slots=True)
class _Socket:
    """What one local connection holds (the source of this node's snapshot)."""

    app: App
    subscriber: Subscriber
    channels: dict[str, MemberJoin | None] = field(default_factory=dict)
    user: SignedInUser | None = None


@dataclass(slots=True)
class _Mirror:
    """One app's shared state as this node last heard it (for reads, never decisions)."""

    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    online: set[str] = field(default_factory=set)
    cache: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # expires at ms
    # Presence members known to be held by this node's sockets alone (no other node
    # holds one): only these leave at once, for this node's sockets, during an outage.
    sole: dict[str, set[str]] = field(default_factory=dict)
    # For the metrics, kept as counts and members change (counted once here when the
    # mirror is (re)loaded): channel type -> channels with a count above 0 (``#``
    # channels excluded), and the members summed over channels.
    occupied: dict[str, int] = field(init=False)
    member_total: int = field(init=False)

    def __post_init__(self) -> None:
        self.occupied = {}
        for channel, count in self.counts.items():
            if count > 0 and not channel.startswith("#"):
                label = channel_type(channel)
                self.occupied[label] = self.occupied.get(label, 0) + 1
        self.member_total = sum(len(members) for members in self.members.values())

    def set_count(self, channel: str, count: int) -> None:
        """`channel` has `count` subscriptions in the cluster."""
        self._occupancy_changed(channel, self.counts.get(channel, 0), count)
        self.counts[channel] = count

    def drop_count(self, channel: str) -> None:
        """`channel` was vacated in the cluster."""
        self._occupancy_changed(channel, self.counts.pop(channel, 0), 0)

    def _occupancy_changed(self, channel: str, was: int, count: int) -> None:
        if (was > 0) != (count > 0) and not channel.startswith("#"):
            label = channel_type(channel)
            self.occupied[label] = self.occupied.get(label, 0) + (1 if count > 0 else -1)


_MEMBER_FRAME = b'{"event":"pusher_internal:member_'


class _Pending:
    """A joining socket's place in the local fan-out while Redis counts it.

    Frames for the channel are held until ``subscription_succeeded`` goes out. Member
    frames that Redis ordered before the join (before the script's own announcement,
    the *echo*, came back) are already in the roster and are dropped; everything else
    is delivered, in order, after the success frame.
    """

    __slots__ = ("socket_id", "subscriber", "frames", "answered", "echoed", "reply")

    def __init__(self, subscriber: Subscriber) -> None:
        self.socket_id = subscriber.socket_id
        self.subscriber = subscriber
        self.frames: list[tuple[Outbound, bool]] = []  # (frame, arrived after the echo)
        self.answered = False
        self.echoed = False
        # The script's answer, kept until its announcement is back on the bus too: the
        # socket is answered only then, when every node has been sent the change.
        self.reply: SubscribeResult | None = None

    def deliver(self, frame: Outbound) -> None:
        """Hold `frame` until the answer; after it, drop member frames until the echo."""
        if not self.answered:
            self.frames.append((frame, self.echoed))
        elif not frame.payload.startswith(_MEMBER_FRAME):
            self.subscriber.deliver(frame)

    def terminate(self, code: int, message: str) -> None:
        """As the wrapped subscriber's."""
        self.subscriber.terminate(code, message)


# Queued writes, sent in order, several per round trip.
@dataclass(frozen=True, slots=True)
class _SubscribeOp:
    socket: _Socket
    grant: SubscriptionGrant
    now_ms: int


@dataclass(frozen=True, slots=True)
class _UnsubscribeOp:
    app_id: AppId
    channel: str
    member_key: str | None
    socket_id: str


@dataclass(frozen=True, slots=True)
class _SignInOp:
    socket: _Socket
    user: SignedInUser
    watchlist: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _SignOutOp:
    app_id: AppId
    user_id: str
    socket_id: str


_Op = _SubscribeOp | _UnsubscribeOp | _SignInOp | _SignOutOp


@dataclass(frozen=True, slots=True)
class RedisStats:
    """A node's Redis link as the metrics see it: up or not, outages since start, the
    writer's round-trip histogram, and messages published, dropped (buffer full during
    an outage) and maybe lost (in flight when a connection broke)."""

    up: bool
    outages: int
    round_trips: RoundTrips
    published: int
    dropped: int
    maybe_lost: int


class RedisAdapter:
    """:class:`~pusherd.adapters.base.Adapter` over Redis (see the module docstring).

    `apps` are the apps this node serves (their state is mirrored); `node_id` defaults
    to :func:`new_node_id`.
    """

    def __init__(self, config: RedisConfig, apps: Iterable[App], node_id: str | None = None,
                 backoff_max: float = 5.0) -> None:
        self.config = config
        self.node_id = node_id or new_node_id()
        self.apps: dict[AppId, App] = {app.id: app for app in apps}
        self.fanout = LocalFanout()
        self.keys = KeyLayout(config.prefix, config.channel, config.database)
        self.lease_ms = int(config.lease_ttl * 1000)
        # After an outage the other nodes come back within the reconnect backoff cap
        # (plus their connect and re-registration): the bus flush waits that long at
        # most for them, and removals and reaps that their absence would cause wait at
        # least that long, or a lease period if longer (see _on_up).
        self.rejoin_wait = backoff_max + REJOIN_ALLOWANCE
        self.removal_grace = max(config.lease_ttl, self.rejoin_wait)
        self.link = RedisLink(config.url, self.keys.bus, on_message=self._receive,
                              on_up=self._on_up, on_down=self._on_down,
                              backoff_max=backoff_max, node_id=self.node_id)
        self.cluster = ClusterState(self.link.client, self.keys, self.node_id, self.lease_ms)
        self.bus = Bus(self.link, self.node_id, self._apply_message,
                       config.max_buffered_bytes, peers_ready=self._peers_ready,
                       flush_wait=self.rejoin_wait, frame_interval=config.frame_interval)
        self._listeners: list[TransitionListener] = []
        self._sockets: dict[str, _Socket] = {}
        self._mirrors: dict[AppId, _Mirror] = {a: _Mirror() for a in self.apps}
        self._ops: deque[_Op] = deque()
        self._ops_wake = asyncio.Event()
        # Held while a batch of writes is on the wire and while a resync runs: a batch
        # landing after a resync's snapshot would count its sockets twice.
        self._writing = asyncio.Lock()
        # Presence joins waiting for their script's answer, and answered ones whose
        # script's announcement has not come back on the bus yet; by (socket_id, channel).
        self._awaiting: dict[tuple[str, str], tuple[_SubscribeOp, _Pending]] = {}
        self._echo_wait: dict[tuple[str, str], tuple[_SubscribeOp, _Pending]] = {}
        self._signing_in: dict[str, _SignInOp] = {}  # sign-ins waiting, by socket_id
        self._count_sent_at: dict[tuple[AppId, str], int] = {}
        self._pending_counts: dict[tuple[AppId, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._resync_wanted = asyncio.Event()
        self._synced_once = False
        self._generation = 0  # bumped by every local change (see _resync)
        self.reaped_nodes = 0  # lapsed nodes this node cleaned up
        # Presence members this node's sockets hold: (app, channel, member key) -> sockets.
        self._held: dict[tuple[AppId, str, str], int] = {}
        # Nodes with a live lease at this node's last renewal; after an outage, those of
        # them not back yet (awaited until rejoin_deadline), and presence members missing
        # from Redis whose removal waits for them: app -> channel -> member keys.
        self._known_nodes: set[str] = set()
        self._awaited: set[str] = set()
        self._rejoin_deadline = 0.0
        self._deferred: dict[AppId, dict[str, set[str]]] = {}
        self._settling: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected to Redis with this node's state registered (``/ready`` reports it)."""
        return self.link.ready

    @property
    def redis_stats(self) -> RedisStats:
        """What the metrics export of this node's Redis link (read when scraped)."""
        bus = self.bus
        return RedisStats(self.link.ready, self.link.outages, bus.round_trips,
                          bus.published, bus.dropped, bus.maybe_lost)

    async def start(self) -> None:
        """Connect, register this node and start its background tasks. Waits up to
        ``lease_ttl`` for Redis; if it is not there yet the node starts anyway (serving
        its own sockets, not ready) and registers when Redis appears."""
        self.link.start()
        self._tasks = [
            asyncio.create_task(self.bus.run(), name="pusherd-bus-writer"),
            asyncio.create_task(self._run_ops(), name="pusherd-redis-ops"),
            asyncio.create_task(self._keep_lease(), name="pusherd-lease"),
            asyncio.create_task(self._reap_forever(), name="pusherd-reaper"),
        ]
        if not await self.link.wait_ready(self.config.lease_ttl):
            log.warning("node %s: starting without Redis at %s; retrying in the background",
                        self.node_id, self.config.redacted_url())

    async def close(self) -> None:
        """Leave the cluster cleanly (our entries go now, not after the lease), stop."""
        if self.link.ready:
            # Let queued writes and messages go out first (bounded).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._drain()
            try:
                changes = await self.cluster.leave()
                self._emit_changes(changes, wall_ms())
            except LINK_ERRORS:
                pass
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # none when closed before start (a start that failed early)
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            for task in stuck:
                log.error("node %s: task %s did not stop", self.node_id, task.get_name())
        await self.link.close()

    async def _drain(self) -> None:
        while (self._ops or not self.bus.idle) and self.link.ready:
            await asyncio.sleep(0.005)

    def add_listener(self, listener: TransitionListener) -> None:
        """Receive the transitions this node decides (each exactly once in the cluster)."""
        self._listeners.append(listener)

    def _emit(self, transition: Transition) -> None:
        """Tell the listeners (webhooks, metrics) about a transition."""
        notify_listeners(self._listeners, transition)

    # --- connections --------------------------------------------------------------------

    def add_connection(self, app: App, subscriber: Subscriber) -> bool:
        """Admit a connection; ``max_connections`` is counted per node."""
        connections = self.fanout.sockets(app.id).connections
        if app.max_connections and len(connections) >= app.max_connections:
            return False
        connections[subscriber.socket_id] = subscriber
        self._sockets[subscriber.socket_id] = _Socket(app, subscriber)
        return True

    def remove_connection(self, app: App, subscriber: Subscriber) -> None:
        """Forget a closed connection (its channels and user went before)."""
        self.fanout.sockets(app.id).connections.pop(subscriber.socket_id, None)
        self._sockets.pop(subscriber.socket_id, None)

    def connection_count(self, app: App | None = None) -> int:
        """Connections this node holds, of `app` or of every app."""
        if app is not None:
            found = self.fanout.apps.get(app.id)
            return len(found.connections) if found else 0
        return sum(len(s.connections) for s in self.fanout.apps.values())

    # --- subscriptions ------------------------------------------------------------------

    def _mirror(self, app_id: AppId) -> _Mirror:
        mirror = self._mirrors.get(app_id)
        if mirror is None:
            mirror = self._mirrors[app_id] = _Mirror()
        return mirror

    def subscribe(
        self, app: App, subscriber: Subscriber, grant: SubscriptionGrant, now_ms: int
    ) -> None:
        """As :meth:`Adapter.subscribe`. A presence channel this node already knows to be
        full refuses at once; one filled by another node at the same moment refuses when
        the script answers (the refusal frames then arrive instead of the success)."""
        local = self._sockets.get(subscriber.socket_id)
        if local is None:
            return
        channel, member = grant.channel, grant.member
        if channel in local.channels:
            members = self._mirror(app.id).members.get(channel, {})
            subscriber.deliver(Outbound(messages.encode_subscription_succeeded(
                channel, _roster(members) if grant.kind.presence else None)))
            return
        if member is not None:
            members = self._mirror(app.id).members.get(channel, {})
            if member.key not in members and len(members) >= app.max_presence_members:
                raise SubscriptionRefused(
                    f"Presence channel {channel} is full: at most "
                    f"{app.max_presence_members} members", channel=channel, status=4100)
        local.channels[channel] = member
        if member is not None:
            self._hold(app.id, channel, member.key, 1)
        self._generation += 1
        op = _SubscribeOp(local, grant, now_ms)
        if not self.link.ready:
            # Redis is away: answer from what this node knows, and tell this node's other
            # sockets about a new member at once; the resync on Redis's return counts
            # this socket and announces the member to the other nodes.
            roster = None
            if member is not None:
                roster = dict(self._mirror(app.id).members.get(channel, {}))
                roster.setdefault(member.key, (member.user_id, member.user_info))
                self._join_while_away(app.id, channel, member, subscriber.socket_id)
            self._answer_subscribe(op, roster)
            return
        # Answered when Redis has counted the socket (one round trip): a trigger or a
        # query that follows the success frame, on any node, then sees this socket.
        self._queue(op)
        pending = _Pending(subscriber)
        self.fanout.join(app.id, channel, pending)
        self._awaiting[(subscriber.socket_id, channel)] = (op, pending)

    def _answer_subscribe(self, op: _SubscribeOp, roster: dict[str, tuple[Any, Any]] | None,
                          pending: _Pending | None = None,
                          stored: tuple[bytes, int] | None = None) -> None:
        """Join the local fan-out and send the subscriber its frames (§3.2, §11.1), then
        what a pending join held meanwhile. `stored` is a cache channel's last event as
        the subscribe script read it (else the mirror is asked)."""
        local, grant = op.socket, op.grant
        app, channel, subscriber = local.app, grant.channel, local.subscriber
        if pending is None or pending.echoed:
            self.fanout.join(app.id, channel, subscriber)
        subscriber.deliver(Outbound(messages.encode_subscription_succeeded(
            channel, _roster(roster) if roster is not None else None)))
        replayed: bytes | None = None
        if grant.kind.cache:
            now = wall_ms()
            cached = self._cached(app.id, channel, now)
            if stored is not None:
                event, data = decode_cached(stored[0])
                cached = (event, data, now + stored[1])
            if cached is not None:
                frame = Outbound(messages.encode_channel_event(cached[0], channel, cached[1]))
                replayed = frame.payload
                subscriber.deliver(frame)
            else:
                subscriber.deliver(Outbound(messages.encode_cache_miss(channel)))
                self._emit(CacheMiss(app.id, channel, op.now_ms))
        if pending is not None:
            held, pending.frames = pending.frames, []
            pending.answered = True
            for frame, after_echo in held:
                if frame.payload == replayed:  # that trigger is the cached event just sent
                    replayed = None
                    continue
                if after_echo or not frame.payload.startswith(_MEMBER_FRAME):
                    subscriber.deliver(frame)
            if not pending.echoed:
                self._echo_wait[(subscriber.socket_id, channel)] = (op, pending)

    def _note_echo(self, socket_id: str, channels: set[str]) -> None:
        """Our own join's announcement came back: Redis ordered it here on the bus."""
        for channel in channels:
            key = (socket_id, channel)
            awaiting = self._awaiting.get(key)
            if awaiting is not None:
                op, pending = awaiting
                pending.echoed = True
                if pending.reply is not None:
                    del self._awaiting[key]
                    self._answer_subscribe(op, pending.reply.roster, pending,
                                           pending.reply.cached)
            answered = self._echo_wait.pop(key, None)
            if answered is not None:
                self._settle(answered[0])

    def _settle(self, op: _SubscribeOp) -> None:
        """Put the real subscriber in the fan-out in place of its pending stand-in."""
        local = op.socket
        if op.grant.channel in local.channels and local.subscriber.socket_id in self._sockets:
            self.fanout.join(local.app.id, op.grant.channel, local.subscriber)

    def _release_pending(self, away: bool = False) -> None:
        """Redis went away (`away`) or came back: answer every presence join still
        waiting from what this node knows, and stop waiting for announcements that will
        not come. Going away, a new member is shown to this node's other sockets."""
        awaiting = list(self._awaiting.values())
        self._awaiting.clear()
        for op, pending in awaiting:
            if op.grant.channel not in op.socket.channels:
                continue
            member = op.grant.member
            roster = None
            if pending.reply is not None:
                roster = pending.reply.roster
            elif member is not None:
                roster = dict(self._mirror(op.socket.app.id).members.get(op.grant.channel, {}))
                roster.setdefault(member.key, (member.user_id, member.user_info))
            if away and member is not None:
                self._join_while_away(op.socket.app.id, op.grant.channel, member,
                                      op.socket.subscriber.socket_id)
            pending.echoed = True  # nothing more to drop: the roster is all it will get
            self._answer_subscribe(op, roster, pending,
                                   pending.reply.cached if pending.reply else None)
        for op, _ in list(self._echo_wait.values()):
            self._settle(op)
        self._echo_wait.clear()
        for sign_in in list(self._signing_in.values()):
            if sign_in.socket.user is sign_in.user:
                self._answer_sign_in(sign_in, self._mirror(sign_in.socket.app.id).online)
        self._signing_in.clear()

    def unsubscribe(self, app: App, subscriber: Subscriber, channel: str, now_ms: int) -> None:
        """As :meth:`Adapter.unsubscribe`; ``member_removed`` and counts arrive over the bus."""
        local = self._sockets.get(subscriber.socket_id)
        if local is None or channel not in local.channels:
            return
        member = local.channels.pop(channel)
        self._generation += 1
        self.fanout.leave(app.id, channel, subscriber.socket_id)
        self._awaiting.pop((subscriber.socket_id, channel), None)
        self._echo_wait.pop((subscriber.socket_id, channel), None)
        left = self._hold(app.id, channel, member.key, -1) if member is not None else 1
        if self.link.ready:
            self._queue(_UnsubscribeOp(app.id, channel, member.key if member else None,
                                       subscriber.socket_id))
        elif member is not None and left == 0:
            self._leave_while_away(app.id, channel, member.key)

    # --- presence as this node's sockets see it -----------------------------------------

    def _hold(self, app_id: AppId, channel: str, key: str, delta: int) -> int:
        """Count `delta` more local sockets of member `key`; how many are left."""
        entry = (app_id, channel, key)
        left = self._held.get(entry, 0) + delta
        if left > 0:
            self._held[entry] = left
        else:
            self._held.pop(entry, None)
        return max(left, 0)

    def _announce_member(self, app_id: AppId, channel: str, key: str, frame: Outbound,
                         except_socket_id: str | None) -> None:
        """A member frame to this node's subscribers of `channel`, except the joining
        socket and the sockets that are member `key` themselves (a socket is never told
        that it joined or left)."""
        subscribers = self.fanout.channel_subscribers(app_id, channel)
        if not subscribers:
            return
        if (app_id, channel, key) not in self._held:
            deliver_to(subscribers, frame, except_socket_id)
            return
        for socket_id, subscriber in list(subscribers.items()):
            local = self._sockets.get(socket_id)
            joined = local.channels.get(channel) if local is not None else None
            if socket_id != except_socket_id and (joined is None or joined.key != key):
                subscriber.deliver(frame)

    def _member_added(self, app_id: AppId, channel: str, key: str, member: tuple[Any, Any],
                      except_socket_id: str | None) -> None:
        """Member `key` is in `channel`: in the mirror, and announced to this node's
        sockets unless they were already told (announcements never repeat)."""
        mirror = self._mirror(app_id)
        members = mirror.members.setdefault(channel, {})
        known = key in members
        members[key] = member
        if not known:
            mirror.member_total += 1
            self._announce_member(app_id, channel, key, Outbound(
                messages.encode_member_added(channel, member[0], member[1])),
                except_socket_id)

    def _member_removed(self, app_id: AppId, channel: str, key: str) -> None:
        """Member `key` left `channel`: out of the mirror, and announced to this node's
        sockets if they knew it."""
        mirror = self._mirror(app_id)
        sole = mirror.sole.get(channel)
        if sole is not None:
            sole.discard(key)
        members = mirror.members.get(channel)
        if members is None or key not in members:
            return
        user_id = members.pop(key)[0]
        mirror.member_total -= 1
        if not members:
            del mirror.members[channel]
        self._announce_member(app_id, channel, key, Outbound(
            messages.encode_member_removed(channel, user_id)), None)

    def _join_while_away(self, app_id: AppId, channel: str, member: MemberJoin,
                         socket_id: str) -> None:
        """Redis is away and a socket here joined as `member`: this node's other
        sockets are told now (if `member` is new to them); the other nodes hear of it
        from the resync when Redis returns."""
        if member.key not in self._mirror(app_id).members.get(channel, {}):
            self._mirror(app_id).sole.setdefault(channel, set()).add(member.key)
        self._member_added(app_id, channel, member.key, (member.user_id, member.user_info),
                           socket_id)

    def _leave_while_away(self, app_id: AppId, channel: str, key: str) -> None:
        """Redis is away and this node's last socket of member `key` left `channel`:
        if no other node is known to hold that member, this node's sockets are told now.
        Otherwise (it may be held elsewhere) the resync on Redis's return decides."""
        if key in self._mirror(app_id).sole.get(channel, ()):
            self._member_removed(app_id, channel, key)

    # --- users (§10) --------------------------------------------------------------------

    def sign_in(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """As :meth:`Adapter.sign_in`, answered when Redis has counted the socket (one
        round trip), so that watchers anywhere already see the user online."""
        local = self._sockets.get(subscriber.socket_id)
        if local is None:
            return
        local.user = user
        self._generation += 1
        watchlist = user.watchlist if app.enable_watchlist_events else ()
        op = _SignInOp(local, user, watchlist)
        if self.link.ready:
            self._signing_in[subscriber.socket_id] = op
            self._queue(op)
        else:
            self._answer_sign_in(op, self._mirror(app.id).online)

    def _answer_sign_in(self, op: _SignInOp, online: Container[str]) -> None:
        """``signin_success``, then the watchlist's state (§10.1, §10.3)."""
        subscriber, app, user = op.socket.subscriber, op.socket.app, op.user
        self._signing_in.pop(subscriber.socket_id, None)
        self.fanout.sign_in(app.id, user.id, subscriber, op.watchlist)
        subscriber.deliver(Outbound(messages.encode_signin_success(user.user_data)))
        if not op.watchlist:
            return
        on = [u for u in op.watchlist if u in online or u == user.id]
        off = [u for u in op.watchlist if u not in on]
        events = [{"name": "online", "user_ids": on}] if on else []
        if off:
            events.append({"name": "offline", "user_ids": off})
        subscriber.deliver(Outbound(messages.encode_watchlist_events(events)))
        if op.user.watchlist_truncated:
            subscriber.deliver(Outbound(messages.encode_error(
                4302, f"Watchlist limit exceeded: only the first {app.max_watchlist_size} "
                "user ids are watched")))

    def sign_out(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """As :meth:`Adapter.sign_out`; ``offline`` reaches watchers over the bus."""
        local = self._sockets.get(subscriber.socket_id)
        if local is not None:
            local.user = None
        self._generation += 1
        self._signing_in.pop(subscriber.socket_id, None)
        watchlist = user.watchlist if app.enable_watchlist_events else ()
        self.fanout.sign_out(app.id, user.id, subscriber.socket_id, watchlist)
        if self.link.ready:
            self._queue(_SignOutOp(app.id, user.id, subscriber.socket_id))

    def terminate_user(self, app: App, user_id: str) -> int:
        """Close this node's sockets of `user_id` now and ask every other node to close
        theirs; returns how many this node closed (the others answer nothing back)."""
        closed = self._terminate_local(app.id, user_id)
        self.bus.publish(TerminateMessage(self.node_id, app.id, user_id))
        return closed

    def _terminate_local(self, app_id: AppId, user_id: str) -> int:
        sockets = self.fanout.user_sockets(app_id, user_id)
        targets = list(sockets.values()) if sockets else []
        # Sockets whose sign-in Redis has not answered yet are signed in all the same.
        targets += [op.socket.subscriber for op in self._signing_in.values()
                    if op.socket.app.id == app_id and op.user.id == user_id]
        for subscriber in targets:
            subscriber.terminate(4009, "Connection terminated by the app (terminate_connections)")
        return len(targets)

    # --- publishing ---------------------------------------------------------------------

    def trigger(self, app: App, trigger: Trigger, now_ms: int) -> asyncio.Future[None] | None:
        """Deliver to this node's subscribers now, and publish once for the others (one
        message whatever the number of channels; cache channels' last event is written
        in the same round trip). On a cache channel, while Redis is reachable, returns a
        future done when that round trip has returned (the event is in Redis), failed
        (ConnectionError, TimeoutError, RedisError) when it may not be; else None."""
        cache: list[CachePut] | None = None
        for name in trigger.channels:
            if classify_channel(name).cache:
                ttl_ms = app.cache_ttl * 1000
                self._mirror(app.id).cache[name] = (trigger.name, trigger.data, now_ms + ttl_ms)
                if cache is None:
                    cache = []
                cache.append(CachePut(self.keys.cache(app.id, name),
                                      encode_cached(trigger.name, trigger.data), ttl_ms))
        self._deliver_trigger(app.id, trigger.name, trigger.channels, trigger.data,
                              trigger.socket_id)
        if cache is None:  # the common case, on every API request: the cheap path
            self.bus.publish_trigger(app.id, trigger.name, trigger.channels, trigger.data,
                                     trigger.socket_id)
            return None
        return self.bus.publish(TriggerMessage(self.node_id, app.id, trigger.name,
                                               trigger.channels, trigger.data,
                                               trigger.socket_id), tuple(cache))

    def _deliver_trigger(self, app_id: AppId, event: str, channels: Iterable[str], data: str,
                         except_socket_id: str | None) -> None:
        fanout = self.fanout
        for name in channels:
            if classify_channel(name).server_to_user:
                recipients = fanout.user_sockets(app_id, user_id_of_server_to_user_channel(name))
            else:
                recipients = fanout.channel_subscribers(app_id, name)
            if recipients:  # encoded only when someone here will receive it
                frame = Outbound(messages.encode_channel_event(event, name, data))
                fanout.count_delivery(app_id, deliver_to(recipients, frame, except_socket_id),
                                      frame)

    def client_event(
        self, app: App, subscriber: Subscriber, event: str, channel: str, data: Any,
        user_id: str | None, now_ms: int,
    ) -> None:
        """Relay to this node's other subscribers now, and once over the bus to the others."""
        recipients = self.fanout.channel_subscribers(app.id, channel)
        if recipients:
            frame = Outbound(messages.encode_channel_event(event, channel, data, user_id))
            self.fanout.count_delivery(app.id, deliver_to(recipients, frame,
                                                          subscriber.socket_id), frame)
        # Always published: the mirror may not know yet of a socket that has just
        # subscribed on another node (its success frame leaves before Redis counts it).
        self.bus.publish(ClientEventMessage(self.node_id, app.id, channel, event, data,
                                            subscriber.socket_id, user_id))
        if self._listeners:
            self._emit(ClientEventSent(app.id, channel, event, data, subscriber.socket_id,
                                       user_id, now_ms))

    # --- queries (§12.1): from the mirror, never waiting --------------------------------

    def channel_snapshot(self, app: App, channel: str) -> ChannelSnapshot:
        """Counts of one channel from this node's mirror of the cluster (§12.1)."""
        mirror = self._mirror(app.id)
        count = mirror.counts.get(channel, 0)
        presence = classify_channel(channel).presence
        users = len(mirror.members.get(channel, {})) if presence else None
        return ChannelSnapshot(count > 0, count, users)

    def occupied_channels(self, app: App, prefix: str) -> Iterator[tuple[str, ChannelSnapshot]]:
        """Occupied channels starting with `prefix`, from the mirror (§12.1)."""
        mirror = self._mirror(app.id)
        for name, count in list(mirror.counts.items()):
            if count > 0 and name.startswith(prefix) and not name.startswith("#"):
                presence = name.startswith("presence-")
                yield name, ChannelSnapshot(
                    True, count, len(mirror.members.get(name, {})) if presence else None)

    def occupancy(self, app: App) -> Occupancy:
        """Subscriptions of this node's sockets (its fan-out's), and the cluster's
        occupied channels and presence members as this node's mirror has them (the
        same view as :meth:`occupied_channels`): every node reports the same channels."""
        sockets = self.fanout.apps.get(app.id)
        mirror = self._mirror(app.id)
        return Occupancy(dict(sockets.subscriptions) if sockets is not None else {},
                         dict(mirror.occupied), mirror.member_total)

    def presence_user_ids(self, app: App, channel: str) -> list[str]:
        """Member keys of a presence channel, every node's, from the mirror."""
        return list(self._mirror(app.id).members.get(channel, {}))

    def cached_event(self, app: App, channel: str, now_ms: int) -> CachedEventView | None:
        """A cache channel's last event and its time left, from the mirror (§11.1)."""
        cached = self._cached(app.id, channel, now_ms)
        if cached is None:
            return None
        return CachedEventView(cached[0], cached[1], cached[2] - now_ms)

    def _cached(self, app_id: AppId, channel: str, now_ms: int) -> tuple[str, str, int] | None:
        cache = self._mirror(app_id).cache
        found = cache.get(channel)
        if found is not None and found[2] <= now_ms:
            del cache[channel]
            return None
        return found

    # --- housekeeping -------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Expire mirrored cache entries; send throttled subscription counts that are due."""
        for mirror in self._mirrors.values():
            expired = [c for c, (_, _, at) in mirror.cache.items() if at <= now_ms]
            for channel in expired:
                del mirror.cache[channel]
        for key, count in list(self._pending_counts.items()):
            if now_ms - self._count_sent_at.get(key, 0) >= SUBSCRIPTION_COUNT_INTERVAL_MS:
                del self._pending_counts[key]
                self._send_count(key[0], key[1], count, now_ms)

    # --- the write queue ----------------------------------------------------------------

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        self._ops_wake.set()

    async def _run_ops(self) -> None:
        while True:
            await self._ops_wake.wait()
            self._ops_wake.clear()
            while self._ops and self.link.ready:
                batch = [self._ops.popleft()
                         for _ in range(min(OPS_PER_ROUND_TRIP, len(self._ops)))]
                try:
                    async with self._writing:
                        replies = await self._execute(batch)
                except LINK_ERRORS as exc:
                    # The resync after the reconnection covers this batch's effects.
                    self.link.report_failure(exc)
                    break
                for op, reply in zip(batch, replies, strict=True):
                    try:
                        self._complete(op, reply)
                    except NodeNotRegistered:
                        self._resync_wanted.set()
                    except Exception:
                        log.exception("a Redis write could not be completed")

    async def _execute(self, batch: list[_Op]) -> list[Any]:
        cluster = self.cluster
        pipe: Pipeline
        async with self.link.client.pipeline(transaction=False) as pipe:
            for op in batch:
                if isinstance(op, _SubscribeOp):
                    grant, member = op.grant, op.grant.member
                    await cluster.queue_subscribe(pipe, cluster.subscribe_args(
                        op.socket.app.id, grant.channel, member.key if member else None,
                        encode_member(member.user_id, member.user_info) if member else None,
                        op.socket.app.max_presence_members, grant.kind.cache,
                        op.socket.subscriber.socket_id))
                elif isinstance(op, _UnsubscribeOp):
                    await cluster.queue_unsubscribe(pipe, cluster.unsubscribe_args(
                        op.app_id, op.channel, op.member_key, op.socket_id))
                elif isinstance(op, _SignInOp):
                    await cluster.queue_sign_in(pipe, cluster.sign_in_args(
                        op.socket.app.id, op.user.id, list(op.watchlist),
                        op.socket.subscriber.socket_id))
                else:
                    await cluster.queue_sign_out(pipe, cluster.sign_out_args(
                        op.app_id, op.user_id, op.socket_id))
            return list(await pipe.execute(raise_on_error=False))

    def _complete(self, op: _Op, reply: Any) -> None:
        if isinstance(reply, LINK_ERRORS):
            raise reply
        if isinstance(reply, Exception):
            log.error("a Redis script failed: %s", reply)
            return
        now = wall_ms()
        if isinstance(op, _SubscribeOp):
            key = (op.socket.subscriber.socket_id, op.grant.channel)
            try:
                result = parse_subscribe(reply, self.node_id, op.grant.channel,
                                         op.grant.member is not None)
            except PresenceFull:
                self._awaiting.pop(key, None)
                self._refuse_late(op)
                return
            awaiting = self._awaiting.get(key)
            if awaiting is not None and awaiting[0] is op:
                pending = awaiting[1]
                if pending.echoed:
                    del self._awaiting[key]
                    self._answer_subscribe(op, result.roster, pending, result.cached)
                else:  # answered when the announcement is back (see _note_echo)
                    pending.reply = result
            self._emit_changes(result.changes, now)
        elif isinstance(op, _SignInOp):
            signed = parse_sign_in(reply, self.node_id, list(op.watchlist))
            if op.socket.user is op.user and \
                    self._signing_in.get(op.socket.subscriber.socket_id) is op:
                self._answer_sign_in(op, {u for u, on in signed.online.items() if on})
        else:
            self._emit_changes(parse_changes_reply(reply, self.node_id), now)

    def _refuse_late(self, op: _SubscribeOp) -> None:
        """Another node filled the presence channel at the same moment: refuse now."""
        local, channel = op.socket, op.grant.channel
        member = local.channels.pop(channel, None)
        app = local.app
        if member is not None:
            self._hold(app.id, channel, member.key, -1)
        self.fanout.leave(app.id, channel, local.subscriber.socket_id)
        exc = SubscriptionRefused(
            f"Presence channel {channel} is full: at most {app.max_presence_members} members",
            channel=channel, status=4100)
        session = getattr(local.subscriber, "session", None)
        if session is not None:
            for action in session.join_refused(exc):
                if isinstance(action, Send):
                    local.subscriber.deliver(action.frame)

    # --- transitions --------------------------------------------------------------------

    def _emit_changes(self, changes: list[StateChange], now_ms: int) -> None:
        """Hand the transitions this node decided to the listeners (exactly once in the
        cluster: only the node whose script decided them does this)."""
        if not self._listeners:
            return
        for change in changes:
            for transition in self._transitions(change, now_ms):
                self._emit(transition)

    def _transitions(self, change: StateChange, now_ms: int) -> list[Transition]:
        app = self.apps.get(change.app_id)
        channel, kind = change.channel, change.kind
        hidden = channel.startswith("#")
        if kind is ChangeKind.MEMBER_ADDED:
            user_id, user_info = change.member_value()
            return [MemberAdded(change.app_id, channel, change.user_key or "", now_ms,
                                user_id, user_info)]
        if kind is ChangeKind.MEMBER_REMOVED:
            user_id, _ = change.member_value()
            return [MemberRemoved(change.app_id, channel, change.user_key or "", now_ms,
                                  user_id)]
        if kind is ChangeKind.VACATED:
            return [] if hidden else [ChannelVacated(change.app_id, channel, now_ms)]
        found: list[Transition] = []
        if kind is ChangeKind.OCCUPIED and not hidden:
            found.append(ChannelOccupied(change.app_id, channel, now_ms))
        if kind in (ChangeKind.OCCUPIED, ChangeKind.COUNT) and self._counts_announced(
                app, channel):
            found.append(SubscriptionCountChanged(change.app_id, channel, change.count, now_ms))
        return found

    @staticmethod
    def _counts_announced(app: App | None, channel: str) -> bool:
        return bool(app is not None and app.enable_subscription_count
                    and not channel.startswith(("presence-", "#")))

    def _receive(self, payload: bytes) -> None:
        self.bus.receive(payload)

    def _apply_message(self, message: BusMessage) -> None:
        """A message from the bus: apply it to this node's sockets and mirror."""
        # Its sender is live (remembered for the next outage, see _on_up).
        self._known_nodes.add(message.origin)
        if isinstance(message, TriggerMessage):
            app = self.apps.get(message.app_id)
            if app is None:
                return
            now = wall_ms()
            for name in message.channels:
                if classify_channel(name).cache:
                    self._mirror(app.id).cache[name] = (message.event, message.data,
                                                        now + app.cache_ttl * 1000)
            self._deliver_trigger(app.id, message.event, message.channels, message.data,
                                  message.socket_id)
        elif isinstance(message, ChangesMessage):
            now = wall_ms()
            if message.origin == self.node_id and message.socket_id and \
                    (self._awaiting or self._echo_wait):
                self._note_echo(message.socket_id, {c.channel for c in message.changes})
            if message.origin != self.node_id:
                self._note_other_holders(message)
            for change in message.changes:
                self._apply_change(change, message.socket_id, now, message.origin)
        elif isinstance(message, ClientEventMessage):
            recipients = self.fanout.channel_subscribers(message.app_id, message.channel)
            if recipients:
                frame = Outbound(messages.encode_channel_event(
                    message.event, message.channel, message.data, message.user_id))
                self.fanout.count_delivery(message.app_id, deliver_to(
                    recipients, frame, message.socket_id), frame)
        elif isinstance(message, TerminateMessage):
            self._terminate_local(message.app_id, message.user_id)

    def _note_other_holders(self, message: ChangesMessage) -> None:
        """Another node's transitions: a presence channel's count grew without a new
        member, so some member gained a socket on another node, which one is not said:
        none of that channel's members is known to be held here alone any more."""
        added = {(c.app_id, c.channel) for c in message.changes
                 if c.kind is ChangeKind.MEMBER_ADDED} if message.socket_id else set()
        for change in message.changes:
            if change.kind is ChangeKind.COUNT and change.channel.startswith("presence-") \
                    and (change.app_id, change.channel) not in added:
                mirror = self._mirrors.get(change.app_id)
                if mirror is not None and change.count > mirror.counts.get(change.channel, 0):
                    mirror.sole.pop(change.channel, None)

    def _apply_change(self, change: StateChange, socket_id: str, now_ms: int,
                      origin: str = "") -> None:
        app = self.apps.get(change.app_id)
        if app is None:
            return
        mirror = self._mirror(app.id)
        kind, channel = change.kind, change.channel
        if kind is ChangeKind.MEMBER_ADDED:
            key = change.user_key or ""
            # Added by this node (the script found no socket of it anywhere): held here
            # alone, until another node's socket of it shows.
            sole = mirror.sole.setdefault(channel, set())
            if origin == self.node_id:
                sole.add(key)
            else:
                sole.discard(key)
            self._member_added(app.id, channel, key, change.member_value(), socket_id or None)
        elif kind is ChangeKind.MEMBER_REMOVED:
            key = change.user_key or ""
            if (app.id, channel, key) in self._held:
                # A socket here still is that member: the cluster lost this node's entry
                # (it was reaped, or Redis lost its data) or has not counted it yet. This
                # node's resync or queued join puts it back; its sockets saw no change.
                return
            self._member_removed(app.id, channel, key)
        elif kind is ChangeKind.VACATED:
            mirror.drop_count(channel)
            members = mirror.members.get(channel)
            if members is not None:  # but for members still held here (see above)
                for key in [k for k in members if (app.id, channel, k) not in self._held]:
                    del members[key]
                    mirror.member_total -= 1
                if not members:
                    del mirror.members[channel]
            mirror.sole.pop(channel, None)
            self._pending_counts.pop((app.id, channel), None)
            self._count_sent_at.pop((app.id, channel), None)
        elif kind in (ChangeKind.OCCUPIED, ChangeKind.COUNT):
            mirror.set_count(channel, change.count)
            if self._counts_announced(app, channel):
                self._count_changed(app.id, channel, change.count, now_ms)
        elif kind is ChangeKind.ONLINE:
            user_id = change.user_key or ""
            if user_id not in mirror.online:  # watchers are never told twice
                mirror.online.add(user_id)
                if app.enable_watchlist_events:
                    self.fanout.notify_watchers(app.id, user_id, True)
        elif kind is ChangeKind.OFFLINE:
            user_id = change.user_key or ""
            # Still signed in here: as for members above, the cluster gets it back.
            if user_id in mirror.online and not self.fanout.user_sockets(app.id, user_id):
                mirror.online.discard(user_id)
                if app.enable_watchlist_events:
                    self.fanout.notify_watchers(app.id, user_id, False)

    def _count_changed(self, app_id: AppId, channel: str, count: int, now_ms: int) -> None:
        """``subscription_count`` to this node's subscribers (§11.2): at once, or on a
        busy channel at most every interval (the latest count, sent by :meth:`tick`)."""
        key = (app_id, channel)
        if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE and \
                now_ms - self._count_sent_at.get(key, 0) < SUBSCRIPTION_COUNT_INTERVAL_MS:
            self._pending_counts[key] = count
            return
        self._pending_counts.pop(key, None)
        self._send_count(app_id, channel, count, now_ms)

    def _send_count(self, app_id: AppId, channel: str, count: int, now_ms: int) -> None:
        self._count_sent_at[(app_id, channel)] = now_ms
        self.fanout.apply(SubscriptionCountChanged(app_id, channel, count, now_ms))

    # --- registration, lease, reaping ---------------------------------------------------

    def _snapshot(self) -> NodeSnapshot:
        snapshot = NodeSnapshot()
        for local in self._sockets.values():
            app_id = local.app.id
            for channel, member in local.channels.items():
                if member is None:
                    snapshot.add_subscription(app_id, channel)
                else:
                    snapshot.add_subscription(app_id, channel, member.key,
                                              encode_member(member.user_id, member.user_info))
            if local.user is not None:
                snapshot.add_user(app_id, local.user.id)
        return snapshot

    async def _resync(self, reason: str) -> None:
        """Make the cluster's record of this node equal to its live sockets, in one
        script; the transitions it causes are announced to every node. Then reload the
        mirror (see :meth:`_refill_mirror`)."""
        for _ in range(5):
            async with self._writing:
                # The snapshot covers every queued write: drop them (they would count
                # twice).
                self._ops.clear()
                generation = self._generation
                snapshot = self._snapshot()
                was, changes = await self.cluster.sync(snapshot)
            if self._synced_once and (not was or changes):
                log.warning("node %s: %s; re-registered %d subscription(s) and signed-in "
                            "socket(s) of this node (%d transition(s) announced)",
                            self.node_id, reason if not was else "state changed while Redis "
                            "was unreachable", len(snapshot), len(changes))
            self._synced_once = True
            self._emit_changes(changes, wall_ms())
            if generation == self._generation:
                break  # nothing changed locally while the script ran
        defer = await self._rejoin_pending()
        if not defer:  # remembered for the next outage: the nodes to wait for (_on_up)
            now_ms, leases = await self.cluster.leases()
            self._known_nodes = {n for n, expiry in leases.items() if expiry >= now_ms}
        for app_id in list(self._mirrors):
            await self._refill_mirror(app_id, defer)
        if self._awaited or any(self._deferred.values()):
            self._start_settling()
        # Presence joins whose answer was lost with the connection: answer them now.
        self._release_pending()

    async def _refill_mirror(self, app_id: AppId, defer: bool = False) -> None:
        """Reload one app's mirror; members that appeared or left while this node was
        not listening are announced to its sockets, so their rosters are whole again.

        Nothing is announced twice: a member this node's sockets already know (its own
        re-registered ones, or one announced on the bus meanwhile) is not announced
        again when the bus brings the resync's transitions. A member missing from Redis
        is kept, silently, while a socket here still holds it; with `defer` (nodes that
        were live before the outage are not back yet: Redis may have lost their data)
        its removal waits for them (:meth:`_settle_after_outage`)."""
        view: AppView = await self.cluster.app_view(app_id)
        old = self._mirror(app_id)
        members = view.members
        counts = view.counts
        deferred = self._deferred.setdefault(app_id, {})
        for channel in set(old.members) | set(members):
            before, after = old.members.get(channel, {}), members.get(channel, {})
            for key in after.keys() - before.keys():
                user_id, user_info = after[key]
                self._announce_member(app_id, channel, key, Outbound(
                    messages.encode_member_added(channel, user_id, user_info)), None)
            for key in before.keys() - after.keys():
                held = (app_id, channel, key) in self._held
                if held or defer:
                    members.setdefault(channel, {})[key] = before[key]
                    if channel not in counts and channel in old.counts:
                        counts[channel] = old.counts[channel]
                    if not held:
                        deferred.setdefault(channel, set()).add(key)
                    continue
                self._announce_member(app_id, channel, key, Outbound(
                    messages.encode_member_removed(channel, before[key][0])), None)
        # Members whose every socket is here (none on another node).
        sole = {channel: {key for key in keys
                          if 0 < view.refs.get(channel, {}).get(key, 0)
                          <= self._held.get((app_id, channel, key), 0)}
                for channel, keys in members.items()}
        now = wall_ms()
        self._mirrors[app_id] = _Mirror(
            counts, members, view.online,
            {c: (e, d, now + left) for c, (e, d, left) in view.cache.items()}, sole)

    async def _on_up(self) -> None:
        if self._synced_once:
            # Back from an outage: the nodes live before it may not be back yet, and a
            # Redis that restarted empty holds nothing of theirs. Their members are not
            # removed and their leases not reaped while they are awaited.
            self._awaited |= self._known_nodes - {self.node_id}
            self._rejoin_deadline = time.monotonic() + self.removal_grace
        await self._resync("the cluster had no record of this node (its lease lapsed, or "
                           "Redis lost its data)")
        self._ops_wake.set()

    def _on_down(self) -> None:
        # Presence joins waiting for Redis are answered from what this node knows.
        self._release_pending(away=True)
        self._ops.clear()

    async def _rejoin_pending(self) -> bool:
        """Whether nodes live before the last outage are still awaited: not back with a
        live lease, and the grace (``removal_grace`` seconds) not over. Forgets the
        nodes that are back."""
        if not self._awaited:
            return False
        if time.monotonic() >= self._rejoin_deadline:
            self._awaited.clear()
            return False
        now_ms, leases = await self.cluster.leases()
        self._awaited = {n for n in self._awaited if leases.get(n, 0) < now_ms}
        return bool(self._awaited)

    def _start_settling(self) -> None:
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._settle_after_outage(),
                                                 name="pusherd-rejoin")
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(self._settling)

    async def _settle_after_outage(self) -> None:
        """Wait (bounded) for the nodes awaited after an outage, then remove the members
        that are still missing from Redis: their nodes re-registered without them, or
        did not come back in time."""
        try:
            while True:
                if self.link.ready and not await self._rejoin_pending():
                    break
                if time.monotonic() >= self._rejoin_deadline:
                    self._awaited.clear()
                    if self.link.ready:
                        break
                await asyncio.sleep(0.1)
            for app_id, channels in list(self._deferred.items()):
                while channels:
                    channel, keys = channels.popitem()
                    present = await self.cluster.presence_members(app_id, channel)
                    for key in keys:
                        if key not in present and (app_id, channel, key) not in self._held:
                            self._member_removed(app_id, channel, key)
        except LINK_ERRORS as exc:
            # The next return from the outage defers again and starts a new wait.
            self.link.report_failure(exc)

    async def _peers_ready(self) -> bool:
        """Every node holding a live lease, and every node live before the outage
        (a Redis that restarted empty has no lease of theirs), has its bus
        subscription back."""
        async with self.link.client.pipeline(transaction=False) as pipe:
            pipe.pubsub_numsub(self.keys.bus)
            pipe.time()
            pipe.zrange(self.keys.nodes, 0, -1, withscores=True)
            numsub, (seconds, micros), leases = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        live = {node for node, expiry in leases if expiry >= now_ms}
        live |= {node.encode() for node in self._awaited}
        return int(numsub[0][1]) >= len(live)

    async def _keep_lease(self) -> None:
        """Renew the lease three times per ``lease_ttl``; resync when it was lost."""
        interval = self.config.lease_ttl / 3
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # (not wait_for: see RedisLink)
                    await self._resync_wanted.wait()
            if self._resync_wanted.is_set() and self.link.ready:
                self._resync_wanted.clear()
                try:
                    await self._resync("a write found this node no longer registered")
                except LINK_ERRORS as exc:
                    self.link.report_failure(exc)
                continue
            if not self.link.ready:
                continue
            try:
                if not await self.cluster.renew():
                    await self._resync("this node's lease lapsed (the process was frozen or "
                                       "cut off longer than lease_ttl) and the cluster "
                                       "removed its entries")
                # Remembered for the next outage: the nodes to wait for (see _on_up).
                now_ms, leases = await self.cluster.leases()
                self._known_nodes = {n for n, expiry in leases.items() if expiry >= now_ms}
            except LINK_ERRORS as exc:
                self.link.report_failure(exc)

    async def _reap_forever(self) -> None:
        """Look for lapsed leases every ``reap_interval`` and clean up after dead nodes."""
        while True:
            await asyncio.sleep(self.config.reap_interval)
            if not self.link.ready:
                continue
            try:
                for node_id in await self.cluster.lapsed_nodes():
                    if node_id == self.node_id or node_id in self._awaited:
                        continue  # an awaited node's lease lapsed during the outage
                    changes = await self.cluster.reap(node_id)
                    if changes:
                        self.reaped_nodes += 1
                        log.warning("node %s: node %s stopped renewing its lease; removed "
                                    "its entries (%d transition(s) announced)",
                                    self.node_id, node_id, len(changes))
                        self._emit_changes(changes, wall_ms())
            except LINK_ERRORS as exc:
                self.link.report_failure(exc)
