"""``python -m bench``: run the scenarios against several servers side by side.

    python -m bench --scenario all --runs 3 --servers floor,floor-a,pusherd
    python -m bench --smoke --scenario all --servers floor,pusherd
    python -m bench --scenario fanout --servers external --target 127.0.0.1:6001 \\
        --app-id app-id --app-key app-key --app-secret app-secret

Each scenario prints one summary line (medians over the runs, and each server's ratio to
the floor) and writes bench/results/<time>-<scenario>.json with every run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.load import build_worker
from bench.profile import Profiler
from bench.scenarios import ALL, SCENARIOS, Sizes
from bench.servers import DEFAULT_CREDENTIALS, DESCRIPTIONS, RunningServer, start_server
from bench.signing import AppCredentials

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# scenario -> (headline metric, higher is better?), then the other figures of its line
HEADLINE: dict[str, tuple[str, bool, list[str]]] = {
    "idle": ("rss_per_conn_kb", False, ["connect_rate", "subscribed",
                                        "redis_cmds_per_subscribe"]),
    "fanout": ("p99_ms", False, ["p50_ms", "p95_ms", "deliveries_per_s", "loss",
                                 "server_cpu_us_per_delivery", "redis_cmds_per_trigger",
                                 "redis_publish_per_trigger"]),
    "throughput": ("deliveries_per_s", True, ["deliveries_per_server_cpu_s", "p99_ms", "loss",
                                              "server_cpu_us_per_delivery",
                                              "redis_cmds_per_trigger",
                                              "redis_cpu_us_per_trigger"]),
    "api": ("requests_per_s", True, ["p99_ms", "requests_bad", "server_cpu_us_per_request",
                                     "redis_cmds_per_request"]),
    "channels": ("p99_ms", False, ["p50_ms", "loss"]),
    "slow": ("p99_ms", False, ["baseline_p99_ms", "slow_cut", "normal_cut", "loss",
                               "rss_growth_mb", "time_to_cut_s"]),
    "limit": ("subscribed", True, ["failed", "server_alive"]),
    "scale": ("subscribed", True, ["failed", "connect_rate", "rss_per_conn_kb", "p50_ms",
                                   "p99_ms", "loss", "server_cpu_us_per_delivery",
                                   "redis_cmds_per_trigger", "redis_publish_per_trigger"]),
}


def is_scale_out(server: str) -> bool:
    """The Redis variants, compared with the in-memory ``pusherd`` of the same run."""
    from bench.servers import uses_redis
    return uses_redis(server)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("uvloop", "websockets", "httptools", "orjson", "uvicorn", "starlette"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
        "python": platform.python_version(), "loadavg": os.getloadavg(), "open_file_limit":
        resource.getrlimit(resource.RLIMIT_NOFILE), "packages": versions,
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key: the median of numeric values, `any` of booleans, else the first value."""
    merged: dict[str, Any] = {}
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run if k not in keys]
    for key in keys:
        values = [run[key] for run in runs if key in run and run[key] is not None]
        if not values:
            merged[key] = None
        elif all(isinstance(v, bool) for v in values):
            merged[key] = any(values)
        elif all(isinstance(v, int | float) for v in values):
            merged[key] = round(statistics.median(values), 3)
        else:
            merged[key] = values[0]
    return merged


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def summary_line(scenario: str, sizes_note: str, medians: dict[str, dict[str, Any]],
                 ratios: dict[str, float | None],
                 ratios_to_pusherd: dict[str, float | None] | None = None) -> str:
    metric, _, others = HEADLINE[scenario]
    parts = [f"{scenario} {sizes_note}"]
    for server, med in medians.items():
        if "error" in med and metric not in med:
            parts.append(f"{server}: ERROR {med['error'][:80]}")
            continue
        figures = " ".join(f"{k}={fmt(med.get(k))}" for k in [metric, *others]
                           if k == metric or med.get(k) is not None)
        flags = []
        if med.get("load_bound"):
            flags.append("LOAD-BOUND(lower bound)")
        if med.get("server_cpu") is not None:
            flags.append(f"server_cpu={med['server_cpu']:.2f}")
        if med.get("load_cpu") is not None:
            flags.append(f"load_cpu={med['load_cpu']:.2f}")
        for key in ("server_core_busy", "load_core_busy", "other_cpu"):
            if med.get(key) is not None:
                flags.append(f"{key}={med[key]:.2f}")
        parts.append(f"{server}: {figures} {' '.join(flags)}".rstrip())
    for server, ratio in ratios.items():
        if ratio is not None:
            parts.append(f"{server}/floor {metric} x{ratio:.2f}")
    for server, ratio in (ratios_to_pusherd or {}).items():
        if ratio is not None:
            parts.append(f"{server}/pusherd {metric} x{ratio:.2f}")
    return " | ".join(parts)


