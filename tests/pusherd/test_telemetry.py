"""Telemetry's log lines stay bounded under a flooding client; the counters count all."""

from __future__ import annotations

import logging

import pytest

from pusherd.errors import ClientEventRejected, MessageFormatError
from pusherd.server.telemetry import CLIENT_ERROR_LOG_BURST, Telemetry


def test_a_client_sending_garbage_in_a_loop_cannot_flood_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = Telemetry()
    with caplog.at_level(logging.INFO, logger="pusherd.ws"):
        for _ in range(CLIENT_ERROR_LOG_BURST + 200):
            telemetry.client_error("1001", "1.2", MessageFormatError("Invalid JSON"))
    lines = [r for r in caplog.records if r.name == "pusherd.ws"]
    assert len(lines) == CLIENT_ERROR_LOG_BURST


def test_rate_limited_client_events_are_all_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = Telemetry()
    rejected = ClientEventRejected("Client event rejected: rate limit exceeded (10 per second)",
                                   channel="private-x")
    with caplog.at_level(logging.INFO, logger="pusherd.ws"):
        for _ in range(500):
            telemetry.client_error("1001", "1.2", rejected)
    assert telemetry.client_events_rate_limited == {"1001": 500}
    lines = [r.getMessage() for r in caplog.records if r.name == "pusherd.ws"]
    assert len(lines) == 1 and "rate-limited app=1001" in lines[0]
