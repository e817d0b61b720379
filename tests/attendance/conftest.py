"""Fixtures for attendance_api: a real database (SQLite file or a fresh PostgreSQL schema on
the local server), a runtime with a settable clock, and an HTTP client."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from starlette.testclient import TestClient

from attendance_api.app import create_app
from attendance_api.models import Schedule, User
from attendance_api.runtime import Config, PusherConfig, Runtime
from attendance_api.security import hash_password

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
MANILA = ZoneInfo("Asia/Manila")
PASSWORD = "Secret-pass-1!"


_DATABASE_READY: list[bool] = []


def ensure_test_database() -> None:
    """Create the `test` database on the local server if a fresh machine lacks it."""
    if _DATABASE_READY:
        return
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'test'").fetchone()
        if exists is None:
            conn.execute("CREATE DATABASE test")
    _DATABASE_READY.append(True)


def manila(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=MANILA).astimezone(UTC)


class Clock:
    """The service's clock, set by the test (the service never reads the wall clock here)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'attendance.db'}"
        return
    schema = "att_" + uuid.uuid4().hex[:12]
    ensure_test_database()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class World:
    runtime: Runtime
    clock: Clock
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def user(self, name: str, role: str = "employee", **extra: Any) -> int:
        with self.runtime.unit(write=True) as ctx:
            code = ("SYSADM-" if role == "admin" else "QCV-") + f"{len(self.ids) + 1:03d}"
            code = extra.pop("employee_code", code)
            user = User(
                employee_code=code,
                email=f"{name}@example.test",
                password_hash=hash_password(PASSWORD),
                first_name=name.title(),
                last_name="Tester",
                role=role,
                status="active",
                position="VA",
                created_at=ctx.now,
                updated_at=ctx.now,
                **extra,
            )
            ctx.db.add(user)
            ctx.db.flush()
            self.ids[name] = user.id
            return user.id

    def login(self, name: str) -> dict[str, str]:
        response = self.client.post(
            "/api/auth/login", json={"email": f"{name}@example.test", "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        self.tokens[name] = response.json()["token"]
        return self.auth(name)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}", "Accept": "application/json"}

    def schedule(self, t_in: time, t_out: time, grace: int | None = 15) -> int:
        with self.runtime.unit(write=True) as ctx:
            schedule = Schedule(
                name=f"S {t_in}-{t_out}",
                time_in=t_in,
                time_out=t_out,
                grace_period_minutes=grace,
                late_threshold_minutes=30,
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add(schedule)
            ctx.db.flush()
            return schedule.id

    def call(self, method: str, path: str, who: str | None = None, **kw: Any) -> Any:
        headers = self.auth(who) if who else {}
        return self.client.request(method, path, headers=headers, **kw)


def build_runtime(
    url: str, clock: Clock, pusher: PusherConfig | None = None, **config: Any
) -> Runtime:
    runtime = Runtime(Config(database_url=url, pusher=pusher, tick_seconds=0, **config), clock)
    runtime.prepare()
    return runtime


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    clock = Clock(manila(2026, 3, 2, 22, 0))  # a Monday evening in Manila
    pusher = PusherConfig(
        app_id="1001", key="test-key", secret=secrets.token_hex(16), host="127.0.0.1", port=9
    )  # nothing listens: events wait in the outbox
    runtime = build_runtime(database_url, clock, pusher)
    with TestClient(create_app(runtime, background=False)) as client:
        yield World(runtime, clock, client)
    runtime.engine.dispose()
