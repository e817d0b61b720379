"""Attendance records: the own and the admin lists with their filters, show, by session and
by employee, the admin's manual create/update/delete (with a manual break) and overtime
decisions."""

from __future__ import annotations

from calendar import monthrange
from datetime import date
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from .. import domain, rules
from ..context import ApiError, Ctx, validation_error
from ..models import AttendanceRecord, AttendanceSession, Break, User
from ..serialize import iso, paginate
from ..web import Req, find_one, path_id
from .common import LIST_CAP, REPORT_CAP, page_of


def record_filters(ctx: Ctx, req: Req, stmt: Any) -> Any:
    status = req.q_str("status")
    if status and status != "all":
        stmt = stmt.where(AttendanceRecord.status == status)
    day = req.q_date("date")
    if day:
        stmt = stmt.where(AttendanceRecord.work_date == day)
    start, end = req.q_date("start_date"), req.q_date("end_date")
    if start:
        stmt = stmt.where(AttendanceRecord.work_date >= start)
    if end:
        stmt = stmt.where(AttendanceRecord.work_date <= end)
    month, year = req.q_int("month", 0, 0, 12), req.q_int("year", 0, 0, 9999)
    if month and year:
        stmt = stmt.where(
            AttendanceRecord.work_date >= date(year, month, 1),
            AttendanceRecord.work_date <= date(year, month, monthrange(year, month)[1]),
        )
    return stmt


def record_page(ctx: Ctx, req: Req, stmt: Any, default: int, cap: int = LIST_CAP) -> Any:
    page, per_page = page_of(req, default, cap)
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = (
        ctx.db.scalars(
            stmt.order_by(AttendanceRecord.work_date.desc(), AttendanceRecord.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        .unique()
        .all()
    )
    return paginate(domain.records_out(ctx, list(rows)), total, page, per_page, req.path)


def my_records(ctx: Ctx, req: Req) -> Any:
    stmt = record_filters(
        ctx, req, select(AttendanceRecord).where(AttendanceRecord.user_id == ctx.actor.id)
    )
    return record_page(ctx, req, stmt, 20)


def records_index(ctx: Ctx, req: Req) -> Any:
    stmt = record_filters(ctx, req, select(AttendanceRecord))
    search = req.q_str("search", 100)
    if search:
        like = f"%{search.lower()}%"
        stmt = stmt.join(User, User.id == AttendanceRecord.user_id).where(
            or_(
                func.lower(User.first_name).like(like),
                func.lower(User.last_name).like(like),
                func.lower(User.employee_code).like(like),
            )
        )
    return record_page(ctx, req, stmt, 50, REPORT_CAP)


def record_show(ctx: Ctx, req: Req) -> Any:
    return domain.record_out(ctx, find_one(ctx, AttendanceRecord, req.path_params["id"], "Record"))


def records_by_session(ctx: Ctx, req: Req) -> Any:
    rows = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.session_id == path_id(req))
            .order_by(AttendanceRecord.time_in)
        )
        .unique()
        .all()
    )
    return domain.records_out(ctx, list(rows))


def records_by_employee(ctx: Ctx, req: Req) -> Any:
    stmt = select(AttendanceRecord).where(AttendanceRecord.user_id == path_id(req))
    return record_page(ctx, req, stmt, 20)


STATUSES = ("present", "late", "absent", "excused", "left_early", "pending")


def apply_status(record: AttendanceRecord, status: str) -> None:
    """Set an admin-chosen status. `left_early` is the original's spelling for a departure
    fact, not an arrival status: it sets the flag and keeps `present`/`late` (a record that
    had neither becomes `present`)."""
    if status == "left_early":
        record.left_early = True
        if record.status not in ("present", "late"):
            record.status = "present"
        return
    record.status = status


def check_break_pair(ctx: Ctx, req: Req, record: AttendanceRecord | None) -> tuple[Any, Any]:
    start = req.b_datetime("break_start", ctx.tz)
    end = req.b_datetime("break_end", ctx.tz)
    if start and end:
        if end <= start:
            raise validation_error("break_end", "The break end must be after the break start.")
        others = 0
        if record is not None:
            breaks = domain.breaks_of(ctx, [record.id])[record.id]
            latest = breaks[-1] if breaks else None
            others = rules.break_used_seconds(
                [
                    rules.BreakSpan(b.started_at, b.ended_at, b.limit_seconds)
                    for b in breaks
                    if b is not latest
                ],
                ctx.now,
            )
        if others + (end - start).total_seconds() > int(ctx.setting("break_duration")) * 60:
            raise ApiError(400, "The breaks exceed the allowance.", "BREAK_LIMIT_EXCEEDED")
    return start, end


