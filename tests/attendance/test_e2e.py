"""End to end: attendance_api on a real socket, a real pusherd process, real Laravel Echo
clients (Node, and Chromium) configured like the seed's echo.js."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from attendance_api.models import OutboxEvent, Schedule, User
from attendance_api.runtime import PusherConfig, Runtime
from attendance_api.security import hash_password
from tests.support.pusherd_process import run_pusherd

from .conftest import PASSWORD, Clock, build_runtime, manila
from .e2e_support import (
    APP_ID,
    APP_KEY,
    APP_SECRET,
    EchoClient,
    echo_config,
    echo_in_chromium,
    echo_in_node,
    event,
    free_port,
    pusherd_config,
    refused,
    serve,
    serve_page,
    subscribed,
)

SLIM_KEYS = {"id", "session_id", "action", "timestamp"}


@dataclass
class Stack:
    runtime: Runtime
    base: str
    ws_port: int
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    clients: list[EchoClient] = field(default_factory=list)

    def user(self, name: str, role: str = "employee") -> int:
        with self.runtime.unit(write=True) as ctx:
            user = User(
                employee_code=f"E2E-{len(self.ids) + 1:03d}",
                email=f"{name}@example.test",
                password_hash=hash_password(PASSWORD),
                first_name=name.title(),
                last_name="Tester",
                role=role,
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add(user)
            ctx.db.flush()
            self.ids[name] = user.id
        response = httpx.post(
            f"{self.base}/api/auth/login",
            json={"email": f"{name}@example.test", "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        self.tokens[name] = response.json()["token"]
        return self.ids[name]

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base}{path}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.tokens[who]}", "Accept": "application/json"},
            **kw,
        )

    def night_session(self) -> int:
        with self.runtime.unit(write=True) as ctx:
            schedule = Schedule(
                name="Night",
                time_in=time(23, 0),
                time_out=time(7, 0),
                grace_period_minutes=15,
                late_threshold_minutes=30,
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add(schedule)
            ctx.db.flush()
            schedule_id = schedule.id
        response = self.call(
            "POST",
            "/api/attendance-sessions",
            "boss",
            json={"schedule_id": schedule_id, "date": "2026-03-02"},
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def echo(self, who: str, subscriptions: list[dict[str, Any]]) -> EchoClient:
        client = echo_in_node(
            echo_config(
                self.ws_port, f"{self.base}/api/broadcasting/auth", self.tokens[who], subscriptions
            )
        )
        self.clients.append(client)
        return client


def sub(channel: str, *events: str) -> dict[str, Any]:
    return {"channel": channel, "private": channel.startswith("private-"), "events": list(events)}


@pytest.fixture
def stack_factory(database_url: str) -> Iterator[Any]:
    stacks: list[tuple[Stack, Any]] = []

    def make(pusherd_port: int, **config: Any) -> Stack:
        clock = Clock(manila(2026, 3, 2, 22, 30))
        runtime = build_runtime(
            database_url,
            clock,
            PusherConfig(
                app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=pusherd_port
            ),
            **config,
        )
        server = serve(runtime)
        base = server.__enter__()
        stack = Stack(runtime, base, pusherd_port)
        stacks.append((stack, server))
        return stack

    yield make
    for stack, server in stacks:
        for client in stack.clients:
            client.close()
        server.__exit__(None, None, None)
        stack.runtime.engine.dispose()


def test_check_in_reaches_echo_clients_on_the_right_channels(stack_factory: Any) -> None:
    with run_pusherd(pusherd_config()) as pusherd:
        stack = stack_factory(pusherd.port)
        stack.user("boss", "admin")
        ana = stack.user("ana")
        ben = stack.user("ben")
        session = stack.night_session()
        employee = stack.echo(
            "ana",
            [
                sub("attendance", "attendance.updated"),
                sub(f"private-user.{ana}", "attendance.updated"),
                sub("private-admin.dashboard", "dashboard.updated"),
                sub(f"private-user.{ben}", "attendance.updated"),
            ],
        )
        admin = stack.echo("boss", [sub("private-admin.dashboard", "dashboard.updated")])
        employee.wait_for(subscribed("attendance"))
        employee.wait_for(subscribed(f"private-user.{ana}"))
        assert employee.wait_for(refused("private-admin.dashboard"))["status"] == 403
        assert employee.wait_for(refused(f"private-user.{ben}"))["status"] == 403
        admin.wait_for(subscribed("private-admin.dashboard"))

        response = stack.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
        assert response.status_code == 200, response.text
        record_id = response.json()["record"]["id"]

        public = employee.wait_for(event("attendance.updated", "attendance", "confirmed"))
        assert set(public["data"]) == SLIM_KEYS and public["data"]["id"] == record_id
        private = employee.wait_for(event("attendance.updated", f"private-user.{ana}", "confirmed"))
        assert private["data"]["user"] == {"id": ana, "first_name": "Ana", "last_name": "Tester"}
        assert private["data"]["status"] == "present" and private["data"]["time_in"]
        dash = admin.wait_for(
            lambda m: (
                event("dashboard.updated", "private-admin.dashboard")(m)
                and m["data"]["stats"]["present_today"] == 1
            )
        )
        assert dash["data"]["stats"]["total_employees"] == 2
        assert not employee.events("dashboard.updated", "private-admin.dashboard")
        assert not employee.events("attendance.updated", f"private-user.{ben}")


def test_events_wait_in_the_outbox_while_pusherd_is_down(stack_factory: Any) -> None:
    port = free_port()
    config = pusherd_config(port)
    with run_pusherd(config, extra_args=("--port", str(port))) as first:
        assert first.port == port
        # a long backoff: the retry after the restart is released by retry_now() once the
        # client has resubscribed, so the test does not race pusher-js's reconnection
        stack = stack_factory(port, outbox_base_backoff=120.0, outbox_max_backoff=120.0)
        stack.user("boss", "admin")
        ana = stack.user("ana")
        session = stack.night_session()
        client = stack.echo(
            "ana",
            [
                sub(f"private-user.{ana}", "attendance.updated"),
                sub("attendance", "attendance.updated"),
            ],
        )
        client.wait_for(subscribed(f"private-user.{ana}"))
        client.wait_for(subscribed("attendance"))
        first.stop()

    checked_in = stack.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert checked_in.status_code == 200, checked_in.text
    record_id = checked_in.json()["record"]["id"]
    stack.runtime.clock.set(manila(2026, 3, 3, 7, 0))  # type: ignore[attr-defined]
    checked_out = stack.call("POST", f"/api/attendance-records/{record_id}/check-out", "ana")
    assert checked_out.status_code == 200, checked_out.text
    with stack.runtime.unit(write=False) as ctx:
        pending = ctx.db.scalars(
            select(OutboxEvent).where(OutboxEvent.state == "pending").order_by(OutboxEvent.id)
        ).all()
        assert pending[0].attempts >= 1 and pending[0].last_error
        assert {"confirmed", "checked_out"} <= {
            json.loads(r.payload).get("action") for r in pending
        }

    with run_pusherd(config, extra_args=("--port", str(port))) as second:
        assert second.port == port
        resubscribed = len([m for m in client.seen if subscribed(f"private-user.{ana}")(m)])
        client.wait_for(
            lambda m: (
                subscribed(f"private-user.{ana}")(m)
                and len([x for x in client.seen if subscribed(f"private-user.{ana}")(x)])
                > resubscribed
            ),
            60,  # pusher-js retries on its own schedule once the server is back
        )
        client.wait_for(
            lambda m: (
                subscribed("attendance")(m)
                and len([x for x in client.seen if subscribed("attendance")(x)]) > 1
            ),
            60,
        )
        stack.runtime.dispatcher.retry_now()
        client.wait_for(event("attendance.updated", f"private-user.{ana}", "checked_out"), 30)
        client.wait_for(event("attendance.updated", "attendance", "checked_out"), 30)
        # a later event proves nothing else is still on its way
        fixed = stack.call(
            "PUT",
            f"/api/attendance-records/{record_id}",
            "boss",
            json={"reason": "manual review", "status": "present"},
        )
        assert fixed.status_code == 200, fixed.text
        client.wait_for(event("attendance.updated", f"private-user.{ana}", "updated"), 30)
        client.wait_for(event("attendance.updated", "attendance", "updated"), 30)
        private = [
            m["data"]["action"] for m in client.events("attendance.updated", f"private-user.{ana}")
        ]
        public = [m["data"]["action"] for m in client.events("attendance.updated", "attendance")]
        assert private == ["confirmed", "checked_out", "updated"]
        assert public == ["confirmed", "checked_out", "updated"]
        with stack.runtime.unit(write=False) as ctx:
            rows = [
                r
                for r in ctx.db.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.event == "attendance.updated")
                    .order_by(OutboxEvent.id)
                ).all()
                if json.loads(r.payload)["action"] in ("confirmed", "checked_out")
            ]
            # rows before an already delivered one are marked sent (strict order)
            assert [r.state for r in rows] == ["sent"] * 4
            assert rows[0].attempts >= 2  # failed while pusherd was down, then delivered


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_check_in_reaches_echo_in_a_real_chromium(stack_factory: Any) -> None:
    with run_pusherd(pusherd_config()) as pusherd, serve_page() as origin:
        stack = stack_factory(pusherd.port)
        stack.user("boss", "admin")
        ana = stack.user("ana")
        session = stack.night_session()
        config = echo_config(
            pusherd.port,
            f"{stack.base}/api/broadcasting/auth",
            stack.tokens["ana"],
            [
                sub("attendance", "attendance.updated"),
                sub(f"private-user.{ana}", "attendance.updated"),
                sub("private-admin.dashboard", "dashboard.updated"),
            ],
        )
        browser = echo_in_chromium(f"{origin}/echo.html#" + urllib.parse.quote(json.dumps(config)))
        stack.clients.append(browser)
        browser.wait_for(subscribed(f"private-user.{ana}"), 60)
        browser.wait_for(subscribed("attendance"), 60)
        assert browser.wait_for(refused("private-admin.dashboard"), 60)["status"] == 403
        response = stack.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
        assert response.status_code == 200
        public = browser.wait_for(event("attendance.updated", "attendance", "confirmed"))
        private = browser.wait_for(event("attendance.updated", f"private-user.{ana}", "confirmed"))
        assert set(public["data"]) == SLIM_KEYS
        assert private["data"]["user"]["first_name"] == "Ana"


def test_a_burst_of_check_ins_all_succeed_and_all_arrive(stack_factory: Any) -> None:
    with run_pusherd(pusherd_config()) as pusherd:
        stack = stack_factory(pusherd.port)
        stack.user("boss", "admin")
        names = [f"staff{n}" for n in range(16)]
        for name in names:
            stack.user(name)
        session = stack.night_session()
        watcher = stack.echo(
            "boss",
            [
                sub("attendance", "attendance.updated"),
                sub("private-admin.dashboard", "dashboard.updated"),
            ],
        )
        watcher.wait_for(subscribed("attendance"))
        watcher.wait_for(subscribed("private-admin.dashboard"))
        results: dict[str, int] = {}

        def check_in(name: str) -> None:
            response = stack.call("POST", f"/api/attendance-records/confirm/{session}", name)
            results[name] = response.status_code

        threads = [threading.Thread(target=check_in, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == {name: 200 for name in names}
        for _ in names:
            watcher.wait_for(
                lambda m: (
                    event("attendance.updated", "attendance", "confirmed")(m)
                    and len(watcher.events("attendance.updated", "attendance")) >= len(names)
                )
            )
        received = [m["data"]["id"] for m in watcher.events("attendance.updated", "attendance")]
        with stack.runtime.unit(write=False) as ctx:
            rows = ctx.db.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.event == "attendance.updated")
                .order_by(OutboxEvent.id)
            ).all()
            committed = [json.loads(r.payload)["id"] for r in rows if r.channels == ["attendance"]]
        assert received == committed and len(set(received)) == len(names)
        # the dashboard is debounced: the final snapshot arrives, not one per check-in
        watcher.wait_for(
            lambda m: (
                event("dashboard.updated", "private-admin.dashboard")(m)
                and m["data"]["stats"]["present_today"] == len(names)
            )
        )
        snapshots = watcher.events("dashboard.updated", "private-admin.dashboard")
        assert len(snapshots) < len(names) // 2


def test_events_refused_by_pusherd_stay_pending_until_the_credentials_are_right(
    database_url: str,
) -> None:
    with run_pusherd(pusherd_config()) as pusherd:
        clock = Clock(manila(2026, 3, 2, 22, 30))

        def runtime_with(secret: str) -> Runtime:
            return build_runtime(
                database_url,
                clock,
                PusherConfig(app_id=APP_ID, key=APP_KEY, secret=secret, port=pusherd.port),
            )

        wrong = runtime_with("not-the-secret")
        with wrong.unit(write=True) as ctx:
            user = User(
                employee_code="E-1",
                email="e@example.test",
                password_hash="x",
                first_name="E",
                last_name="T",
                role="employee",
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            schedule = Schedule(
                name="N",
                time_in=time(23, 0),
                time_out=time(7, 0),
                late_threshold_minutes=30,
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add_all([user, schedule])
            ctx.db.flush()
            from attendance_api import domain

            session = domain.create_session(ctx, schedule, manila(2026, 3, 2, 12).date(), [])
            ctx.user = user
            domain.check_in(ctx, session.id, {})
        assert wrong.dispatcher.drain_once() is not None
        with wrong.unit(write=False) as ctx:
            head = ctx.db.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).first()
            assert head is not None and head.state == "pending" and head.attempts == 1
            assert head.last_error and "401" in head.last_error
        wrong.engine.dispose()
        right = runtime_with(APP_SECRET)
        right.dispatcher.retry_now()  # skip the backoff the failed attempt set
        assert right.dispatcher.drain_once() is None
        with right.unit(write=False) as ctx:
            states = set(ctx.db.scalars(select(OutboxEvent.state)).all())
        assert states <= {"sent", "superseded"} and "sent" in states
        right.engine.dispose()