def sizes_note(scenario: str, sizes: Sizes) -> str:
    return {
        "idle": f"N={sizes.idle_conns}",
        "fanout": f"N={sizes.fanout_conns} every {sizes.fanout_interval}s for "
                  f"{sizes.fanout_duration}s",
        "throughput": f"N={sizes.throughput_conns} closed-loop {sizes.throughput_duration}s",
        "api": f"{sizes.api_conns} keep-alive conns {sizes.api_duration}s",
        "channels": f"N={sizes.channels_conns} {sizes.channels_rate}/s for "
                    f"{sizes.channels_duration}s",
        "slow": f"N={sizes.slow_conns} slow={sizes.slow_slow}",
        "limit": f"N=open-file limit+{sizes.limit_extra}",
        "scale": f"N={sizes.scale_conns} on one channel, {sizes.scale_triggers} triggers "
                 f"every {sizes.scale_interval}s",
    }[scenario]


async def run_one(scenario: str, server_name: str, args: argparse.Namespace, sizes: Sizes,
                  credentials: AppCredentials, run_index: int = 0) -> dict[str, Any]:
    server: RunningServer | None = None
    try:
        if server_name == "external":
            host, _, port = args.target.rpartition(":")
            server = RunningServer("external", host, int(port), credentials,
                                   external_pid=args.server_pid)
        else:
            server = await asyncio.to_thread(
                start_server, server_name, cpu=args.server_cpu, credentials=credentials)
        profiler = None
        if args.profile and server.pid is not None:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            profiler = Profiler(server.pid, Path(args.profile) /
                                f"{scenario}-{server_name}-run{run_index}.txt")
        try:
            result = await asyncio.wait_for(
                SCENARIOS[scenario](server, sizes, args.load_cpu), args.scenario_timeout)
        finally:
            if profiler is not None:
                summary = await asyncio.to_thread(profiler.stop)
                if args.verbose and summary:
                    print(f"  profile {scenario} {server_name} run {run_index}:\n"
                          + "\n".join(summary.splitlines()[:14]), flush=True)
        if not server.alive():
            result["server_died"] = True
        return result
    except Exception as exc:  # one failed run must not lose the others
        tail = "".join(server.output[-20:]) if server is not None else ""
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "server_output_tail": tail}
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


