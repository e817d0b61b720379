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

Reading the subscription: a reader task takes each push with redis-py's
``PubSub.parse_response(block=True)`` and hands a message's payload on at once. That is
one await per message with no timer: ``get_message(timeout=...)`` wraps every read in a
timeout and wakes up empty when the channel is idle. The supervisor waits on the reader
task and on :meth:`report_failure`. A broken connection ends the reader (an outage); a
Redis that stops answering is noticed by the node's own commands, which all carry a
``command_timeout`` (the lease is renewed several times per ``lease_ttl``), and while
messages flow redis-py also PINGs the subscription every ``health_check_interval``
seconds.

Writing the bus is the bus writer's (see :mod:`.bus`): one redis-py pipeline per round
trip on this link's :attr:`RedisLink.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pusherd.config import redact_redis_url

log = logging.getLogger("pusherd.redis")

# Errors that mean "Redis is not reachable right now" (as opposed to a bug in a script).
LINK_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


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
        await self.client.aclose()

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
            # A TLS URL against a server that does not speak TLS looks like a server that
            # never answers (the handshake times out): say what to check.
            hint = (" (the URL asks for TLS: check that the server speaks TLS on this port)"
                    if self.url.startswith("rediss://") and (
                        "Timeout" in type(exc).__name__ or "SSL" in str(exc))
                    else "")
            log.warning(
                "node %s: Redis at %s unreachable (%s)%s: serving this node's sockets only, "
                "reporting not ready, retrying with backoff (at most every %.1f s)",
                self.node_id, redact_redis_url(self.url),
                type(exc).__name__ if not str(exc) else exc, hint, self.backoff_max)
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
                await self._confirmed(pubsub)
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

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Wait (at most ``command_timeout``) for Redis to confirm the subscription.
        redis-py sends SUBSCRIBE without reading the answer: a refusal (an ACL user
        without the channel) would otherwise arrive after the link reported ready, and
        every retry would log "reachable again" and reset the backoff. Raises the refusal
        (NoPermissionError) or TimeoutError, both outages."""
        async with asyncio.timeout(self.command_timeout):
            while True:
                response = await pubsub.parse_response(block=True)
                if isinstance(response, list) and response and response[0] in (
                        b"subscribe", "subscribe"):
                    return

    async def _read(self, pubsub: PubSub) -> None:
        """Hand every message of the subscription to ``on_message`` until the connection
        breaks or a command reports a failure; raises one of :data:`LINK_ERRORS`."""
        reader = asyncio.create_task(self._pump(pubsub), name="pusherd-bus-reader")
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait((reader, failed), return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # raises what ended it
                raise ConnectionError("the bus subscription ended")
            raise ConnectionError("a Redis command failed")
        finally:
            reader.cancel()
            failed.cancel()
            await asyncio.wait((reader, failed))

    async def _pump(self, pubsub: PubSub) -> None:
        on_message = self._on_message
        while True:
            # A pub/sub message is [b"message", channel, payload]; subscribe
            # confirmations (and PING replies redis-py does not filter) are skipped. A list
            # or a subclass of it: redis-py's hiredis parser answers a push as
            # hiredis.PushNotification.
            response = await pubsub.parse_response(block=True)
            if isinstance(response, list) and len(response) == 3 \
                    and response[0] == b"message":
                try:
                    on_message(response[2])
                except Exception:
                    log.exception("a bus message could not be applied")


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(*LINK_ERRORS):
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated upstream
