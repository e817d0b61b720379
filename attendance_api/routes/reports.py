"""Reports: the admin and employee dashboards, the daily, monthly, per-employee and personal
reports, and the CSV exports."""

from __future__ import annotations

import csv
import io
from calendar import monthrange
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from starlette.responses import Response

from .. import domain, rules
from ..context import ApiError, Ctx, validation_error
from ..models import AttendanceRecord, AttendanceSession, User
from ..serialize import iso, iso_date, paginate, user_resource
from ..web import Req
from .common import REPORT_CAP, page_of
from .records import record_page


def report_dashboard(ctx: Ctx, req: Req) -> Any:
    return domain.dashboard_stats(ctx)


def employee_dashboard(ctx: Ctx, req: Req) -> Any:
    return domain.employee_dashboard(ctx, ctx.actor)


def daily_rows(
    ctx: Ctx, day: date, search: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    records = (
        ctx.db.scalars(select(AttendanceRecord).where(AttendanceRecord.work_date == day))
        .unique()
        .all()
    )
    by_user = {r.user_id: r for r in records}
    breaks = domain.breaks_of(ctx, [r.id for r in records])
    op = domain.today(ctx)
    had_session = (
        ctx.db.scalar(
            select(AttendanceSession.id).where(AttendanceSession.work_date == day).limit(1)
        )
        is not None
    )
    users = ctx.db.scalars(
        select(User)
        .where(User.role == "employee", User.deleted_at.is_(None))
        .order_by(User.employee_code)
    ).all()
    rows = []
    summary = {"total": 0, "present": 0, "late": 0, "absent": 0, "pending": 0, "optional": 0}
    for user in users:
        if (
            search
            and search.lower()
            not in f"{user.first_name} {user.last_name} {user.employee_code}".lower()
        ):
            continue
        record = by_user.get(user.id)
        if record is None:
            if user.status != "active" or not (day == op or (day < op and had_session)):
                continue
            status = "optional" if rules.is_weekend(day) else ("pending" if day >= op else "absent")
            row = {
                "id": f"p-{user.id}",
                "user_id": user.id,
                "employee_id": user.employee_code,
                "name": f"{user.first_name} {user.last_name}",
                "status": status,
                "time_in": None,
                "time_out": None,
                "late_duration": None,
                "left_early": False,
                "overtime": None,
                "hours_worked": 0,
                "date": iso_date(day),
            }
        else:
            spans = domain.spans_of(breaks[record.id])
            hours = rules.hours_worked(
                record.time_in,
                record.time_out,
                rules.break_used_seconds(spans, ctx.now),
                record.status,
            )
            status = record.status
            row = {
                "id": record.id,
                "user_id": user.id,
                "employee_id": user.employee_code,
                "name": f"{user.first_name} {user.last_name}",
                "status": status,
                "time_in": record.time_in.astimezone(ctx.tz).strftime("%H:%M")
                if record.time_in
                else None,
                "time_out": record.time_out.astimezone(ctx.tz).strftime("%H:%M")
                if record.time_out
                else None,
                "late_duration": f"{record.minutes_late}m" if record.minutes_late else None,
                "left_early": record.left_early,
                "overtime": f"{record.overtime_minutes}m" if record.overtime_minutes else None,
                "hours_worked": hours,
                "date": iso_date(day),
            }
        rows.append(row)
        summary["total"] += 1
        key = {"excused": "absent"}.get(status, status)
        if key in summary:
            summary[key] += 1
    return rows, summary


def report_daily(ctx: Ctx, req: Req) -> Any:
    try:
        day = date.fromisoformat(str(req.path_params["date"]))
    except ValueError:
        raise validation_error("date", "The date must be YYYY-MM-DD.") from None
    rows, summary = daily_rows(ctx, day, req.q_str("search", 100))
    page, per_page = page_of(req, 20, REPORT_CAP)
    chunk = rows[(page - 1) * per_page : page * per_page]
    return {
        "date": iso_date(day),
        "summary": summary,
        "records": paginate(chunk, len(rows), page, per_page, req.path),
    }


def monthly_summary(ctx: Ctx, year: int, month: int) -> dict[str, Any]:
    first, last = date(year, month, 1), date(year, month, monthrange(year, month)[1])
    working = sum(
        1 for n in range((last - first).days + 1) if not rules.is_weekend(first + timedelta(days=n))
    )
    users = ctx.db.scalars(
        select(User).where(
            User.role == "employee", User.status == "active", User.deleted_at.is_(None)
        )
    ).all()
    summary = []
    for user in users:
        counts = dict(
            ctx.db.execute(
                select(AttendanceRecord.status, func.count())
                .where(
                    AttendanceRecord.user_id == user.id,
                    AttendanceRecord.work_date >= first,
                    AttendanceRecord.work_date <= last,
                )
                .group_by(AttendanceRecord.status)
            ).all()
        )
        present = counts.get("present", 0) + counts.get("late", 0)
        rate = min(100, round(present / working * 100)) if working else 0
        summary.append(
            {
                "employee_id": user.employee_code,
                "user_id": user.id,
                "name": f"{user.first_name} {user.last_name}",
                "present": present,
                "late": counts.get("late", 0),
                "absent": counts.get("absent", 0),
                "attendance_rate": rate,
            }
        )
    summary.sort(key=lambda r: -int(str(r["attendance_rate"])))
    return {
        "year": year,
        "month": month,
        "working_days": working,
        "total_employees": len(users),
        "summary": summary,
    }


def report_monthly(ctx: Ctx, req: Req) -> Any:
    year, month = int(req.path_params["year"]), int(req.path_params["month"])
    if not (1 <= month <= 12 and 1970 <= year <= 9999):
        raise validation_error("month", "Invalid year or month.")
    return monthly_summary(ctx, year, month)


def employee_report(ctx: Ctx, req: Req, user: User) -> dict[str, Any]:
    counts = dict(
        ctx.db.execute(
            select(AttendanceRecord.status, func.count())
            .where(AttendanceRecord.user_id == user.id)
            .group_by(AttendanceRecord.status)
        ).all()
    )
    total = sum(counts.values())
    attended = counts.get("present", 0) + counts.get("late", 0)
    stmt = select(AttendanceRecord).where(AttendanceRecord.user_id == user.id)
    return {
        "employee": user_resource(user),
        "stats": {
            "present": counts.get("present", 0),
            "late": counts.get("late", 0),
            "absent": counts.get("absent", 0),
            "attendance_rate": round(attended / total * 100, 1) if total else 0,
        },
        "records": record_page(ctx, req, stmt, 10, REPORT_CAP),
    }


def report_employee(ctx: Ctx, req: Req) -> Any:
    code = str(req.path_params["code"])[:20]
    user = ctx.db.scalars(
        select(User).where(
            func.upper(User.employee_code) == code.upper(), User.deleted_at.is_(None)
        )
    ).first()
    if user is None:
        raise ApiError(404, "Employee not found.")
    return employee_report(ctx, req, user)


def report_personal(ctx: Ctx, req: Req) -> Any:
    return employee_report(ctx, req, ctx.actor)


def csv_response(filename: str, header: list[str], rows: list[list[Any]]) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


RECORD_HEADER = [
    "employee_id",
    "name",
    "work_date",
    "status",
    "time_in",
    "time_out",
    "minutes_late",
    "left_early",
    "hours_worked",
    "overtime_minutes",
    "overtime_status",
]


def record_rows(ctx: Ctx, records: list[AttendanceRecord]) -> list[list[Any]]:
    breaks = domain.breaks_of(ctx, [r.id for r in records])
    out = []
    for r in records:
        used = rules.break_used_seconds(domain.spans_of(breaks[r.id]), ctx.now)
        out.append(
            [
                r.user.employee_code if r.user else "",
                f"{r.user.first_name} {r.user.last_name}" if r.user else "",
                iso_date(r.work_date),
                r.status,
                iso(r.time_in),
                iso(r.time_out),
                r.minutes_late,
                "yes" if r.left_early else "no",
                rules.hours_worked(r.time_in, r.time_out, used, r.status),
                r.overtime_minutes,
                r.overtime_status,
            ]
        )
    return out


def export_excel(ctx: Ctx, req: Req) -> Any:
    """CSV export of records (the original's 501 `export/excel`): `start_date`, `end_date`."""
    op = domain.today(ctx)
    start = req.q_date("start_date") or op.replace(day=1)
    end = req.q_date("end_date") or op
    if end < start:
        raise validation_error("end_date", "The end date must be on or after the start date.")
    records = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.work_date >= start, AttendanceRecord.work_date <= end)
            .order_by(AttendanceRecord.work_date, AttendanceRecord.id)
            .limit(100_000)
        )
        .unique()
        .all()
    )
    return csv_response(
        f"attendance_{start}_{end}.csv", RECORD_HEADER, record_rows(ctx, list(records))
    )


def export_personal(ctx: Ctx, req: Req) -> Any:
    records = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.user_id == ctx.actor.id)
            .order_by(AttendanceRecord.work_date)
        )
        .unique()
        .all()
    )
    return csv_response(
        f"my_attendance_{domain.today(ctx)}.csv", RECORD_HEADER, record_rows(ctx, list(records))
    )
