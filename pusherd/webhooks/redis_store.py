"""A webhook store in Redis, for a cluster: any node delivers what a dead node accepted.

Keys (``P`` is ``[redis] prefix``):

======================================  ======  ============================================
key                                     type    holds
======================================  ======  ============================================
``P:webhooks:owners``                   zset    node id -> lease expiry (wall-clock ms)
``P:webhooks:pending:<node>``           hash    ``<event id> <webhook key>`` -> delivery JSON
``P:webhooks:failed``                   hash    the dead letters of every node, same fields
======================================  ======  ============================================

Each node writes its own pending hash, renews its lease three times per `lease_ttl`, and
looks for lapsed leases every `reclaim_interval`: one script moves a lapsed node's pending
hash into the caller's and drops the lapsed lease, atomically, so exactly one node takes
over each delivery. A node that stops cleanly gives its lease up at once (its pending
deliveries are taken over at the next look, not after the TTL). Dead letters are shared:
every node lists and replays all of them.

Changes are queued synchronously and written in one pipeline per event-loop turn. While
Redis is unreachable they stay queued (bounded by the sender's ``max_pending``) and are
written when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson

from pusherd.webhooks.events import Delivery
from pusherd.webhooks.store import OpenKey, Recovered

log = logging.getLogger("pusherd.webhooks")

# KEYS[1] owners, KEYS[2] the lapsed node's pending hash, KEYS[3] ours.
# ARGV[1] lapsed node id, ARGV[2] now (ms). Returns the fields and values moved.
RECLAIM = """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) > tonumber(ARGV[2]) then return {} end
redis.call('ZREM', KEYS[1], ARGV[1])
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do redis.call('HSET', KEYS[3], entries[i], entries[i + 1]) end
redis.call('DEL', KEYS[2])
return entries
"""


def _field(delivery: Delivery) -> str:
    return f"{delivery.event_id} {delivery.key}"


class RedisStore:
    """:class:`~pusherd.webhooks.store.WebhookStore` in Redis (see the module docstring).

    `url` and `prefix` are ``[redis] url`` and ``prefix``; `lease_ttl` and
    `reclaim_interval` are seconds. The sender calls :meth:`reclaim` every
    `reclaim_interval` and :meth:`load_failed` to refresh the shared dead letters.
    """

    durable = True

    def __init__(self, url: str, prefix: str, node_id: str | None = None,
                 lease_ttl: float = 10.0, reclaim_interval: float = 2.0) -> None:
        import redis.asyncio as redis_asyncio

        self.client: Any = redis_asyncio.Redis.from_url(url)
        self.node_id = node_id or secrets.token_hex(6)
        self.lease_ms = int(lease_ttl * 1000)
        self.reclaim_interval = reclaim_interval
        self.owners = f"{prefix}:webhooks:owners"
        self.pending_key = f"{prefix}:webhooks:pending:{self.node_id}"
        self.pending_prefix = f"{prefix}:webhooks:pending:"
        self.failed_key = f"{prefix}:webhooks:failed"
        self._queue: list[tuple[str, str, str, bytes | None]] = []  # (op, key, field, value)
        self._flush_scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self._lease: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reclaim_script: Any = None
        self._closing = False
        self._write_lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Recovered:
        """Take a lease, take over what lapsed nodes left, and read the dead letters."""
        self._loop = asyncio.get_running_loop()
        self._reclaim_script = self.client.register_script(RECLAIM)
        self._lease = asyncio.create_task(self._keep_lease(), name="pusherd-webhook-lease")
        try:
            await self._renew()
            pending = await self.reclaim()
            failed = await self.load_failed()
        except Exception as exc:  # Redis down at start: serve; the lease task retries
            log.warning("webhooks: Redis unreachable at start (%s); pending events of "
                        "other nodes are taken over once it is back", type(exc).__name__)
            return Recovered()
        return Recovered(pending, failed or [])

    async def close(self) -> None:
        """Write what is queued and give the lease up (other nodes take over at once)."""
        self._closing = True
        if self._lease is not None:
            self._lease.cancel()
            # Bounded: redis-py may swallow a cancellation that lands inside a command.
            await asyncio.wait([self._lease], timeout=5)
        with contextlib.suppress(Exception):
            await self._write()
            await self.client.zadd(self.owners, {self.node_id: 0})
        await self.client.aclose()

    # --- changes (synchronous) ----------------------------------------------------------

    def add(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.add`."""
        self._push("hset", self.pending_key, _field(delivery), orjson.dumps(delivery.to_json()))

    def delivered(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.delivered`."""
        self._push("hdel", self.pending_key, _field(delivery), None)
        self._push("hdel", self.failed_key, _field(delivery), None)

    def failed(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.failed`."""
        self._push("hdel", self.pending_key, _field(delivery), None)
        self._push("hset", self.failed_key, _field(delivery), orjson.dumps(delivery.to_json()))

    def replayed(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.replayed`."""
        self._push("hdel", self.failed_key, _field(delivery), None)
        self._push("hset", self.pending_key, _field(delivery), orjson.dumps(delivery.to_json()))

    def opened(self, key: OpenKey) -> None:
        """Occupancy is the cluster state's business (its reaper sends the removals)."""

    def closed(self, key: OpenKey) -> None:
        """See :meth:`opened`."""

    # --- taking over --------------------------------------------------------------------

    async def reclaim(self) -> list[Delivery]:
        """Move the pending deliveries of every node whose lease lapsed into ours (one
        script per node: exactly one taker) and return them."""
        await self._write()
        now_ms = time.time_ns() // 1_000_000
        lapsed = await self.client.zrangebyscore(self.owners, "-inf", now_ms)
        taken: list[Delivery] = []
        for raw_node in lapsed:
            node = raw_node.decode() if isinstance(raw_node, bytes) else str(raw_node)
            if node == self.node_id:
                continue
            entries = await self._reclaim_script(
                keys=[self.owners, self.pending_prefix + node, self.pending_key],
                args=[node, now_ms])
            moved = [Delivery.from_json(orjson.loads(value)) for value in entries[1::2]]
            if moved:
                log.warning("webhooks: node %s took over %d pending event(s) of node %s, "
                            "whose lease lapsed", self.node_id, len(moved), node)
            taken += moved
        taken.sort(key=lambda d: (d.created_ms, d.event_id))
        return taken

    async def load_failed(self) -> list[Delivery] | None:
        """Every node's dead letters, oldest first."""
        values = await self.client.hvals(self.failed_key)
        failed = [Delivery.from_json(orjson.loads(value)) for value in values]
        failed.sort(key=lambda d: d.failed_ms)
        return failed

    # --- writing ------------------------------------------------------------------------

    def _push(self, op: str, key: str, field: str, value: bytes | None) -> None:
        self._queue.append((op, key, field, value))
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        if self._flushing is None or self._flushing.done():
            assert self._loop is not None
            self._flushing = self._loop.create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        backoff = 0.1
        while self._queue:
            try:
                await self._write()
                backoff = 0.1
            except Exception as exc:  # Redis unreachable: keep the changes, try again
                log.warning("webhooks: cannot write to Redis (%s); retrying in %.1f s",
                            type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    async def _write(self) -> None:
        """Write what is queued; when another write is in flight, wait for it first, so
        that on return every change queued before the call is in Redis."""
        async with self._write_lock:
            await self._write_queued()

    async def _write_queued(self) -> None:
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for op, key, field, value in batch:
                    if op == "hset":
                        pipe.hset(key, field, value)
                    else:
                        pipe.hdel(key, field)
                await pipe.execute()
        except BaseException:
            self._queue[:0] = batch  # written next time, in the same order
            raise

    async def _renew(self) -> None:
        expiry = time.time_ns() // 1_000_000 + self.lease_ms
        await self.client.zadd(self.owners, {self.node_id: expiry})

    async def _keep_lease(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self._renew()
            except Exception as exc:
                log.warning("webhooks: cannot renew the lease of node %s in Redis (%s)",
                            self.node_id, type(exc).__name__)
