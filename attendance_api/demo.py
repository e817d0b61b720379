"""`--demo`: a small demo (an admin, three employees, a night schedule, a schedule running
now, today's sessions) with fresh random passwords printed once. Re-running it resets the
demo accounts' passwords; it never touches other accounts."""

from __future__ import annotations

import secrets
from datetime import date, time, timedelta

from sqlalchemy import select

from . import domain
from .context import Ctx
from .models import AttendanceRecord, AttendanceSession, Schedule, User
from .security import hash_password

DEMO_ADMIN = "admin@demo.attendance.test"
DEMO_EMPLOYEES = [
    ("QCV-001", "ana@demo.attendance.test", "Ana", "Reyes"),
    ("QCV-002", "ben@demo.attendance.test", "Ben", "Santos"),
    ("QCV-003", "cora@demo.attendance.test", "Cora", "Lim"),
]


def new_password() -> str:
    return secrets.token_urlsafe(9) + "!"


def worked_today(ctx: Ctx, schedule: Schedule, day: date) -> bool:
    """Whether anyone has a record in `schedule`'s session of `day`."""
    return (
        ctx.db.scalar(
            select(AttendanceRecord.id)
            .join(AttendanceSession, AttendanceRecord.session_id == AttendanceSession.id)
            .where(AttendanceSession.schedule_id == schedule.id, AttendanceSession.work_date == day)
            .limit(1)
        )
        is not None
    )


def seed_demo(ctx: Ctx) -> dict[str, str]:
    """Create or refresh the demo; returns email -> password."""
    credentials: dict[str, str] = {}
    people = [("SYSADM-900", DEMO_ADMIN, "Demo", "Admin", "admin")] + [
        (code, email, first, last, "employee") for code, email, first, last in DEMO_EMPLOYEES
    ]
    for code, email, first, last, role in people:
        password = new_password()
        credentials[email] = password
        user = ctx.db.scalars(
            select(User).where(User.email == email, User.deleted_at.is_(None))
        ).first()
        if user is None:
            taken = ctx.db.scalar(
                select(User.id).where(User.employee_code == code, User.deleted_at.is_(None))
            )
            user = User(
                employee_code=code if taken is None else f"{code}-D",
                email=email,
                first_name=first,
                last_name=last,
                role=role,
                status="active",
                position="Team Lead" if role == "admin" else "Virtual Assistant",
                created_at=ctx.now,
                updated_at=ctx.now,
                password_hash="",
            )
            ctx.db.add(user)
        user.password_hash = hash_password(password)
        user.status = "active"
        user.updated_at = ctx.now
    ctx.db.flush()
    local = ctx.now.astimezone(ctx.tz)
    start = time(local.hour, 0)
    end = time((local.hour + 8) % 24, 0)
    schedules = [("Night Shift", time(23, 0), time(7, 0)), ("Demo Shift (now)", start, end)]
    for name, t_in, t_out in schedules:
        schedule = ctx.db.scalars(
            select(Schedule).where(Schedule.name == name, Schedule.deleted_at.is_(None))
        ).first()
        if schedule is None:
            schedule = Schedule(
                name=name,
                time_in=t_in,
                time_out=t_out,
                break_time=None,
                grace_period_minutes=15,
                late_threshold_minutes=30,
                status="active",
                created_at=ctx.now,
                updated_at=ctx.now,
            )
            ctx.db.add(schedule)
            ctx.db.flush()
        elif name != "Night Shift" and not worked_today(ctx, schedule, local.date()):
            # keep the demo shift running "now" on every --demo start, but never move it under
            # records already made against it today: their lateness was judged on its hours
            schedule.time_in, schedule.time_out = t_in, t_out
            schedule.status, schedule.updated_at = "active", ctx.now
            ctx.db.flush()
        if name == "Night Shift":
            # The operational day's night shift, unless it is running now (before 07:00,
            # when the operational day is still yesterday): then the night before, which has
            # ended. Two shifts running at once on different work dates would put the admin
            # dashboard on the night shift's date, where the demo shift's check-ins are not.
            op = domain.today(ctx)
            day = op - timedelta(days=1) if local.time() < t_out else op
        else:
            day = local.date()
        exists = ctx.db.scalar(
            select(AttendanceSession.id).where(
                AttendanceSession.schedule_id == schedule.id, AttendanceSession.work_date == day
            )
        )
        if exists is None:
            session = domain.create_session(ctx, schedule, day, [])
            session.attendance_required = True
            session.session_type = "Normal"
    return credentials
