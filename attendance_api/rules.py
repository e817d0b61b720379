"""The attendance rules, pure: no database, no clock, no I/O.

Every endpoint, the employee-dashboard flags and the background tick call these functions
(docs/attendance.md, decisions D1-D6 and "One rules module"). Instants are timezone-aware
datetimes (UTC in storage); `work_date` is the date a shift *starts* on in the organisation
time zone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LEFT_EARLY_TOLERANCE = timedelta(minutes=5)
OT_ROUNDING_STEPS = {"none": 0, "15": 15, "30": 30, "60": 60}


@dataclass(frozen=True, slots=True)
class Shift:
    """A schedule's times as the rules need them (grace None = use the org setting)."""

    time_in: time
    time_out: time
    grace_minutes: int | None = None
    open_before_minutes: int = 300
    close_after_minutes: int = 150


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    """One shift on one work date, as UTC-comparable instants."""

    work_date: date
    start: datetime
    end: datetime
    checkin_opens: datetime
    checkin_closes: datetime
    grace: timedelta


class SessionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    LOCKED = "locked"
    COMPLETED = "completed"


class CheckInRefusal(enum.StrEnum):
    """Why a check-in is refused; the value is the `check_in_reason` the UI reads."""

    SESSION_LOCKED = "session_locked"
    SESSION_COMPLETED = "session_completed"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    NOT_ASSIGNED = "not_assigned"
    CURRENTLY_CHECKED_IN = "already_checked_in"
    ALREADY_CHECKED_OUT = "already_checked_out"
    EXCUSED = "excused"


@dataclass(frozen=True, slots=True)
class CheckInDecision:
    allowed: bool
    refusal: CheckInRefusal | None = None
    status: str | None = None  # "present" | "late" when allowed
    minutes_late: int = 0
    message: str = ""


def is_overnight(time_in: time, time_out: time) -> bool:
    """A shift is overnight when it ends at or before its start time (derived, never a flag)."""
    return time_out <= time_in


