"""The HTTP API against a real database (SQLite and PostgreSQL): flows, the fixes of
the original's defects (docs/attendance.md), the outbox contents and channel authorisation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import time, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from attendance_api import domain
from attendance_api.context import ApiError
from attendance_api.demo import seed_demo
from attendance_api.models import Base, Break, OutboxEvent, Schedule, User
from attendance_api.runtime import Config, Runtime

from .conftest import PASSWORD, World, manila


def night_session(world: World, grace: int | None = 15, date: str = "2026-03-02") -> int:
    world.user("boss", "admin")
    world.login("boss")
    schedule = world.schedule(time(23, 0), time(7, 0), grace)
    response = world.call(
        "POST", "/api/attendance-sessions", "boss", json={"schedule_id": schedule, "date": date}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def outbox(world: World) -> list[OutboxEvent]:
    with world.runtime.unit(write=False) as ctx:
        rows = list(ctx.db.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all())
        ctx.db.expunge_all()
        return rows


# ------------------------------------------------------------------ auth and tokens


def test_login_is_case_insensitive_and_returns_a_bearer_token(world: World) -> None:
    world.user("john")
    response = world.client.post(
        "/api/auth/login", json={"email": "John@Example.TEST", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert "|" in body["token"] and body["user"]["email"] == "john@example.test"
    assert body["user"]["employee_id"].startswith("QCV-")
    me = world.client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["user"]["id"] == world.ids["john"]


def test_tokens_are_stored_hashed(world: World) -> None:
    world.user("john")
    world.login("john")
    secret = world.tokens["john"].split("|", 1)[1]
    with world.runtime.unit(write=False) as ctx:
        stored = ctx.db.execute(text("SELECT secret_hash FROM api_tokens")).scalars().all()
    assert secret not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored


def test_wrong_password_is_a_422_on_email(world: World) -> None:
    world.user("john")
    response = world.client.post(
        "/api/auth/login", json={"email": "john@example.test", "password": "nope"}
    )
    assert response.status_code == 422 and "email" in response.json()["errors"]


def test_a_second_login_revokes_the_first_token(world: World) -> None:
    world.user("john")
    first = world.login("john")
    world.login("john")
    refused = world.client.get("/api/auth/me", headers=first)
    # the page holding the old token can tell its user why
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "SIGNED_IN_ELSEWHERE", refused.text
    assert "signed in somewhere else" in refused.json()["message"]


def test_logout_revokes_the_token(world: World) -> None:
    world.user("john")
    headers = world.login("john")
    assert world.client.post("/api/auth/logout", headers=headers).status_code == 200
    refused = world.client.get("/api/auth/me", headers=headers)
    assert refused.status_code == 401 and refused.json()["error_code"] == "SESSION_EXPIRED"
    # a token that was never issued learns nothing more
    forged = world.client.get("/api/auth/me", headers={"Authorization": "Bearer 1|nope"})
    assert forged.status_code == 401 and forged.json()["message"] == "Unauthenticated."
    assert "error_code" not in forged.json() or forged.json()["error_code"] is None


def test_a_deactivated_users_token_is_refused_at_once(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    world.user("john")
    john = world.login("john")
    toggled = world.call("PATCH", f"/api/employees/{world.ids['john']}/toggle-status", "boss")
    assert toggled.json()["status"] == "inactive"
    refused = world.client.get("/api/auth/me", headers=john)
    assert refused.status_code == 401 and refused.json()["error_code"] == "ACCOUNT_DEACTIVATED"
    assert refused.json()["message"] == "Your account has been deactivated."


def test_changing_the_password_revokes_the_other_tokens(world: World) -> None:
    world.user("john")
    world.login("john")
    other = world.auth("john")
    # a second device: issue another token directly (login would revoke the first)
    response = world.client.post("/api/auth/refresh", headers=other)
    current = {"Authorization": f"Bearer {response.json()['token']}"}
    with world.runtime.unit(write=True) as ctx:  # re-enable the old token to simulate 2 devices
        ctx.db.execute(text("UPDATE api_tokens SET revoked_at = NULL"))
    assert world.client.get("/api/auth/me", headers=other).status_code == 200
    changed = world.client.post(
        "/api/auth/change-password",
        headers=current,
        json={
            "current_password": PASSWORD,
            "password": "New-pass-22!",
            "password_confirmation": "New-pass-22!",
        },
    )
    assert changed.status_code == 200, changed.text
    assert world.client.get("/api/auth/me", headers=other).status_code == 401
    assert world.client.get("/api/auth/me", headers=current).status_code == 200


def test_ten_employees_behind_one_ip_can_all_log_in(world: World) -> None:
    for n in range(10):
        world.user(f"staff{n}")
    for n in range(10):
        world.login(f"staff{n}")
    assert len(world.tokens) == 10


def test_an_account_is_throttled_after_repeated_failures_but_others_are_not(world: World) -> None:
    world.user("john")
    world.user("mary")
    for _ in range(5):
        world.client.post(
            "/api/auth/login", json={"email": "john@example.test", "password": "wrong"}
        )
    blocked = world.client.post(
        "/api/auth/login", json={"email": "john@example.test", "password": PASSWORD}
    )
    assert blocked.status_code == 429 and blocked.json()["error_code"] == "TOO_MANY_ATTEMPTS"
    world.login("mary")


def test_an_employee_cannot_claim_another_login_email(world: World) -> None:
    world.user("john")
    headers = world.login("john")
    response = world.client.post(
        "/api/auth/update-profile",
        headers=headers,
        json={"first_name": "John", "last_name": "T", "email": "admin@example.test"},
    )
    assert response.status_code == 403
    with world.runtime.unit(write=False) as ctx:
        assert ctx.db.get(User, world.ids["john"]).email == "john@example.test"


def test_no_boot_time_promotion_by_email_or_code(world: World, database_url: str) -> None:
    world.user("boss", "admin")
    with world.runtime.unit(write=True) as ctx:  # the bootstrap admin code moves away
        ctx.db.get(User, world.ids["boss"]).employee_code = "ADM-1"
    sneaky = world.user("sneaky", employee_code="SYSADM-001")
    with world.runtime.unit(write=True) as ctx:
        ctx.db.get(User, sneaky).email = "root@example.test"
    config = Config(
        database_url=database_url,
        admin_email="root@example.test",
        admin_password="Whatever-1!",
        tick_seconds=0,
    )
    restarted = Runtime(config, world.clock)
    restarted.prepare()
    with restarted.unit(write=False) as ctx:
        assert ctx.db.get(User, sneaky).role == "employee"
        assert ctx.db.scalar(text("SELECT count(*) FROM users WHERE role = 'admin'")) == 1
    restarted.engine.dispose()


def test_the_first_start_creates_the_admin_from_the_environment(database_url: str) -> None:
    from .conftest import Clock

    config = Config(
        database_url=database_url,
        admin_email="Owner@Example.test",
        admin_password="Owner-pass-1!",
        tick_seconds=0,
    )
    runtime = Runtime(config, Clock(manila(2026, 3, 2, 9)))
    runtime.prepare()
    runtime.prepare()  # a restart does not create a second one
    with runtime.unit(write=False) as ctx:
        emails = ctx.db.scalars(select(User.email).where(User.role == "admin")).all()
    assert emails == ["owner@example.test"]
    runtime.engine.dispose()


# ------------------------------------------------------------------ check-in and check-out


def test_check_in_late_counts_minutes_from_the_shift_start(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 16))
    response = world.call(
        "POST",
        f"/api/attendance-records/confirm/{session}",
        "ana",
        json={"device_type": "desktop", "browser": "Firefox"},
    )
    assert response.status_code == 200, response.text
    record = response.json()["record"]
    assert (record["status"], record["minutes_late"]) == ("late", 16)
    assert record["browser"] == "Firefox" and record["attendance_date"] == "2026-03-02"
    assert (
        record["time_in"].endswith("Z") and record["session"]["schedule"]["time_in"] == "23:00:00"
    )


def test_a_duplicate_check_in_is_refused(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    assert (
        world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").status_code == 200
    )
    again = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert again.status_code == 400 and again.json()["error_code"] == "CURRENTLY_CHECKED_IN"


def test_concurrent_check_ins_create_one_record(world: World) -> None:
    session = night_session(world)
    uid = world.user("ana")
    results: list[Any] = []

    def attempt() -> None:
        try:
            with world.runtime.unit(write=True) as ctx:
                ctx.user = ctx.db.get(User, uid)
                domain.check_in(ctx, session, {})
            results.append("ok")
        except ApiError as err:
            results.append(err.error_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 1
    with world.runtime.unit(write=False) as ctx:
        assert ctx.db.scalar(text("SELECT count(*) FROM attendance_records")) == 1


def test_admins_do_not_use_self_service_routes(world: World) -> None:
    session = night_session(world)
    assert (
        world.call("POST", f"/api/attendance-records/confirm/{session}", "boss").status_code == 403
    )
    assert world.call("POST", "/api/break/start", "boss").status_code == 403


def test_check_in_outside_the_window_is_refused(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 17, 59))
    early = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert early.status_code == 403 and early.json()["error_code"] == "TOO_EARLY"
    world.clock.set(manila(2026, 3, 3, 1, 31))
    late = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert late.status_code == 403 and late.json()["error_code"] == "TOO_LATE"


def test_the_dashboard_flag_agrees_with_check_in_for_a_day_shift(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    schedule = world.schedule(time(8, 0), time(17, 0))
    world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={"schedule_id": schedule, "date": "2026-03-03"},
    )
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 3, 7, 55))
    dash = world.call("GET", "/api/reports/employee-dashboard", "ana").json()
    assert dash["can_confirm"] is True and dash["active_session"]["date"] == "2026-03-03"
    # before checking in, the hint says what checking in now means, not "Checked in ..."
    assert dash["check_in_message"] == "Check-in is open: you are on time."
    world.clock.set(manila(2026, 3, 3, 8, 20))
    dash = world.call("GET", "/api/reports/employee-dashboard", "ana").json()
    assert dash["check_in_message"] == (
        "Check-in is open: checking in now counts as late (20 min)."
    )
    world.clock.set(manila(2026, 3, 3, 7, 55))
    dash = world.call("GET", "/api/reports/employee-dashboard", "ana").json()
    session = dash["active_session"]["id"]
    confirm = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert confirm.status_code == 200 and confirm.json()["record"]["status"] == "present"


def test_locking_marks_absentees_and_refuses_check_in_and_unlock_keeps_them(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.user("ben")
    world.login("ana")
    world.login("ben")
    world.clock.set(manila(2026, 3, 2, 22, 30))
    assert (
        world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").status_code == 200
    )
    locked = world.call("PATCH", f"/api/attendance-sessions/{session}/lock", "boss", json={})
    assert locked.status_code == 200 and locked.json()["absent_marked"] == 1
    absent = [
        json.loads(e.payload)
        for e in outbox(world)
        if e.channels == [f"private-user.{world.ids['ben']}"]
        and json.loads(e.payload).get("action") == "absent_marked"
    ]
    assert len(absent) == 1
    assert absent[0]["status"] == "absent" and absent[0]["user_id"] == world.ids["ben"]
    assert (absent[0]["time_in"], absent[0]["time_out"], absent[0]["minutes_late"]) == (
        None,
        None,
        0,
    )
    assert (absent[0]["break_start"], absent[0]["break_end"]) == (None, None)
    refused = world.call("POST", f"/api/attendance-records/confirm/{session}", "ben")
    assert refused.status_code == 409 and refused.json()["error_code"] == "SESSION_LOCKED"
    assert (
        world.call("PATCH", f"/api/attendance-sessions/{session}/lock", "boss").status_code == 422
    )
    unlocked = world.call("PATCH", f"/api/attendance-sessions/{session}/unlock", "boss")
    assert unlocked.status_code == 200 and unlocked.json()["session"]["status"] == "pending"
    detail = world.call("GET", f"/api/attendance-sessions/{session}", "boss").json()
    statuses = {r["user_id"]: r["status"] for r in detail["records"]}
    assert statuses[world.ids["ben"]] == "absent" and statuses[world.ids["ana"]] == "present"


def test_session_detail_has_virtual_rows_and_duplicates_are_conflicts(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    detail = world.call("GET", f"/api/attendance-sessions/{session}", "boss").json()
    assert detail["records"][0]["id"] == f"virtual_{world.ids['ana']}"
    schedule = world.schedule(time(8, 0), time(12, 0))
    first = world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={"schedule_id": schedule, "date": "2026-03-04", "employee_ids": [world.ids["ana"]]},
    )
    assert first.status_code == 201
    other = world.schedule(time(13, 0), time(17, 0))
    clash = world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={"schedule_id": other, "date": "2026-03-04", "employee_ids": [world.ids["ana"]]},
    )
    assert clash.status_code == 409 and clash.json()["conflicts"] == [world.ids["ana"]]


def test_check_out_early_is_left_early(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 0))
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()[
        "record"
    ]
    world.clock.set(manila(2026, 3, 3, 6, 30))
    out = world.call("POST", f"/api/attendance-records/{record['id']}/check-out", "ana")
    assert out.status_code == 200
    assert (out.json()["record"]["status"], out.json()["record"]["left_early"]) == (
        "present",
        True,
    )
    again = world.call("POST", f"/api/attendance-records/{record['id']}/check-out", "ana")
    assert again.json()["error_code"] == "ALREADY_CHECKED_OUT"


def test_a_late_arrival_who_leaves_early_still_counts_as_late(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 40))  # after the 15-minute grace
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()[
        "record"
    ]
    assert record["status"] == "late" and record["minutes_late"] == 40
    world.clock.set(manila(2026, 3, 3, 5, 0))
    before = world.call("GET", "/api/reports/dashboard", "boss").json()
    assert (before["late_today"], before["left_early_today"]) == (1, 0)
    out = world.call("POST", f"/api/attendance-records/{record['id']}/check-out", "ana")
    assert out.status_code == 200, out.text
    checked_out = out.json()["record"]
    assert (checked_out["status"], checked_out["is_late"], checked_out["left_early"]) == (
        "late",
        True,
        True,
    )
    assert checked_out["minutes_late"] == 40
    after = world.call("GET", "/api/reports/dashboard", "boss").json()
    assert (after["late_today"], after["left_early_today"], after["present_today"]) == (1, 1, 0)
    daily = world.call("GET", "/api/reports/daily/2026-03-02", "boss").json()
    assert daily["summary"]["late"] == 1
    row = daily["records"]["data"][0]
    assert (row["status"], row["left_early"]) == ("late", True)
    export = world.call(
        "GET",
        "/api/reports/export/excel?start_date=2026-03-02&end_date=2026-03-02",
        "boss",
    )
    header, line = export.text.strip().splitlines()[:2]
    columns = dict(zip(header.split(","), line.split(","), strict=True))
    assert (columns["status"], columns["left_early"]) == ("late", "yes")


def test_an_admin_left_early_status_sets_the_flag_and_keeps_lateness(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 40))
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()[
        "record"
    ]
    fixed = world.call(
        "PUT",
        f"/api/attendance-records/{record['id']}",
        "boss",
        json={"reason": "left at 5 for a doctor", "status": "left_early"},
    )
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["record"]["status"], fixed.json()["record"]["left_early"]) == (
        "late",
        True,
    )


# ------------------------------------------------------------------ breaks


def test_break_flow_one_open_break_and_the_allowance(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 0))
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    start = world.call("POST", "/api/break/start", "ana", json={"type": "Meal"})
    assert start.status_code == 200 and start.json()["break_remaining_seconds"] == 5400
    second = world.call("POST", "/api/break/start", "ana")
    assert second.json()["error_code"] == "ALREADY_ON_BREAK"
    world.clock.set(manila(2026, 3, 3, 0, 0))
    end = world.call("POST", "/api/break/end", "ana")
    assert end.status_code == 200 and end.json()["duration_minutes"] == 60
    status = world.call("GET", "/api/break/status", "ana").json()
    assert status["break_remaining_seconds"] == 30 * 60 and status["can_start_break"] is True
    # the next break is capped at the 30 minutes left and auto-ended by the tick
    world.call("POST", "/api/break/start", "ana")
    world.clock.set(manila(2026, 3, 3, 1, 0))
    counts = world.runtime.run_tick()
    assert counts["breaks"] == 1
    assert world.runtime.run_tick()["breaks"] == 0  # idempotent
    status = world.call("GET", "/api/break/status", "ana").json()
    assert (
        status["break_remaining_seconds"] == 0 and status["break_reason"] == "break_limit_reached"
    )
    limit = world.call("POST", "/api/break/start", "ana")
    assert limit.json()["error_code"] == "BREAK_LIMIT_REACHED"


def test_concurrent_break_starts_leave_one_open_break(world: World) -> None:
    session = night_session(world)
    uid = world.user("ana")
    world.clock.set(manila(2026, 3, 2, 23, 0))
    with world.runtime.unit(write=True) as ctx:
        ctx.user = ctx.db.get(User, uid)
        domain.check_in(ctx, session, {})
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            with world.runtime.unit(write=True) as ctx:
                ctx.user = ctx.db.get(User, uid)
                domain.start_break(ctx, "Regular")
            outcomes.append("ok")
        except ApiError as err:
            outcomes.append(str(err.error_code))
        except Exception as err:  # a serialisation failure is also a refusal
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 1
    with world.runtime.unit(write=False) as ctx:
        assert len(ctx.db.scalars(select(Break).where(Break.ended_at.is_(None))).all()) == 1


def test_another_employees_break_state_is_forbidden(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.user("ben")
    world.login("ana")
    world.login("ben")
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()[
        "record"
    ]
    assert (
        world.call("GET", f"/api/attendance-records/{record['id']}/break/active", "ben").status_code
        == 403
    )
    assert world.call(
        "GET", f"/api/attendance-records/{record['id']}/break/active", "ana"
    ).json() == {"active": False, "start_time": None}


# ------------------------------------------------------------------ tick


def test_the_tick_opens_completes_checks_out_and_marks_absent_idempotently(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    world.user("ana")
    ben = world.user("ben")
    schedule = world.schedule(time(23, 0), time(7, 0))
    created = world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={"schedule_id": schedule, "date": "2026-03-02", "employee_ids": [ben]},
    )
    session = created.json()["id"]
    world.login("ana")
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    world.clock.set(manila(2026, 3, 3, 1, 0))
    first = world.runtime.run_tick()
    assert first["sessions"] == 1 and first["absent"] == 1
    assert world.runtime.run_tick() == {k: 0 for k in first}
    world.clock.set(manila(2026, 3, 3, 8, 0))
    later = world.runtime.run_tick()
    assert later["checkouts"] == 1 and later["sessions"] == 1
    records = world.call("GET", "/api/attendance-records", "boss").json()["data"]
    by_user = {r["user_id"]: r for r in records}
    assert by_user[ben]["status"] == "absent"
    assert by_user[world.ids["ana"]]["time_out"] == "2026-03-02T23:00:00.000000Z"
    actions = [
        json.loads(e.payload)["action"] for e in outbox(world) if e.event == "session.updated"
    ]
    assert actions == ["created", "opened", "completed"]


def test_a_get_changes_nothing(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    world.call("POST", "/api/break/start", "ana")
    world.clock.set(manila(2026, 3, 3, 9, 0))  # everything is overdue: break, session, checkout

    def snapshot() -> dict[str, Any]:
        with world.runtime.unit(write=False) as ctx:
            return {
                t.name: sorted(map(repr, ctx.db.execute(t.select()).all()))
                for t in Base.metadata.sorted_tables
            }

    before = snapshot()
    for who, path in [
        ("ana", "/api/break/status"),
        ("ana", "/api/reports/employee-dashboard"),
        ("ana", "/api/attendance-sessions/today"),
        ("ana", "/api/break/history"),
        ("ana", "/api/attendance-records/my-records"),
        ("boss", "/api/reports/dashboard"),
        ("boss", "/api/attendance-sessions"),
        ("boss", f"/api/attendance-sessions/{session}"),
        ("boss", "/api/reports/daily/2026-03-02"),
        ("boss", "/api/audit-logs"),
        ("boss", "/api/employees"),
        ("ana", "/api/settings"),
    ]:
        assert world.call("GET", path, who).status_code == 200, path
    assert snapshot() == before


# ------------------------------------------------------------------ settings, audit


def test_unknown_setting_keys_are_refused_and_settings_survive_restarts(
    world: World, database_url: str
) -> None:
    world.user("boss", "admin")
    world.login("boss")
    bad = world.call("POST", "/api/settings", "boss", json={"prevent_duplicates": "1"})
    assert bad.status_code == 422 and "prevent_duplicates" in bad.json()["errors"]
    for key, value in (("prevent_duplicate", "0"), ("allow_multi_checkin", True)):
        refused = world.call("POST", "/api/settings", "boss", json={key: value})
        assert refused.status_code == 422 and "cannot be changed" in refused.json()["message"]
    typed = world.call("POST", "/api/settings", "boss", json={"grace_period": "abc"})
    assert typed.status_code == 422
    ok = world.call(
        "POST", "/api/settings", "boss", json={"grace_period": "5", "retention_policy": "3years"}
    )
    assert ok.status_code == 200 and ok.json()["count"] == 2
    restarted = Runtime(Config(database_url=database_url, tick_seconds=0), world.clock)
    restarted.prepare()
    restarted.engine.dispose()
    public = world.client.get("/api/settings").json()
    assert public["grace_period"] == "5" and public["retention_policy"] == "3years"
    assert public["allow_multi_checkin"] == "0"


def test_there_is_no_restore_clear_or_audit_delete_api(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    for method, path in [
        ("POST", "/api/settings/restore"),
        ("POST", "/api/settings/clear-logs"),
        ("POST", "/api/settings/clear-data"),
        ("DELETE", "/api/audit-logs/1"),
        ("GET", "/api/reports/fix-hours-cleanup"),
    ]:
        assert world.call(method, path, "boss").status_code in (404, 405), path


def test_the_audit_chain_verifies_after_concurrent_writes(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")

    def write(n: int) -> None:
        with world.runtime.unit(write=True) as ctx:
            ctx.audit("update_settings", f"concurrent {n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    result = world.call("GET", "/api/audit-logs/verify-integrity", "boss").json()
    assert result["chain_valid"] is True and result["logs_checked"] >= 13


def test_reports_and_csv_export(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    daily = world.call("GET", "/api/reports/daily/2026-03-02", "boss").json()
    assert daily["summary"]["present"] == 1 and daily["records"]["total"] == 1
    dash = world.call("GET", "/api/reports/dashboard", "boss").json()
    assert dash["present_today"] == 1 and dash["attendance_rate"] == 100.0
    export = world.call(
        "GET", "/api/reports/export/excel?start_date=2026-03-01&end_date=2026-03-31", "boss"
    )
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    lines = export.text.strip().splitlines()
    assert lines[0].startswith("employee_id,name,work_date") and "2026-03-02" in lines[1]
    inverted = world.call(
        "GET", "/api/reports/export/excel?start_date=2026-12-31&end_date=2026-01-01", "boss"
    )
    assert inverted.status_code == 422, inverted.text
    assert inverted.json()["errors"]["end_date"] == [
        "The end date must be on or after the start date."
    ]
    # the sessions list counts check-ins over everyone expected (ana and boss's employees)
    listed = world.call("GET", "/api/attendance-sessions", "boss").json()["data"]
    row = next(r for r in listed if r["id"] == session)
    assert (row["confirmed_count"], row["expected_count"]) == (1, 1)
    world.user("ben")
    listed = world.call("GET", "/api/attendance-sessions", "boss").json()["data"]
    row = next(r for r in listed if r["id"] == session)
    assert (row["confirmed_count"], row["total_employees_count"], row["expected_count"]) == (
        1,
        1,
        2,
    )
    mine = world.call("GET", "/api/reports/personal/export", "ana")
    assert mine.headers["content-type"].startswith("text/csv") and len(mine.text.splitlines()) == 2
    found = world.call("GET", "/api/attendance-records?search=ANA&status=present", "boss").json()
    assert found["total"] == 1 and found["data"][0]["user"]["first_name"] == "Ana"
    assert world.call("GET", "/api/attendance-records?search=nobody", "boss").json()["total"] == 0
    capped = world.call("GET", "/api/employees?per_page=100000", "boss").json()
    assert capped["per_page"] == 200


# ------------------------------------------------------------------ realtime: outbox, auth


def test_check_in_writes_full_private_and_slim_public_events(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    before = max(e.id for e in outbox(world))
    response = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    assert response.status_code == 200  # pusherd is unreachable: the request still succeeds
    events = [(e.event, e.channels, json.loads(e.payload)) for e in outbox(world) if e.id > before]
    (_, private_ch, full), (_, public_ch, slim), (_, dash_ch, dash) = events
    uid = world.ids["ana"]
    assert private_ch == [f"private-user.{uid}"] and full["user"]["first_name"] == "Ana"
    assert full["action"] == "confirmed" and full["time_in"] is not None
    assert public_ch == ["attendance"] and set(slim) == {"id", "session_id", "action", "timestamp"}
    assert dash_ch == ["private-admin.dashboard"] and dash["stats"]["present_today"] == 1
    # one computation: the event carries exactly what the endpoint answers
    assert dash["stats"] == world.call("GET", "/api/reports/dashboard", "boss").json()
    assert all(len(e.payload.encode()) < 10_000 for e in outbox(world))


def test_undeliverable_events_stay_pending_in_order_with_backoff(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    delay = world.runtime.dispatcher.drain_once()
    assert delay is not None and delay > 0
    rows = outbox(world)
    assert [r.state for r in rows] == ["pending"] * len(rows)
    assert rows[0].attempts == 1 and rows[0].last_error and all(r.attempts == 0 for r in rows[1:])
    assert [r.id for r in rows] == sorted(r.id for r in rows)


def sign(secret: str, socket_id: str, channel: str) -> str:
    return hmac.new(secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256).hexdigest()


def test_broadcasting_auth_like_laravel(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    uid = world.user("ana")
    world.login("ana")
    secret = world.runtime.config.pusher.secret  # type: ignore[union-attr]
    for path in ("/broadcasting/auth", "/api/broadcasting/auth"):
        own = world.call(
            "POST",
            path,
            "ana",
            data={"socket_id": "123.456", "channel_name": f"private-user.{uid}"},
        )
        assert own.status_code == 200
        assert own.json() == {"auth": "test-key:" + sign(secret, "123.456", f"private-user.{uid}")}
        as_json = world.call(
            "POST",
            path,
            "ana",
            json={"socket_id": "123.456", "channel_name": f"private-user.{uid}"},
        )
        assert as_json.json() == own.json()
    for channel in (
        f"private-user.{world.ids['boss']}",
        "private-admin.dashboard",
        f"private-user.{uid}abc",
        "private-encrypted-user.1",
        "presence-x",
    ):
        refused = world.call(
            "POST",
            "/api/broadcasting/auth",
            "ana",
            data={"socket_id": "123.456", "channel_name": channel},
        )
        assert refused.status_code == 403, channel
    admin = world.call(
        "POST",
        "/api/broadcasting/auth",
        "boss",
        data={"socket_id": "1.2", "channel_name": "private-admin.employees"},
    )
    assert admin.status_code == 200
    anonymous = world.client.post(
        "/api/broadcasting/auth", data={"socket_id": "1.2", "channel_name": f"private-user.{uid}"}
    )
    assert anonymous.status_code == 401


def test_employee_changes_are_announced_to_admins(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    created = world.call(
        "POST",
        "/api/employees",
        "boss",
        json={
            "first_name": "Dan",
            "last_name": "Cruz",
            "email": "dan@example.test",
            "password": "Dan-pass-123!",
            "password_confirmation": "Dan-pass-123!",
            "position": "VA",
        },
    )
    assert created.status_code == 201 and created.json()["employee_id"] == "QCV-001"
    dan = created.json()["id"]
    world.call("PATCH", f"/api/employees/{dan}/toggle-status", "boss")
    rows = [e for e in outbox(world) if e.event == "employee.updated"]
    events = [json.loads(e.payload) for e in rows]
    assert [(e["action"], e["is_active"]) for e in events] == [
        ("created", True),
        ("deactivated", False),
    ]
    # ... and to the employee's own channel, so a page signed in as them can end at once
    assert all(e.channels == ["private-admin.employees", f"private-user.{dan}"] for e in rows)


def test_late_check_in_notifies_admins(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 40))
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    notes = world.call("GET", "/api/notifications", "boss").json()
    assert notes[0]["type"] == "late_arrival" and notes[0]["data"]["user_id"] == world.ids["ana"]
    created = [e for e in outbox(world) if e.event == "notification.created"]
    assert created[0].channels == [f"private-user.{world.ids['boss']}"]
    read = world.call("PATCH", f"/api/notifications/{notes[0]['id']}/read", "boss")
    assert read.status_code == 200
    assert world.call("GET", "/api/notifications", "boss").json()[0]["read_at"] is not None


# ------------------------------------------------------------------ more rules end to end


def test_sessions_are_auto_created_only_when_the_setting_is_on(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    world.schedule(time(23, 0), time(7, 0))
    world.clock.set(manila(2026, 3, 2, 19, 0))  # inside the check-in window of the 2nd
    assert world.runtime.run_tick()["created"] == 0
    assert world.call("GET", "/api/attendance-sessions", "boss").json()["total"] == 0
    world.call("POST", "/api/settings", "boss", json={"auto_create_sessions": True})
    assert world.runtime.run_tick()["created"] == 1
    assert world.runtime.run_tick()["created"] == 0
    created = [json.loads(e.payload) for e in outbox(world) if e.event == "session.updated"]
    assert [(e["action"], e["date"]) for e in created] == [("created", "2026-03-02")]


def test_overtime_is_recorded_floored_and_decided_by_an_admin(world: World) -> None:
    session = night_session(world)
    world.call(
        "POST",
        "/api/settings",
        "boss",
        json={"allow_overtime": "1", "ot_rounding": "30", "min_overtime_minutes": 30},
    )
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 0))
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()
    world.clock.set(manila(2026, 3, 3, 8, 14))
    out = world.call("POST", f"/api/attendance-records/{record['record']['id']}/check-out", "ana")
    body = out.json()["record"]
    assert (body["overtime_minutes"], body["overtime_status"]) == (60, "pending")
    assert body["status"] == "present"
    refused = world.call(
        "PATCH",
        f"/api/attendance-records/{body['id']}/overtime",
        "ana",
        json={"decision": "approved"},
    )
    assert refused.status_code == 403
    decided = world.call(
        "PATCH",
        f"/api/attendance-records/{body['id']}/overtime",
        "boss",
        json={"decision": "approved"},
    )
    assert decided.json()["record"]["overtime_status"] == "approved"


def test_a_weekend_session_is_optional_and_locking_it_marks_nobody_absent(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    schedule = world.schedule(time(9, 0), time(17, 0))
    ana = world.user("ana")
    world.user("ben")
    created = world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={"schedule_id": schedule, "date": "2026-03-07", "employee_ids": [ana]},
    ).json()
    assert created["attendance_required"] is False and created["session_type"] == "Weekend"
    detail = world.call("GET", f"/api/attendance-sessions/{created['id']}", "boss").json()
    assert {r["status"] for r in detail["records"]} == {"optional"}
    world.login("ben")
    world.clock.set(manila(2026, 3, 7, 8, 55))
    refused = world.call("POST", f"/api/attendance-records/confirm/{created['id']}", "ben")
    assert refused.status_code == 403 and refused.json()["error_code"] == "NOT_ASSIGNED"
    locked = world.call("PATCH", f"/api/attendance-sessions/{created['id']}/lock", "boss")
    assert locked.json()["absent_marked"] == 0
    with world.runtime.unit(write=False) as ctx:
        assert ctx.db.scalar(text("SELECT count(*) FROM attendance_records")) == 0


def test_check_out_ends_an_open_break(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 0))
    record = world.call("POST", f"/api/attendance-records/confirm/{session}", "ana").json()
    world.call("POST", "/api/break/start", "ana")
    world.clock.set(manila(2026, 3, 3, 0, 10))
    out = world.call("POST", f"/api/attendance-records/{record['record']['id']}/check-out", "ana")
    body = out.json()["record"]
    assert body["is_on_break"] is False and body["breaks"][0]["end_reason"] == "checkout"
    assert body["hours_worked"] == 0.0  # 70 minutes in, 70 minutes on break
    actions = [json.loads(e.payload)["action"] for e in outbox(world) if e.event == "break.updated"]
    assert actions == ["started", "started", "ended_at_checkout", "ended_at_checkout"]


def test_admin_record_edits_respect_the_break_allowance_and_are_audited(world: World) -> None:
    session = night_session(world)
    ana = world.user("ana")
    too_long = world.call(
        "POST",
        "/api/attendance-records",
        "boss",
        json={
            "user_id": ana,
            "session_id": session,
            "status": "present",
            "reason": "forgot to clock in",
            "time_in": "2026-03-02T23:00",
            "time_out": "2026-03-03T07:00",
            "break_start": "2026-03-03T01:00",
            "break_end": "2026-03-03T03:00",
        },
    )
    assert too_long.status_code == 400 and too_long.json()["error_code"] == "BREAK_LIMIT_EXCEEDED"
    created = world.call(
        "POST",
        "/api/attendance-records",
        "boss",
        json={
            "user_id": ana,
            "session_id": session,
            "status": "present",
            "reason": "forgot to clock in",
            "time_in": "2026-03-02T23:00",
            "time_out": "2026-03-03T07:00",
            "break_start": "2026-03-03T01:00",
            "break_end": "2026-03-03T02:00",
        },
    )
    assert created.status_code == 201, created.text
    record = created.json()["record"]
    assert record["time_in"] == "2026-03-02T15:00:00.000000Z"  # naive input read in Manila time
    assert record["hours_worked"] == 7.0 and record["breaks"][0]["break_type"] == "Manual"
    duplicate = world.call(
        "POST",
        "/api/attendance-records",
        "boss",
        json={"user_id": ana, "session_id": session, "status": "absent", "reason": "again!"},
    )
    assert duplicate.status_code == 409
    logs = world.call("GET", "/api/audit-logs?action=create_attendance", "boss").json()
    assert logs["total"] == 1 and "forgot to clock in" in logs["data"][0]["description"]


def test_monthly_report_counts_late_as_attended(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 2, 23, 30))
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    report = world.call("GET", "/api/reports/monthly/2026/3", "boss").json()
    assert report["working_days"] == 22
    (row,) = report["summary"]
    assert (row["present"], row["late"], row["attendance_rate"]) == (1, 1, 5)
    personal = world.call("GET", "/api/reports/personal", "ana").json()
    assert personal["stats"]["attendance_rate"] == 100.0


def test_the_logo_must_be_a_real_image(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    refused = world.call(
        "POST", "/api/settings/logo", "boss", files={"logo": ("logo.png", svg, "image/png")}
    )
    assert refused.status_code == 422 and "logo" in refused.json()["errors"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    stored = world.call(
        "POST", "/api/settings/logo", "boss", files={"logo": ("logo.png", png, "image/png")}
    )
    assert stored.status_code == 200, stored.text
    url = stored.json()["url"]
    assert world.client.get("/api/settings").json()["system_logo"] == url
    served = world.client.get(url)
    assert served.content == png and served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"


def test_admin_tour_of_employees_schedules_sessions_records_and_breaks(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    payload = {
        "employee_id": "QCV-010",
        "first_name": "Eve",
        "last_name": "Ramos",
        "email": "Eve@Example.test",
        "password": "Eve-pass-123!",
        "password_confirmation": "Eve-pass-123!",
        "position": "VA",
    }
    eve = world.call("POST", "/api/employees", "boss", json=payload).json()
    assert eve["email"] == "eve@example.test"
    taken = world.call("POST", "/api/employees", "boss", json=payload)
    assert taken.status_code == 422
    assert world.call("GET", "/api/employees/next-id", "boss").json() == {
        "next_employee_id": "QCV-011"
    }
    updated = world.call(
        "PUT", f"/api/employees/{eve['id']}", "boss", json={"department": "Ops"}
    ).json()
    assert updated["department"] == "Ops"
    assert world.call("GET", "/api/employees/by-employee-id/qcv-010", "boss").status_code == 200
    listing = world.call("GET", "/api/employees?search=ramos", "boss").json()
    assert listing["total"] == 1 and listing["summary"]["active"] == 1
    assert world.call("DELETE", f"/api/employees/{eve['id']}", "boss").status_code == 200
    again = world.call("POST", "/api/employees", "boss", json=payload)  # code and email freed
    assert again.status_code == 201, again.text

    schedule = world.call(
        "POST",
        "/api/schedules",
        "boss",
        json={"name": "Early", "time_in": "06:00", "time_out": "14:00", "break_time": "10:00"},
    ).json()
    assert schedule["time_in"] == "06:00:00" and schedule["is_overnight"] is False
    assert (
        world.call("PATCH", f"/api/schedules/{schedule['id']}/toggle-status", "boss").json()[
            "status"
        ]
        == "inactive"
    )
    bad = world.call("POST", "/api/schedules", "boss", json={"name": "X", "time_in": "25:00"})
    assert bad.status_code == 422 and "time_in" in bad.json()["errors"]

    session = world.call(
        "POST",
        "/api/attendance-sessions",
        "boss",
        json={
            "schedule_id": schedule["id"],
            "date": "2026-03-03",
            "employee_ids": [again.json()["id"]],
        },
    ).json()
    records = world.call("GET", f"/api/attendance-records/by-session/{session['id']}", "boss")
    (record,) = records.json()
    assert record["status"] == "pending"
    world.clock.set(manila(2026, 3, 3, 6, 0))
    world.client.post(
        "/api/auth/login", json={"email": "eve@example.test", "password": "Eve-pass-123!"}
    )
    fixed = world.call(
        "PUT",
        f"/api/attendance-records/{record['id']}",
        "boss",
        json={
            "reason": "came in, badge broken",
            "status": "present",
            "time_in": "2026-03-03T06:00",
            "break_start": "2026-03-03T09:00",
            "break_end": "2026-03-03T09:30",
        },
    ).json()["record"]
    (brk,) = fixed["breaks"]
    edited = world.call(
        "PUT",
        f"/api/breaks/{brk['id']}",
        "boss",
        json={
            "break_start": "2026-03-03T09:00",
            "break_end": "2026-03-03T09:45",
            "break_type": "Meal",
        },
    )
    assert edited.status_code == 200 and edited.json()["break"]["duration_minutes"] == 45
    over = world.call(
        "PUT",
        f"/api/breaks/{brk['id']}",
        "boss",
        json={
            "break_start": "2026-03-03T09:00",
            "break_end": "2026-03-03T11:00",
            "break_type": "Meal",
        },
    )
    assert over.status_code == 400
    assert world.call("DELETE", f"/api/breaks/{brk['id']}", "boss").status_code == 200
    history = world.call("GET", "/api/break/history", "boss").json()
    assert history["total"] == 0
    detail = world.call("GET", f"/api/attendance-records/{record['id']}", "boss").json()
    assert detail["breaks"] == [] and detail["status"] == "present"
    assert (
        world.call("DELETE", f"/api/attendance-sessions/{session['id']}", "boss").status_code == 200
    )
    assert world.call("GET", f"/api/attendance-records/{record['id']}", "boss").status_code == 404
    logs = world.call("GET", "/api/audit-logs?per_page=100", "boss").json()
    actions = {row["action"] for row in logs["data"]}
    assert {
        "create_employee",
        "delete_employee",
        "create_schedule",
        "update_attendance",
        "break_update",
        "break_delete",
        "delete_session",
    } <= actions
    one = world.call("GET", f"/api/audit-logs/{logs['data'][0]['id']}", "boss").json()
    assert one["integrity_valid"] is True
    assert world.call("POST", "/api/notifications/read-all", "boss").status_code == 200
    world.login("boss")  # hours passed on the clock: the old session is past its inactivity limit
    assert world.call("POST", "/api/auth/heartbeat", "boss").json() == {"status": "ok"}
    assert world.client.get("/api/auth/password-policy").json() == {
        "min_length": 8,
        "require_special_char": True,
    }


def test_a_heartbeat_after_the_inactivity_timeout_logs_out(world: World) -> None:
    world.user("ana")
    headers = world.login("ana")
    world.clock.set(world.clock.now + timedelta(minutes=29))
    assert world.client.post("/api/auth/heartbeat", headers=headers).status_code == 200
    world.clock.set(world.clock.now + timedelta(minutes=31))
    expired = world.client.post("/api/auth/heartbeat", headers=headers)
    assert expired.status_code == 401 and expired.json()["error_code"] == "EXPIRED"
    assert world.client.get("/api/auth/me", headers=headers).status_code == 401


def test_cors_answers_the_original_frontends_credentialed_fetches(world: World) -> None:
    origin = "http://frontend.example.test:3000"
    preflight = world.client.options(
        "/api/auth/me",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,cache-control,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    simple = world.client.get("/api/settings", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin


def test_the_weekend_screen_shows_only_without_a_session(world: World) -> None:
    world.user("ana")
    world.login("ana")
    world.clock.set(manila(2026, 3, 7, 10, 0))  # a Saturday, no session
    dash = world.call("GET", "/api/reports/employee-dashboard", "ana").json()
    assert dash["is_weekend"] is True and dash["no_work_today"] is True
    assert dash["day_name"] == "Saturday" and dash["can_confirm"] is False
    assert dash["check_in_reason"] == "no_session"


def test_audit_presets_statistics_and_can_confirm(world: World) -> None:
    session = night_session(world)
    world.user("ana")
    world.client.post("/api/auth/login", json={"email": "ana@example.test", "password": "x"})
    world.login("ana")
    early = world.call("GET", f"/api/attendance-records/can-confirm/{session}", "ana").json()
    assert early == {"can_confirm": True}
    world.call("POST", f"/api/attendance-records/confirm/{session}", "ana")
    again = world.call("GET", f"/api/attendance-records/can-confirm/{session}", "ana").json()
    assert (again["can_confirm"], again["reason"]) == (False, "currently_checked_in")
    missing = world.call("GET", "/api/attendance-records/can-confirm/999", "ana").json()
    assert missing["reason"] == "session_not_found"
    logins = world.call("GET", "/api/audit-logs/login", "boss").json()
    assert {r["action"] for r in logins["data"]} == {"login", "login_failed"}
    failed = world.call("GET", "/api/audit-logs/failed", "boss").json()
    assert [r["action"] for r in failed["data"]] == ["login_failed"]
    attendance = world.call("GET", "/api/audit-logs/attendance", "boss").json()
    assert [r["action"] for r in attendance["data"]] == ["check_in"]
    mine = world.call("GET", f"/api/audit-logs/by-user/{world.ids['ana']}", "boss").json()
    assert {r["action"] for r in mine["data"]} >= {"login", "check_in"}
    stats = world.call("GET", "/api/audit-logs/statistics", "boss").json()
    assert stats["failed_logins"] == 1 and stats["by_status"]["failed"] == 1
    assert world.client.get("/api/break-rules").json()["max_minutes"] == 90


def test_the_original_settings_pages_can_save(world: World) -> None:
    world.user("boss", "admin")
    world.login("boss")
    public = world.client.get("/api/settings").json()
    pages = {
        "attendance": {
            "attendance_mode": "automatic",
            "timezone": public["timezone"],
            "time_format": "24-hour",
            "date_format": "YYYY-MM-DD",
            "grace_period": "10",
            "late_threshold": "30",
            "allow_multi_checkin": False,
            "prevent_duplicate": True,
            "auto_checkout": True,
            "max_breaks": public["max_breaks"],
            "max_break_duration": public["max_break_duration"],
            "auto_end_break": True,
            "prevent_overlap_break": True,
            "allow_overtime": True,
            "min_overtime_minutes": "45",
            "overtime_rate": "1.5",
            "require_ot_approval": False,
            "ot_rounding": "15",
        },
        "break": {
            "break_duration": "60",
            "max_breaks": "2",
            "max_break_duration": "60",
            "break_start_window": "00:00",
            "break_end_window": "01:30",
            "auto_end_break": True,
            "prevent_overlap_break": True,
            "break_penalty": False,
            "auto_resume": True,
        },
        "notifications": {
            "late_alerts": False,
            "absent_alerts": True,
            "break_alerts": True,
            "notify_sms": False,
            "notify_inapp": True,
        },
        "security": {
            "2fa_enabled": False,
            "session_timeout": "45",
            "max_login_attempts": "7",
            "pass_min_length": "10",
            "pass_special_chars": True,
        },
        "general": {
            "company_name": "Acme",
            "timezone": "UTC",
            "language": "en",
            "date_format": "dmy",
            "time_format": "12h",
            "system_logo": "/logo.png",
        },
    }
    for name, payload in pages.items():
        saved = world.call("POST", "/api/settings", "boss", json=payload)
        assert saved.status_code == 200, (name, saved.text)
    after = world.client.get("/api/settings").json()
    assert (after["grace_period"], after["ot_rounding"], after["break_duration"]) == (
        "10",
        "15",
        "60",
    )
    assert after["max_break_duration"] == "60" and after["max_breaks"] == "2"
    assert (after["date_format"], after["time_format"], after["timezone"]) == ("dmy", "12h", "UTC")
    assert after["allow_multi_checkin"] == "0" and after["session_timeout"] == "45"
    positions = world.call("PUT", "/api/settings", "boss", json={"positions": '["Agent", "Lead"]'})
    assert positions.status_code == 200
    assert world.client.get("/api/settings").json()["positions"] == '["Agent", "Lead"]'


def test_an_avatar_upload_is_stored_and_other_files_are_refused(world: World) -> None:
    world.user("ana")
    headers = world.login("ana")
    form = {"first_name": "Ana", "last_name": "Tester", "email": "ana@example.test"}
    html = ("a.png", b"<html><script>x</script></html>", "image/png")
    refused = world.client.post(
        "/api/auth/update-profile", headers=headers, data=form, files={"avatar": html}
    )
    assert refused.status_code == 422 and "avatar" in refused.json()["errors"]
    gif = b"GIF89a" + b"\x00" * 32
    saved = world.client.post(
        "/api/auth/update-profile",
        headers=headers,
        data=form,
        files={"avatar": ("a.gif", gif, "image/gif")},
    )
    assert saved.status_code == 200, saved.text
    avatar = world.client.get("/api/auth/me", headers=headers).json()["user"]["avatar"]
    assert world.client.get(avatar).content == gif


def test_non_ascii_digits_in_numbers_are_treated_as_absent_not_a_server_error(
    world: World,
) -> None:
    # str.isdigit() accepts superscripts such as "¹" that int() refuses; schemathesis found
    # a 500 here once.
    world.user("ana")
    ana = world.login("ana")
    response = world.client.get(
        "/api/attendance-records/my-records", params={"month": "¹", "year": "²"}, headers=ana
    )
    assert response.status_code == 200
    # A header arrives as latin-1: the byte 0xB9 is read as "¹".
    forged = {"Authorization": "Bearer ¹|not-a-token".encode("latin-1")}
    assert world.client.get("/api/auth/me", headers=forged).status_code == 401


def test_a_demo_restart_keeps_the_running_shift_under_todays_records(world: World) -> None:
    def demo_shift() -> tuple[str, str]:
        with world.runtime.unit(write=False) as ctx:
            row = ctx.db.scalars(select(Schedule).where(Schedule.name == "Demo Shift (now)")).one()
            return row.time_in.strftime("%H:%M"), row.time_out.strftime("%H:%M")

    world.clock.set(manila(2026, 3, 2, 17, 10))
    with world.runtime.unit(write=True) as ctx:
        seed_demo(ctx)
    assert demo_shift() == ("17:00", "01:00")
    # a restart an hour later with nobody checked in yet: the shift follows "now"
    world.clock.set(manila(2026, 3, 2, 18, 51))
    with world.runtime.unit(write=True) as ctx:
        passwords = seed_demo(ctx)
    assert demo_shift() == ("18:00", "02:00")
    login = world.client.post(
        "/api/auth/login",
        json={
            "email": "ana@demo.attendance.test",
            "password": passwords["ana@demo.attendance.test"],
        },
    )
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    session = world.client.get("/api/reports/employee-dashboard", headers=headers).json()
    confirmed = world.client.post(
        f"/api/attendance-records/confirm/{session['active_session']['id']}", headers=headers
    )
    assert confirmed.json()["record"]["minutes_late"] == 51, confirmed.text
    # a restart after that check-in: the shift stays where Ana's lateness was judged
    world.clock.set(manila(2026, 3, 2, 19, 5))
    with world.runtime.unit(write=True) as ctx:
        seed_demo(ctx)
    assert demo_shift() == ("18:00", "02:00")


@pytest.mark.parametrize("hour", range(24))
def test_the_admin_dashboard_shows_the_day_of_the_demos_running_shift_at_any_hour(
    world: World, hour: int
) -> None:
    # The demo's shift runs "now", on the calendar date. Its night shift must not run beside
    # it on another work date: before 07:00 the operational day's night shift is still
    # running, and the dashboard (whose day follows a running session) would show that
    # date, without the demo shift's check-ins (seen at 04:30 organisation time).
    now = manila(2026, 3, 3, hour, 30)  # a Tuesday
    world.clock.set(now)
    with world.runtime.unit(write=True) as ctx:
        seed_demo(ctx)
    with world.runtime.unit(write=False) as ctx:
        assert domain.dashboard_date(ctx) == now.astimezone(ctx.tz).date()
        nights = ctx.db.scalars(select(Schedule).where(Schedule.name == "Night Shift")).all()
        assert len(nights) == 1  # the demo still has its night shift, as history or ahead
