"""Breaks: the derived break rules, the employee's own break status/start/end, the history,
the admin's edit and delete of a break, and a record's open break (end it, ask for it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from .. import domain, rules
from ..context import ApiError, Ctx, validation_error
from ..models import AttendanceRecord, Break, User
from ..serialize import break_json, iso, iso_date, paginate, schedule_json, user_resource
from ..web import Req, find_one, path_id
from .common import page_of


def break_rules(ctx: Ctx, req: Req) -> Any:
    """Derived from the settings (the original's separate break_rules row contradicted them):
    no time window, the cumulative allowance in minutes."""
    minutes = int(ctx.setting("break_duration"))
    return {
        "configured": True,
        "start_time": None,
        "end_time": None,
        "start_time_formatted": None,
        "end_time_formatted": None,
        "max_minutes": minutes,
    }


def break_status(ctx: Ctx, req: Req) -> Any:
    return domain.break_status(ctx, ctx.actor)


def break_start(ctx: Ctx, req: Req) -> Any:
    brk, limit = domain.start_break(ctx, req.b_str("type", max_len=30) or "Regular")
    return {
        "message": "Break started",
        "break": break_json(brk, ctx.now),
        "break_remaining_seconds": limit,
    }


def break_end(ctx: Ctx, req: Req) -> Any:
    brk = domain.end_break(ctx)
    data = break_json(brk, ctx.now)
    return {
        "message": "Break ended",
        "status": "success",
        "break": data,
        "duration_minutes": data["duration_minutes"],
        "warning": None,
    }


def break_history(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    stmt = select(Break)
    user = ctx.user
    assert user is not None
    if user.role != "admin":
        stmt = stmt.where(Break.user_id == user.id)
    elif req.q_int("user_id", 0, 0):
        stmt = stmt.where(Break.user_id == req.q_int("user_id", 0, 0))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(Break.started_at.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    items = []
    for brk in rows:
        data = break_json(brk, ctx.now)
        owner = ctx.db.get(User, brk.user_id)
        data["user"] = user_resource(owner) if owner else None
        record = ctx.db.get(AttendanceRecord, brk.record_id)
        data["attendance"] = (
            {
                "id": record.id,
                "attendance_date": iso_date(record.work_date),
                "status": record.status,
                "session": {
                    "id": record.session_id,
                    "date": iso_date(record.session.work_date),
                    "schedule": schedule_json(record.session.schedule),
                },
            }
            if record
            else None
        )
        items.append(data)
    return paginate(items, total, page, per_page, req.path)


def breaks_update(ctx: Ctx, req: Req) -> Any:
    brk = find_one(ctx, Break, req.path_params["id"], "Break")
    start = req.b_datetime("break_start", ctx.tz)
    if start is None:
        raise validation_error("break_start", "The break start field is required.")
    btype = req.b_str("break_type", required=True, max_len=30)
    end = req.b_datetime("break_end", ctx.tz)
    if end is not None and end <= start:
        raise validation_error("break_end", "The break end must be after the break start.")
    others = [b for b in domain.breaks_of(ctx, [brk.record_id])[brk.record_id] if b.id != brk.id]
    used = rules.break_used_seconds(domain.spans_of(others), ctx.now)
    if used + ((end or ctx.now) - start).total_seconds() > int(ctx.setting("break_duration")) * 60:
        raise ApiError(400, "The breaks exceed the allowance.", "BREAK_LIMIT_EXCEEDED")
    brk.started_at, brk.ended_at, brk.break_type = start, end, btype or brk.break_type
    brk.limit_seconds = None if end is not None else brk.limit_seconds
    brk.end_reason = "admin" if end is not None else None
    brk.updated_at = ctx.now
    ctx.db.flush()
    record = ctx.db.get(AttendanceRecord, brk.record_id)
    assert record is not None
    ctx.audit("break_update", f"Break {brk.id} updated", model_type="Break", model_id=brk.id)
    domain.emit_break(ctx, record, brk, "admin_updated")
    return {
        "message": "Break updated",
        "break": break_json(brk, ctx.now),
        "record": domain.record_out(ctx, record),
    }


def breaks_destroy(ctx: Ctx, req: Req) -> Any:
    brk = find_one(ctx, Break, req.path_params["id"], "Break")
    record = ctx.db.get(AttendanceRecord, brk.record_id)
    assert record is not None
    domain.emit_break(ctx, record, brk, "admin_deleted")
    ctx.db.delete(brk)
    ctx.audit("break_delete", f"Break {brk.id} deleted", model_type="Break", model_id=brk.id)
    return {"message": "Break deleted"}


def record_break_end(ctx: Ctx, req: Req) -> Any:
    brk = domain.admin_end_break(ctx, path_id(req))
    return {"message": "Break ended", "break": break_json(brk, ctx.now)}


def record_break_active(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    if record.user_id != ctx.actor.id and ctx.actor.role != "admin":
        raise ApiError(403, "Forbidden.", "FORBIDDEN")
    brk = domain.open_break_of(ctx, record.id)
    if brk is not None:
        due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
        if due is not None and due <= ctx.now:
            brk = None
    return {"active": brk is not None, "start_time": iso(brk.started_at) if brk else None}
