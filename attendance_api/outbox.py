"""The outbox dispatcher: delivers committed `outbox_events` rows to pusherd with the official
`pusher` SDK, strictly in id order, with exponential backoff while pusherd is unreachable.

Guarantees: an event is published only after the transaction that wrote it committed; a
failure never reaches the request that caused it; rows are delivered in commit order (so in
order per channel) and each is marked sent once, so the outbox itself never duplicates.
(If pusherd accepted a trigger but the answer was lost, that one row is retried: at-least-once
on that edge.) Older `dashboard.updated` snapshots still waiting behind a newer one are
superseded, and at most one is published per `dashboard_interval` (2 s): the debounce of
docs/attendance.md, "Realtime contract". On PostgreSQL a session advisory lock keeps a
single dispatcher draining across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from .models import OutboxEvent

log = logging.getLogger("attendance_api.outbox")

DRAIN_LOCK = 727002


class Publisher(Protocol):
    def trigger(self, channels: list[str], event_name: str, data: Any) -> Any: ...


class OutboxDispatcher:
    def __init__(
        self,
        engine: Engine,
        publisher_factory: Callable[[], Publisher | None],
        *,
        write_lock: threading.Lock | None = None,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_interval: float = 2.0,
        dashboard_interval: float = 2.0,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.write_lock = write_lock
        self.publisher_factory = publisher_factory
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.batch = batch
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ignore_backoff = False
        self._publisher: Publisher | None = None
        self.delivered = 0
        self.failures = 0
        self._draining = threading.Lock()
        self.dashboard_interval = dashboard_interval
        self._last_dashboard = float("-inf")

    # -------------------------------------------------------------- control
    def wake(self) -> None:
        """Thread-safe: new rows were committed; look now."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def retry_now(self) -> None:
        """Thread-safe: skip the current backoff wait (e.g. pusherd is known to be back)."""
        self._ignore_backoff = True
        self.wake()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay: float | None = 0.0
        while True:
            timeout = self.poll_interval if delay is None else delay
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                delay = await asyncio.to_thread(self.drain_once)
            except Exception:  # the database itself failed: try again later
                log.exception("outbox drain failed")
                delay = self.max_backoff

    # -------------------------------------------------------------- draining
    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff, self.base_backoff * 2.0 ** max(0, attempts - 1)))

    def drain_once(self) -> float | None:
        """Deliver pending rows in order. Returns seconds until the head row may be retried,
        or None when the outbox is empty (then the dispatcher waits for a wake-up)."""
        if not self._draining.acquire(blocking=False):
            return self.poll_interval  # another drain of this process is running
        try:
            return self._drain_connection()
        finally:
            self._draining.release()

    def _drain_connection(self) -> float | None:
        publisher = self._publisher or self.publisher_factory()
        if publisher is None:
            return None
        self._publisher = publisher
        # One dedicated connection: the PostgreSQL advisory lock is held by this session.
        with self.engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                got = conn.execute(text(f"SELECT pg_try_advisory_lock({DRAIN_LOCK})")).scalar()
                conn.commit()
                if not got:
                    return self.poll_interval
            try:
                with Session(bind=conn, expire_on_commit=False) as db:
                    return self._drain(db, publisher)
            finally:
                if postgres:
                    conn.rollback()
                    conn.execute(text(f"SELECT pg_advisory_unlock({DRAIN_LOCK})"))
                    conn.commit()

    def _save(self, db: Session) -> None:
        """Commit row bookkeeping; on SQLite under the process write lock (one writer)."""
        if self.write_lock is None:
            db.commit()
            return
        with self.write_lock:
            db.commit()

    def _drain(self, db: Session, publisher: Publisher) -> float | None:
        while True:
            rows = db.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.state == "pending")
                .order_by(OutboxEvent.id)
                .limit(self.batch)
            ).all()
            db.commit()  # no read transaction stays open while publishing
            if not rows:
                return None
            newest_dashboard = max(
                (r.id for r in rows if r.event == "dashboard.updated"), default=None
            )
            deferred: float | None = None
            progressed = False
            for row in rows:
                now = datetime.now(UTC)
                if row.event == "dashboard.updated":
                    if row.id != newest_dashboard:
                        row.state = "superseded"
                        self._save(db)
                        progressed = True
                        continue
                    # at most one dashboard snapshot per interval; it is alone on its
                    # channel, so holding it back reorders nothing
                    wait = self._last_dashboard + self.dashboard_interval - time.monotonic()
                    if wait > 0:
                        deferred = wait
                        continue
                if (
                    row.next_attempt_at is not None
                    and row.next_attempt_at > now
                    and not self._ignore_backoff
                ):
                    return (row.next_attempt_at - now).total_seconds()
                self._ignore_backoff = False
                try:
                    publisher.trigger(list(row.channels), row.event, json.loads(row.payload))
                except Exception as exc:  # network, HTTP 4xx/5xx from pusherd
                    row.attempts += 1
                    delay = self._backoff(row.attempts)
                    row.next_attempt_at = now + timedelta(seconds=delay)
                    row.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    self._save(db)
                    self.failures += 1
                    log.warning(
                        "outbox event %s (%s) not delivered, attempt %d, retry in %.1fs",
                        row.id,
                        row.event,
                        row.attempts,
                        delay,
                    )
                    return delay
                row.state = "sent"
                row.sent_at = now
                row.attempts += 1
                self._save(db)
                self.delivered += 1
                progressed = True
                if row.event == "dashboard.updated":
                    self._last_dashboard = time.monotonic()
            if not progressed:
                return deferred
