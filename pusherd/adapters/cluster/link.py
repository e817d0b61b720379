"""The node's connection to Redis, and what it does when Redis goes away.

:class:`RedisLink` owns one command client (a small pool) and one pub/sub connection for
the bus. A supervisor task keeps the subscription open; any failure (the subscription
breaking, or a command failing and calling :meth:`RedisLink.report_failure`) starts an
*outage*: the link reports not ready, logs one warning, and retries with exponential
backoff and jitter (``backoff_min`` .. ``backoff_max`` seconds). When Redis answers again
it subscribes, runs ``on_up`` (the adapter re-registers the node's state there), and
only then reports ready and logs one line saying how long the outage lasted. Nothing is
logged per failed message or per retry.

Every received bus message is handed to ``on_message`` in order; an exception in it is
logged and the next message is still read (the link drops nothing it received).

Reading the subscription: redis-py connects, authenticates (TLS, password, database) and
sends ``SUBSCRIBE``; from then on the link reads the connection's stream itself, a chunk
at a time, and parses the pushes with :func:`parse_pushes`. redis-py's ``get_message``
costs a health check, a retry wrapper, a timeout context and a coroutine per RESP element
for every message; here a chunk of many messages is one await. The reader task runs
until the connection ends; the supervisor waits on it and on :meth:`report_failure`, and
checks an idle connection with a ``PING`` every ``health_check_interval`` seconds (no
bytes for ``command_timeout`` seconds after it: the connection is taken as dead).

Writing the bus: the same for the other direction. The bus writer sends its round trips
(a few single-line-reply commands, already encoded: :func:`encode_command`) with
:meth:`RedisLink.send_commands` on a connection of its own, taken from redis-py's pool
(connected and authenticated by it) and written and read directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from pusherd.config import redact_redis_url

log = logging.getLogger("pusherd.redis")

# Errors that mean "Redis is not reachable right now" (as opposed to a bug in a script).
LINK_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

_READ_SIZE = 262_144
_PING = b"*1\r\n$4\r\nPING\r\n"
# A pub/sub message's head, in RESP2 (an array) and RESP3 (a push).
_MESSAGE_HEADS = (b"*3\r\n$7\r\nmessage\r\n", b">3\r\n$7\r\nmessage\r\n")
_MESSAGE_HEAD_LENGTH = len(_MESSAGE_HEADS[0])


def encode_command(*words: bytes) -> bytes:
    """One command in RESP (an array of bulk strings), ready to write."""
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in words)


def _bulk(buffer: bytes, pos: int) -> tuple[bytes, int] | None:
    """A bulk string at `pos` (``$<n>\\r\\n<n bytes>\\r\\n``): its bytes and the
    position after it, or None when it is not whole yet."""
    line_end = buffer.find(b"\r\n", pos)
    if line_end < 0:
        return None
    if buffer[pos:pos + 1] != b"$":
        raise ResponseError(f"unexpected RESP type {buffer[pos:pos + 1]!r} on the bus")
    length = int(buffer[pos + 1:line_end])
    start = line_end + 2
    end = start + length
    if len(buffer) < end + 2:
        return None
    return buffer[start:end], end + 2


def _element(buffer: bytes, pos: int) -> tuple[Any, int] | None:
    """Any RESP element at `pos` the subscription can carry (arrays, pushes, bulk and
    simple strings, integers, nulls); None when it is not whole yet. An error reply
    raises ResponseError."""
    line_end = buffer.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, line = buffer[pos:pos + 1], buffer[pos + 1:line_end]
    after = line_end + 2
    if kind in (b"*", b">"):
        count = int(line)
        items: list[Any] = []
        for _ in range(max(count, 0)):
            found = _element(buffer, after)
            if found is None:
                return None
            item, after = found
            items.append(item)
        return items, after
    if kind == b"$":
        return _bulk(buffer, pos) if int(line) >= 0 else (None, after)
    if kind in (b"+", b":"):
        return line, after
    if kind == b"_":
        return None, after
    if kind == b"-":
        raise ResponseError(line.decode("utf-8", "replace"))
    raise ResponseError(f"unexpected RESP type {kind!r} on the bus")


def parse_pushes(buffer: bytes, messages: list[bytes]) -> int:
    """Parse the whole pushes at the start of `buffer`: append each pub/sub message's
    payload to `messages` (subscribe confirmations and ``PING`` replies are skipped) and
    return how many bytes were consumed (the rest is an incomplete push). Raises
    ResponseError on an error reply or on something a subscription never carries."""
    pos, size = 0, len(buffer)
    while pos < size:
        if buffer.startswith(_MESSAGE_HEADS, pos):  # the usual case, parsed inline
            channel = _bulk(buffer, pos + _MESSAGE_HEAD_LENGTH)
            if channel is None:
                return pos
            payload = _bulk(buffer, channel[1])
            if payload is None:
                return pos
            messages.append(payload[0])
            pos = payload[1]
            continue
        found = _element(buffer, pos)
        if found is None:
            return pos
        pos = found[1]
    return pos


class RedisLink:
    """One node's link to Redis (see the module docstring).

    `on_message(payload)` gets each bus message's raw bytes; `on_up()` runs after every
    (re)connection, before the link reports ready, and may raise one of
    :data:`LINK_ERRORS` (the outage then simply goes on); `on_down()` runs once at the
    start of each outage.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        on_message: Callable[[bytes], None],
        on_up: Callable[[], Awaitable[None]],
        on_down: Callable[[], None] | None = None,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        command_timeout: float = 5.0,
        health_check_interval: int = 2,
        node_id: str = "",
    ) -> None:
        self.url = url
        self.node_id = node_id  # only to tell nodes apart in logs
        self.channel = channel
        self._on_message = on_message
        self._on_up = on_up
        self._on_down = on_down
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.command_timeout = command_timeout
        self.health_check_interval = health_check_interval
        self._bytes_read = 0  # from the subscription, for the idle check
        self._writer_connection: AbstractConnection | None = None  # send_commands' own
        # Retries are this class's job (with backoff and one log line), not the
        # client's: a failed command must surface at once.
        self.client: Redis = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_timeout=command_timeout,
            socket_connect_timeout=min(command_timeout, 2.0),
            health_check_interval=health_check_interval,
        )
        self._ready = asyncio.Event()
        self._failed = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.outages = 0  # outages seen since start
        self._outage_started: float | None = None
        self._attempts = 0

    @property
    def ready(self) -> bool:
        """Subscribed, and ``on_up`` has completed since the last failure."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for :attr:`ready`; whether it came."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that lands as the event is set, leaving a task that
            # cannot be stopped.
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Start the supervisor task (connect, subscribe, recover); returns at once."""
        self._task = asyncio.create_task(self._supervise(), name="pusherd-redis-link")

    async def close(self) -> None:
        """Stop the supervisor and close every connection; the link is not reused."""
        self._closed = True
        self._ready.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)
        connection, self._writer_connection = self._writer_connection, None
        if connection is not None:
            await self.client.connection_pool.release(connection)
        await self.client.aclose()

    async def send_commands(self, commands: bytes, count: int) -> list[bytes]:
        """Write `count` encoded commands (:func:`encode_command`) whose replies are one
        line each (``+OK``, ``:<n>``), and read those replies, within ``command_timeout``
        seconds; returns them without their line ends. Raises one of :data:`LINK_ERRORS`
        (ResponseError for an error reply, after reading every reply); the connection is
        then dropped, and the next call connects again. One caller at a time (the bus
        writer)."""
        connection = self._writer_connection
        if connection is None:
            pool = self.client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._writer_connection = connection
        try:
            if not connection.is_connected:  # dropped by an outage's pool reset
                await connection.connect()
            reader, writer = connection._reader, connection._writer
            if reader is None or writer is None:
                raise ConnectionError("the bus writer's connection is closed")
            replies: list[bytes] = []
            async with asyncio.timeout(self.command_timeout):
                writer.write(commands)
                for _ in range(count):
                    line = await reader.readline()
                    if not line.endswith(b"\r\n"):
                        raise ConnectionError("Redis closed the bus writer's connection")
                    replies.append(line[:-2])
            for reply in replies:
                if reply.startswith(b"-"):
                    raise ResponseError(reply[1:].decode("utf-8", "replace"))
            return replies
        except BaseException:
            # Its state is unknown (a reply may be on its way): never reused.
            self._writer_connection = None
            await connection.disconnect()
            await self.client.connection_pool.release(connection)
            raise

    def report_failure(self, exc: BaseException) -> None:
        """A command failed with one of :data:`LINK_ERRORS`: start (or continue) the
        outage; the supervisor reconnects. Safe to call many times."""
        if self._closed:
            return
        self._begin_outage(exc)
        self._failed.set()

    def _begin_outage(self, exc: BaseException) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            self._attempts = 0
            self.outages += 1
            log.warning(
                "node %s: Redis at %s unreachable (%s): serving this node's sockets only, "
                "reporting not ready, retrying with backoff (at most every %.1f s)",
                self.node_id, redact_redis_url(self.url),
                type(exc).__name__ if not str(exc) else exc, self.backoff_max)
            if self._on_down is not None and was_ready:
                try:
                    self._on_down()
                except Exception:
                    log.exception("the Redis outage handler failed")

    def _backoff(self) -> float:
        # Full jitter: nodes that lost Redis together do not all come back together.
        ceiling = min(self.backoff_max, self.backoff_min * (2 ** min(self._attempts, 16)))
        return random.uniform(self.backoff_min, max(self.backoff_min, ceiling))

    async def _supervise(self) -> None:
        while not self._closed:
            pubsub: PubSub | None = None
            try:
                if self._outage_started is not None:
                    # Pooled connections from before the outage are dead: a command on
                    # one would fail and start a second outage. (Commands are never
                    # retried on a fresh connection instead: a script whose reply was
                    # lost may have run, and must not run twice.)
                    await self.client.connection_pool.disconnect()
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                self._failed.clear()
                await self._on_up()
                if self._outage_started is not None:
                    log.warning("node %s: Redis at %s reachable again after %.1f s "
                                "(%d attempts); this node's state is registered again",
                                self.node_id, redact_redis_url(self.url),
                                time.monotonic() - self._outage_started, self._attempts + 1)
                    self._outage_started = None
                self._attempts = 0
                self._ready.set()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except LINK_ERRORS as exc:
                self._begin_outage(exc)
            finally:
                if pubsub is not None:
                    await _close_quietly(pubsub)
            if self._closed:
                return
            self._attempts += 1
            await asyncio.sleep(self._backoff())

    async def _read(self, pubsub: PubSub) -> None:
        """Hand every message of the subscription to ``on_message`` until the connection
        ends, a command reports a failure, or an idle connection stops answering."""
        connection = pubsub.connection
        # The stream redis-py connected (after TLS, AUTH and SUBSCRIBE); nothing else
        # reads it from here on.
        reader = connection._reader if connection is not None else None
        writer = connection._writer if connection is not None else None
        if reader is None or writer is None:
            raise ConnectionError("the bus subscription has no connection")
        pump = asyncio.create_task(self._pump(reader), name="pusherd-bus-reader")
        failed = asyncio.create_task(self._failed.wait())
        try:
            seen, ping_sent_at = -1, 0.0
            while True:
                await asyncio.wait((pump, failed), timeout=self.health_check_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                if pump.done():
                    pump.result()  # raises what ended it
                    raise ConnectionError("Redis closed the bus connection")
                if failed.done():
                    raise ConnectionError("a Redis command failed")
                if self._bytes_read != seen:
                    seen, ping_sent_at = self._bytes_read, 0.0
                elif not ping_sent_at:
                    writer.write(_PING)
                    ping_sent_at = time.monotonic()
                elif time.monotonic() - ping_sent_at > self.command_timeout:
                    raise TimeoutError(f"no answer on the bus connection for "
                                       f"{self.command_timeout:.0f} s after a PING")
        finally:
            pump.cancel()
            failed.cancel()
            await asyncio.wait((pump, failed))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        messages: list[bytes] = []
        while True:
            chunk = await reader.read(_READ_SIZE)
            if not chunk:
                return  # end of stream
            self._bytes_read += len(chunk)
            buffer = buffer + chunk if buffer else chunk
            used = parse_pushes(buffer, messages)
            buffer = buffer[used:] if used < len(buffer) else b""
            for payload in messages:
                try:
                    self._on_message(payload)
                except Exception:
                    log.exception("a bus message could not be applied")
            messages.clear()


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(*LINK_ERRORS):
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated upstream
