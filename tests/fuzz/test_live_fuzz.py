"""The live fuzzer, short and seeded, in the test suite (issue 14 §3; docs/fuzzing.md).

A real pusherd process on 127.0.0.1 port 0 gets a few thousand generated client frames,
malformed-framing connections, HTTP requests and requests to the HTTP fallback transports
while an observer socket receives a trigger every 50 ms; every answer must be
protocol-correct, every trigger must arrive, the server must stay up and log no unhandled
exception. A failure prints each wrong answer with its input: run
``python -m tests.fuzz --seed N`` to reproduce a run at full size.
"""

from __future__ import annotations

import pytest

from tests.fuzz.live import Options, run_fuzz


@pytest.mark.parametrize("seed", [1, 2])
def test_a_seeded_fuzz_run_gets_only_protocol_correct_answers(seed: int) -> None:
    report = run_fuzz(Options(seed=seed, frames=3_000, http=1_000, fallback=800))
    assert report.ok, report.summary()
    # The run did what it says (not a vacuous pass): every case was sent and answered,
    # and the answers cover success and refusal on both surfaces.
    assert report.frames == 3_000 and report.framing == 150
    assert report.http_requests >= 1_000
    assert report.triggers_sent > 0 and report.triggers_received == report.triggers_sent
    assert {200, 400, 401, 404, 413} <= set(report.statuses)
    assert {1002, 1007, 1009} <= set(report.close_codes)
    assert {None, 4009, 4301} <= set(report.error_codes)
    # The fallback transports (§15): every request sent, sessions polled, and every kind
    # of answer seen (a send accepted, a preflight, each refusal).
    assert report.fallback_requests == 800 and report.fallback_sessions >= 2
    assert {200, 204, 400, 404, 405, 413} <= set(report.fallback_statuses)
