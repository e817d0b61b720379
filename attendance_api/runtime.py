"""Configuration and the process-wide runtime: engine, clock, pusher client, throttle,
outbox dispatcher, background tick, and the unit-of-work runner used by every endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pusher  # type: ignore[import-untyped]
from sqlalchemy import select

from . import domain
from .context import Ctx
from .db import make_engine, make_sessionmaker, migrate
from .models import Setting, User
from .outbox import OutboxDispatcher
from .security import LoginThrottle, hash_password
from .settings_registry import REGISTRY

log = logging.getLogger("attendance_api")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PusherConfig:
    app_id: str
    key: str
    secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    scheme: str = "http"

    def client(self, timeout: float = 5.0) -> pusher.Pusher:
        return pusher.Pusher(
            app_id=self.app_id,
            key=self.key,
            secret=self.secret,
            host=self.host,
            port=self.port,
            ssl=self.scheme == "https",
            timeout=timeout,
        )


@dataclass(frozen=True)
class Config:
    database_url: str = "sqlite:///attendance.db"
    pusher: PusherConfig | None = None
    admin_email: str | None = None
    admin_password: str | None = None
    tick_seconds: float = 30.0
    outbox_max_backoff: float = 30.0
    outbox_base_backoff: float = 0.5
    cors_origins: tuple[str, ...] = ("*",)
    # Where browsers reach pusherd, when not at the PUSHER_* address the API publishes to
    # (e.g. behind a proxy): (host, port, scheme); None parts fall back to `pusher`.
    echo_host: str | None = None
    echo_port: int | None = None
    echo_scheme: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def echo_address(self) -> tuple[str, int, str, str] | None:
        """(wsHost, wsPort, scheme, key) for browsers, or None when realtime is off."""
        if self.pusher is None:
            return None
        return (
            self.echo_host or self.pusher.host,
            self.echo_port or self.pusher.port,
            self.echo_scheme or self.pusher.scheme,
            self.pusher.key,
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Config:
        env = dict(os.environ if env is None else env)
        pusher_cfg = None
        if env.get("PUSHER_APP_ID") and env.get("PUSHER_APP_KEY") and env.get("PUSHER_APP_SECRET"):
            pusher_cfg = PusherConfig(
                app_id=env["PUSHER_APP_ID"],
                key=env["PUSHER_APP_KEY"],
                secret=env["PUSHER_APP_SECRET"],
                host=env.get("PUSHER_HOST", "127.0.0.1"),
                port=int(env.get("PUSHER_PORT", "8080")),
                scheme=env.get("PUSHER_SCHEME", "http"),
            )
        origins = tuple(
            o.strip() for o in env.get("ATTENDANCE_CORS_ORIGINS", "*").split(",") if o.strip()
        )
        values: dict[str, Any] = dict(
            database_url=env.get("ATTENDANCE_DATABASE_URL", "sqlite:///attendance.db"),
            pusher=pusher_cfg,
            admin_email=env.get("ATTENDANCE_ADMIN_EMAIL"),
            admin_password=env.get("ATTENDANCE_ADMIN_PASSWORD"),
            tick_seconds=float(env.get("ATTENDANCE_TICK_SECONDS", "30")),
            outbox_max_backoff=float(env.get("ATTENDANCE_OUTBOX_MAX_BACKOFF", "30")),
            cors_origins=origins or ("*",),
            echo_host=env.get("ATTENDANCE_ECHO_HOST") or None,
            echo_port=int(env["ATTENDANCE_ECHO_PORT"]) if env.get("ATTENDANCE_ECHO_PORT") else None,
            echo_scheme=env.get("ATTENDANCE_ECHO_SCHEME") or None,
        )
        values.update(overrides)
        return cls(**values)


class Runtime:
    """Everything one running service owns. `unit()` is the only way to touch the database."""

    def __init__(self, config: Config, clock: Clock = system_clock) -> None:
        self.config = config
        self.clock = clock
        self.engine = make_engine(config.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer: serialise write units in-process instead of failing on busy.
        self.write_lock: threading.Lock | None = threading.Lock() if self.sqlite else None
        self.throttle = LoginThrottle()
        self.dispatcher = OutboxDispatcher(
            self.engine,
            self._publisher,
            write_lock=self.write_lock,
            base_backoff=config.outbox_base_backoff,
            max_backoff=config.outbox_max_backoff,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _publisher(self) -> pusher.Pusher | None:
        return self.config.pusher.client() if self.config.pusher else None

    def auth_client(self) -> pusher.Pusher | None:
        return self.config.pusher.client() if self.config.pusher else None

    # -------------------------------------------------------------- setup
    def prepare(self, *, demo: bool = False) -> None:
        """Migrate, seed missing settings, bootstrap the first admin if there is none."""
        migrate(self.engine)
        with self.unit(write=True) as ctx:
            have = set(ctx.db.scalars(select(Setting.key)).all())
            for key, spec in REGISTRY.items():
                if key not in have:
                    ctx.db.add(Setting(key=key, value=spec.default, updated_at=ctx.now))
            admins = ctx.db.scalar(
                select(User.id).where(User.role == "admin", User.deleted_at.is_(None)).limit(1)
            )
            if admins is None and self.config.admin_email and self.config.admin_password:
                ctx.db.add(
                    User(
                        employee_code="SYSADM-001",
                        email=self.config.admin_email.strip().lower(),
                        password_hash=hash_password(self.config.admin_password),
                        first_name="System",
                        last_name="Administrator",
                        role="admin",
                        status="active",
                        created_at=ctx.now,
                        updated_at=ctx.now,
                    )
                )
                ctx.db.flush()
                ctx.audit(
                    "bootstrap_admin",
                    "First administrator created from the environment",
                    model_type="User",
                )
                log.info("created the first administrator %s", self.config.admin_email)
            elif admins is None and not demo:
                log.warning(
                    "no administrator exists: set ATTENDANCE_ADMIN_EMAIL and "
                    "ATTENDANCE_ADMIN_PASSWORD (or start with --demo)"
                )

    # -------------------------------------------------------------- units of work
    @contextmanager
    def unit(
        self, *, write: bool, ip: str | None = None, user_agent: str | None = None
    ) -> Iterator[Ctx]:
        lock = self.write_lock if (write and self.write_lock is not None) else nullcontext()
        with lock, self.sessions() as db:
            ctx = Ctx(db=db, now=self.clock(), ip=ip, user_agent=user_agent)
            try:
                yield ctx
                if write:
                    if ctx.dashboard_dirty:
                        domain.emit_dashboard(ctx)
                    ctx.write_outbox()
                    db.commit()
                else:
                    db.rollback()
            except BaseException:
                db.rollback()
                raise
        if write and ctx.events:
            self.dispatcher.wake()

    def run_tick(self) -> dict[str, int]:
        with self.unit(write=True) as ctx:
            return domain.tick(ctx)

    # -------------------------------------------------------------- background tasks
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="outbox"))
        if self.config.tick_seconds > 0:
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))

    async def _tick_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_tick)
            except Exception:
                log.exception("scheduled tick failed")
            await asyncio.sleep(self.config.tick_seconds)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.engine.dispose()
        log.info("shutdown complete: background tasks stopped, database closed")
