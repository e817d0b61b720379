"""JSON shapes of the original API (docs/attendance.md, "Compatibility with the original API"):
UTC ISO-8601 instants with microseconds and `Z`, dates as `YYYY-MM-DD`, schedule times as
`HH:MM:SS`, the Laravel paginator."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from .models import AttendanceRecord, AttendanceSession, Break, Notification, Schedule, User


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_date(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def hms(value: time | None) -> str | None:
    return value.strftime("%H:%M:%S") if value is not None else None


def user_brief(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "first_name": user.first_name, "last_name": user.last_name}


def user_resource(user: User, online: bool = False) -> dict[str, Any]:
    """`UserResource` of the original (auth/me, login)."""
    return {
        "id": user.id,
        "employee_id": user.employee_code,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "full_name": f"{user.first_name} {user.last_name}",
        "email": user.email,
        "role": user.role,
        "position": user.position,
        "department": user.department,
        "employee_type": user.employee_type,
        "avatar": user.avatar,
        "status": user.status,
        "is_online": online,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }


def schedule_json(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    from .rules import is_overnight

    return {
        "id": schedule.id,
        "name": schedule.name,
        "time_in": hms(schedule.time_in),
        "time_out": hms(schedule.time_out),
        "break_time": hms(schedule.break_time),
        "grace_period_minutes": schedule.grace_period_minutes,
        "late_threshold_minutes": schedule.late_threshold_minutes,
        "checkin_open_before_min": schedule.checkin_open_before_min,
        "checkin_close_after_min": schedule.checkin_close_after_min,
        "is_overnight": is_overnight(schedule.time_in, schedule.time_out),
        "status": schedule.status,
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
    }


def schedule_brief(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    return {
        "id": schedule.id,
        "name": schedule.name,
        "time_in": hms(schedule.time_in),
        "time_out": hms(schedule.time_out),
    }


def session_json(session: AttendanceSession, status: str) -> dict[str, Any]:
    return {
        "id": session.id,
        "schedule_id": session.schedule_id,
        "date": iso_date(session.work_date),
        "status": status,
        "attendance_required": session.attendance_required,
        "session_type": session.session_type,
        "opened_at": iso(session.opened_at),
        "locked_at": iso(session.locked_at),
        "locked_by": session.locked_by,
        "created_by": session.created_by,
        "created_at": iso(session.created_at),
        "updated_at": iso(session.updated_at),
        "schedule": schedule_json(session.schedule),
    }


def break_json(brk: Break, now: datetime | None = None) -> dict[str, Any]:
    from .rules import BreakSpan, break_seconds

    seconds = break_seconds(
        BreakSpan(brk.started_at, brk.ended_at, brk.limit_seconds),
        now or brk.ended_at or brk.started_at,
    )
    return {
        "id": brk.id,
        "attendance_id": brk.record_id,
        "user_id": brk.user_id,
        "break_date": iso_date(brk.work_date),
        "break_type": brk.break_type,
        "duration_limit": (brk.limit_seconds // 60) if brk.limit_seconds is not None else None,
        "break_start": iso(brk.started_at),
        "break_end": iso(brk.ended_at),
        "duration_minutes": seconds // 60 if brk.ended_at is not None else None,
        "end_reason": brk.end_reason,
        "created_at": iso(brk.created_at),
        "updated_at": iso(brk.updated_at),
    }


def notification_json(note: Notification) -> dict[str, Any]:
    return {
        "id": note.id,
        "type": note.type,
        "notifiable_id": note.user_id,
        "data": note.data,
        "read_at": iso(note.read_at),
        "created_at": iso(note.created_at),
    }


def record_json(
    record: AttendanceRecord,
    breaks: list[Break],
    now: datetime,
    *,
    session_status: str | None = None,
) -> dict[str, Any]:
    """An attendance record with the computed hours and the legacy latest-break columns."""
    from .rules import BreakSpan, break_used_seconds, hours_worked

    spans = [BreakSpan(b.started_at, b.ended_at, b.limit_seconds) for b in breaks]
    used = break_used_seconds(spans, now)
    latest = max(breaks, key=lambda b: b.started_at) if breaks else None
    info = record.client_info or {}
    session = record.session
    absent_like = record.status in ("pending", "absent", "excused")
    return {
        "id": record.id,
        "session_id": record.session_id,
        "user_id": record.user_id,
        "attendance_date": iso_date(record.work_date),
        "work_date": iso_date(record.work_date),
        "time_in": iso(record.time_in),
        "time_out": iso(record.time_out),
        "break_start": iso(latest.started_at) if latest else None,
        "break_end": iso(latest.ended_at) if latest else None,
        "status": record.status,
        "minutes_late": record.minutes_late,
        "is_late": record.status == "late",
        "left_early": record.left_early,
        "hours_worked": hours_worked(record.time_in, record.time_out, used, record.status),
        "overtime_minutes": record.overtime_minutes,
        "overtime_status": record.overtime_status,
        "excuse_reason": record.excuse_reason,
        "notes": record.notes,
        "ip_address": record.ip_address,
        "confirmed_at": iso(record.confirmed_at),
        "device_type": info.get("device_type"),
        "device_name": info.get("device_name"),
        "browser": info.get("browser"),
        "os": info.get("os"),
        "latitude": info.get("latitude"),
        "longitude": info.get("longitude"),
        "location_address": info.get("location_address"),
        "location_city": info.get("location_city"),
        "location_country": info.get("location_country"),
        "breaks_sum_duration_minutes": None if absent_like else used // 60,
        "is_on_break": any(b.ended_at is None for b in breaks),
        "breaks": [break_json(b, now) for b in sorted(breaks, key=lambda b: b.started_at)],
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "session": (
            session_json(session, session_status or session.status) if session is not None else None
        ),
        "user": user_resource(record.user) if record.user is not None else None,
    }


def paginate(items: list[Any], total: int, page: int, per_page: int, path: str) -> dict[str, Any]:
    """The Laravel length-aware paginator shape."""
    last_page = max(1, -(-total // per_page))
    start = (page - 1) * per_page

    def url(n: int) -> str:
        return f"{path}?page={n}"

    links = [
        {"url": url(page - 1) if page > 1 else None, "label": "&laquo; Previous", "active": False}
    ]
    for n in range(1, min(last_page, 10) + 1):
        links.append({"url": url(n), "label": str(n), "active": n == page})
    links.append(
        {
            "url": url(page + 1) if page < last_page else None,
            "label": "Next &raquo;",
            "active": False,
        }
    )
    return {
        "current_page": page,
        "data": items,
        "first_page_url": url(1),
        "from": start + 1 if items else None,
        "last_page": last_page,
        "last_page_url": url(last_page),
        "links": links,
        "next_page_url": url(page + 1) if page < last_page else None,
        "path": path,
        "per_page": per_page,
        "prev_page_url": url(page - 1) if page > 1 else None,
        "to": start + len(items) if items else None,
        "total": total,
    }
