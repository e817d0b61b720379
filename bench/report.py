"""``python -m bench.report [FILES]``: Markdown tables from bench/results/*.json.

Without FILES, takes the newest non-smoke result of each scenario. Every figure is the
median over the runs of that file; ratios are to the ``floor`` server of the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.cli import RESULTS_DIR
from bench.servers import uses_redis

# scenario -> the figures shown, with their units
ROWS: dict[str, list[tuple[str, str]]] = {
    "idle": [("subscribed", "connections"), ("rss_per_conn_kb", "KB RSS / connection"),
             ("connect_rate", "connections/s"), ("rss_after_mb", "MB RSS total"),
             ("server_cpu", "server CPU while connecting"),
             ("load_core_busy", "load core busy while connecting"),
             ("redis_cmds_per_subscribe", "Redis commands / subscribed connection"),
             ("redis_evalsha_per_subscribe", "Redis EVALSHA / subscribed connection"),
             ("redis_cpu_us_per_subscribe", "Redis CPU µs / subscribed connection")],
    "fanout": [("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
               ("max_ms", "max ms"), ("deliveries_per_s", "deliveries/s"), ("loss", "lost"),
               ("server_cpu", "server CPU (cores)"), ("load_cpu", "load CPU (cores)"),
               ("server_core_busy", "server core busy"), ("load_core_busy", "load core busy"),
               ("other_cpu", "other CPU (softirq, other processes)"),
               ("server_cpu_us_per_delivery", "server CPU µs / delivery"),
               ("redis_cmds_per_trigger", "Redis commands / trigger"),
               ("redis_publish_per_trigger", "Redis PUBLISH / trigger")],
    "throughput": [("deliveries_per_s", "deliveries/s"),
                   ("deliveries_per_server_cpu_s", "deliveries per server CPU-second"),
                   ("server_core_busy", "server core busy"), ("load_core_busy", "load core busy"),
                   ("other_cpu", "other CPU (softirq, other processes)"),
                   ("p99_ms", "p99 ms"),
                   ("loss", "lost"), ("server_cpu", "server CPU"), ("load_cpu", "load CPU"),
                   ("server_cpu_us_per_delivery", "server CPU µs / delivery"),
                   ("redis_cmds_per_trigger", "Redis commands / trigger"),
                   ("redis_publish_per_trigger", "Redis PUBLISH / trigger"),
                   ("redis_cpu_us_per_trigger", "Redis CPU µs / trigger")],
    "api": [("requests_per_s", "signed triggers/s"), ("p99_ms", "p99 ms"),
            ("requests_bad", "non-200"), ("server_cpu", "server CPU"),
            ("load_cpu", "load CPU"), ("load_core_busy", "load core busy"),
            ("other_cpu", "other CPU"),
            ("server_cpu_us_per_request", "server CPU µs / request"),
            ("redis_cmds_per_request", "Redis commands / request")],
    "channels": [("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
                 ("loss", "lost"), ("triggers_late", "triggers sent late"),
                 ("server_cpu", "server CPU"), ("load_cpu", "load CPU"),
                 ("other_cpu", "other CPU")],
    "slow": [("baseline_p99_ms", "readers' p99 ms before"), ("p99_ms", "readers' p99 ms with "
             "slow consumers"), ("max_ms", "readers' max ms"), ("slow_cut", "slow cut off"),
             ("time_to_cut_s", "s until all cut"), ("normal_cut", "readers cut off"),
             ("loss", "readers' lost"), ("rss_growth_mb", "server RSS growth MB"),
             ("closed_unsent_mb_max", "unsent MB left in kernel after cut"),
             ("trigger_timeouts", "triggers unanswered (5 s)")],
    "limit": [("subscribed", "connections held"), ("failed", "refused"),
              ("server_alive", "server alive")],
    "scale": [("subscribed", "connections held"), ("failed", "refused / failed"),
              ("server_processes", "server processes"), ("connect_rate", "connections/s"),
              ("rss_after_mb", "MB RSS, all workers"), ("rss_per_conn_kb", "KB RSS / connection"),
              ("redis_rss_growth_mb", "Redis RSS growth MB"),
              ("redis_cmds_per_subscribe", "Redis commands / subscribed connection"),
              ("p50_ms", "delivery p50 ms"), ("p99_ms", "delivery p99 ms"),
              ("max_ms", "delivery max ms"), ("loss", "lost"),
              ("server_cpu_us_per_delivery", "server CPU µs / delivery"),
              ("redis_cmds_per_trigger", "Redis commands / trigger")],
}
LOWER_IS_BETTER = {"p50_ms", "p95_ms", "p99_ms", "max_ms", "rss_per_conn_kb", "loss",
                   "baseline_p99_ms", "rss_growth_mb", "time_to_cut_s"}


def newest(results_dir: Path) -> list[Path]:
    chosen: dict[str, Path] = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.stem.endswith("-smoke"):
            continue
        scenario = path.stem.split("-", 1)[1]
        chosen[scenario] = path
    return list(chosen.values())


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(document: dict[str, Any]) -> str:
    scenario = document["scenario"]
    servers = list(document["median"])
    runs_per = {s: sum(1 for r in document["all_runs"] if r["server"] == s and "error" not in
                       r["result"]) for s in servers}
    head = ["figure", *[f"{s} (n={runs_per[s]})" for s in servers]]
    ratio_servers = [s for s in servers if s != "floor" and "floor" in servers]
    head += [f"{s}/floor" for s in ratio_servers]
    # the Redis variants against the in-memory pusherd of the same run
    scale_servers = [s for s in servers if "pusherd" in servers and uses_redis(s)]
    head += [f"{s}/pusherd" for s in scale_servers]
    lines = [f"**{scenario}** — {document['sizes_note']}, median of {document['runs']} runs",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in ROWS.get(scenario, []):
        row = [label]
        values = {s: document["median"][s].get(key) for s in servers}
        row += [cell(values[s]) for s in servers]
        for s in ratio_servers:
            base, value = values.get("floor"), values.get(s)
            ok = isinstance(base, int | float) and isinstance(value, int | float)
            ok = ok and not isinstance(base, bool) and base != 0
            row.append(f"×{value / base:.2f}" if ok else "")  # type: ignore[operator]
        for s in scale_servers:
            base, value = values.get("pusherd"), values.get(s)
            ok = isinstance(base, int | float) and isinstance(value, int | float)
            ok = ok and not isinstance(base, bool) and base != 0
            row.append(f"×{value / base:.2f}" if ok else "")  # type: ignore[operator]
        lines.append("| " + " | ".join(row) + " |")
    flags = [s for s in servers if document["median"][s].get("load_bound")]
    if flags:
        lines.append("")
        lines.append(f"Load generator saturated (figures are lower bounds) for: "
                     f"{', '.join(flags)}.")
    errors = [s for s in servers if "error" in document["median"][s]]
    for s in errors:
        lines.append(f"{s}: {document['median'][s]['error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] if args else newest(RESULTS_DIR)
    order = list(ROWS)
    documents = [json.loads(p.read_text()) for p in paths]
    documents.sort(key=lambda d: order.index(d["scenario"]) if d["scenario"] in order else 99)
    for document in documents:
        print(table(document))
    if documents:
        machine = documents[0]["machine"]
        pins = documents[0]["pinning"]
        print(f"Machine: {machine['cpus']} × {machine['cpu_model']}, Linux "
              f"{machine['kernel']}, Python {machine['python']}, open-file limit "
              f"{machine['open_file_limit'][1]}; server pinned to CPU {pins['server_cpu']}, "
              f"load generator to CPU {pins['load_cpu']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
