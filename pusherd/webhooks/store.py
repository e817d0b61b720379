"""Where accepted webhook events wait until they are delivered: the store seam.

The sender keeps the working copy in memory (bounded by ``[webhooks] max_pending``) and
tells the store every change, synchronously and without awaiting; the store makes the
changes durable in the background. At start, :meth:`WebhookStore.open` hands back what a
previous process accepted and did not finish.

Two stores live here: :class:`JournalStore` (an append-only file, the default without
Redis) and :class:`MemoryStore` (nothing survives a restart). A cluster store (Redis: a
stream per app, entries claimed by the node that delivers them and reclaimed from a node
whose lease lapsed) implements the same five calls; :meth:`WebhookStore.reclaim` is the
hook through which a node takes over a dead node's deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from pusherd.errors import ConfigError
from pusherd.webhooks.events import Delivery

log = logging.getLogger("pusherd.webhooks")

RecordKey = tuple[str, str]  # (event id, webhook key)
OpenKey = tuple[str, str, str | None]  # (app id, channel, user id or None)


@dataclass(slots=True)
class Recovered:
    """What a store held at start: deliveries still pending (in acceptance order), the
    dead letters (in the order they failed), and what was occupied or present when the
    previous process stopped (channels with user None, presence members with a user)."""

    pending: list[Delivery] = field(default_factory=list)
    failed: list[Delivery] = field(default_factory=list)
    open: list[OpenKey] = field(default_factory=list)


class WebhookStore(Protocol):
    """Durable state of the deliveries. Every call but :meth:`open`, :meth:`reclaim` and
    :meth:`close` is synchronous and must not block: it records the change and returns."""

    durable: bool  # whether accepted events survive a restart of this process
    reclaim_interval: float  # seconds between two calls of reclaim/load_failed; 0: never

    async def open(self) -> Recovered:
        """Acquire the storage and return what an earlier process left pending or dead.
        Raises :class:`~pusherd.errors.ConfigError` when the storage cannot be opened or
        is in use."""

    def add(self, delivery: Delivery) -> None:
        """A delivery was accepted (or is held for the flap grace)."""

    def delivered(self, delivery: Delivery) -> None:
        """Gone for good: delivered, cancelled by flap suppression, or a dead letter that
        was forgotten."""

    def failed(self, delivery: Delivery) -> None:
        """Moved to the dead letters (its ``last_error`` and ``failed_ms`` are set)."""

    def replayed(self, delivery: Delivery) -> None:
        """A dead letter is pending again (with a fresh ``created_ms``)."""

    def opened(self, key: OpenKey) -> None:
        """A channel was occupied, or a member added (whatever was sent about it)."""

    def closed(self, key: OpenKey) -> None:
        """A channel was vacated, or a member removed."""

    async def reclaim(self) -> list[Delivery]:
        """Deliveries another node accepted and can no longer deliver (a cluster store);
        the local stores have none."""

    async def load_failed(self) -> list[Delivery] | None:
        """Every dead letter, when other nodes may have changed them (a cluster store);
        None when this process's own list is the whole truth."""

    async def close(self) -> None:
        """Make everything recorded durable and release the storage."""


class MemoryStore:
    """A store that keeps nothing: accepted events are lost when the process stops."""

    durable = False
    reclaim_interval = 0.0

    async def open(self) -> Recovered:
        """Nothing to recover."""
        return Recovered()

    def add(self, delivery: Delivery) -> None:
        """Nothing to record."""

    def delivered(self, delivery: Delivery) -> None:
        """Nothing to record."""

    def failed(self, delivery: Delivery) -> None:
        """Nothing to record."""

    def replayed(self, delivery: Delivery) -> None:
        """Nothing to record."""

    def opened(self, key: OpenKey) -> None:
        """Nothing to record."""

    def closed(self, key: OpenKey) -> None:
        """Nothing to record."""

    async def reclaim(self) -> list[Delivery]:
        """No other node."""
        return []

    async def load_failed(self) -> list[Delivery] | None:
        """This process's list is the whole truth."""
        return None

    async def close(self) -> None:
        """Nothing to release."""


def read_journal(path: Path) -> tuple[Recovered, int]:
    """Replay the journal at `path`: the live deliveries and the number of damaged lines
    skipped (a process killed mid-write leaves at most one, the last)."""
    pending: dict[RecordKey, Delivery] = {}
    failed: dict[RecordKey, Delivery] = {}
    open_keys: dict[OpenKey, None] = {}
    damaged = 0
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return Recovered(), 0
    with handle:
        for line in handle:
            try:
                raw = orjson.loads(line)
                op = raw["op"]
                if op == "done":
                    key = (str(raw["id"]), str(raw["key"]))
                    pending.pop(key, None)
                    failed.pop(key, None)
                    continue
                if op in ("open", "close"):
                    user = raw["user"]
                    open_key = (str(raw["app"]), str(raw["channel"]),
                                None if user is None else str(user))
                    if op == "open":
                        open_keys[open_key] = None
                    else:
                        open_keys.pop(open_key, None)
                    continue
                delivery = Delivery.from_json(raw)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                damaged += 1
                continue
            key = (delivery.event_id, delivery.key)
            if op == "add":
                pending[key] = delivery
            elif op == "fail":
                pending.pop(key, None)
                failed[key] = delivery
            elif op == "replay":
                failed.pop(key, None)
                pending.pop(key, None)
                pending[key] = delivery
            else:
                damaged += 1
    return Recovered(list(pending.values()), list(failed.values()), list(open_keys)), damaged


