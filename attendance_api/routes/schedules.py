"""Work schedules (shifts): list, create, show, update, toggle and delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..context import Ctx, validation_error
from ..models import Schedule
from ..serialize import paginate, schedule_json
from ..web import Req, find_one
from .common import page_of


def schedules_index(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    stmt = select(Schedule).where(Schedule.deleted_at.is_(None))
    status = req.q_str("status")
    if status in ("active", "inactive"):
        stmt = stmt.where(Schedule.status == status)
    search = req.q_str("search", 100)
    if search:
        stmt = stmt.where(func.lower(Schedule.name).like(f"%{search.lower()}%"))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(Schedule.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return paginate([schedule_json(s) for s in rows], total, page, per_page, req.path)


def apply_schedule(ctx: Ctx, req: Req, schedule: Schedule, creating: bool) -> None:
    if creating or "name" in req.body:
        schedule.name = req.b_str("name", required=True, max_len=100) or schedule.name
    for name in ("time_in", "time_out"):
        if creating or name in req.body:
            value = req.b_time(name, required=True)
            assert value is not None
            setattr(schedule, name, value)
    if "break_time" in req.body:
        schedule.break_time = req.b_time("break_time")
    if "grace_period_minutes" in req.body:
        schedule.grace_period_minutes = req.b_int("grace_period_minutes", lo=0, hi=60)
    if req.has("late_threshold_minutes"):
        schedule.late_threshold_minutes = req.b_int("late_threshold_minutes", lo=0, hi=120) or 0
    if "checkin_open_before_min" in req.body:
        schedule.checkin_open_before_min = req.b_int("checkin_open_before_min", lo=0, hi=720)
    if "checkin_close_after_min" in req.body:
        schedule.checkin_close_after_min = req.b_int("checkin_close_after_min", lo=0, hi=720)
    if req.has("status"):
        status = req.b_str("status", max_len=20)
        if status not in ("active", "inactive"):
            raise validation_error("status", "The selected status is invalid.")
        schedule.status = status
    if schedule.time_in == schedule.time_out:
        raise validation_error("time_out", "The shift must not start and end at the same time.")
    schedule.updated_at = ctx.now


def schedules_store(ctx: Ctx, req: Req) -> Any:
    schedule = Schedule(
        status="active", late_threshold_minutes=30, created_at=ctx.now, grace_period_minutes=15
    )
    apply_schedule(ctx, req, schedule, True)
    ctx.db.add(schedule)
    ctx.db.flush()
    ctx.audit(
        "create_schedule",
        f"Schedule {schedule.name} created",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return 201, schedule_json(schedule)


def schedules_show(ctx: Ctx, req: Req) -> Any:
    return schedule_json(find_one(ctx, Schedule, req.path_params["id"], "Schedule"))


def schedules_update(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    apply_schedule(ctx, req, schedule, False)
    ctx.audit(
        "update_schedule",
        f"Schedule {schedule.name} updated",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return schedule_json(schedule)


def schedules_toggle(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    schedule.status = "inactive" if schedule.status == "active" else "active"
    schedule.updated_at = ctx.now
    ctx.audit(
        ("activate" if schedule.status == "active" else "deactivate") + "_schedule",
        f"Schedule {schedule.name} {schedule.status}",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return schedule_json(schedule)


def schedules_destroy(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    schedule.deleted_at = ctx.now
    ctx.audit(
        "delete_schedule",
        f"Schedule {schedule.name} deleted",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return {"message": "Schedule deleted successfully"}