def operational_date(now: datetime, tz: ZoneInfo, boundary_hour: int) -> date:
    """The work date "today" means: before `boundary_hour` local time it is still yesterday.

    This keeps a 23:00-07:00 shift under its start date until the boundary (default 14:00).
    """
    local = now.astimezone(tz)
    if local.hour < boundary_hour:
        return local.date() - timedelta(days=1)
    return local.date()


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a day in the organisation time zone, as an aware datetime."""
    return datetime.combine(day, at.replace(tzinfo=None), tzinfo=tz)


def shift_window(work_date: date, shift: Shift, tz: ZoneInfo, default_grace: int) -> ShiftWindow:
    """Start, end (next day for overnight shifts), the check-in window and the grace."""
    start = local_instant(work_date, shift.time_in, tz)
    end_day = (
        work_date + timedelta(days=1) if is_overnight(shift.time_in, shift.time_out) else work_date
    )
    end = local_instant(end_day, shift.time_out, tz)
    grace = shift.grace_minutes if shift.grace_minutes is not None else default_grace
    return ShiftWindow(
        work_date=work_date,
        start=start,
        end=end,
        checkin_opens=start - timedelta(minutes=shift.open_before_minutes),
        checkin_closes=start + timedelta(minutes=shift.close_after_minutes),
        grace=timedelta(minutes=grace),
    )


def session_status(now: datetime, window: ShiftWindow, locked: bool) -> SessionStatus:
    """Locked if locked; else pending before the start, active until the end, then completed."""
    if locked:
        return SessionStatus.LOCKED
    if now < window.start:
        return SessionStatus.PENDING
    if now <= window.end:
        return SessionStatus.ACTIVE
    return SessionStatus.COMPLETED


def lateness(now: datetime, window: ShiftWindow) -> tuple[str, int]:
    """(status, minutes_late). Late only after start + grace (D2); minutes count from the start."""
    if now > window.start + window.grace:
        return "late", int((now - window.start).total_seconds() // 60)
    return "present", 0


def _fmt(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def decide_check_in(
    now: datetime,
    window: ShiftWindow,
    tz: ZoneInfo,
    *,
    locked: bool,
    attendance_required: bool,
    assigned: bool,
    existing_status: str | None = None,
    existing_time_in: datetime | None = None,
    existing_time_out: datetime | None = None,
) -> CheckInDecision:
    """The one check-in gate, used by `confirm` and by the dashboard's `can_confirm` flag.

    Order: session locked/completed (409), the existing record of the day (D1, 400),
    assignment on optional sessions, then the window [start - open, start + close] with
    both edges inclusive (403 too early / too late), then lateness.
    """
    if locked:
        return CheckInDecision(
            False, CheckInRefusal.SESSION_LOCKED, message="This session is locked."
        )
    if now > window.end:
        return CheckInDecision(
            False, CheckInRefusal.SESSION_COMPLETED, message="This session has already ended."
        )
    if existing_time_in is not None:
        if existing_time_out is None:
            return CheckInDecision(
                False, CheckInRefusal.CURRENTLY_CHECKED_IN, message="You are already checked in."
            )
        return CheckInDecision(
            False,
            CheckInRefusal.ALREADY_CHECKED_OUT,
            message="You have already checked in and out for this work date.",
        )
    if existing_status == "excused":
        return CheckInDecision(
            False, CheckInRefusal.EXCUSED, message="You are excused for this date."
        )
    if not attendance_required and not assigned:
        return CheckInDecision(
            False,
            CheckInRefusal.NOT_ASSIGNED,
            message="This optional session is not assigned to you.",
        )
    if now < window.checkin_opens:
        return CheckInDecision(
            False,
            CheckInRefusal.TOO_EARLY,
            message=f"Check-in opens at {_fmt(window.checkin_opens, tz)}.",
        )
    if now > window.checkin_closes:
        return CheckInDecision(
            False,
            CheckInRefusal.TOO_LATE,
            message=f"Check-in closed at {_fmt(window.checkin_closes, tz)}.",
        )
    status, minutes_late = lateness(now, window)
    message = "Checked in late." if status == "late" else "Checked in on time."
    return CheckInDecision(True, None, status, minutes_late, message)


@dataclass(frozen=True, slots=True)
class CheckOutResult:
    left_early: bool
    overtime_minutes: int
    overtime_status: str | None


def decide_check_out(
    now: datetime,
    window: ShiftWindow,
    *,
    allow_overtime: bool,
    min_overtime_minutes: int,
    ot_rounding: str,
    require_ot_approval: bool,
) -> CheckOutResult:
    """Left-early (more than 5 minutes before the end, whatever the overtime settings) and
    overtime (after the end, at least the minimum, floored to the rounding step: D6).
    Leaving early is reported beside the arrival status, which check-out never changes."""
    left_early = now < window.end - LEFT_EARLY_TOLERANCE
    overtime = 0
    overtime_status: str | None = None
    if allow_overtime and now > window.end:
        raw = int((now - window.end).total_seconds() // 60)
        if raw >= min_overtime_minutes:
            overtime = round_overtime(raw, ot_rounding)
            if overtime > 0:
                overtime_status = "pending" if require_ot_approval else "approved"
    return CheckOutResult(left_early, overtime, overtime_status)


def round_overtime(minutes: int, rounding: str) -> int:
    """Floor `minutes` to the step of `rounding` (none, 15, 30, 60): decision D6."""
    step = OT_ROUNDING_STEPS.get(rounding, 0)
    if step == 0:
        return minutes
    return (minutes // step) * step


@dataclass(frozen=True, slots=True)
class BreakSpan:
    started_at: datetime
    ended_at: datetime | None
    limit_seconds: int | None = None


def break_seconds(span: BreakSpan, now: datetime) -> int:
    """Seconds a break counts against the allowance: capped at its own limit."""
    end = span.ended_at if span.ended_at is not None else now
    seconds = max(0, int((end - span.started_at).total_seconds()))
    if span.limit_seconds is not None:
        seconds = min(seconds, span.limit_seconds)
    return seconds


def break_used_seconds(spans: list[BreakSpan], now: datetime) -> int:
    return sum(break_seconds(s, now) for s in spans)


def break_remaining_seconds(allowance_minutes: int, spans: list[BreakSpan], now: datetime) -> int:
    """What is left of the cumulative allowance (D5), open breaks counted up to `now`."""
    return max(0, allowance_minutes * 60 - break_used_seconds(spans, now))


class BreakRefusal(enum.StrEnum):
    NOT_TIMED_IN = "NOT_TIMED_IN"
    ALREADY_CHECKED_OUT = "ALREADY_CHECKED_OUT"
    ALREADY_ON_BREAK = "ALREADY_ON_BREAK"
    BREAK_LIMIT_REACHED = "BREAK_LIMIT_REACHED"
    MAX_BREAKS_REACHED = "MAX_BREAKS_REACHED"


def decide_break_start(
    now: datetime,
    *,
    timed_in: bool,
    timed_out: bool,
    spans: list[BreakSpan],
    allowance_minutes: int,
    max_breaks: int,
) -> tuple[BreakRefusal | None, int]:
    """(refusal or None, the new break's limit in seconds). One open break at a time,
    unlimited breaks within the cumulative allowance, optional count cap (0 = none): D5."""
    if not timed_in:
        return BreakRefusal.NOT_TIMED_IN, 0
    if timed_out:
        return BreakRefusal.ALREADY_CHECKED_OUT, 0
    if any(s.ended_at is None for s in spans):
        return BreakRefusal.ALREADY_ON_BREAK, 0
    remaining = break_remaining_seconds(allowance_minutes, spans, now)
    if remaining <= 0:
        return BreakRefusal.BREAK_LIMIT_REACHED, 0
    if max_breaks > 0 and len(spans) >= max_breaks:
        return BreakRefusal.MAX_BREAKS_REACHED, 0
    return None, remaining


def break_due_end(span: BreakSpan) -> datetime | None:
    """When an open break runs out of allowance and is auto-ended."""
    if span.limit_seconds is None:
        return None
    return span.started_at + timedelta(seconds=span.limit_seconds)


def hours_worked(
    time_in: datetime | None, time_out: datetime | None, break_seconds_total: int, status: str
) -> float:
    """Net hours: (out - in) - breaks, floored at 0, rounded to 2 decimals; 0 when absent."""
    if time_in is None or time_out is None or status in ("pending", "absent"):
        return 0.0
    seconds = (time_out - time_in).total_seconds() - break_seconds_total
    return round(max(0.0, seconds) / 3600, 2)


def auto_checkout_due(window: ShiftWindow, grace_hours: int) -> datetime:
    """Open records are checked out (at the shift end) once end + grace has passed."""
    return window.end + timedelta(hours=grace_hours)


def absent_cutoff(window: ShiftWindow, cutoff: time, tz: ZoneInfo) -> datetime:
    """The first `auto_absent_time` at or after the shift start."""
    moment = local_instant(window.work_date, cutoff, tz)
    while moment < window.start:
        moment += timedelta(days=1)
    return moment


def is_weekend(day: date) -> bool:
    return day.weekday() >= 5


def next_employee_code(existing: list[str], prefix: str = "QCV-") -> str:
    """`QCV-NNN`: max numeric suffix + 1, zero-padded to 3; non-numeric suffixes ignored."""
    best = 0
    for code in existing:
        if code.upper().startswith(prefix):
            suffix = code[len(prefix) :]
            if suffix.isascii() and suffix.isdigit():
                best = max(best, int(suffix))
    return f"{prefix}{best + 1:03d}"
