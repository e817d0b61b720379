"""The pure rules (attendance_api.rules): decisions D1-D6 of docs/attendance.md."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from attendance_api import rules
from attendance_api.rules import BreakSpan, CheckInRefusal, Shift

from .conftest import MANILA, manila

NIGHT = Shift(time(23, 0), time(7, 0), grace_minutes=None)
DAY = Shift(time(8, 0), time(17, 0), grace_minutes=None)


def night(work_date: date = date(2026, 3, 2), grace: int = 15) -> rules.ShiftWindow:
    return rules.shift_window(work_date, NIGHT, MANILA, grace)


def decide(now, window, **kw):  # type: ignore[no-untyped-def]
    base = dict(locked=False, attendance_required=True, assigned=False)
    base.update(kw)
    return rules.decide_check_in(now, window, MANILA, **base)


# ------------------------------------------------------------------ operational date, overnight


def test_before_the_boundary_hour_today_is_still_yesterday() -> None:
    assert rules.operational_date(manila(2026, 3, 3, 13, 59), MANILA, 14) == date(2026, 3, 2)
    assert rules.operational_date(manila(2026, 3, 3, 14, 0), MANILA, 14) == date(2026, 3, 3)


def test_operational_date_uses_the_organisation_time_zone_not_utc() -> None:
    # 2026-03-02 20:00 UTC is 2026-03-03 04:00 in Manila: still the 2nd's night shift
    from datetime import UTC, datetime

    now = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    assert rules.operational_date(now, MANILA, 14) == date(2026, 3, 2)


def test_an_overnight_shift_ends_on_the_next_day() -> None:
    window = night()
    assert window.start == manila(2026, 3, 2, 23, 0)
    assert window.end == manila(2026, 3, 3, 7, 0)
    assert rules.is_overnight(time(23, 0), time(7, 0))
    assert not rules.is_overnight(time(8, 0), time(17, 0))


def test_a_day_shift_ends_the_same_day() -> None:
    window = rules.shift_window(date(2026, 3, 2), DAY, MANILA, 15)
    assert window.end == manila(2026, 3, 2, 17, 0)


# ------------------------------------------------------------------ window edges


def test_check_in_window_edges_are_inclusive() -> None:
    window = night()
    assert decide(manila(2026, 3, 2, 18, 0), window).allowed  # start - 5h exactly
    assert decide(manila(2026, 3, 3, 1, 30), window).allowed  # start + 2h30 exactly


def test_one_second_before_the_window_is_too_early_and_after_is_too_late() -> None:
    window = night()
    early = decide(manila(2026, 3, 2, 17, 59, 59), window)
    late = decide(manila(2026, 3, 3, 1, 30, 1), window)
    assert (early.allowed, early.refusal) == (False, CheckInRefusal.TOO_EARLY)
    assert (late.allowed, late.refusal) == (False, CheckInRefusal.TOO_LATE)
    assert "18:00" in early.message and "01:30" in late.message


def test_a_day_shift_allows_check_in_just_before_its_start() -> None:
    window = rules.shift_window(date(2026, 3, 2), DAY, MANILA, 15)
    decision = decide(manila(2026, 3, 2, 7, 55), window)
    assert decision.allowed and decision.status == "present"


# ------------------------------------------------------------------ grace and lateness (D2)


def test_check_in_at_the_end_of_grace_is_present() -> None:
    decision = decide(manila(2026, 3, 2, 23, 15), night())
    assert (decision.status, decision.minutes_late) == ("present", 0)


def test_after_grace_is_late_and_minutes_count_from_shift_start() -> None:
    decision = decide(manila(2026, 3, 2, 23, 16), night())
    assert (decision.status, decision.minutes_late) == ("late", 16)


def test_the_schedule_grace_overrides_the_setting() -> None:
    shift = Shift(time(23, 0), time(7, 0), grace_minutes=5)
    window = rules.shift_window(date(2026, 3, 2), shift, MANILA, 15)
    decision = decide(manila(2026, 3, 2, 23, 6), window)
    assert (decision.status, decision.minutes_late) == ("late", 6)


def test_the_grace_setting_applies_when_the_schedule_has_none() -> None:
    window = night(grace=30)
    assert decide(manila(2026, 3, 2, 23, 29), window).status == "present"
    assert decide(manila(2026, 3, 2, 23, 31), window).status == "late"


# ------------------------------------------------------------------ session gates (D1, locks)


def test_a_locked_session_refuses_check_in() -> None:
    decision = decide(manila(2026, 3, 2, 22, 0), night(), locked=True)
    assert decision.refusal == CheckInRefusal.SESSION_LOCKED


def test_a_completed_session_refuses_check_in() -> None:
    short = Shift(time(23, 0), time(0, 30), grace_minutes=0)
    window = rules.shift_window(date(2026, 3, 2), short, MANILA, 0)
    assert decide(manila(2026, 3, 3, 0, 45), window).refusal == CheckInRefusal.SESSION_COMPLETED


def test_duplicate_check_in_is_refused_while_checked_in_and_after_check_out() -> None:
    window = night()
    now = manila(2026, 3, 2, 23, 0)
    t_in = manila(2026, 3, 2, 22, 50)
    current = decide(now, window, existing_status="present", existing_time_in=t_in)
    done = decide(
        now, window, existing_status="present", existing_time_in=t_in, existing_time_out=now
    )
    assert current.refusal == CheckInRefusal.CURRENTLY_CHECKED_IN
    assert done.refusal == CheckInRefusal.ALREADY_CHECKED_OUT


def test_an_optional_session_needs_an_assignment() -> None:
    now = manila(2026, 3, 2, 22, 0)
    refused = decide(now, night(), attendance_required=False, assigned=False)
    allowed = decide(now, night(), attendance_required=False, assigned=True)
    assert refused.refusal == CheckInRefusal.NOT_ASSIGNED and allowed.allowed


def test_session_status_follows_the_clock_unless_locked() -> None:
    window = night()
    assert rules.session_status(manila(2026, 3, 2, 22, 0), window, False) == "pending"
    assert rules.session_status(manila(2026, 3, 3, 2, 0), window, False) == "active"
    assert rules.session_status(manila(2026, 3, 3, 7, 1), window, False) == "completed"
    assert rules.session_status(manila(2026, 3, 3, 2, 0), window, True) == "locked"


# ------------------------------------------------------------------ check-out (left early, D6)


def checkout(now, **kw):  # type: ignore[no-untyped-def]
    base = dict(
        allow_overtime=False, min_overtime_minutes=60, ot_rounding="none", require_ot_approval=True
    )
    base.update(kw)
    return rules.decide_check_out(now, night(), **base)


def test_leaving_30_minutes_early_is_left_early_without_overtime_settings() -> None:
    assert checkout(manila(2026, 3, 3, 6, 30)).left_early is True


def test_leaving_within_five_minutes_of_the_end_is_not_left_early() -> None:
    assert checkout(manila(2026, 3, 3, 6, 56)).left_early is False


def test_overtime_is_floored_to_the_rounding_step() -> None:
    result = checkout(manila(2026, 3, 3, 8, 44), allow_overtime=True, ot_rounding="30")
    assert (result.overtime_minutes, result.overtime_status) == (90, "pending")
    assert rules.round_overtime(104, "15") == 90
    assert rules.round_overtime(104, "none") == 104


def test_overtime_below_the_minimum_is_not_recorded() -> None:
    result = checkout(manila(2026, 3, 3, 7, 59), allow_overtime=True)
    assert result.overtime_minutes == 0 and result.overtime_status is None


def test_overtime_is_approved_when_no_approval_is_required() -> None:
    result = checkout(manila(2026, 3, 3, 8, 0), allow_overtime=True, require_ot_approval=False)
    assert (result.overtime_minutes, result.overtime_status) == (60, "approved")


# ------------------------------------------------------------------ breaks (D5)


def test_breaks_share_one_cumulative_allowance() -> None:
    t0 = manila(2026, 3, 3, 1, 0)
    spans = [
        BreakSpan(t0, t0 + timedelta(minutes=30)),
        BreakSpan(t0 + timedelta(hours=1), t0 + timedelta(hours=1, minutes=45)),
    ]
    now = t0 + timedelta(hours=2)
    assert rules.break_remaining_seconds(90, spans, now) == 15 * 60
    refusal, limit = rules.decide_break_start(
        now, timed_in=True, timed_out=False, spans=spans, allowance_minutes=90, max_breaks=0
    )
    assert refusal is None and limit == 15 * 60


def test_no_break_once_the_allowance_is_used() -> None:
    t0 = manila(2026, 3, 3, 1, 0)
    spans = [BreakSpan(t0, t0 + timedelta(minutes=90))]
    refusal, _ = rules.decide_break_start(
        t0 + timedelta(hours=2),
        timed_in=True,
        timed_out=False,
        spans=spans,
        allowance_minutes=90,
        max_breaks=0,
    )
    assert refusal == rules.BreakRefusal.BREAK_LIMIT_REACHED


def test_only_one_break_may_be_open() -> None:
    t0 = manila(2026, 3, 3, 1, 0)
    refusal, _ = rules.decide_break_start(
        t0,
        timed_in=True,
        timed_out=False,
        spans=[BreakSpan(t0, None, 5400)],
        allowance_minutes=90,
        max_breaks=0,
    )
    assert refusal == rules.BreakRefusal.ALREADY_ON_BREAK


def test_the_optional_break_count_cap() -> None:
    t0 = manila(2026, 3, 3, 1, 0)
    spans = [BreakSpan(t0, t0 + timedelta(minutes=5))]
    assert (
        rules.decide_break_start(
            t0 + timedelta(hours=1),
            timed_in=True,
            timed_out=False,
            spans=spans,
            allowance_minutes=90,
            max_breaks=1,
        )[0]
        == rules.BreakRefusal.MAX_BREAKS_REACHED
    )
    assert (
        rules.decide_break_start(
            t0 + timedelta(hours=1),
            timed_in=True,
            timed_out=False,
            spans=spans,
            allowance_minutes=90,
            max_breaks=0,
        )[0]
        is None
    )


@pytest.mark.parametrize(
    ("timed_in", "timed_out", "refusal"),
    [
        (False, False, rules.BreakRefusal.NOT_TIMED_IN),
        (True, True, rules.BreakRefusal.ALREADY_CHECKED_OUT),
    ],
)
def test_breaks_need_an_open_shift(
    timed_in: bool, timed_out: bool, refusal: rules.BreakRefusal
) -> None:
    assert (
        rules.decide_break_start(
            manila(2026, 3, 3, 1),
            timed_in=timed_in,
            timed_out=timed_out,
            spans=[],
            allowance_minutes=90,
            max_breaks=0,
        )[0]
        == refusal
    )


def test_an_open_break_is_due_to_end_at_its_limit_and_counts_no_further() -> None:
    t0 = manila(2026, 3, 3, 1, 0)
    span = BreakSpan(t0, None, 20 * 60)
    assert rules.break_due_end(span) == t0 + timedelta(minutes=20)
    assert rules.break_seconds(span, t0 + timedelta(hours=3)) == 20 * 60


def test_hours_worked_subtracts_breaks_and_is_zero_when_absent() -> None:
    t_in, t_out = manila(2026, 3, 2, 23, 0), manila(2026, 3, 3, 7, 0)
    assert rules.hours_worked(t_in, t_out, 90 * 60, "present") == 6.5
    assert rules.hours_worked(t_in, t_out, 0, "absent") == 0.0
    assert rules.hours_worked(t_in, None, 0, "present") == 0.0


# ------------------------------------------------------------------ scheduler rules, codes


def test_absent_cutoff_is_the_first_cutoff_after_the_shift_start() -> None:
    assert rules.absent_cutoff(night(), time(1, 0), MANILA) == manila(2026, 3, 3, 1, 0)
    day = rules.shift_window(date(2026, 3, 2), DAY, MANILA, 15)
    assert rules.absent_cutoff(day, time(1, 0), MANILA) == manila(2026, 3, 3, 1, 0)
    assert rules.absent_cutoff(day, time(12, 0), MANILA) == manila(2026, 3, 2, 12, 0)


def test_auto_checkout_is_due_after_the_end_plus_grace() -> None:
    assert rules.auto_checkout_due(night(), 1) == manila(2026, 3, 3, 8, 0)


def test_employee_codes_ignore_non_numeric_suffixes() -> None:
    assert rules.next_employee_code(["QCV-001", "QCV-017", "QCV-X9", "SYSADM-001"]) == "QCV-018"
    assert rules.next_employee_code([]) == "QCV-001"
