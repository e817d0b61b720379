"""The bus: what one node tells every other node, over one Redis pub/sub channel.

One message per cause, never one per node or per channel: an HTTP trigger (all of its
channels in one :class:`TriggerMessage`), a client event, a batch of state transitions
decided by a script (published by the script itself, see :mod:`.scripts`), a
terminate-user request. Each carries the id of the node that sent it. A node has already
delivered its own triggers, client events and terminate requests to its sockets, so it
drops their echo; transitions it applies from the bus only, its own included, so that
every node applies them in the one order Redis decided them.

Publishing never waits: :meth:`Bus.publish` encodes the message once and queues it (an
HTTP trigger without cache writes, the API's hot path, is queued as its fields by
:meth:`Bus.publish_trigger` and encoded by the writer: the same message, for a fraction of
the request's time); a writer task sends the queue in order, every message queued by then
in one *frame*: one
``PUBLISH`` per round trip (so at most one per trigger, and fewer when triggers arrive
together), which every other node reads and decodes once. Frames are at least
``frame_interval`` seconds apart (``[redis] frame_interval``, 5 ms by default): a message
after a quiet spell goes at once; under load a frame carries everything queued in that
time, which keeps the CPU per trigger of the round trips small on every node. A full frame
(``WRITE_BATCH`` messages or ``WRITE_BATCH_BYTES``) is followed at once by the next.

A frame is ``v<version> <kind> <origin>\\n`` followed by a JSON array of messages; kind
``m`` (triggers, client events, terminate requests: what the writer sends) or ``c``
(transitions, published by the scripts). A node reads the fixed head first and drops
its own ``m`` frames without decoding them; its own ``c`` frames it applies.

A message with cache writes (a trigger to cache channels) can be waited for: its future
is done when the round trip carrying the writes has returned (the HTTP API answers then).

While Redis is unreachable the queue is the buffer: at most ``max_buffered_bytes`` of
encoded messages (the oldest are dropped beyond it, and counted); it is flushed in order
once the link is ready again. A frame in flight when the connection breaks is not sent
again (a message must never arrive twice); its messages are counted in ``maybe_lost``.

Pub/sub keeps nothing for a subscriber that is not connected, so after an outage the
buffer is flushed only once ``peers_ready()`` says the other live nodes have subscribed
again (the adapter compares ``PUBSUB NUMSUB`` with the live leases and the nodes live
before the outage), or after ``flush_wait`` seconds (the adapter passes the reconnect
backoff cap + 2 s), whichever comes first. A node that is still disconnected then
misses what was published meanwhile: docs/scaling.md states this limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pusherd.adapters.cluster.link import LINK_ERRORS, RedisLink
from pusherd.adapters.cluster.state import StateChange, decode_changes
from pusherd.core.ids import AppId

log = logging.getLogger("pusherd.redis")

BUS_VERSION = 2
WRITE_BATCH = 256  # messages per frame (one PUBLISH, one round trip)
WRITE_BATCH_BYTES = 1_048_576  # encoded bytes per frame (a frame holds one message at least)
_HEAD = b"v%d " % BUS_VERSION
# Upper bounds (seconds) of the round-trip histogram the metrics export.
ROUND_TRIP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class RoundTrips:
    """A histogram of the writer's Redis round trips (one pipeline each), in seconds:
    cumulative-free bucket counts (the last one is +Inf), their sum and count."""

    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(ROUND_TRIP_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Count one round trip of `seconds`."""
        index = 0
        for bound in ROUND_TRIP_BUCKETS:
            if seconds <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.total += seconds
        self.count += 1


# The two messages made once per trigger or client event are not frozen: a frozen
# dataclass sets each field through object.__setattr__, about twice the cost of the rest
# of Bus.publish. Nothing changes a message after it is made.
@dataclass(slots=True)
class TriggerMessage:
    """An HTTP API event for every node's subscribers of `channels` (minus `socket_id`)."""

    origin: str
    app_id: AppId
    event: str
    channels: tuple[str, ...]
    data: str
    socket_id: str | None = None


@dataclass(slots=True)
class ClientEventMessage:
    """A ``client-*`` event for the other subscribers of `channel` (§9); never echoed to
    `socket_id`, the sender."""

    origin: str
    app_id: AppId
    channel: str
    event: str
    data: Any
    socket_id: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangesMessage:
    """Transitions a script decided on `origin`; every node applies them to its sockets.

    `socket_id` is the socket that caused them (a joining member is not told about
    itself), empty when a reaper or a re-registration caused them.
    """

    origin: str
    changes: tuple[StateChange, ...]
    socket_id: str = ""


@dataclass(frozen=True, slots=True)
class TerminateMessage:
    """Close every socket signed in as `user_id` (``terminate_connections``, §12)."""

    origin: str
    app_id: AppId
    user_id: str