async def run(args: argparse.Namespace) -> int:
    sizes = Sizes.smoke() if args.smoke else Sizes.full()
    if args.set:
        overrides: dict[str, Any] = {}
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in sizes.__dataclass_fields__:
                print(f"unknown size {key!r}; known: {', '.join(sizes.__dataclass_fields__)}",
                      file=sys.stderr)
                return 2
            kind = type(getattr(sizes, key))
            overrides[key] = kind(value)
        sizes = dataclasses.replace(sizes, **overrides)
    scenarios = ALL if args.scenario == "all" else args.scenario.split(",")
    servers = args.servers.split(",")
    credentials = (AppCredentials(args.app_id, args.app_key, args.app_secret)
                   if args.app_key else DEFAULT_CREDENTIALS)
    build_worker()
    RESULTS_DIR.mkdir(exist_ok=True)
    info = machine_info()
    failures = 0
    written: list[str] = []
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            print(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}",
                  file=sys.stderr)
            return 2
        runs: list[dict[str, Any]] = []
        for run_index in range(args.runs):
            # alternate the order so drift (heat, other load) does not favour one server
            order = servers if run_index % 2 == 0 else list(reversed(servers))
            for server_name in order:
                result = await run_one(scenario, server_name, args, sizes, credentials,
                                       run_index)
                runs.append({"server": server_name, "run": run_index, "result": result})
                if "error" in result:
                    failures += 1
                if args.verbose:
                    shown = {k: v for k, v in result.items() if k != "traceback"}
                    print(f"  {scenario} run {run_index} {server_name}: {json.dumps(shown)}",
                          flush=True)
        medians: dict[str, dict[str, Any]] = {}
        for server_name in servers:
            results = [r["result"] for r in runs if r["server"] == server_name]
            good = [r for r in results if "error" not in r]
            medians[server_name] = median_of(good) if good else {"error": results[0]["error"]}
        metric, higher, _ = HEADLINE[scenario]
        ratios: dict[str, float | None] = {}
        floor_value = medians.get("floor", {}).get(metric)
        for server_name in servers:
            value = medians[server_name].get(metric)
            if server_name != "floor" and floor_value and value is not None:
                ratios[server_name] = round(value / floor_value, 3)
        # the scale-out variants against the in-memory pusherd of the same run
        to_pusherd: dict[str, float | None] = {}
        base_value = medians.get("pusherd", {}).get(metric)
        for server_name in servers:
            value = medians[server_name].get(metric)
            if is_scale_out(server_name) and base_value and value is not None:
                to_pusherd[server_name] = round(value / base_value, 3)
        note = sizes_note(scenario, sizes)
        line = summary_line(scenario, note, medians, ratios, to_pusherd)
        print(line, flush=True)
        document = {
            "scenario": scenario, "smoke": args.smoke, "runs": args.runs, "sizes_note": note,
            "sizes": sizes.__dict__, "machine": info, "started_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pinning": {"server_cpu": args.server_cpu, "load_cpu": args.load_cpu},
            "servers": {name: DESCRIPTIONS.get(name, name) for name in servers},
            "summary": line, "median": medians, "ratio_to_floor": ratios,
            "ratio_to_pusherd": to_pusherd, "ratio_metric": metric,
            "higher_is_better": higher, "all_runs": runs,
        }
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = (Path(args.results_dir) if args.results_dir else RESULTS_DIR) / \
            f"{stamp}-{scenario}{'-smoke' if args.smoke else ''}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        written.append(str(path))
    print("results: " + " ".join(written), flush=True)
    return 1 if failures else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="all",
                        help=f"all, or a comma list of: {', '.join(SCENARIOS)}")
    parser.add_argument("--servers", default="floor,floor-a,pusherd",
                        help="comma list of: floor, floor-verify, floor-a, pusherd, "
                        "pusherd-nometrics, external")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few hundred connections, "
                        "a few seconds per scenario (what CI runs)")
    parser.add_argument("--target", default="127.0.0.1:6001",
                        help="host:port of the external server (with --servers external)")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="pid of the external server, to measure its RSS and CPU")
    parser.add_argument("--app-id", default=None)
    parser.add_argument("--app-key", default=None)
    parser.add_argument("--app-secret", default=None)
    cpus = sorted(os.sched_getaffinity(0))
    parser.add_argument("--server-cpu", type=int, default=cpus[0] if len(cpus) > 1 else None,
                        help="core the server is pinned to (default: the first)")
    parser.add_argument("--load-cpu", type=int, default=cpus[1] if len(cpus) > 1 else None,
                        help="core the load generator is pinned to (default: the second)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin anything")
    parser.add_argument("--set", action="append", metavar="SIZE=VALUE",
                        help="override one scenario size, e.g. --set fanout_duration=5")
    parser.add_argument("--scenario-timeout", type=float, default=600.0)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="sample each started server with py-spy; stacks and a file:line "
                        "summary go to DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = parser.parse_args(argv)
    if args.app_key and not (args.app_id and args.app_secret):
        parser.error("--app-key needs --app-id and --app-secret")
    if args.no_pin:
        args.server_cpu = args.load_cpu = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})
    try:
        import uvloop

        return uvloop.run(run(args))
    except ImportError:
        return asyncio.run(run(args))
