"""Attendance sessions (a schedule on a date): list, active and today's, show with its
records, create, delete, lock and unlock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .. import domain
from ..context import Ctx, validation_error
from ..models import AttendanceRecord, AttendanceSession, Schedule, User
from ..serialize import iso_date, paginate, user_resource
from ..web import Req, find_one
from .common import page_of


def session_counts(ctx: Ctx, session_id: int) -> tuple[int, int]:
    confirmed = (
        ctx.db.scalar(
            select(func.count(AttendanceRecord.id)).where(
                AttendanceRecord.session_id == session_id, AttendanceRecord.time_in.is_not(None)
            )
        )
        or 0
    )
    total = (
        ctx.db.scalar(
            select(func.count(AttendanceRecord.id)).where(AttendanceRecord.session_id == session_id)
        )
        or 0
    )
    return confirmed, total


def expected_count(ctx: Ctx, session: AttendanceSession, records: int) -> int:
    """Employees expected in `session`: every active employee when attendance is required
    (never fewer than the records it has), else those with a record
    (an optional session's assigned employees)."""
    if not session.attendance_required:
        return records
    active = (
        ctx.db.scalar(
            select(func.count(User.id)).where(
                User.role == "employee", User.status == "active", User.deleted_at.is_(None)
            )
        )
        or 0
    )
    return max(active, records)


def session_list_item(ctx: Ctx, session: AttendanceSession) -> dict[str, Any]:
    data = domain.session_out(ctx, session)
    confirmed, total = session_counts(ctx, session.id)
    data["confirmed_count"] = confirmed
    data["total_employees_count"] = total
    data["expected_count"] = expected_count(ctx, session, total)
    creator = ctx.db.get(User, session.created_by) if session.created_by else None
    data["creator"] = (
        {
            "id": creator.id,
            "first_name": creator.first_name,
            "last_name": creator.last_name,
            "name": f"{creator.first_name} {creator.last_name}",
        }
        if creator
        else None
    )
    return data


def sessions_index(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    rows = domain.sessions_for(
        ctx, date=req.q_date("date"), schedule_id=req.q_int("schedule_id", 0, 0)
    )
    status = req.q_str("status")
    if status:
        rows = [s for s in rows if domain.status_of(ctx, s) == status]
    chunk = rows[(page - 1) * per_page : page * per_page]
    return paginate([session_list_item(ctx, s) for s in chunk], len(rows), page, per_page, req.path)


def sessions_active(ctx: Ctx, req: Req) -> Any:
    op = domain.today(ctx)
    rows = domain.sessions_around(ctx, op)
    return [session_list_item(ctx, s) for s in rows if domain.status_of(ctx, s) == "active"]


def sessions_today(ctx: Ctx, req: Req) -> Any:
    rows = domain.sessions_for(ctx, date=domain.today(ctx))
    return [session_list_item(ctx, s) for s in rows]


def sessions_show(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    data = session_list_item(ctx, session)
    locker = ctx.db.get(User, session.locked_by) if session.locked_by else None
    data["locked_by_user"] = (
        {"id": locker.id, "first_name": locker.first_name, "last_name": locker.last_name}
        if locker
        else None
    )
    records = (
        ctx.db.scalars(select(AttendanceRecord).where(AttendanceRecord.session_id == session.id))
        .unique()
        .all()
    )
    rows = domain.records_out(ctx, list(records))
    optional = not session.attendance_required
    for row in rows:
        if optional and row["status"] == "pending":
            row["status"] = "optional"
    have = {r.user_id for r in records}
    have |= set(
        ctx.db.scalars(
            select(AttendanceRecord.user_id).where(AttendanceRecord.work_date == session.work_date)
        ).all()
    )
    for user in ctx.db.scalars(
        select(User)
        .where(User.role == "employee", User.status == "active", User.deleted_at.is_(None))
        .order_by(User.employee_code)
    ):
        if user.id in have:
            continue
        rows.append(
            {
                "id": f"virtual_{user.id}",
                "session_id": session.id,
                "user_id": user.id,
                "attendance_date": iso_date(session.work_date),
                "time_in": None,
                "time_out": None,
                "break_start": None,
                "break_end": None,
                "status": "optional" if optional else "pending",
                "minutes_late": 0,
                "hours_worked": 0,
                "is_virtual": True,
                "user": user_resource(user),
            }
        )
    data["records"] = rows
    return data


def sessions_store(ctx: Ctx, req: Req) -> Any:
    schedule_id = req.b_int("schedule_id", required=True, lo=1)
    schedule = ctx.db.get(Schedule, schedule_id)
    if schedule is None or schedule.deleted_at is not None:
        raise validation_error("schedule_id", "The selected schedule id is invalid.")
    work_date = req.b_date("date", required=True)
    assert work_date is not None
    ids = req.body.get("employee_ids") or []
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 2**31 - 1 for i in ids
    ):
        raise validation_error("employee_ids", "The employee ids must be a list of ids.")
    if ids:
        found = set(
            ctx.db.scalars(
                select(User.id).where(
                    User.id.in_(ids), User.role == "employee", User.deleted_at.is_(None)
                )
            ).all()
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise validation_error("employee_ids", f"Unknown employees: {missing[:20]}")
    session = domain.create_session(ctx, schedule, work_date, ids)
    return 201, {
        "message": "Session created successfully",
        "session": domain.session_out(ctx, session),
        **domain.session_out(ctx, session),
    }


def sessions_destroy(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    domain.emit_session(ctx, session, "deleted")
    ctx.db.delete(session)
    ctx.audit(
        "delete_session",
        f"Session {session.id} deleted",
        model_type="AttendanceSession",
        model_id=session.id,
    )
    return {"message": "Session deleted successfully"}


def sessions_lock(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    marked = domain.lock_session(
        ctx, session, req.b_bool("attendance_required"), req.b_str("session_type", max_len=30)
    )
    return {
        "message": "Session locked successfully",
        "absent_marked": marked,
        "session": domain.session_out(ctx, session),
    }


def sessions_unlock(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    domain.unlock_session(ctx, session)
    return {"message": "Session unlocked successfully", "session": domain.session_out(ctx, session)}
