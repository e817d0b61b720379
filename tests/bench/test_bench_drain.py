"""bench.drain keeps working: a small run against two real pusherd processes reports every
close (4200), every reconnection to the other node, and the closes per second (figures are
printed, never asserted)."""

from __future__ import annotations

from bench.drain import measure


async def test_a_small_drain_run_reports_every_close_and_reconnection() -> None:
    result = await measure(connections=120, drain_grace=0.2, drain_seconds=1.0,
                           reconnect_after=False)
    assert result["close_codes"] == {4200: 120}
    assert result["reconnected_to_b"] == 120
    assert sum(result["closes_per_second"]) == 120
    assert result["exit_code"] == 0
    assert 0 < result["max_second_share"] <= 1
    # Node A's own record of its closes (its "drained:" log line) is read and reported.
    assert result["server_largest_1s_window"] is not None
    assert result["server_largest_1s_window"] <= result["server_window_limit"]
