"""The paced drain's pacer as a pure function: whatever the drain loop's stalls, no window
of one second holds more closes than the bound (15 % of them, unless drain_seconds is too
short for that), every socket is told once, and an unstalled loop keeps the schedule."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pusherd.server.drain import MAX_SECOND_SHARE, DrainPacer, drain_schedule, largest_window

PROPERTY_SETTINGS = settings(max_examples=300, derandomize=True, deadline=None, database=None)

# How late the loop wakes after the moment the pacer asked for, or (negative) a wake that
# ignores it and comes early: mostly on time, sometimes a little late, sometimes a stall.
DELAYS = st.one_of(
    st.just(0.0),
    st.floats(0.0, 0.05),
    st.floats(0.05, 4.0),
    st.floats(-0.2, -0.01),
)


def run(pacer: DrainPacer, delays: list[float]) -> tuple[list[tuple[float, int]], float]:
    """Drive `pacer` as a drain loop would, each wake late (or early) by the next delay
    (cycled); return the (moment, closes) of each step that closed something and the
    seconds the loop spent stalled beyond the moments it asked for."""
    closes: list[tuple[float, int]] = []
    now = stalled = 0.0
    wakes = 0
    while (wake := pacer.next_wake()) is not None:
        delay = delays[wakes % len(delays)] if delays else 0.0
        wakes += 1
        assert wakes < 100_000, "the pacer never finishes"
        # Late: the asked moment plus the delay; early: time only moves on a little.
        woke = max(now, wake) + delay if delay >= 0 else now + max(0.01, -delay)
        stalled += max(0.0, woke - max(now, wake))
        now = woke
        count = pacer.step(now)
        if count:
            closes.append((now, count))
    return closes, stalled


def bound(count: int, drain_seconds: float, batch_size: int, pacer: DrainPacer) -> int:
    """The documented rule: 15 % of the closes, or what a short drain_seconds needs."""
    if count <= batch_size or drain_seconds <= 0:
        return count
    return max(math.floor(MAX_SECOND_SHARE * count),
               math.ceil(count / drain_seconds) + pacer.burst)


@PROPERTY_SETTINGS
@given(count=st.integers(1, 20_000), drain_seconds=st.one_of(st.just(0.0), st.floats(0.1, 60)),
       batch_size=st.integers(50, 1_000), seed=st.integers(0, 2**32),
       delays=st.lists(DELAYS, max_size=40))
def test_no_window_of_one_second_exceeds_the_bound_whatever_the_stalls(
    count: int, drain_seconds: float, batch_size: int, seed: int, delays: list[float],
) -> None:
    pacer = DrainPacer.plan(count, drain_seconds, batch_size, random.Random(seed))
    closes, stalled = run(pacer, delays)
    assert sum(n for _, n in closes) == count and pacer.done
    assert largest_window(closes) <= pacer.window_limit <= bound(
        count, drain_seconds, batch_size, pacer)
    # A stall of s seconds makes the drain at most s seconds (and a token's wait) longer.
    last_due = pacer.schedule[-1]
    assert closes[-1][0] <= last_due + stalled + 1 / pacer.rate + 1e-6


@PROPERTY_SETTINGS
@given(count=st.integers(1, 20_000), drain_seconds=st.floats(0.1, 60),
       batch_size=st.integers(50, 1_000), seed=st.integers(0, 2**32))
def test_an_unstalled_loop_closes_each_socket_at_its_scheduled_moment(
    count: int, drain_seconds: float, batch_size: int, seed: int,
) -> None:
    pacer = DrainPacer.plan(count, drain_seconds, batch_size, random.Random(seed))
    closes, _ = run(pacer, [])
    moments = [moment for moment, n in closes for _ in range(n)]
    assert moments == pytest.approx(pacer.schedule, abs=1e-9)


def test_ten_thousand_over_ten_seconds_holds_any_second_to_fifteen_percent() -> None:
    pacer = DrainPacer.plan(10_000, 10, 500, random.Random(1))
    assert pacer.window_limit == 1_500
    # The loop asleep for 3 s in the middle: the overdue 3,000 closes are not let out at
    # once, but at the bucket's rate.
    closes, _ = run(pacer, [0.0] * 30 + [3.0] + [0.0] * 10_000)
    assert largest_window(closes) <= 1_500
    per_second = [0] * (int(closes[-1][0]) + 1)
    for moment, n in closes:
        per_second[int(moment)] += n
    assert max(per_second) <= 1_500 and sum(per_second) == 10_000


def test_a_short_drain_seconds_raises_the_bound_to_what_it_needs() -> None:
    # 10,000 over 2 s is 5,000 a second on average: 15 % cannot hold; the limit is the
    # average rate plus the burst (two batches and one), and a stall still cannot exceed it.
    pacer = DrainPacer.plan(10_000, 2, 500, random.Random(2))
    assert pacer.window_limit == 5_000 + 2 * 500 + 1
    closes, _ = run(pacer, [0.0, 1.5, 0.0, 0.3])
    assert largest_window(closes) <= pacer.window_limit


def test_a_small_drain_closes_everyone_at_once() -> None:
    pacer = DrainPacer.plan(300, 10, 500, random.Random(3))
    assert pacer.next_wake() == 0.0 and pacer.step(0.0) == 300 and pacer.next_wake() is None
    assert drain_schedule(300, 10, 500, random.Random(3)) == [0.0] * 300


def test_largest_window_counts_a_closed_window_of_one_second() -> None:
    assert largest_window([]) == 0
    assert largest_window([(0.0, 5), (1.0, 7), (1.5, 1), (2.01, 3)]) == 12
    assert largest_window([(0.0, 5), (1.0001, 7)]) == 7
