"""The benchmark harness keeps working: a smoke run of every scenario against pusherd and the
frame-once floor produces well-formed results (no timing thresholds: benchmarks print figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.load import Histogram, bucket_value_us
from bench.scenarios import ALL
from bench.signing import AppCredentials, build_trigger_request, sign_request

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("floor", "pusherd")


def test_signature_matches_the_documented_worked_example() -> None:
    credentials = AppCredentials("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    query = sign_request(credentials, "POST", "/apps/3/events", body, 1353088179)
    assert query == (
        "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0"
        "&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature="
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_trigger_request_is_one_complete_keep_alive_post() -> None:
    credentials = AppCredentials("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
    request = build_trigger_request(credentials, "127.0.0.1", 8080, b"{}", 1353088179)
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /apps/3/events?auth_key=278d425bdf160c739803&")
    assert b"\r\nContent-Length: 2" in head
    assert b"Connection: close" not in head
    assert body == b"{}"


def test_histogram_percentiles_follow_the_worker_buckets() -> None:
    hist = Histogram()
    # exact buckets below 1024 µs; 512 sub-buckets per power of two above
    hist.merge({"100": 50, "900": 49, "1024": 1})
    assert hist.total == 100
    assert hist.percentile_ms(0.5) == pytest.approx(0.1005, abs=1e-3)
    assert hist.percentile_ms(0.99) == pytest.approx(0.9005, abs=1e-3)
    assert bucket_value_us(1024) == pytest.approx(1025.0)
    assert bucket_value_us(1024 + 512) == pytest.approx(2050.0)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """Run every scenario once in smoke mode against pusherd and the floor."""
    results_dir = tmp_path_factory.mktemp("bench-results")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--runs", "1", "--scenario", "all",
         "--servers", ",".join(SERVERS), "--results-dir", str(results_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    documents = {}
    for path in results_dir.glob("*.json"):
        document = json.loads(path.read_text())
        documents[document["scenario"]] = document
    return completed.stdout, documents


def _results(documents: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    document = documents[scenario]
    assert document["smoke"] is True
    runs = {run["server"]: run["result"] for run in document["all_runs"]}
    assert set(runs) == set(SERVERS)
    for server, result in runs.items():
        assert "error" not in result, (server, result)
        assert not result.get("server_died"), server
    return runs


def test_every_scenario_prints_one_summary_line_and_writes_json(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, documents = smoke_run
    assert set(documents) == set(ALL)
    summary_lines = [line for line in stdout.splitlines()
                     if line.split(" ", 1)[0] in ALL]
    assert sorted(line.split(" ", 1)[0] for line in summary_lines) == sorted(ALL)
    for document in documents.values():
        assert document["summary"] in summary_lines
        assert set(document["median"]) == set(SERVERS)
        assert document["machine"]["cpus"] >= 1


def test_idle_holds_every_connection_and_measures_memory(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    for result in _results(smoke_run[1], "idle").values():
        assert result["subscribed"] == result["conns"] > 0
        assert result["failed"] == 0
        assert result["connect_rate"] > 0
        assert result["rss_per_conn_kb"] is not None


def test_fanout_delivers_every_message_with_latencies(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    for result in _results(smoke_run[1], "fanout").values():
        assert result["subscribed"] == result["conns"]
        assert result["triggers_ok"] == result["triggers_sent"] > 0
        assert result["expected"] == result["triggers_ok"] * result["subscribed"]
        assert result["received"] == result["expected"]
        assert result["loss"] == 0
        assert result["deliveries_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_throughput_measures_a_non_zero_delivery_rate(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    for result in _results(smoke_run[1], "throughput").values():
        assert result["triggers_ok"] > 0
        assert result["deliveries_per_s"] > 0
        assert result["loss"] == 0
        assert result["server_cpu"] is not None and result["load_cpu"] > 0


def test_api_counts_signed_triggers_accepted(smoke_run: tuple[str, dict[str, Any]]) -> None:
    for result in _results(smoke_run[1], "api").values():
        assert result["requests_ok"] > 0
        assert result["requests_bad"] == 0
        assert result["requests_per_s"] > 0


def test_channels_delivers_every_message_to_its_one_subscriber(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    for result in _results(smoke_run[1], "channels").values():
        assert result["subscribed"] == result["conns"]
        assert result["triggers_ok"] == result["triggers_sent"] > 0
        assert result["received"] == result["expected"] == result["triggers_ok"]
        assert result["loss"] == 0
        assert result["p99_ms"] is not None


def test_slow_consumers_are_cut_off_and_the_others_miss_nothing(
    smoke_run: tuple[str, dict[str, Any]],
) -> None:
    for server, result in _results(smoke_run[1], "slow").items():
        assert result["slow_cut"] == result["slow"] > 0, server
        assert result["normal_cut"] == 0, server
        assert result["loss"] == 0 and result["baseline_loss"] == 0, server
        assert result["received"] == result["expected"] > 0, server


def test_report_renders_a_table_per_scenario(smoke_run: tuple[str, dict[str, Any]]) -> None:
    from bench.report import ROWS, table

    for scenario, document in smoke_run[1].items():
        rendered = table(document)
        assert rendered.startswith(f"**{scenario}**")
        assert "| figure | floor (n=1) | pusherd (n=1) | pusherd/floor |" in rendered
        assert rendered.count("\n| ") == len(ROWS[scenario]) + 1


def test_api_path_prints_a_figure_for_each_server_and_step() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.api_path", "--requests", "2000", "--repeat", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    lines = result.stdout.splitlines()
    for label in ("floor (no signature check)", "floor-verify (minimal check)", "pusherd",
                  "verify_api_request", "parse_trigger", "HttpApi.handle"):
        line = next((line for line in lines if line.strip().startswith(label)), None)
        assert line is not None, f"no line for {label!r} in:\n{result.stdout}"
        assert float(line.split("µs")[0].split()[-1]) > 0


def test_floor_verify_refuses_a_forged_signature() -> None:
    from bench import floor_frameonce

    credentials = AppCredentials("1001", "app-key", "app-secret")
    hub = floor_frameonce.Hub("1001", "app-key", "app-secret", True, 1 << 20)
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    head = build_trigger_request(credentials, "127.0.0.1", 1, body, 1700000000).split(b" ")[1]
    path, _, query = head.partition(b"?")
    assert hub.check_signature(path, query, body)
    assert not hub.check_signature(path, query, body.replace(b'"x"', b'"y"'))
    assert not hub.check_signature(path, query.replace(b"auth_signature=", b"auth_signature=0"),
                                   body)


def test_instruction_counts_are_measured_for_each_workload() -> None:
    # valgrind is part of every machine image of this project (Debian package); a small size
    # keeps the four valgrind runs short. Figures are printed, never compared to a threshold.
    result = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--size", "20",
         "--workloads", "api,subscribe"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {"api", "subscribe"}
    for line in lines.values():
        count = int(line.split(": ")[1].replace(",", "").split()[0])
        assert count > 1000  # a request costs thousands of instructions, never nothing


def test_the_fallback_bench_delivers_every_event_to_both_groups() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.fallback", "--conns", "20", "--events", "3",
         "--interval", "0.01"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
        check=True)
    results = json.loads(completed.stdout)
    for transport in ("ws", "xhr_streaming"):
        group = results[transport]
        assert group["deliveries"] == group["expected"] == 60, group
        assert group["p50_ms"] is not None and group["p50_ms"] <= group["p99_ms"]