BusMessage = TriggerMessage | ClientEventMessage | ChangesMessage | TerminateMessage


def _encode_change(change: StateChange) -> list[Any]:
    # The six fields the scripts publish, "" where a field does not apply.
    return [change.kind.value, change.app_id, change.channel, change.user_key or "",
            change.member.decode() if change.member is not None else "", change.count]


def encode_message_body(message: BusMessage) -> bytes:
    """One message as JSON (``t`` its type), without the frame's head: its origin is the
    frame's."""
    body: dict[str, Any]
    if isinstance(message, TriggerMessage):
        return encode_trigger_body(message.app_id, message.event, message.channels,
                                   message.data, message.socket_id)
    if isinstance(message, ClientEventMessage):
        body = {"t": "client_event", "a": message.app_id, "c": message.channel,
                "e": message.event, "d": message.data, "x": message.socket_id,
                "u": message.user_id}
    elif isinstance(message, ChangesMessage):
        body = {"t": "changes", "x": message.socket_id,
                "s": [_encode_change(c) for c in message.changes]}
    else:
        body = {"t": "terminate", "a": message.app_id, "u": message.user_id}
    return orjson.dumps(body)


def encode_trigger_body(app_id: AppId, event: str, channels: tuple[str, ...], data: str,
                        socket_id: str | None) -> bytes:
    """The body of a :class:`TriggerMessage` of these fields: the one encoding of a
    trigger, for :func:`encode_message_body` and the writer (triggers queued raw)."""
    return orjson.dumps({"t": "trigger", "a": app_id, "e": event, "c": channels, "d": data,
                         "x": socket_id})


def frame_head(origin: str, changes: bool = False) -> bytes:
    """The head of a frame from `origin`: ``v<version> m|c <origin>\\n``."""
    return _HEAD + (b"c " if changes else b"m ") + origin.encode() + b"\n"


def encode_bus_frame(head: bytes, bodies: list[bytes]) -> bytes:
    """A frame: `head` (:func:`frame_head`) and the encoded bodies, in order."""
    return head + b"[" + b",".join(bodies) + b"]"


def encode_bus_message(message: BusMessage) -> bytes:
    """A frame holding `message` alone."""
    return encode_bus_frame(frame_head(message.origin, isinstance(message, ChangesMessage)),
                            [encode_message_body(message)])


def decode_bus_frame(payload: bytes) -> list[BusMessage]:
    """Every message of a frame, in order; raises ValueError (or a subclass) on anything
    malformed or of another version."""
    head, newline, rest = payload.partition(b"\n")
    parts = head.split(b" ")
    if not newline or len(parts) != 3 or parts[0] != _HEAD.strip() or \
            parts[1] not in (b"m", b"c"):
        raise ValueError("not a bus frame of this version")
    origin = parts[2].decode()
    bodies = orjson.loads(rest)
    if not isinstance(bodies, list):
        raise ValueError("a bus frame holds a list of messages")
    return [_decode_body(origin, body) for body in bodies]


def decode_bus_message(payload: bytes) -> BusMessage:
    """The one message of a frame (:func:`encode_bus_message`); raises ValueError when the
    frame is malformed or holds another number of messages."""
    messages = decode_bus_frame(payload)
    if len(messages) != 1:
        raise ValueError(f"a bus frame of {len(messages)} messages, not one")
    return messages[0]