def sync_manual_break(ctx: Ctx, record: AttendanceRecord, start: Any, end: Any) -> None:
    if not start:
        return
    breaks = domain.breaks_of(ctx, [record.id])[record.id]
    latest = breaks[-1] if breaks else None
    if latest is None:
        latest = Break(
            record_id=record.id,
            user_id=record.user_id,
            work_date=record.work_date,
            break_type="Manual",
            created_at=ctx.now,
        )
        ctx.db.add(latest)
    latest.started_at = start
    latest.ended_at = end or start
    latest.limit_seconds = None
    latest.end_reason = "admin"
    latest.updated_at = ctx.now


def records_store(ctx: Ctx, req: Req) -> Any:
    user_id = req.b_int("user_id", required=True, lo=1)
    session = ctx.db.get(AttendanceSession, req.b_int("session_id", required=True, lo=1))
    if session is None:
        raise validation_error("session_id", "The selected session id is invalid.")
    user = ctx.db.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise validation_error("user_id", "The selected user id is invalid.")
    work_date = req.b_date("attendance_date") or session.work_date
    status = req.b_str("status", required=True, max_len=20)
    if status not in STATUSES[:-1]:
        raise validation_error("status", "The selected status is invalid.")
    reason = req.b_str("reason", required=True, min_len=5, max_len=1000)
    if domain.record_of_day(ctx, user.id, work_date) is not None:
        raise ApiError(
            409, "A record already exists for this employee and date.", "DUPLICATE_RECORD"
        )
    start, end = check_break_pair(ctx, req, None)
    record = AttendanceRecord(
        session_id=session.id,
        user_id=user.id,
        work_date=work_date,
        status="pending",
        time_in=req.b_datetime("time_in", ctx.tz),
        time_out=req.b_datetime("time_out", ctx.tz),
        excuse_reason=req.b_str("excuse_reason", max_len=255),
        notes=reason,
        minutes_late=0,
        overtime_minutes=0,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    apply_status(record, status)
    if req.has("left_early"):
        record.left_early = bool(req.b_bool("left_early"))
    if record.time_in and status == "late":
        window = domain.window_of(ctx, session)
        record.minutes_late = rules.lateness(record.time_in, window)[1]
    ctx.db.add(record)
    try:
        with ctx.db.begin_nested():
            ctx.db.flush()
    except IntegrityError:
        raise ApiError(
            409, "A record already exists for this employee and date.", "DUPLICATE_RECORD"
        ) from None
    sync_manual_break(ctx, record, start, end)
    ctx.db.flush()
    ctx.db.refresh(record)
    ctx.audit(
        "create_attendance",
        f"Record {record.id} created: {reason}",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    domain.emit_attendance(ctx, record, "created")
    return 201, {"message": "Attendance record created", "record": domain.record_out(ctx, record)}


def records_update(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    reason = req.b_str("reason", required=True, min_len=5, max_len=1000)
    old = {
        "status": record.status,
        "left_early": record.left_early,
        "time_in": iso(record.time_in),
        "time_out": iso(record.time_out),
    }
    if req.has("status"):
        status = req.b_str("status", max_len=20)
        if status not in STATUSES:
            raise validation_error("status", "The selected status is invalid.")
        apply_status(record, status)
    if req.has("left_early"):
        record.left_early = bool(req.b_bool("left_early"))
    if "time_in" in req.body:
        record.time_in = req.b_datetime("time_in", ctx.tz)
    if "time_out" in req.body:
        record.time_out = req.b_datetime("time_out", ctx.tz)
    if record.time_in and record.time_out and record.time_out < record.time_in:
        raise validation_error("time_out", "The time out must be after the time in.")
    start, end = check_break_pair(ctx, req, record)
    sync_manual_break(ctx, record, start, end)
    record.notes = reason
    record.updated_at = ctx.now
    ctx.db.flush()
    ctx.audit(
        "update_attendance",
        f"Record {record.id} updated: {reason}",
        model_type="AttendanceRecord",
        model_id=record.id,
        old=old,
        new={
            "status": record.status,
            "left_early": record.left_early,
            "time_in": iso(record.time_in),
            "time_out": iso(record.time_out),
        },
    )
    domain.emit_attendance(ctx, record, "updated")
    return {"message": "Attendance record updated", "record": domain.record_out(ctx, record)}


def records_destroy(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    domain.emit_attendance(ctx, record, "deleted")
    ctx.db.delete(record)
    ctx.audit(
        "delete_attendance",
        f"Record {record.id} deleted",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    return {"message": "Attendance record deleted"}


def records_overtime(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    decision = req.b_str("decision", required=True, max_len=20)
    if decision not in ("approved", "rejected"):
        raise validation_error("decision", "The decision must be approved or rejected.")
    if record.overtime_minutes <= 0:
        raise ApiError(422, "This record has no overtime.", "NO_OVERTIME")
    record.overtime_status = decision
    record.overtime_decided_by = ctx.actor.id
    record.overtime_decided_at = ctx.now
    record.updated_at = ctx.now
    ctx.audit(
        "overtime_decision",
        f"Overtime {decision} on record {record.id}",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    domain.emit_attendance(ctx, record, "overtime_decided")
    return {"message": f"Overtime {decision}", "record": domain.record_out(ctx, record)}
