"""Attendance operations on the database. Every decision is delegated to `rules`; this module
loads rows, applies the decision, writes the audit entry and queues the realtime events."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.exc import IntegrityError

from . import rules
from .context import ApiError, Ctx
from .models import AttendanceRecord, AttendanceSession, Break, Schedule, User
from .presence import online_now_count, presence_of
from .serialize import break_json, iso, iso_date, record_json, schedule_brief, session_json

# ---------------------------------------------------------------- windows and status


def shift_of(ctx: Ctx, schedule: Schedule) -> rules.Shift:
    return rules.Shift(
        time_in=schedule.time_in,
        time_out=schedule.time_out,
        grace_minutes=schedule.grace_period_minutes,
        open_before_minutes=(
            schedule.checkin_open_before_min
            if schedule.checkin_open_before_min is not None
            else int(ctx.setting("checkin_open_before"))
        ),
        close_after_minutes=(
            schedule.checkin_close_after_min
            if schedule.checkin_close_after_min is not None
            else int(ctx.setting("checkin_close_after"))
        ),
    )


def window_of(ctx: Ctx, session: AttendanceSession) -> rules.ShiftWindow:
    return rules.shift_window(
        session.work_date, shift_of(ctx, session.schedule), ctx.tz, int(ctx.setting("grace_period"))
    )


def status_of(ctx: Ctx, session: AttendanceSession) -> str:
    return rules.session_status(
        ctx.now, window_of(ctx, session), session.locked_at is not None
    ).value


def today(ctx: Ctx) -> date:
    return rules.operational_date(ctx.now, ctx.tz, int(ctx.setting("shift_boundary_hour")))


def breaks_of(ctx: Ctx, record_ids: list[int]) -> dict[int, list[Break]]:
    out: dict[int, list[Break]] = {rid: [] for rid in record_ids}
    if record_ids:
        for brk in ctx.db.scalars(
            select(Break).where(Break.record_id.in_(record_ids)).order_by(Break.started_at)
        ):
            out[brk.record_id].append(brk)
    return out


def spans_of(breaks: list[Break]) -> list[rules.BreakSpan]:
    return [rules.BreakSpan(b.started_at, b.ended_at, b.limit_seconds) for b in breaks]


def record_out(ctx: Ctx, record: AttendanceRecord) -> dict[str, Any]:
    breaks = breaks_of(ctx, [record.id])[record.id]
    status = status_of(ctx, record.session) if record.session else None
    return record_json(record, breaks, ctx.now, session_status=status)


def records_out(ctx: Ctx, records: list[AttendanceRecord]) -> list[dict[str, Any]]:
    all_breaks = breaks_of(ctx, [r.id for r in records])
    return [
        record_json(
            r,
            all_breaks[r.id],
            ctx.now,
            session_status=status_of(ctx, r.session) if r.session else None,
        )
        for r in records
    ]


def session_out(ctx: Ctx, session: AttendanceSession) -> dict[str, Any]:
    return session_json(session, status_of(ctx, session))


# ------------------------------------- events (docs/attendance.md, "Realtime contract")


def attendance_payload(
    record: AttendanceRecord, user: User | None, latest: Break | None, action: str
) -> dict[str, Any]:
    """The full `attendance.updated` payload of `private-user.{id}` (docs/attendance.md,
    "Realtime contract"; the fields in attendance_api/README.md, "Realtime")."""
    return {
        "id": record.id,
        "user_id": record.user_id,
        "session_id": record.session_id,
        "work_date": iso_date(record.work_date),
        "status": record.status,
        "time_in": iso(record.time_in),
        "time_out": iso(record.time_out),
        "break_start": iso(latest.started_at) if latest else None,
        "break_end": iso(latest.ended_at) if latest else None,
        "minutes_late": record.minutes_late,
        "left_early": record.left_early,
        "action": action,
        "user": {"id": user.id, "first_name": user.first_name, "last_name": user.last_name}
        if user
        else None,
    }


def emit_attendance(ctx: Ctx, record: AttendanceRecord, action: str) -> None:
    breaks = breaks_of(ctx, [record.id])[record.id]
    latest = breaks[-1] if breaks else None
    user = ctx.db.get(User, record.user_id)
    ctx.emit(
        "attendance.updated",
        [f"private-user.{record.user_id}"],
        attendance_payload(record, user, latest, action),
    )
    ctx.emit(
        "attendance.updated",
        ["attendance"],
        {"id": record.id, "session_id": record.session_id, "action": action},
    )


def emit_break(ctx: Ctx, record: AttendanceRecord, brk: Break, action: str) -> None:
    breaks = breaks_of(ctx, [record.id])[record.id]
    remaining = rules.break_remaining_seconds(
        int(ctx.setting("break_duration")), spans_of(breaks), ctx.now
    )
    user = ctx.db.get(User, record.user_id)
    ctx.emit(
        "break.updated",
        [f"private-user.{record.user_id}"],
        {
            "attendance_id": record.id,
            "break_id": brk.id,
            "user_id": record.user_id,
            "break_start": iso(brk.started_at),
            "break_end": iso(brk.ended_at),
            "break_type": brk.break_type,
            "remaining_seconds": remaining,
            "action": action,
            "user": {"id": user.id, "first_name": user.first_name, "last_name": user.last_name}
            if user
            else None,
        },
    )
    ctx.emit("break.updated", ["attendance"], {"attendance_id": record.id, "action": action})


def emit_session(
    ctx: Ctx, session: AttendanceSession, action: str, status: str | None = None
) -> None:
    ctx.emit(
        "session.updated",
        ["sessions"],
        {
            "id": session.id,
            "date": iso_date(session.work_date),
            "schedule_id": session.schedule_id,
            "status": status or status_of(ctx, session),
            "attendance_required": session.attendance_required,
            "session_type": session.session_type,
            "action": action,
            "schedule": schedule_brief(session.schedule),
        },
    )


def emit_employee(ctx: Ctx, user: User, action: str) -> None:
    presence = presence_of(ctx, [user.id]).get(user.id)
    # also on the employee's own channel: a page signed in as them learns at once that the
    # account was deactivated (its token is already revoked) and can say so
    ctx.emit(
        "employee.updated",
        ["private-admin.employees", f"private-user.{user.id}"],
        {
            "id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "employee_id": user.employee_code,
            "role": user.role,
            "status": user.status,
            "is_active": user.status == "active" and user.deleted_at is None,
            "online_now": bool(presence and presence.online),
            "last_presence_at": iso(presence.last_presence_at) if presence else None,
            "action": action,
        },
    )


def emit_dashboard(ctx: Ctx) -> None:
    ctx.emit("dashboard.updated", ["private-admin.dashboard"], {"stats": dashboard_stats(ctx)})


# ---------------------------------------------------------------- check-in / check-out

CHECKIN_ERRORS = {
    rules.CheckInRefusal.SESSION_LOCKED: (409, "SESSION_LOCKED"),
    rules.CheckInRefusal.SESSION_COMPLETED: (409, "SESSION_LOCKED"),
    rules.CheckInRefusal.TOO_EARLY: (403, "TOO_EARLY"),
    rules.CheckInRefusal.TOO_LATE: (403, "TOO_LATE"),
    rules.CheckInRefusal.NOT_ASSIGNED: (403, "NOT_ASSIGNED"),
    rules.CheckInRefusal.CURRENTLY_CHECKED_IN: (400, "CURRENTLY_CHECKED_IN"),
    rules.CheckInRefusal.ALREADY_CHECKED_OUT: (400, "ALREADY_CHECKED_IN_TODAY"),
    rules.CheckInRefusal.EXCUSED: (400, "EXCUSED"),
}


def require_employee(ctx: Ctx) -> User:
    """Self-service routes are for employees only (docs/attendance.md, decision D3)."""
    assert ctx.user is not None
    if ctx.user.role != "employee":
        raise ApiError(
            403, "Administrators do not use the employee self-service routes.", "EMPLOYEE_ONLY"
        )
    return ctx.user


def record_of_day(
    ctx: Ctx, user_id: int, work_date: date, lock: bool = False
) -> AttendanceRecord | None:
    stmt = select(AttendanceRecord).where(
        AttendanceRecord.user_id == user_id, AttendanceRecord.work_date == work_date
    )
    if lock:
        stmt = stmt.with_for_update(of=AttendanceRecord)
    return ctx.db.scalars(stmt).unique().first()


def check_in_decision(ctx: Ctx, session: AttendanceSession, user: User) -> rules.CheckInDecision:
    existing = record_of_day(ctx, user.id, session.work_date)
    assigned = existing is not None and existing.session_id == session.id
    return rules.decide_check_in(
        ctx.now,
        window_of(ctx, session),
        ctx.tz,
        locked=session.locked_at is not None,
        attendance_required=session.attendance_required,
        assigned=assigned,
        existing_status=existing.status if existing else None,
        existing_time_in=existing.time_in if existing else None,
        existing_time_out=existing.time_out if existing else None,
    )


def check_in(ctx: Ctx, session_id: int, client_info: dict[str, Any]) -> AttendanceRecord:
    user = require_employee(ctx)
    session = ctx.db.get(AttendanceSession, session_id)
    if session is None:
        raise ApiError(404, "Session not found.", "SESSION_NOT_FOUND")
    existing = record_of_day(ctx, user.id, session.work_date, lock=True)
    decision = check_in_decision(ctx, session, user)
    if not decision.allowed:
        assert decision.refusal is not None
        status, code = CHECKIN_ERRORS[decision.refusal]
        raise ApiError(status, decision.message, code)
    assert decision.status is not None
    try:
        with ctx.db.begin_nested():
            if existing is None:
                record = AttendanceRecord(
                    session_id=session.id,
                    user_id=user.id,
                    work_date=session.work_date,
                    created_at=ctx.now,
                    overtime_minutes=0,
                )
                ctx.db.add(record)
            else:
                record = existing
                record.session_id = session.id
            record.time_in = ctx.now
            record.confirmed_at = ctx.now
            record.status = decision.status
            record.minutes_late = decision.minutes_late
            record.client_info = client_info or None
            record.ip_address = ctx.ip
            record.updated_at = ctx.now
            ctx.db.flush()
    except IntegrityError:
        raise ApiError(400, "You are already checked in.", "CURRENTLY_CHECKED_IN") from None
    ctx.db.refresh(record)
    ctx.audit(
        "check_in",
        f"{user.employee_code} checked in ({decision.status})",
        model_type="AttendanceRecord",
        model_id=record.id,
        new={"status": record.status, "minutes_late": record.minutes_late},
    )
    if decision.status == "late" and ctx.setting("late_alerts"):
        ctx.notify_admins(
            "late_arrival",
            "Late arrival",
            f"{user.first_name} {user.last_name} checked in "
            f"{decision.minutes_late} minutes after the shift start.",
            record.id,
            user.id,
        )
    emit_attendance(ctx, record, "confirmed")
    return record


def close_break(
    ctx: Ctx, record: AttendanceRecord, brk: Break, at: datetime, reason: str, action: str
) -> None:
    due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
    end = at if due is None else min(at, due)
    brk.ended_at = max(end, brk.started_at)
    brk.end_reason = reason
    brk.updated_at = ctx.now
    ctx.db.flush()
    emit_break(ctx, record, brk, action)


def open_break_of(ctx: Ctx, record_id: int) -> Break | None:
    return ctx.db.scalars(
        select(Break).where(Break.record_id == record_id, Break.ended_at.is_(None))
    ).first()


def check_out(ctx: Ctx, record_id: int) -> AttendanceRecord:
    assert ctx.user is not None
    record = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.id == record_id)
            .with_for_update(of=AttendanceRecord)
        )
        .unique()
        .first()
    )
    if record is None:
        raise ApiError(404, "Attendance record not found.", "RECORD_NOT_FOUND")
    if record.user_id != ctx.user.id and ctx.user.role != "admin":
        raise ApiError(403, "You can only check out your own attendance.", "FORBIDDEN")
    if record.time_in is None:
        raise ApiError(400, "You have not checked in.", "NOT_CHECKED_IN")
    if record.time_out is not None:
        raise ApiError(400, "You have already checked out.", "ALREADY_CHECKED_OUT")
    op = today(ctx)
    if not (op - timedelta(days=2) <= record.work_date <= op + timedelta(days=1)):
        raise ApiError(400, "This record is too old to check out.", "RECORD_TOO_OLD")
    brk = open_break_of(ctx, record.id)
    if brk is not None:
        close_break(ctx, record, brk, ctx.now, "checkout", "ended_at_checkout")
    result = rules.decide_check_out(
        ctx.now,
        window_of(ctx, record.session),
        allow_overtime=bool(ctx.setting("allow_overtime")),
        min_overtime_minutes=int(ctx.setting("min_overtime_minutes")),
        ot_rounding=str(ctx.setting("ot_rounding")),
        require_ot_approval=bool(ctx.setting("require_ot_approval")),
    )
    record.time_out = ctx.now
    record.left_early = result.left_early
    record.overtime_minutes = result.overtime_minutes
    record.overtime_status = result.overtime_status
    record.updated_at = ctx.now
    ctx.db.flush()
    ctx.audit(
        "check_out",
        f"Record {record.id} checked out ({record.status}"
        f"{', left early' if record.left_early else ''})",
        model_type="AttendanceRecord",
        model_id=record.id,
        new={
            "status": record.status,
            "left_early": record.left_early,
            "overtime_minutes": record.overtime_minutes,
        },
    )
    emit_attendance(ctx, record, "checked_out")
    return record


# ---------------------------------------------------------------- breaks


def current_record(ctx: Ctx, user: User) -> AttendanceRecord | None:
    """The user's open shift (checked in, not out), else their record for today."""
    open_record = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(
                AttendanceRecord.user_id == user.id,
                AttendanceRecord.time_in.is_not(None),
                AttendanceRecord.time_out.is_(None),
            )
            .order_by(AttendanceRecord.work_date.desc())
        )
        .unique()
        .first()
    )
    if open_record is not None:
        return open_record
    op = today(ctx)
    return (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(
                AttendanceRecord.user_id == user.id,
                AttendanceRecord.work_date.in_([op, op - timedelta(days=1)]),
                AttendanceRecord.time_in.is_not(None),
            )
            .order_by(AttendanceRecord.work_date.desc())
        )
        .unique()
        .first()
    )


