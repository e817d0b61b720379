"""The audit log, read-only: lists with filters and presets, by user, statistics, one entry
and the hash-chain verification."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from sqlalchemy import func, select

from .. import rules
from ..context import Ctx, audit_hash
from ..models import AuditLog
from ..serialize import iso, iso_date, paginate
from ..web import Req, find_one, path_id
from .common import page_of


def audit_json(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "action": row.action,
        "model_type": row.model_type,
        "model_id": row.model_id,
        "description": row.description,
        "status": row.status,
        "severity": row.severity,
        "old_values": row.old_values,
        "new_values": row.new_values,
        "ip_address": row.ip_address,
        "user_agent": row.user_agent,
        "previous_hash": row.previous_hash,
        "hash": row.hash,
        "created_at": iso(row.created_at),
    }


ADMIN_ACTIONS = (
    "create_employee",
    "update_employee",
    "delete_employee",
    "activate_employee",
    "deactivate_employee",
    "create_schedule",
    "update_schedule",
    "delete_schedule",
    "activate_schedule",
    "deactivate_schedule",
    "create_session",
    "delete_session",
    "lock_session",
    "unlock_session",
    "create_attendance",
    "update_attendance",
    "delete_attendance",
    "break_update",
    "break_delete",
    "update_settings",
    "overtime_decision",
)
ATTENDANCE_ACTIONS = ("check_in", "check_out", "break_start", "break_end", "auto_tick")
LOGIN_ACTIONS = ("login", "logout", "login_failed", "login_rate_limited")


def audit_index(ctx: Ctx, req: Req) -> Any:
    return audit_page(ctx, req, select(AuditLog))


def audit_preset(
    actions: tuple[str, ...] | None = None, *, failed: bool = False, critical: bool = False
) -> Any:
    def handler(ctx: Ctx, req: Req) -> Any:
        stmt = select(AuditLog)
        if actions is not None:
            stmt = stmt.where(AuditLog.action.in_(actions))
        if failed:
            stmt = stmt.where(AuditLog.status == "failed")
        if critical:
            stmt = stmt.where(AuditLog.severity.in_(["high", "critical"]))
        return audit_page(ctx, req, stmt)

    return handler


def audit_by_user(ctx: Ctx, req: Req) -> Any:
    return audit_page(ctx, req, select(AuditLog).where(AuditLog.user_id == path_id(req)))


def audit_statistics(ctx: Ctx, req: Req) -> Any:
    end = req.q_date("end_date") or ctx.now.astimezone(ctx.tz).date()
    start = req.q_date("start_date") or end - timedelta(days=30)
    since = rules.local_instant(start, time(0, 0), ctx.tz)
    until = rules.local_instant(end + timedelta(days=1), time(0, 0), ctx.tz)
    window = (AuditLog.created_at >= since, AuditLog.created_at < until)

    def counts(column: Any) -> dict[str, int]:
        rows = ctx.db.execute(select(column, func.count()).where(*window).group_by(column))
        return {str(key): int(n) for key, n in rows.all()}

    top = ctx.db.execute(
        select(AuditLog.action, func.count().label("n"))
        .where(*window)
        .group_by(AuditLog.action)
        .order_by(func.count().desc(), AuditLog.action)
        .limit(10)
    ).all()
    return {
        "start_date": iso_date(start),
        "end_date": iso_date(end),
        "total": sum(counts(AuditLog.status).values()),
        "by_status": counts(AuditLog.status),
        "by_severity": counts(AuditLog.severity),
        "failed_logins": ctx.db.scalar(
            select(func.count()).where(*window, AuditLog.action == "login_failed")
        )
        or 0,
        "unique_ips": ctx.db.scalar(
            select(func.count(func.distinct(AuditLog.ip_address))).where(*window)
        )
        or 0,
        "top_actions": [{"action": a, "count": int(n)} for a, n in top],
    }


def audit_page(ctx: Ctx, req: Req, stmt: Any) -> Any:
    page, per_page = page_of(req, 20)
    for name, column in (
        ("action", AuditLog.action),
        ("model_type", AuditLog.model_type),
        ("status", AuditLog.status),
        ("severity", AuditLog.severity),
    ):
        value = req.q_str(name, 100)
        if value:
            stmt = stmt.where(column == value)
    if req.q_int("user_id", 0, 0):
        stmt = stmt.where(AuditLog.user_id == req.q_int("user_id", 0, 0))
    if req.q_str("failed_only") in ("1", "true"):
        stmt = stmt.where(AuditLog.status == "failed")
    if req.q_str("critical_only") in ("1", "true"):
        stmt = stmt.where(AuditLog.severity.in_(["high", "critical"]))
    search = req.q_str("search", 100)
    if search:
        stmt = stmt.where(func.lower(AuditLog.description).like(f"%{search.lower()}%"))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(AuditLog.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return paginate([audit_json(r) for r in rows], total, page, per_page, req.path)


def verify_chain(ctx: Ctx) -> tuple[bool, int, int | None]:
    previous = None
    checked = 0
    for row in ctx.db.scalars(select(AuditLog).order_by(AuditLog.id)).yield_per(500):
        checked += 1
        if row.previous_hash != previous or audit_hash(row) != row.hash:
            return False, checked, row.id
        previous = row.hash
    return True, checked, None


def audit_verify(ctx: Ctx, req: Req) -> Any:
    valid, checked, broken = verify_chain(ctx)
    return {
        "chain_valid": valid,
        "logs_checked": checked,
        "broken_at_id": broken,
        "verified_at": iso(ctx.now),
    }


def audit_show(ctx: Ctx, req: Req) -> Any:
    row = find_one(ctx, AuditLog, req.path_params["id"], "Audit log")
    data = audit_json(row)
    data["integrity_valid"] = audit_hash(row) == row.hash
    return data