def _decode_body(origin: str, body: Any) -> BusMessage:
    if not isinstance(body, dict):
        raise ValueError("a bus message is an object")
    kind = body.get("t")
    try:
        if kind == "trigger":
            return TriggerMessage(origin, AppId(str(body["a"])), str(body["e"]),
                                  tuple(str(c) for c in body["c"]), str(body["d"]),
                                  body["x"])
        if kind == "client_event":
            return ClientEventMessage(origin, AppId(str(body["a"])), str(body["c"]),
                                      str(body["e"]), body["d"], str(body["x"]), body["u"])
        if kind == "changes":
            return ChangesMessage(origin, tuple(decode_changes(body["s"])), str(body["x"]))
        if kind == "terminate":
            return TerminateMessage(origin, AppId(str(body["a"])), str(body["u"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {kind} message: {exc}") from None
    raise ValueError(f"unknown bus message type {kind!r}")


def _fail(waiter: asyncio.Future[None] | None, exc: BaseException) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_exception(exc)
        # Retrieved here: a waiter whose HTTP request has gone must not log "never
        # retrieved" when it is collected.
        waiter.exception()


# A trigger's fields as Bus.publish_trigger queues them: app id, event, channels, data,
# excluded socket id.
_RawTrigger = tuple[AppId, str, tuple[str, ...], str, str | None]


@dataclass(frozen=True, slots=True)
class CachePut:
    """A cache channel's last event, written in the same round trip as its trigger."""

    key: str
    value: bytes
    ttl_ms: int


class Bus:
    """Publishes this node's messages and hands every other node's to `handler`.

    Wire it to a :class:`RedisLink` as its ``on_message`` (:meth:`receive`), and run
    :meth:`run` as a task.
    """

    def __init__(self, link: RedisLink, node_id: str, handler: Callable[[BusMessage], None],
                 max_buffered_bytes: int = 4_194_304,
                 peers_ready: Callable[[], Awaitable[bool]] | None = None,
                 flush_wait: float = 2.0, frame_interval: float = 0.0) -> None:
        self.link = link
        self.frame_interval = frame_interval
        self.peers_ready = peers_ready
        self.flush_wait = flush_wait
        self.node_id = node_id
        self.handler = handler
        self.max_buffered_bytes = max_buffered_bytes
        # What waits to be sent, in order: an encoded body with its cache writes and who
        # waits for those writes, or (a trigger without cache writes queued while Redis
        # was reachable) the trigger's fields, encoded by the writer (see publish_trigger).
        self._queue: deque[tuple[bytes | _RawTrigger, tuple[CachePut, ...],
                                 asyncio.Future[None] | None]] = deque()
        self._raw = 0  # raw triggers in the queue (not counted in _queued_bytes)
        self._sending = False  # a frame's round trip is in flight
        self._head = frame_head(node_id)
        self._channel = link.channel.encode()
        # Our own frames (never transitions) are dropped on sight: their messages have
        # been delivered here already.
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self.published = 0  # messages sent to Redis
        self.frames = 0  # PUBLISHes they took
        self.round_trips = RoundTrips()  # the writer's pipeline round trips (metrics)
        self.received = 0  # other nodes' messages applied
        self.dropped = 0  # dropped from a full buffer while Redis was unreachable
        self.maybe_lost = 0  # in flight when the connection broke
        self.outage_dropped = 0  # dropped during the current (or last) outage
        self._bad_logged = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of encoded messages waiting to be sent (at most ``max_buffered_bytes``
        while Redis is unreachable). Raw triggers are measured here, by encoding them:
        call it for metrics, not per message."""
        if not self._raw:
            return self._queued_bytes
        return self._queued_bytes + sum(len(encode_trigger_body(*body)) for body, _, _
                                        in self._queue if isinstance(body, tuple))

    @property
    def idle(self) -> bool:
        """Nothing queued and no frame in flight."""
        return not self._queue and not self._sending

    def publish_trigger(self, app_id: AppId, event: str, channels: tuple[str, ...],
                        data: str, socket_id: str | None) -> None:
        """Queue an HTTP trigger without cache writes, from this node, for every other
        node: :meth:`publish` of the :class:`TriggerMessage` of these fields, at a fraction
        of its cost on the request's path. While Redis is reachable the fields are queued
        as they are and the writer encodes them with the frame (measured in situ, the
        message object and its encoding on the HTTP path cost more than the rest of the
        bus; see docs/performance.md); else this is :meth:`publish`."""
        if self.link.ready:
            self._queue.append(((app_id, event, channels, data, socket_id), (), None))
            self._raw += 1
            self._wake.set()
        else:
            self.publish(TriggerMessage(self.node_id, app_id, event, channels, data,
                                        socket_id))

    def _encode_raw(self) -> None:
        """Encode every raw trigger of the queue in place, so that the buffer's bytes are
        exact before the outage cap applies."""
        entries = [(encode_trigger_body(*body) if isinstance(body, tuple) else body,
                    cache, waiter) for body, cache, waiter in self._queue]
        self._queue.clear()
        self._queue.extend(entries)
        self._raw = 0
        self._queued_bytes = sum(len(body) for body, _, _ in entries)

    def publish(self, message: BusMessage,
                cache: tuple[CachePut, ...] = ()) -> asyncio.Future[None] | None:
        """Queue `message` (encoded once, here) for every other node; never blocks.
        `message` is from this node (its origin is this node's id).

        With `cache` writes and Redis reachable, returns a future done when the round
        trip carrying them has returned, or failed with ConnectionError (Redis became
        unreachable first, or the message was dropped) or one of the link's errors (the
        round trip failed: the writes may or may not have been made). Else None: while
        Redis is unreachable the writes wait in the buffer with the message."""
        payload = encode_message_body(message)
        waiter: asyncio.Future[None] | None = None
        if cache and self.link.ready:
            waiter = asyncio.get_running_loop().create_future()
        self._queue.append((payload, cache, waiter))
        self._queued_bytes += len(payload)
        # The cap is for an outage: while Redis is reachable the writer drains the queue
        # every round trip, and a burst must not be cut.
        if self._raw and not self.link.ready:
            self._encode_raw()
        while not self.link.ready and self._queued_bytes > self.max_buffered_bytes \
                and self._queue:
            dropped, _, dropped_waiter = self._queue.popleft()
            self._queued_bytes -= len(dropped)  # encoded: _encode_raw ran above
            _fail(dropped_waiter, ConnectionError("dropped from a full bus buffer"))
            self.dropped += 1
            self.outage_dropped += 1
            if self.outage_dropped == 1:  # once per outage; the total when Redis returns
                log.warning("bus buffer full (%d bytes) while Redis is unreachable: "
                            "dropping the oldest messages for the other nodes",
                            self.max_buffered_bytes)
        self._wake.set()
        return waiter

    def receive(self, payload: bytes) -> None:
        """One frame from the pub/sub channel: drop our own echo (but not of transitions)
        unread, decode the rest, apply each message in order."""
        if payload.startswith(self._head):
            return
        try:
            messages = decode_bus_frame(payload)
        except ValueError as exc:
            if not self._bad_logged:  # a foreign publisher or a newer version: say it once
                self._bad_logged = True
                log.warning("ignoring a message on the bus that is not ours (%s)", exc)
            return
        for message in messages:
            self.received += 1
            try:
                self.handler(message)
            except Exception:  # the frame's other messages are still applied
                log.exception("a bus message could not be applied")

    async def run(self) -> None:
        """The writer: send the queue in order, everything queued in one frame per round
        trip (with the cache writes its triggers carry), when ready."""
        queue = self._queue
        loop = asyncio.get_running_loop()
        next_frame = 0.0  # loop time before which no frame is sent (frame_interval)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                # Pacing: a round trip costs this process far more CPU than a message in
                # a frame (redis-py's command and reply handling, the echo read back, and
                # the same on every other node), and the writer would otherwise send one
                # as soon as the last returned, however few messages wait. A message
                # after a quiet spell goes at once; under load it waits at most
                # frame_interval, and the frame carries everything queued meanwhile.
                delay = next_frame - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self.link.ready:
                    # Nobody waits through an outage for a cache write: say so now.
                    for _, _, waiter in queue:
                        _fail(waiter, ConnectionError("Redis became unreachable"))
                    await self.link.wait_ready(3600.0)
                    if self.link.ready and self.outage_dropped:
                        log.warning("bus buffer: %d oldest message(s) for the other nodes "
                                    "dropped during the outage (max_buffered_bytes = %d)",
                                    self.outage_dropped, self.max_buffered_bytes)
                        self.outage_dropped = 0
                    await self._wait_for_peers()
                    continue
                bodies: list[bytes] = []
                puts: list[CachePut] = []
                waiters: list[asyncio.Future[None]] = []
                size = 0
                while queue and len(bodies) < WRITE_BATCH:
                    body, cache, waiter = queue[0]
                    if isinstance(body, tuple):  # a raw trigger: encoded here, hot
                        body = encode_trigger_body(*body)
                        queue[0] = (body, cache, waiter)
                        self._raw -= 1
                        self._queued_bytes += len(body)
                    if bodies and size + len(body) > WRITE_BATCH_BYTES:
                        break
                    queue.popleft()
                    self._queued_bytes -= len(body)
                    bodies.append(body)
                    size += len(body)
                    if cache:
                        puts.extend(cache)
                    if waiter is not None:
                        waiters.append(waiter)
                frame = encode_bus_frame(self._head, bodies)
                # A full frame is amortised already: what is left goes without a pause
                # (pacing it would cap the bus at WRITE_BATCH messages per interval, and
                # the queue would grow without bound under a higher trigger rate).
                next_frame = loop.time() + self.frame_interval if not queue else 0.0
                self._sending = True
                try:
                    started = time.monotonic()
                    if puts:
                        async with self.link.client.pipeline(transaction=False) as pipe:
                            for put in puts:
                                pipe.set(put.key, put.value, px=put.ttl_ms)
                            pipe.publish(self._channel, frame)
                            await pipe.execute()
                    else:  # one command: cheaper without a pipeline object
                        await self.link.client.publish(self._channel, frame)
                    self.round_trips.observe(time.monotonic() - started)
                    self.published += len(bodies)
                    self.frames += 1
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                except LINK_ERRORS as exc:
                    self.maybe_lost += len(bodies)
                    for waiter in waiters:
                        _fail(waiter, exc)
                    self.link.report_failure(exc)
                finally:
                    self._sending = False

    async def _wait_for_peers(self) -> None:
        """After an outage, give the other nodes up to `flush_wait` s to resubscribe."""
        if self.peers_ready is None:
            return
        deadline = time.monotonic() + self.flush_wait
        while time.monotonic() < deadline and self.link.ready:
            try:
                if await self.peers_ready():
                    return
            except LINK_ERRORS as exc:
                self.link.report_failure(exc)
                return
            await asyncio.sleep(0.02)