class JournalStore:
    """An append-only journal of JSON lines, one per change (``add``, ``done``, ``fail``,
    ``replay``, and ``open``/``close`` of channels and members), rewritten to the live
    records when it has grown.

    Lines are written at the end of the event-loop turn that produced them, so a process
    killed with SIGKILL loses nothing it accepted before its last turn (the kernel keeps
    written pages); an ``fsync`` every `fsync_interval` seconds bounds the loss on a
    machine crash. An exclusive lock on ``PATH.lock`` keeps a second process from sharing
    the journal (it would deliver the same events twice).
    """

    durable = True
    reclaim_interval = 0.0

    def __init__(self, path: str | Path, fsync_interval: float = 1.0,
                 compact_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.fsync_interval = fsync_interval
        self.compact_bytes = compact_bytes
        self._fd = -1
        self._lock_fd = -1
        self._buffer: list[bytes] = []
        self._flush_scheduled = False
        self._dirty = False
        self._written = 0  # bytes appended since the last rewrite
        self._compacting = False
        self._live: dict[RecordKey, tuple[str, Delivery]] = {}
        self._open: dict[OpenKey, None] = {}
        self._syncer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> Recovered:
        """Lock, replay and rewrite the journal; start the periodic fsync. Raises
        :class:`~pusherd.errors.ConfigError` (``webhooks.journal``) when the file cannot be
        created or another process holds it."""
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError("webhooks.journal",
                              f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ConfigError("webhooks.journal",
                              f"{self.path} is in use by another pusherd process (give each "
                              "process its own journal)") from None
        recovered, damaged = await asyncio.to_thread(read_journal, self.path)
        if damaged:
            log.warning("webhook journal %s: %d damaged line(s) skipped", self.path, damaged)
        for delivery in recovered.pending:
            self._live[(delivery.event_id, delivery.key)] = ("add", delivery)
        for delivery in recovered.failed:
            self._live[(delivery.event_id, delivery.key)] = ("fail", delivery)
        # The open keys are handed back, not kept: the sender closes each of them (the new
        # process holds no subscriber), which records the close.
        await asyncio.to_thread(self._rewrite, self._snapshot())
        self._syncer = asyncio.create_task(self._sync_forever(), name="pusherd-webhook-fsync")
        return recovered

    # --- changes (synchronous) ----------------------------------------------------------

    def add(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.add`."""
        self._live[(delivery.event_id, delivery.key)] = ("add", delivery)
        self._append({"op": "add", **delivery.to_json()})

    def delivered(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.delivered`."""
        if self._live.pop((delivery.event_id, delivery.key), None) is not None:
            self._append({"op": "done", "id": delivery.event_id, "key": delivery.key})

    def failed(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.failed`."""
        self._live[(delivery.event_id, delivery.key)] = ("fail", delivery)
        self._append({"op": "fail", **delivery.to_json()})

    def replayed(self, delivery: Delivery) -> None:
        """See :meth:`WebhookStore.replayed`."""
        self._live[(delivery.event_id, delivery.key)] = ("add", delivery)
        self._append({"op": "replay", **delivery.to_json()})

    def opened(self, key: OpenKey) -> None:
        """See :meth:`WebhookStore.opened`."""
        self._open[key] = None
        self._append({"op": "open", "app": key[0], "channel": key[1], "user": key[2]})

    def closed(self, key: OpenKey) -> None:
        """See :meth:`WebhookStore.closed`."""
        self._open.pop(key, None)
        self._append({"op": "close", "app": key[0], "channel": key[1], "user": key[2]})

    async def reclaim(self) -> list[Delivery]:
        """A journal belongs to one process: nothing to take over."""
        return []

    async def load_failed(self) -> list[Delivery] | None:
        """This process's list is the whole truth."""
        return None

    async def close(self) -> None:
        """Write what is buffered, fsync, unlock."""
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        self._flush()
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    # --- writing ------------------------------------------------------------------------

    def _append(self, record: dict[str, object]) -> None:
        self._buffer.append(orjson.dumps(record) + b"\n")
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write the buffered lines (one write; the kernel keeps them past a SIGKILL)."""
        self._flush_scheduled = False
        if not self._buffer or self._compacting or self._fd < 0:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._written += len(data)
        self._dirty = True
        if self._written > self.compact_bytes and len(self._live) + len(self._open) < 50_000:
            self._start_compaction()

    def _snapshot(self) -> bytes:
        lines = [orjson.dumps({"op": op, **delivery.to_json()}) + b"\n"
                 for op, delivery in self._live.values()]
        lines += [orjson.dumps({"op": "open", "app": app, "channel": channel, "user": user})
                  + b"\n" for app, channel, user in self._open]
        return b"".join(lines)

    def _rewrite(self, content: bytes) -> None:
        """Replace the journal by `content` (write, fsync, rename) and append to it."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if old >= 0:
            os.close(old)
        self._written = 0

    def _start_compaction(self) -> None:
        # Lines produced while the rewrite runs stay buffered and go to the new file.
        self._compacting = True
        content = self._snapshot()
        self._buffer.clear()  # the snapshot already holds their effect

        async def run() -> None:
            try:
                await asyncio.to_thread(self._rewrite, content)
            except OSError:
                log.exception("webhook journal %s: rewrite failed; appending on", self.path)
            finally:
                self._compacting = False
                self._flush()

        assert self._loop is not None
        self._loop.create_task(run(), name="pusherd-webhook-compact")

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval)
            if self._dirty and self._fd >= 0 and not self._compacting:
                self._dirty = False
                fd = self._fd
                try:
                    await asyncio.to_thread(os.fsync, fd)
                except OSError:
                    log.exception("webhook journal %s: fsync failed", self.path)
