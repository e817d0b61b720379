"""An employee's own check-in (`confirm`), the dry-run of that decision (`can_confirm`)
and check-out."""

from __future__ import annotations

from typing import Any

from .. import domain, rules
from ..context import Ctx
from ..models import AttendanceSession
from ..web import Req, path_id

CLIENT_FIELDS = (
    "device_type",
    "device_name",
    "browser",
    "os",
    "latitude",
    "longitude",
    "location_address",
    "location_city",
    "location_country",
)


def confirm(ctx: Ctx, req: Req) -> Any:
    info = {}
    for name in CLIENT_FIELDS:
        value = req.body.get(name)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            info[name] = str(value)[:255]
    session_id = path_id(req, "session_id", "Session")
    record = domain.check_in(ctx, session_id, info)
    return {
        "message": "Attendance confirmed successfully",
        "record": domain.record_out(ctx, record),
    }


CAN_CONFIRM_REASONS = {
    rules.CheckInRefusal.CURRENTLY_CHECKED_IN: "currently_checked_in",
    rules.CheckInRefusal.ALREADY_CHECKED_OUT: "already_confirmed",
    rules.CheckInRefusal.SESSION_LOCKED: "session_inactive",
    rules.CheckInRefusal.SESSION_COMPLETED: "session_inactive",
    rules.CheckInRefusal.NOT_ASSIGNED: "no_weekend_shift",
    rules.CheckInRefusal.EXCUSED: "already_confirmed",
    rules.CheckInRefusal.TOO_EARLY: "too_early",
    rules.CheckInRefusal.TOO_LATE: "too_late",
}


def can_confirm(ctx: Ctx, req: Req) -> Any:
    """The same decision `confirm` makes, without making it (original reason names)."""
    session = ctx.db.get(AttendanceSession, path_id(req, "session_id", "Session"))
    if session is None:
        return {
            "can_confirm": False,
            "reason": "session_not_found",
            "message": "Session not found.",
        }
    decision = domain.check_in_decision(ctx, session, ctx.actor)
    if decision.allowed:
        return {"can_confirm": True}
    assert decision.refusal is not None
    return {
        "can_confirm": False,
        "reason": CAN_CONFIRM_REASONS[decision.refusal],
        "message": decision.message,
    }


def check_out(ctx: Ctx, req: Req) -> Any:
    record = domain.check_out(ctx, path_id(req))
    return {"message": "Checked out successfully", "record": domain.record_out(ctx, record)}
