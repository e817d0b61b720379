"""The scale-out benchmarks keep working: a smoke run of the Redis variants (one node on
Redis, two nodes with the subscribers split, ``--workers 2``) against their own private
redis-server produces well-formed results with Redis command counts (no timing
thresholds: benchmarks print figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.redis_server import PrivateRedis

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("pusherd", "pusherd-redis", "pusherd-2node")
SCENARIOS = ("idle", "fanout", "throughput", "api")


def _run(tmp: Path, scenarios: str, servers: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--runs", "1", "--scenario", scenarios,
         "--servers", servers, "--results-dir", str(tmp)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    documents = {}
    for path in tmp.glob("*.json"):
        document = json.loads(path.read_text())
        documents[document["scenario"]] = document
    return documents


@pytest.fixture(scope="module")
def scaleout_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("scaleout"), ",".join(SCENARIOS), ",".join(SERVERS))


def _results(documents: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    runs = {run["server"]: run["result"] for run in documents[scenario]["all_runs"]}
    assert set(runs) == set(SERVERS)
    for server, result in runs.items():
        assert "error" not in result, (server, result)
        assert not result.get("server_died"), server
    return runs


def test_private_redis_counts_the_commands_it_serves() -> None:
    redis = PrivateRedis()
    try:
        before = redis.stats()
        from bench.redis_server import _command

        for _ in range(3):
            assert _command(redis.port, "PING") == b"PONG"
        assert redis.stats().minus(before).calls == {"ping": 3}
    finally:
        redis.stop()
    assert redis.process.poll() is not None


def test_every_variant_delivers_everything_and_redis_ones_count_commands(
    scaleout_run: dict[str, Any],
) -> None:
    assert set(scaleout_run) == set(SCENARIOS)
    for server, result in _results(scaleout_run, "fanout").items():
        assert result["loss"] == 0 and result["received"] == result["expected"] > 0, server
        assert result["server_cpu_us_per_delivery"] is not None
        if server == "pusherd":
            assert "redis_cmds_per_trigger" not in result
        else:  # every trigger is published on the bus
            assert result["redis_calls_by_command"].get("publish", 0) >= result["triggers_ok"]
            assert result["redis_cmds_per_trigger"] > 0
    two = _results(scaleout_run, "fanout")["pusherd-2node"]
    assert len(two["node_cpu_s"]) == 2
    for server, result in _results(scaleout_run, "idle").items():
        assert result["subscribed"] == result["conns"], server
        if server != "pusherd":
            assert result["redis_cmds_per_subscribe"] > 0
    for server, result in _results(scaleout_run, "throughput").items():
        assert result["loss"] == 0 and result["deliveries_per_s"] > 0, server
    for server, result in _results(scaleout_run, "api").items():
        assert result["requests_ok"] > 0 and result["requests_bad"] == 0, server
    summary = scaleout_run["api"]["summary"]
    assert "pusherd-redis/pusherd requests_per_s x" in summary


def test_report_compares_the_redis_variants_with_in_memory(scaleout_run: dict[str, Any]
                                                           ) -> None:
    from bench.report import table

    rendered = table(scaleout_run["fanout"])
    assert "| pusherd-redis/pusherd | pusherd-2node/pusherd |" in rendered
    assert "Redis commands / trigger" in rendered


def test_scale_fans_out_to_every_connection_over_two_workers(tmp_path: Path) -> None:
    documents = _run(tmp_path, "scale", "pusherd-workers:2")
    result = documents["scale"]["all_runs"][0]["result"]
    assert "error" not in result, result
    assert result["server_processes"] == 2
    assert result["subscribed"] == result["conns"] and result["failed"] == 0
    assert result["received"] == result["expected"] > 0 and result["loss"] == 0
    assert len(result["rss_per_node_mb"]) == 2


def test_instructions_are_counted_for_a_trigger_on_the_redis_adapter() -> None:
    # valgrind: see test_bench_smoke; a small size keeps the two runs short. Printed only.
    result = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--size", "20", "--workloads",
         "api-redis"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.split()[0] == "api-redis")
    assert int(line.split(": ")[1].replace(",", "").split()[0]) > 1000