def start_break(ctx: Ctx, break_type: str) -> tuple[Break, int]:
    user = require_employee(ctx)
    record = current_record(ctx, user)
    breaks = breaks_of(ctx, [record.id])[record.id] if record else []
    # An open break already past its allowance ends first (the tick would do the same).
    for brk in breaks:
        due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
        if record is not None and brk.ended_at is None and due is not None and due <= ctx.now:
            close_break(ctx, record, brk, due, "auto", "auto_ended")
    refusal, limit = rules.decide_break_start(
        ctx.now,
        timed_in=record is not None and record.time_in is not None,
        timed_out=record is not None and record.time_out is not None,
        spans=spans_of(breaks),
        allowance_minutes=int(ctx.setting("break_duration")),
        max_breaks=int(ctx.setting("max_breaks")),
    )
    if refusal is not None:
        messages = {
            rules.BreakRefusal.NOT_TIMED_IN: "You must check in before starting a break.",
            rules.BreakRefusal.ALREADY_CHECKED_OUT: "You have already checked out.",
            rules.BreakRefusal.ALREADY_ON_BREAK: "You are already on a break.",
            rules.BreakRefusal.BREAK_LIMIT_REACHED: (
                f"You have used your {ctx.setting('break_duration')} minutes of break."
            ),
            rules.BreakRefusal.MAX_BREAKS_REACHED: "You have taken the maximum number of breaks.",
        }
        raise ApiError(400, messages[refusal], refusal.value)
    assert record is not None
    try:
        with ctx.db.begin_nested():
            brk = Break(
                record_id=record.id,
                user_id=user.id,
                work_date=record.work_date,
                break_type=(break_type or "Regular")[:30],
                limit_seconds=limit,
                started_at=ctx.now,
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add(brk)
            ctx.db.flush()
    except IntegrityError:
        raise ApiError(400, "You are already on a break.", "ALREADY_ON_BREAK") from None
    ctx.audit(
        "break_start", f"{user.employee_code} started a break", model_type="Break", model_id=brk.id
    )
    emit_break(ctx, record, brk, "started")
    return brk, limit


def end_break(ctx: Ctx) -> Break:
    user = require_employee(ctx)
    record = current_record(ctx, user)
    brk = open_break_of(ctx, record.id) if record else None
    if record is None or brk is None:
        raise ApiError(400, "No active break found.", "NO_BREAK_FOUND")
    due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
    auto = due is not None and due <= ctx.now
    close_break(
        ctx, record, brk, ctx.now, "auto" if auto else "manual", "auto_ended" if auto else "ended"
    )
    ctx.audit(
        "break_end", f"{user.employee_code} ended a break", model_type="Break", model_id=brk.id
    )
    return brk


def admin_end_break(ctx: Ctx, record_id: int) -> Break:
    record = ctx.db.get(AttendanceRecord, record_id)
    if record is None:
        raise ApiError(404, "Attendance record not found.", "RECORD_NOT_FOUND")
    assert ctx.user is not None
    if ctx.user.role != "admin" and record.user_id != ctx.user.id:
        raise ApiError(403, "Forbidden.", "FORBIDDEN")
    brk = open_break_of(ctx, record.id)
    if brk is None:
        raise ApiError(400, "No break has been started.", "NO_BREAK_STARTED")
    close_break(ctx, record, brk, ctx.now, "admin", "ended")
    ctx.audit(
        "break_end",
        f"Break {brk.id} ended by {ctx.user.employee_code}",
        model_type="Break",
        model_id=brk.id,
    )
    return brk


def break_status(ctx: Ctx, user: User) -> dict[str, Any]:
    """The `/break/status` payload, computed without writing (an overdue break shows ended)."""
    allowance = int(ctx.setting("break_duration"))
    record = current_record(ctx, user)
    breaks = breaks_of(ctx, [record.id])[record.id] if record else []
    spans = spans_of(breaks)
    open_brk = next((b for b in breaks if b.ended_at is None), None)
    if open_brk is not None:
        due = rules.break_due_end(spans[breaks.index(open_brk)])
        if due is not None and due <= ctx.now:
            open_brk = None
    remaining = rules.break_remaining_seconds(allowance, spans, ctx.now)
    used = rules.break_used_seconds(spans, ctx.now)
    refusal, _ = rules.decide_break_start(
        ctx.now,
        timed_in=record is not None and record.time_in is not None,
        timed_out=record is not None and record.time_out is not None,
        spans=[
            s
            if (open_brk is not None or s.ended_at is not None)
            else rules.BreakSpan(s.started_at, rules.break_due_end(s), s.limit_seconds)
            for s in spans
        ],
        allowance_minutes=allowance,
        max_breaks=int(ctx.setting("max_breaks")),
    )
    if open_brk is not None:
        reason, message = "on_break", "You are on a break."
    elif record is None or record.time_in is None:
        reason, message = "not_timed_in", "Check in to take a break."
    elif record.time_out is not None:
        reason, message = "already_checked_out", "You have already checked out."
    elif remaining <= 0:
        reason, message = "break_limit_reached", f"You have used your {allowance} minutes."
    else:
        reason, message = "available", "You can take a break."
    return {
        "break_date": iso_date(record.work_date if record else today(ctx)),
        "current_time": iso(ctx.now),
        "break_window": {
            "start_time": None,
            "end_time": None,
            "start_time_formatted": None,
            "end_time_formatted": None,
            "max_minutes": allowance,
        },
        "break_message": message,
        "is_within_break_window": True,  # no window applies (the allowance is the only limit)
        "break_reason": reason,
        "can_start_break": refusal is None,
        "can_end_break": open_brk is not None,
        "has_checked_in": record is not None and record.time_in is not None,
        "has_checked_out": record is not None and record.time_out is not None,
        "break_used_minutes": used // 60,
        "break_remaining_seconds": remaining,
        "break_already_used": remaining <= 0,
        "is_on_break": open_brk is not None,
        "has_break_today": bool(breaks),
        "current_break": break_json(open_brk, ctx.now) if open_brk else None,
        "attendance_id": record.id if record else None,
        "coffee_used": any(b.break_type == "Coffee" for b in breaks),
        "meal_used": any(b.break_type == "Meal" for b in breaks),
    }


# ---------------------------------------------------------------- sessions


def create_session(
    ctx: Ctx, schedule: Schedule, work_date: date, employee_ids: list[int], action: str = "created"
) -> AttendanceSession:
    if (
        ctx.db.scalar(
            select(AttendanceSession.id).where(
                AttendanceSession.schedule_id == schedule.id,
                AttendanceSession.work_date == work_date,
            )
        )
        is not None
    ):
        raise ApiError(
            422,
            "A session already exists for this schedule and date.",
            errors={"date": ["A session already exists for this schedule and date."]},
        )
    conflicts = []
    if employee_ids:
        taken = ctx.db.scalars(
            select(AttendanceRecord.user_id).where(
                AttendanceRecord.user_id.in_(employee_ids), AttendanceRecord.work_date == work_date
            )
        ).all()
        conflicts = sorted(set(taken))
    if conflicts:
        raise ApiError(
            409,
            "Some employees already have a record on this date.",
            "RECORD_CONFLICT",
            conflicts=conflicts,
        )
    weekend = rules.is_weekend(work_date)
    session = AttendanceSession(
        schedule_id=schedule.id,
        work_date=work_date,
        attendance_required=not weekend,
        session_type="Weekend" if weekend else "Normal",
        opened_at=ctx.now,
        created_by=ctx.user.id if ctx.user else None,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.db.add(session)
    ctx.db.flush()
    ctx.db.refresh(session)
    session.status = status_of(ctx, session)
    for uid in dict.fromkeys(employee_ids):
        ctx.db.add(
            AttendanceRecord(
                session_id=session.id,
                user_id=uid,
                work_date=work_date,
                status="pending",
                created_at=ctx.now,
                updated_at=ctx.now,
                minutes_late=0,
                overtime_minutes=0,
            )
        )
    ctx.db.flush()
    ctx.audit(
        "create_session",
        f"Session {session.id} created for {work_date}",
        model_type="AttendanceSession",
        model_id=session.id,
    )
    emit_session(ctx, session, action)
    return session


def lock_session(
    ctx: Ctx, session: AttendanceSession, attendance_required: bool | None, session_type: str | None
) -> int:
    """Finalise: on a required session every active employee without a record that date is
    marked absent and pending records become absent; on an optional one pending rows go."""
    if session.locked_at is not None:
        raise ApiError(422, "Session is already locked.", "ALREADY_LOCKED")
    if attendance_required is not None:
        session.attendance_required = attendance_required
    allowed_types = ("Regular", "Special", "Overtime", "Remote/WFH", "Excused")
    session.session_type = session_type if session_type in allowed_types else "Regular"
    session.locked_at = ctx.now
    session.locked_by = ctx.user.id if ctx.user else None
    session.status = "locked"
    session.updated_at = ctx.now
    marked: list[AttendanceRecord] = []
    records = (
        ctx.db.scalars(select(AttendanceRecord).where(AttendanceRecord.session_id == session.id))
        .unique()
        .all()
    )
    if session.attendance_required:
        for record in records:
            if record.time_in is None and record.status == "pending":
                record.status = "absent"
                record.updated_at = ctx.now
                marked.append(record)
        have = set(
            ctx.db.scalars(
                select(AttendanceRecord.user_id).where(
                    AttendanceRecord.work_date == session.work_date
                )
            ).all()
        )
        for user in ctx.db.scalars(
            select(User).where(
                User.role == "employee", User.status == "active", User.deleted_at.is_(None)
            )
        ):
            if user.id not in have:
                record = AttendanceRecord(
                    session_id=session.id,
                    user_id=user.id,
                    work_date=session.work_date,
                    status="absent",
                    created_at=ctx.now,
                    updated_at=ctx.now,
                    minutes_late=0,
                    overtime_minutes=0,
                )
                ctx.db.add(record)
                marked.append(record)
    else:
        for record in records:
            if record.status == "pending" and record.time_in is None:
                ctx.db.delete(record)
    ctx.db.flush()
    ctx.audit(
        "lock_session",
        f"Session {session.id} locked; {len(marked)} marked absent",
        model_type="AttendanceSession",
        model_id=session.id,
    )
    emit_session(ctx, session, "locked", "locked")
    announce_absent(ctx, session, marked)
    return len(marked)


def announce_absent(ctx: Ctx, session: AttendanceSession, marked: list[AttendanceRecord]) -> None:
    """One slim batch event with ids[] on the public channel, one full event per employee."""
    if not marked:
        return
    for start in range(0, len(marked), 500):
        chunk = marked[start : start + 500]
        ctx.emit(
            "attendance.updated",
            ["attendance"],
            {"ids": [r.id for r in chunk], "session_id": session.id, "action": "absent_marked"},
        )
    for record in marked:
        # A record marked absent never checked in: no times, no breaks, not late.
        user = ctx.db.get(User, record.user_id)
        ctx.emit(
            "attendance.updated",
            [f"private-user.{record.user_id}"],
            attendance_payload(record, user, None, "absent_marked"),
        )


def unlock_session(ctx: Ctx, session: AttendanceSession) -> None:
    if session.locked_at is None:
        raise ApiError(422, "Session is not locked.", "NOT_LOCKED")
    session.locked_at = None
    session.updated_at = ctx.now
    session.status = status_of(ctx, session)
    ctx.db.flush()
    ctx.audit(
        "unlock_session",
        f"Session {session.id} unlocked",
        model_type="AttendanceSession",
        model_id=session.id,
    )
    emit_session(ctx, session, "unlocked")


# ---------------------------------------------------------------- the background tick


def sessions_around(ctx: Ctx, day: date, days_before: int = 1) -> list[AttendanceSession]:
    """Sessions dated from `days_before` days before `day` through the day after it: the ones
    whose windows (which may cross midnight) can still matter on `day`."""
    return list(
        ctx.db.scalars(
            select(AttendanceSession).where(
                AttendanceSession.work_date >= day - timedelta(days=days_before),
                AttendanceSession.work_date <= day + timedelta(days=1),
            )
        )
        .unique()
        .all()
    )


def tick(ctx: Ctx) -> dict[str, int]:
    """Every time-based transition, idempotent: running it twice at the same instant changes
    nothing the second time. Session clock states, auto-end of breaks at the allowance, auto
    check-out, absent marking at `auto_absent_time`, optional session auto-creation
    (docs/attendance.md, decision D4).
    On PostgreSQL a transaction-scoped advisory lock lets one process tick at a time."""
    counts = {"sessions": 0, "breaks": 0, "checkouts": 0, "absent": 0, "created": 0}
    if ctx.db.get_bind().dialect.name == "postgresql" and not ctx.db.scalar(
        text("SELECT pg_try_advisory_xact_lock(727003)")
    ):
        return counts
    op = today(ctx)
    if ctx.setting("auto_create_sessions"):
        for schedule in ctx.db.scalars(
            select(Schedule).where(Schedule.status == "active", Schedule.deleted_at.is_(None))
        ):
            for day in (op, op + timedelta(days=1)):
                if rules.is_weekend(day) and not ctx.setting("weekend_checkin"):
                    continue
                window = rules.shift_window(
                    day, shift_of(ctx, schedule), ctx.tz, int(ctx.setting("grace_period"))
                )
                exists = ctx.db.scalar(
                    select(AttendanceSession.id).where(
                        AttendanceSession.schedule_id == schedule.id,
                        AttendanceSession.work_date == day,
                    )
                )
                if (
                    exists is None
                    and window.checkin_opens <= ctx.now <= window.end
                    and not rules.is_weekend(day)
                ):
                    create_session(ctx, schedule, day, [], action="created")
                    counts["created"] += 1
    sessions = sessions_around(ctx, op, days_before=3)
    for session in sessions:
        status = status_of(ctx, session)
        if status != session.status:
            action = {"active": "opened", "completed": "completed"}.get(status, "updated")
            session.status = status
            session.updated_at = ctx.now
            counts["sessions"] += 1
            emit_session(ctx, session, action, status)
    # breaks that reached their allowance
    for brk in ctx.db.scalars(select(Break).where(Break.ended_at.is_(None))).all():
        due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
        if due is not None and due <= ctx.now:
            record = ctx.db.get(AttendanceRecord, brk.record_id)
            assert record is not None
            close_break(ctx, record, brk, due, "auto", "auto_ended")
            counts["breaks"] += 1
            if ctx.setting("break_alerts"):
                user = ctx.db.get(User, brk.user_id)
                ctx.notify_admins(
                    "break_overtime",
                    "Break allowance used",
                    f"{user.first_name} {user.last_name}'s break was ended at the allowance."
                    if user
                    else "A break was ended.",
                    record.id,
                    brk.user_id,
                )
    # auto check-out
    if ctx.setting("auto_checkout"):
        grace = int(ctx.setting("auto_checkout_grace_hours"))
        for record in (
            ctx.db.scalars(
                select(AttendanceRecord).where(
                    AttendanceRecord.time_in.is_not(None), AttendanceRecord.time_out.is_(None)
                )
            )
            .unique()
            .all()
        ):
            window = window_of(ctx, record.session)
            if rules.auto_checkout_due(window, grace) <= ctx.now:
                end = max(window.end, record.time_in or window.end)
                open_brk = open_break_of(ctx, record.id)
                if open_brk is not None:
                    close_break(ctx, record, open_brk, end, "checkout", "ended_at_checkout")
                record.time_out = end
                record.notes = ((record.notes + "\n") if record.notes else "") + "Auto checked out"
                record.updated_at = ctx.now
                ctx.db.flush()
                emit_attendance(ctx, record, "auto_checked_out")
                counts["checkouts"] += 1
    # absent marking on required, unlocked sessions past the cutoff
    cutoff_time = ctx.absent_time()
    for session in sessions:
        if session.locked_at is not None or not session.attendance_required:
            continue
        window = window_of(ctx, session)
        if rules.absent_cutoff(window, cutoff_time, ctx.tz) > ctx.now:
            continue
        pending = (
            ctx.db.scalars(
                select(AttendanceRecord).where(
                    AttendanceRecord.session_id == session.id,
                    AttendanceRecord.status == "pending",
                    AttendanceRecord.time_in.is_(None),
                )
            )
            .unique()
            .all()
        )
        for record in pending:
            record.status = "absent"
            record.updated_at = ctx.now
        if pending:
            ctx.db.flush()
            announce_absent(ctx, session, list(pending))
            counts["absent"] += len(pending)
            if ctx.setting("absent_alerts"):
                ctx.notify_admins(
                    "absent",
                    "Absent employees",
                    f"{len(pending)} employee(s) marked absent for {session.work_date}.",
                    None,
                    None,
                )
    if any(counts.values()):
        ctx.audit(
            "auto_tick",
            "Scheduled transitions: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v),
            model_type="System",
        )
    return counts


# ---------------------------------------------------------------- dashboard

PRIORITY = {"active": 0, "locked": 2, "pending": 3, "completed": 4}


def focus_sessions(ctx: Ctx, work_date: date) -> list[AttendanceSession]:
    sessions = (
        ctx.db.scalars(select(AttendanceSession).where(AttendanceSession.work_date == work_date))
        .unique()
        .all()
    )
    return sorted(
        sessions,
        key=lambda s: (PRIORITY.get(status_of(ctx, s), 9), not s.attendance_required, s.id),
    )


def dashboard_date(ctx: Ctx) -> date:
    op = today(ctx)
    nearby = sessions_around(ctx, op)
    running = [s for s in nearby if status_of(ctx, s) == "active"]
    if not running or any(s.work_date == op for s in running):
        return op
    running.sort(key=lambda s: (not s.attendance_required, window_of(ctx, s).start))
    return running[0].work_date


def dashboard_stats(ctx: Ctx) -> dict[str, Any]:
    """The one admin dashboard computation (`GET /reports/dashboard` and `dashboard.updated`).
    Late arrivals count as attended in the rate (docs/attendance.md, fix F15). The day shown
    is the work date of a session running now (so a shift that started after midnight is not
    hidden by the operational-date boundary), else the operational date."""
    op = dashboard_date(ctx)
    total = (
        ctx.db.scalar(
            select(func.count(User.id)).where(
                User.role == "employee", User.status == "active", User.deleted_at.is_(None)
            )
        )
        or 0
    )
    counts: dict[str, int] = dict(
        ctx.db.execute(
            select(AttendanceRecord.status, func.count(AttendanceRecord.id))
            .join(User, User.id == AttendanceRecord.user_id)
            .where(AttendanceRecord.work_date == op, User.role == "employee")
            .group_by(AttendanceRecord.status)
        ).all()
    )
    present = counts.get("present", 0)
    late = counts.get("late", 0)
    left_early = (
        ctx.db.scalar(
            select(func.count(AttendanceRecord.id))
            .join(User, User.id == AttendanceRecord.user_id)
            .where(
                AttendanceRecord.work_date == op,
                User.role == "employee",
                AttendanceRecord.left_early.is_(True),
            )
        )
        or 0
    )
    absent = counts.get("absent", 0) + counts.get("excused", 0)
    sessions = focus_sessions(ctx, op)
    active = []
    for session in sessions:
        status = status_of(ctx, session)
        confirmed = (
            ctx.db.scalar(
                select(func.count(AttendanceRecord.id)).where(
                    AttendanceRecord.session_id == session.id, AttendanceRecord.time_in.is_not(None)
                )
            )
            or 0
        )
        records = (
            ctx.db.scalar(
                select(func.count(AttendanceRecord.id)).where(
                    AttendanceRecord.session_id == session.id
                )
            )
            or 0
        )
        active.append(
            {
                "id": session.id,
                "status": status,
                "schedule": schedule_brief(session.schedule),
                "confirmed_count": confirmed,
                "total_count": records,
                "date": iso_date(session.work_date),
                "attendance_required": session.attendance_required,
            }
        )
    return {
        "total_employees": total,
        "present_today": present,
        "late_today": late,
        "left_early_today": left_early,
        "absent_today": absent,
        "pending_today": max(0, total - present - late - absent),
        "attendance_rate": round((present + late) / total * 100, 1) if total else 0.0,
        "active_sessions_count": sum(1 for s in active if s["status"] == "active"),
        "active_sessions": active[:10],
        "active_session": active[0] if active else None,
        "is_weekend": rules.is_weekend(op),
        "day_name": op.strftime("%A"),
        "attendance_date": iso_date(op),
        "online_now": online_now_count(ctx),
    }


# ---------------------------------------------------------------- employee dashboard


def employee_session(ctx: Ctx, user: User) -> AttendanceSession | None:
    """The session the employee should see: the open record's, else the nearest session whose
    check-in window holds now, else the next one to open, else today's (operational)."""
    record = current_record(ctx, user)
    if record is not None and record.time_out is None:
        return record.session
    op = today(ctx)
    candidates = sessions_around(ctx, op)
    mine = set(
        ctx.db.scalars(
            select(AttendanceRecord.session_id).where(
                AttendanceRecord.user_id == user.id,
                AttendanceRecord.work_date >= op - timedelta(days=1),
            )
        ).all()
    )
    visible = [s for s in candidates if s.attendance_required or s.id in mine]
    if not visible:
        return None
    windows = {s.id: window_of(ctx, s) for s in visible}
    open_now = [s for s in visible if windows[s.id].checkin_opens <= ctx.now <= windows[s.id].end]
    if open_now:
        return min(
            open_now,
            key=lambda s: (
                s.id not in mine,
                ctx.now > windows[s.id].checkin_closes or s.locked_at is not None,
                windows[s.id].start,
            ),
        )
    upcoming = [s for s in visible if windows[s.id].checkin_opens > ctx.now]
    if upcoming:
        return min(upcoming, key=lambda s: windows[s.id].checkin_opens)
    return max(visible, key=lambda s: windows[s.id].start)


def employee_dashboard(ctx: Ctx, user: User) -> dict[str, Any]:
    session = employee_session(ctx, user)
    op = today(ctx)
    record = record_of_day(ctx, user.id, session.work_date) if session else None
    reason: str | None
    if session is None:
        can, reason, message = False, "no_session", "There is no session for today."
    else:
        decision = check_in_decision(ctx, session, user)
        can = decision.allowed
        reason = decision.refusal.value if decision.refusal else None
        message = decision.message
        if decision.allowed:
            # the decision's message is phrased for the check-in's answer ("Checked in late.");
            # before checking in, the page needs what checking in now would mean
            message = (
                f"Check-in is open: checking in now counts as late ({decision.minutes_late} min)."
                if decision.status == "late"
                else "Check-in is open: you are on time."
            )
    local = ctx.now.astimezone(ctx.tz)
    month_start = local.date().replace(day=1)
    monthly = dict(
        ctx.db.execute(
            select(AttendanceRecord.status, func.count(AttendanceRecord.id))
            .where(AttendanceRecord.user_id == user.id, AttendanceRecord.work_date >= month_start)
            .group_by(AttendanceRecord.status)
        ).all()
    )
    recent = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.user_id == user.id)
            .order_by(AttendanceRecord.work_date.desc())
            .limit(5)
        )
        .unique()
        .all()
    )
    status = break_status(ctx, user)
    return {
        "active_session": session_out(ctx, session) if session else None,
        "today_record": record_out(ctx, record) if record else None,
        "monthly_stats": {
            "present": monthly.get("present", 0),
            "late": monthly.get("late", 0),
            "absent": monthly.get("absent", 0),
        },
        "recent_records": records_out(ctx, list(recent)),
        "can_confirm": can,
        "check_in_message": message,
        "check_in_reason": reason,
        "attendance_date": iso_date(session.work_date if session else op),
        # the "enjoy your weekend" screen: a weekend with no session shown to this employee
        "is_weekend": session is None and rules.is_weekend(local.date()),
        "no_work_today": session is None and rules.is_weekend(local.date()),
        "day_name": local.strftime("%A"),
        "break_status": status,  # the same object as GET /break/status
    }


def sessions_for(ctx: Ctx, **filters: Any) -> list[AttendanceSession]:
    stmt = select(AttendanceSession)
    clauses = []
    if filters.get("date"):
        clauses.append(AttendanceSession.work_date == filters["date"])
    if filters.get("schedule_id"):
        clauses.append(AttendanceSession.schedule_id == filters["schedule_id"])
    if clauses:
        stmt = stmt.where(and_(*clauses))
    return list(
        ctx.db.scalars(
            stmt.order_by(AttendanceSession.work_date.desc(), AttendanceSession.id.desc())
        )
        .unique()
        .all()
    )
