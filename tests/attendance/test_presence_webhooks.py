"""Who is online, from pusherd's webhooks: `/webhooks/pusher` verifies with the official SDK,
ignores duplicates by event id, keeps online state and last presence, and announces changes
through the outbox; `/broadcasting/auth` admits every user to `presence-online` as itself.
The last test runs the whole loop: Echo joins, pusherd posts, the admin's Echo hears it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import select

from attendance_api.models import OutboxEvent
from tests.support.pusherd_process import run_pusherd

from . import test_e2e
from .conftest import World
from .e2e_support import event, free_port, pusherd_config, subscribed
from .test_e2e import sub

stack_factory = test_e2e.stack_factory  # the end-to-end stack fixture, shared


def post_webhook(
    world: World,
    events: list[dict[str, Any]],
    *,
    secret: str | None = None,
    time_ms: int | None = None,
) -> Any:
    """POST a webhook signed as pusherd signs it (HMAC-SHA256 of the raw body)."""
    pusher = world.runtime.config.pusher
    assert pusher is not None
    body = json.dumps({"time_ms": time_ms or int(time.time() * 1000), "events": events}).encode()
    signature = hmac.new((secret or pusher.secret).encode(), body, hashlib.sha256).hexdigest()
    return world.client.post(
        "/webhooks/pusher",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Pusher-Key": pusher.key,
            "X-Pusher-Signature": signature,
        },
    )


def member(name: str, user_id: int, event_id: str) -> dict[str, Any]:
    return {"name": name, "channel": "presence-online", "user_id": str(user_id), "id": event_id}


def outbox(world: World, event_name: str) -> list[dict[str, Any]]:
    with world.runtime.unit(write=False) as ctx:
        rows = ctx.db.scalars(
            select(OutboxEvent).where(OutboxEvent.event == event_name).order_by(OutboxEvent.id)
        ).all()
        return [json.loads(row.payload) for row in rows]


def employee_row(world: World, user_id: int) -> dict[str, Any]:
    listing = world.call("GET", "/api/employees", "boss").json()
    return next(e for e in listing["data"] if e["id"] == user_id)


def test_member_added_and_removed_keep_online_state_and_announce_changes(world: World) -> None:
    ana = world.user("ana")
    world.user("boss", role="admin")
    world.login("boss")
    assert employee_row(world, ana)["online_now"] is False
    assert employee_row(world, ana)["last_presence_at"] is None

    assert post_webhook(world, [member("member_added", ana, "ev-1")]).status_code == 200
    row = employee_row(world, ana)
    assert row["online_now"] is True and row["last_presence_at"] is not None
    assert world.call("GET", "/api/reports/dashboard", "boss").json()["online_now"] == 1
    [announced] = [p for p in outbox(world, "employee.updated") if p["action"] == "presence"]
    assert (announced["id"], announced["online_now"]) == (ana, True)
    assert outbox(world, "dashboard.updated")[-1]["stats"]["online_now"] == 1

    # A retried copy of ev-1 after the removal changes nothing and announces nothing.
    assert post_webhook(world, [member("member_removed", ana, "ev-2")]).status_code == 200
    assert post_webhook(world, [member("member_added", ana, "ev-1")]).status_code == 200
    assert employee_row(world, ana)["online_now"] is False
    assert world.call("GET", "/api/reports/dashboard", "boss").json()["online_now"] == 0
    presence = [
        p["online_now"] for p in outbox(world, "employee.updated") if p["action"] == "presence"
    ]
    assert presence == [True, False]


def test_other_channels_other_events_and_unknown_users_change_nothing(world: World) -> None:
    ana = world.user("ana")
    world.user("boss", role="admin")
    world.login("boss")
    reply = post_webhook(
        world,
        [
            {"name": "member_added", "channel": "presence-other", "user_id": str(ana), "id": "a"},
            {"name": "channel_occupied", "channel": "presence-online", "id": "b"},
            member("member_added", 999_999, "c"),
            {"name": "member_added", "channel": "presence-online", "user_id": "x", "id": "d"},
            "not an event",
        ],
    )
    assert reply.status_code == 200
    assert employee_row(world, ana)["online_now"] is False
    assert [p for p in outbox(world, "employee.updated") if p["action"] == "presence"] == []


def test_a_webhook_the_sdk_rejects_is_refused(world: World) -> None:
    ana = world.user("ana")
    event_list = [member("member_added", ana, "x1")]
    assert post_webhook(world, event_list, secret="not-the-secret").status_code == 401
    stale = int(time.time() * 1000) - 10 * 60 * 1000  # the SDK allows 5 minutes
    assert post_webhook(world, event_list, time_ms=stale).status_code == 401
    unsigned = world.client.post("/webhooks/pusher", json={"time_ms": 1, "events": []})
    assert unsigned.status_code == 401
    world.user("boss", role="admin")
    world.login("boss")
    assert employee_row(world, ana)["online_now"] is False


def test_every_signed_in_user_joins_presence_online_as_itself(world: World) -> None:
    ana = world.user("ana")
    world.login("ana")
    reply = world.call(
        "POST",
        "/broadcasting/auth",
        "ana",
        data={"socket_id": "123.456", "channel_name": "presence-online"},
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    channel_data = json.loads(answer["channel_data"])
    assert channel_data == {"user_id": ana, "user_info": {"id": ana, "name": "Ana Tester"}}
    pusher = world.runtime.config.pusher
    assert pusher is not None
    expected = hmac.new(
        pusher.secret.encode(),
        f"123.456:presence-online:{answer['channel_data']}".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert answer["auth"] == f"{pusher.key}:{expected}"
    assert (
        world.call(
            "POST",
            "/broadcasting/auth",
            "ana",
            data={"socket_id": "123.456", "channel_name": "presence-elsewhere"},
        ).status_code
        == 403
    )


def test_an_echo_join_reaches_the_admin_through_pusherd_webhooks(stack_factory: Any) -> None:
    port = free_port()
    stack = stack_factory(port)
    config = (
        '[webhooks]\njournal = ""\ngrace = 0.5\n'
        + pusherd_config(port)
        + f'\n[[apps.webhooks]]\nurl = "{stack.base}/webhooks/pusher"\n'
        + 'event_types = ["member_added", "member_removed"]\n'
    )
    with run_pusherd(config, extra_args=("--port", str(port))):
        stack.user("boss", role="admin")
        ana = stack.user("ana")
        admin = stack.echo(
            "boss",
            [
                sub("private-admin.employees", "employee.updated"),
                sub("private-admin.dashboard", "dashboard.updated"),
            ],
        )
        admin.wait_for(subscribed("private-admin.employees"))
        admin.wait_for(subscribed("private-admin.dashboard"))
        employee = stack.echo(
            "ana", [{"channel": "presence-online", "presence": True, "events": []}]
        )
        employee.wait_for(subscribed("presence-online"))
        joined = admin.wait_for(event("employee.updated", "private-admin.employees", "presence"))
        assert joined["data"]["id"] == ana and joined["data"]["online_now"] is True
        dashboard = admin.wait_for(
            lambda m: (
                event("dashboard.updated", "private-admin.dashboard")(m)
                and m["data"]["stats"]["online_now"] == 1
            )
        )
        assert dashboard["data"]["stats"]["online_now"] == 1
        employee.close()  # the tab closes: member_removed after pusherd's grace
        left = admin.wait_for(
            lambda m: (
                event("employee.updated", "private-admin.employees", "presence")(m)
                and not m["data"]["online_now"]
            )
        )
        assert left["data"]["last_presence_at"] is not None
        listing = stack.call("GET", "/api/employees", "boss").json()
        assert next(e for e in listing["data"] if e["id"] == ana)["online_now"] is False
