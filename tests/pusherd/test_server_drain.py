"""The paced drain: readiness false at once, health still answered, new upgrades refused
with 503, then 4200 closes spread over drain_seconds; a second signal ends it at once."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time

import pytest
import websockets

from pusherd.server.server import Server
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import Client, error_code, http_request
from tests.support.pusherd_process import run_pusherd

APP_TOML = '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'


async def _wait_until_draining(port: int) -> None:
    """The drain has begun once /ready says so (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = await http_request(port, "GET", "/ready")
        if reply.status == 503:
            assert reply.json() == {"status": "draining"}
            return
    raise AssertionError("/ready never reported the drain")


async def test_while_draining_health_answers_upgrades_get_503_and_clients_stay(
    start_server: StartServer,
) -> None:
    server = await start_server(
        "[server]\nport = 0\ndrain_grace = 60\nshutdown_timeout = 5\n" + APP_TOML)
    client = await Client.open(server.port)
    await client.subscribe_ok("orders")
    drain = asyncio.create_task(server.drain())
    await _wait_until_draining(server.port)
    up = await http_request(server.port, "GET", "/up")
    assert (up.status, up.json()) == (503, {"status": "draining"})
    try:
        await Client.open(server.port)
        raise AssertionError("a new WebSocket was accepted while draining")
    except websockets.InvalidStatus as refused:
        assert refused.response.status_code == 503
    # Within the grace period the existing client is still served.
    assert await client.barrier() == []
    server.force_stop()
    code, frames = await client.closed(timeout=10)
    assert code == 4200 and [error_code(f) for f in frames] == [4200]
    await asyncio.wait_for(drain, 10)


def test_the_drain_schedule_spreads_closes_over_drain_seconds() -> None:
    import random
    import tempfile
    from pathlib import Path

    from pusherd.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text("[server]\ndrain_seconds = 10\nshutdown_batch_size = 500\n")
        server = Server(load_config(path, {}))
    schedule = server.drain_schedule(10_000, random.Random(7))
    assert schedule == sorted(schedule)
    assert schedule[0] >= 0 and schedule[-1] < 10
    per_second = [0] * 10
    for moment in schedule:
        per_second[int(moment)] += 1
    assert max(per_second) <= 1_500  # no second over 15 % of the closes
    assert min(per_second) >= 500
    # A small drain closes at once: a few hundred reconnects are no storm.
    assert server.drain_schedule(300) == [0.0] * 300


async def test_sigterm_drains_in_paced_batches_on_a_real_process() -> None:
    toml = ("[server]\ndrain_grace = 0.5\ndrain_seconds = 2\nshutdown_batch_size = 10\n"
            "shutdown_timeout = 5\n" + APP_TOML)
    with run_pusherd(toml) as server:
        clients = await asyncio.gather(*(Client.open(server.port) for _ in range(60)))
        closed_at: list[float] = []

        async def watch(client: Client) -> None:
            code, frames = await client.closed(timeout=20)
            closed_at.append(time.monotonic())
            assert code == 4200 and [error_code(f) for f in frames] == [4200]

        watchers = [asyncio.create_task(watch(c)) for c in clients]
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await _wait_until_draining(server.port)
        await asyncio.gather(*watchers)
        assert await asyncio.to_thread(server.process.wait, 15) == 0
    output = "".join(server.output)
    assert "draining: not ready; 60 connection(s)" in output
    # The server's own record of when it told whom: no window of 1 s over the pacer's
    # limit (60 over 2 s needs 30 a second: the limit is that and the burst, 30 + 7).
    told = re.search(r"drained: told (\d+) connection\(s\) to reconnect in [\d.]+ s; "
                     r"largest 1 s window (\d+) \(limit (\d+)\)", output)
    assert told is not None, output[-2000:]
    assert int(told[1]) == 60 and int(told[2]) <= int(told[3]) == 37
    # Nobody was closed during the grace, and the closes spread over most of 2 seconds
    # instead of arriving together.
    assert min(closed_at) - signalled >= 0.5
    assert max(closed_at) - min(closed_at) >= 1.0


async def test_a_second_sigterm_ends_the_drain_at_once() -> None:
    toml = "[server]\ndrain_grace = 120\ndrain_seconds = 10\n" + APP_TOML
    with run_pusherd(toml) as server:
        client = await Client.open(server.port)
        server.process.send_signal(signal.SIGTERM)
        await _wait_until_draining(server.port)
        assert await client.barrier() == []  # still served during the grace
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(server.process.wait, 15) == 0
        # Far sooner than the 120 s grace: the second signal cut it short.
        assert time.monotonic() - started < 15
        code, _ = await client.closed(timeout=10)
        assert code is not None
    assert "second stop signal: closing at once" in "".join(server.output)


async def test_a_stalled_loop_does_not_let_the_overdue_closes_out_at_once(
    start_server: StartServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A real stall: the event loop blocked for 1.5 s just after the closes began. The
    closes that fell due meanwhile go out at the token bucket's rate, not in one step."""
    server = await start_server(
        "[server]\nport = 0\ndrain_grace = 0\ndrain_seconds = 2\nshutdown_batch_size = 10\n"
        "shutdown_timeout = 10\n" + APP_TOML)
    clients = await asyncio.gather(*(Client.open(server.port) for _ in range(60)))
    caplog.set_level(logging.INFO, logger="pusherd")
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, time.sleep, 1.5)  # the stall (a blocking call in the loop)
    await asyncio.wait_for(server.drain(), 30)
    for client in clients:
        code, frames = await client.closed(timeout=10)
        assert code == 4200 and [error_code(f) for f in frames] == [4200]
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "drain_told"]
    assert record.told == 60  # type: ignore[attr-defined]
    # Without the bucket the ~45 closes due by the end of the stall would go in one step.
    assert record.largest_window <= record.window_limit == 37  # type: ignore[attr-defined]
