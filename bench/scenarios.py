"""The benchmark scenarios: each drives one running server and returns a flat result dict.

Every loop is bounded in count and in time; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import (
    LoadGroup,
    Target,
    TriggerClient,
    core_times,
    cpu_seconds,
    rss_bytes,
    server_side_sockets,
    write_api_requests,
)
from bench.servers import RunningServer

SLOW_SRC = "127.0.2.1"  # the slow clients' source address, to find their server-side sockets
SLOW_SRC_PREFIX = (127, 0, 2)
LOAD_BOUND_CPU = 0.90  # the load core counts as saturated above this share of one core


@dataclass(frozen=True)
class Sizes:
    """Scenario sizes; `full()` are the issue's, `smoke()` a few hundred connections."""

    idle_conns: int
    fanout_conns: int
    fanout_interval: float
    fanout_duration: float
    throughput_conns: int
    throughput_duration: float
    api_conns: int
    api_duration: float
    channels_conns: int
    channels_rate: float
    channels_duration: float
    slow_conns: int
    slow_slow: int
    slow_baseline: float
    slow_max_duration: float
    slow_heavy_rate: float
    slow_heavy_bytes: int
    limit_extra: int
    scale_conns: int = 100_000
    scale_triggers: int = 5
    scale_interval: float = 3.0

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            idle_conns=10_000, fanout_conns=10_000, fanout_interval=0.1, fanout_duration=20.0,
            throughput_conns=1_000, throughput_duration=10.0, api_conns=4, api_duration=10.0,
            channels_conns=10_000, channels_rate=1_000.0, channels_duration=10.0,
            slow_conns=1_000, slow_slow=50, slow_baseline=5.0, slow_max_duration=30.0,
            slow_heavy_rate=250.0, slow_heavy_bytes=8_000, limit_extra=500,
        )

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            idle_conns=300, fanout_conns=300, fanout_interval=0.1, fanout_duration=2.0,
            throughput_conns=200, throughput_duration=2.0, api_conns=2, api_duration=2.0,
            channels_conns=300, channels_rate=200.0, channels_duration=2.0,
            slow_conns=200, slow_slow=10, slow_baseline=1.0, slow_max_duration=10.0,
            slow_heavy_rate=250.0, slow_heavy_bytes=8_000, limit_extra=0,
            scale_conns=300, scale_triggers=2, scale_interval=0.5,
        )


class CpuWindow:
    """CPU used by the server and by the load side (workers + this process) over a window."""

    def __init__(self, server: RunningServer, load: LoadGroup | None,
                 load_core: int | None = None) -> None:
        self.server_pids = server.pids
        self.redis = server.redis
        self.load_pids = [os.getpid(), *(load.pids if load else [])]
        self.server_core = server.cpu
        self.load_core = load.load_cpu if load else load_core

    def __enter__(self) -> CpuWindow:
        self.t0 = time.monotonic()
        self.server0 = [cpu_seconds(pid) for pid in self.server_pids]
        self.redis0 = self.redis.stats() if self.redis is not None else None
        self.load0 = sum(cpu_seconds(pid) for pid in self.load_pids)
        self.coordinator0 = cpu_seconds(os.getpid())
        self.cores0 = core_times()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> dict[str, Any]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        node_cpu_s = [cpu_seconds(pid) - c0 for pid, c0 in zip(self.server_pids, self.server0,
                                                               strict=True)]
        server = sum(node_cpu_s) / wall if self.server_pids else None
        load = (sum(cpu_seconds(pid) for pid in self.load_pids) - self.load0) / wall
        cores1 = core_times()

        def busy(core: int | None) -> float | None:
            if core is None or core not in cores1 or core not in self.cores0:
                return None
            b0, t0 = self.cores0[core]
            b1, t1 = cores1[core]
            return round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else None

        load_core_busy = busy(self.load_core)
        # busy time of all cores not charged to the server or the load processes: softirq
        # work (loopback TCP) plus whatever else runs on the machine
        all_busy = sum(cores1[c][0] - self.cores0[c][0] for c in cores1 if c in self.cores0)
        all_total = sum(cores1[c][1] - self.cores0[c][1] for c in cores1 if c in self.cores0)
        other = None
        if all_total > 0:
            ncores = len(cores1)
            other = all_busy / all_total * ncores - (server or 0.0) - load
        self.result: dict[str, Any] = {
            "server_cpu": round(server, 3) if server is not None else None,
            "load_cpu": round(load, 3),
            "coordinator_cpu": round((cpu_seconds(os.getpid()) - self.coordinator0) / wall, 3),
            # whole-core busy share (processes + kernel softirq), whoever used it
            "server_core_busy": busy(self.server_core),
            "load_core_busy": load_core_busy,
            "other_cpu": round(other, 3) if other is not None else None,
            # CPU seconds over the window: the whole server, and each node (process)
            "server_cpu_s": round(sum(node_cpu_s), 3),
            "node_cpu_s": [round(c, 3) for c in node_cpu_s],
            "load_bound": load >= LOAD_BOUND_CPU
            or (load_core_busy is not None and load_core_busy >= LOAD_BOUND_CPU),
        }
        if self.redis is not None and self.redis0 is not None:
            delta = self.redis.stats().minus(self.redis0)
            self.result.update({"redis_calls": delta.total, "redis_calls_by_command":
                                delta.calls, "redis_cpu_s": round(delta.cpu_s, 3)})
        return self.result


def target_of(server: RunningServer) -> Target:
    return Target(server.host, server.port, server.credentials)


def server_rss(server: RunningServer) -> int:
    """RSS of every serving process together (bytes), 0 if unknown."""
    return sum(rss_bytes(pid) for pid in server.pids)


def per_op(cpu_result: dict[str, Any], operations: int, deliveries: int | None = None,
           ) -> dict[str, Any]:
    """Costs per operation over a CPU window: server CPU µs per delivery (all nodes
    together), and for the Redis variants Redis commands and Redis CPU µs per operation
    (trigger, subscribed connection or request). Less moved by the machine's load than
    rates are."""
    out: dict[str, Any] = {}
    if deliveries:
        out["server_cpu_us_per_delivery"] = round(cpu_result["server_cpu_s"] * 1e6
                                                  / deliveries, 2)
    if operations and "redis_calls" in cpu_result:
        out["redis_cmds_per_op"] = round(cpu_result["redis_calls"] / operations, 3)
        # the bus messages alone (the other commands are the leases' and the reapers'
        # background, and the scripts' own commands, which Redis counts too)
        by_command = cpu_result["redis_calls_by_command"]
        out["redis_publish_per_op"] = round(by_command.get("publish", 0) / operations, 3)
        out["redis_evalsha_per_op"] = round(by_command.get("evalsha", 0) / operations, 3)
        out["redis_cpu_us_per_op"] = round(cpu_result["redis_cpu_s"] * 1e6 / operations, 2)
    return out


async def wait_delivered(load: LoadGroup, key: str, expected: int, timeout: float,
                         ) -> dict[str, int]:
    """Poll the workers (every 50 ms, bounded by `timeout`) until `expected` arrived."""
    deadline = time.monotonic() + timeout
    stat = await load.stat()
    while stat[key] < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        stat = await load.stat()
    return stat


async def paced_triggers(
    target: Target, *, rate: float, duration: float, pick: Callable[[int], list[str]],
    pad: str = "", pool: int = 8, stop: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Open-loop triggers at `rate`/s for `duration` s over up to `pool` keep-alive clients."""
    count = max(1, int(rate * duration))
    clients = [TriggerClient(target) for _ in range(pool)]
    await asyncio.gather(*(client.connect() for client in clients))
    t0 = time.monotonic() + 0.05
    next_slot = 0
    late = 0
    timeouts = 0

    async def run(client: TriggerClient) -> None:
        nonlocal next_slot, late, timeouts
        while next_slot < count and not (stop and stop()):
            slot = next_slot
            next_slot += 1
            delay = t0 + slot / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                late += 1
            try:
                await client.trigger(pick(slot), slot, pad, timeout=timeout)
            except (TimeoutError, ConnectionError):
                # the server did not answer this trigger in time: this client is done
                timeouts += 1
                return

    try:
        await asyncio.wait_for(asyncio.gather(*(run(c) for c in clients)), duration * 3 + 60)
    finally:
        for client in clients:
            client.close()
    errors: dict[int, int] = {}
    for client in clients:
        for status, n in client.errors.items():
            errors[status] = errors.get(status, 0) + n
    return {
        "triggers_sent": sum(c.sent for c in clients),
        "triggers_ok": sum(c.ok for c in clients),
        "trigger_errors": errors,
        "triggers_late": late,
        "trigger_timeouts": timeouts,
        "trigger_elapsed_s": round(time.monotonic() - t0, 3),
    }


def _latency(hist_summary: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v for k, v in hist_summary.items()}


async def _connect(server: RunningServer, conns: int, load_cpu: int | None,
                   **kwargs: Any) -> tuple[LoadGroup, dict[str, Any]]:
    if kwargs.get("mode", "ws") == "ws":  # subscribers spread over every node
        kwargs["nodes"] = server.nodes
    load = await LoadGroup.start(target_of(server), conns, load_cpu=load_cpu, **kwargs)
    try:
        ready = await load.wait_ready(timeout=kwargs.get("connect_timeout", 120.0) + 30)
    except BaseException:
        load.kill()
        raise
    return load, ready


# ----------------------------------------------------------------- scenarios

async def scenario_idle(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                        ) -> dict[str, Any]:
    """N connections, each subscribed to its own channel: RSS per connection, connect rate."""
    n = sizes.idle_conns
    rss0 = server_rss(server)
    with CpuWindow(server, None, load_cpu) as cpu:
        load, ready = await _connect(server, n, load_cpu, channel_fmt="idle-%d",
                                     concurrency=256)
        connect_cpu = cpu.close()
    try:
        samples = []
        for _ in range(10):  # RSS settles within a few hundred ms; keep the maximum
            samples.append(server_rss(server))
            await asyncio.sleep(0.1)
        rss1 = max(samples)
        stats, _ = await load.stop()
    finally:
        load.kill()
    subscribed = ready["subscribed"]
    return {
        "conns": n,
        "subscribed": subscribed,
        "failed": ready["failed"],
        "connect_s": ready["elapsed_s"],
        "connect_rate": round(subscribed / ready["elapsed_s"], 1) if ready["elapsed_s"] else None,
        "rss_before_mb": round(rss0 / 2**20, 2),
        "rss_after_mb": round(rss1 / 2**20, 2),
        "rss_per_conn_kb": round((rss1 - rss0) / subscribed / 1024, 2)
        if subscribed and server.pids else None,
        "cut": stats["cut"],
        # during the connect phase (the load side's processes are not known before it)
        "server_cpu": connect_cpu["server_cpu"],
        "server_core_busy": connect_cpu["server_core_busy"],
        "load_core_busy": connect_cpu["load_core_busy"],
        "load_bound": bool(connect_cpu["load_core_busy"] and
                           connect_cpu["load_core_busy"] >= LOAD_BOUND_CPU),
        # Redis commands per subscribed connection (connect + subscribe), when on Redis
        **{k.replace("_per_op", "_per_subscribe"): v
           for k, v in per_op(connect_cpu, subscribed).items()},
        **{k: connect_cpu[k] for k in ("redis_calls_by_command", "redis_cpu_s")
           if k in connect_cpu},
    }


async def scenario_fanout(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                          ) -> dict[str, Any]:
    """N subscribers on one channel, one trigger every interval: latency, rate, loss."""
    n = sizes.fanout_conns
    load, ready = await _connect(server, n, load_cpu, channel="fanout", concurrency=256)
    try:
        target = target_of(server)
        with CpuWindow(server, load) as cpu:
            triggers = await paced_triggers(
                target, rate=1 / sizes.fanout_interval, duration=sizes.fanout_duration,
                pick=lambda _: ["fanout"], pool=4,
            )
            expected = triggers["triggers_ok"] * ready["subscribed"]
            drain0 = time.monotonic()
            stat = await wait_delivered(load, "normal_received", expected, timeout=15.0)
            drain_s = time.monotonic() - drain0
            cpu_result = cpu.close()
        stats, hist = await load.stop()
    finally:
        load.kill()
    # from the first trigger to the last delivery (within the 50 ms polling step)
    elapsed = triggers["trigger_elapsed_s"] + drain_s
    return {
        "conns": n, "subscribed": ready["subscribed"], "failed": ready["failed"],
        "interval_s": sizes.fanout_interval, "duration_s": sizes.fanout_duration,
        **triggers, "expected": expected, "received": stats["normal_received"],
        "loss": expected - stats["normal_received"],
        "deliveries_per_s": round(stat["normal_received"] / elapsed, 1) if elapsed else None,
        "drain_s": round(drain_s, 3),
        "cut": stats["cut"], **_latency(hist.summary()), **cpu_result,
        **{k.replace("_per_op", "_per_trigger"): v for k, v in per_op(
            cpu_result, triggers["triggers_ok"], stats["normal_received"]).items()},
    }


async def scenario_throughput(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                              ) -> dict[str, Any]:
    """1,000 subscribers, closed-loop triggers: the sustained deliveries per second."""
    n = sizes.throughput_conns
    load, ready = await _connect(server, n, load_cpu, channel="throughput", concurrency=256)
    subscribed = ready["subscribed"]
    max_backlog = 50 * subscribed  # messages in flight before the triggers pause
    target = target_of(server)
    clients = [TriggerClient(target) for _ in range(2)]
    await asyncio.gather(*(c.connect() for c in clients))
    received_now = 0
    done = False

    async def poll() -> None:
        nonlocal received_now
        while not done:
            received_now = (await load.stat())["normal_received"]
            await asyncio.sleep(0.02)

    async def fire(client: TriggerClient, deadline: float) -> None:
        seq = 0
        while time.monotonic() < deadline:
            sent = sum(c.ok for c in clients) * subscribed
            if sent - received_now > max_backlog:
                await asyncio.sleep(0.002)
                continue
            await client.trigger(["throughput"], seq)
            seq += 1

    poller = asyncio.create_task(poll())
    try:
        # warm-up, then the measured window
        warm = time.monotonic() + min(1.0, sizes.throughput_duration / 4)
        await asyncio.gather(*(fire(c, warm) for c in clients))
        start_received = (await load.stat())["normal_received"]
        t0 = time.monotonic()
        ok0 = sum(c.ok for c in clients)
        with CpuWindow(server, load) as cpu:
            await asyncio.gather(*(fire(c, t0 + sizes.throughput_duration) for c in clients))
            ok_in_window = sum(c.ok for c in clients) - ok0
            end_received = (await load.stat())["normal_received"]
            elapsed = time.monotonic() - t0
            cpu_result = cpu.close()
        ok = sum(c.ok for c in clients)
        expected = ok * subscribed
        stat = await wait_delivered(load, "normal_received", expected, timeout=30.0)
        done = True
        await poller
        stats, hist = await load.stop()
    finally:
        done = True
        for client in clients:
            client.close()
        load.kill()
    errors: dict[int, int] = {}
    for client in clients:
        for status, count in client.errors.items():
            errors[status] = errors.get(status, 0) + count
    return {
        "conns": n, "subscribed": subscribed, "failed": ready["failed"],
        "duration_s": sizes.throughput_duration, "triggers_ok": ok, "trigger_errors": errors,
        "expected": expected, "received": stat["normal_received"],
        "loss": expected - stats["normal_received"],
        "deliveries_per_s": round((end_received - start_received) / elapsed, 1),
        # the server's cost per delivery, which the load generator's ceiling does not cap
        "deliveries_per_server_cpu_s": round((end_received - start_received) / elapsed
                                             / cpu_result["server_cpu"], 1)
        if cpu_result["server_cpu"] else None,
        "cut": stats["cut"], **_latency(hist.summary()), **cpu_result,
        **{k.replace("_per_op", "_per_trigger"): v for k, v in per_op(
            cpu_result, ok_in_window, end_received - start_received).items()},
    }


async def scenario_api(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                       ) -> dict[str, Any]:
    """Signed triggers per second to channels nobody is subscribed to (keep-alive, C client)."""
    target = target_of(server)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        request_file = Path(tmp) / "requests.http"
        write_api_requests(target, request_file)
        load, ready = await _connect(server, sizes.api_conns, load_cpu, mode="api",
                                     request_file=request_file)
        try:
            with CpuWindow(server, load) as cpu:
                await load.broadcast(f"GO {sizes.api_duration}", None)
                await asyncio.sleep(sizes.api_duration)
                stat = await load.stat()
                cpu_result = cpu.close()
            stats, hist = await load.stop()
        finally:
            load.kill()
    elapsed = stats["api_elapsed_s"] or sizes.api_duration
    return {
        "conns": sizes.api_conns, "connected": ready["subscribed"],
        "duration_s": sizes.api_duration, "requests_ok": stats["api_ok"],
        "requests_bad": stats["api_bad"], "requests_per_s": round(stat["api_ok"] / elapsed, 1),
        **_latency(hist.summary()), **cpu_result,
        **{k.replace("_per_op", "_per_request"): v
           for k, v in per_op(cpu_result, stat["api_ok"]).items()},
        "server_cpu_us_per_request": round(cpu_result["server_cpu_s"] * 1e6 / stat["api_ok"], 2)
        if stat["api_ok"] else None,
    }


async def scenario_channels(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                            ) -> dict[str, Any]:
    """N connections each on its own channel; triggers at a fixed rate to random channels."""
    n = sizes.channels_conns
    load, ready = await _connect(server, n, load_cpu, channel_fmt="chan-%d", concurrency=256)
    rng = random.Random(5)
    try:
        with CpuWindow(server, load) as cpu:
            triggers = await paced_triggers(
                target_of(server), rate=sizes.channels_rate, duration=sizes.channels_duration,
                pick=lambda _: [f"chan-{rng.randrange(n)}"], pool=8,
            )
            expected = triggers["triggers_ok"] if not ready["failed"] else None
            stat = await wait_delivered(load, "normal_received", expected or 0, timeout=10.0)
            cpu_result = cpu.close()
        stats, hist = await load.stop()
    finally:
        load.kill()
    return {
        "conns": n, "subscribed": ready["subscribed"], "failed": ready["failed"],
        "rate": sizes.channels_rate, "duration_s": sizes.channels_duration, **triggers,
        "expected": expected, "received": stat["normal_received"],
        "loss": (expected - stats["normal_received"]) if expected is not None else None,
        "cut": stats["cut"], **_latency(hist.summary()), **cpu_result,
    }


async def scenario_slow(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                        ) -> dict[str, Any]:
    """Some subscribers stop reading: they must be cut off while the others' latency holds.

    All N connections subscribe to `slow-main` (small events at 20/s, latency measured on the
    readers); the K slow ones also subscribe to `slow-heavy` (8 KB events) so that their
    buffers fill quickly once they stop reading. Phase 1 (everyone reads) is the baseline;
    phase 2 sends SLOW and runs until every slow client is cut off or the time bound.
    """
    n, k = sizes.slow_conns, sizes.slow_slow
    load, ready = await _connect(server, n, load_cpu, channel="slow-main", slow=k,
                                 slow_channel="slow-heavy", slow_src=SLOW_SRC, concurrency=256)
    target = target_of(server)
    pad = "x" * sizes.slow_heavy_bytes
    normals = ready["subscribed"] - k
    try:
        main_rate = 20.0
        baseline_task = asyncio.gather(
            paced_triggers(target, rate=main_rate, duration=sizes.slow_baseline,
                           pick=lambda _: ["slow-main"], pool=2, timeout=5.0),
            paced_triggers(target, rate=sizes.slow_heavy_rate, duration=sizes.slow_baseline,
                           pick=lambda _: ["slow-heavy"], pad=pad, pool=2, timeout=5.0),
        )
        base_main, _ = await baseline_task
        await wait_delivered(load, "normal_received", base_main["triggers_ok"] * normals, 10.0)
        base_stats, base_hist = await _snapshot_and_reset(load)
        rss_start = rss_bytes(server.pid) if server.pid else 0
        rss_max = rss_start
        await load.broadcast("SLOW", "SLOWED")
        all_cut = False
        t_cut: float | None = None
        server_cut = 0
        orphan_bytes_max = 0

        def stop() -> bool:
            return all_cut

        async def watch() -> None:
            nonlocal rss_max, all_cut, t_cut, server_cut, orphan_bytes_max
            t0 = time.monotonic()
            while not all_cut and time.monotonic() - t0 < sizes.slow_max_duration + 5:
                if server.pid:
                    rss_max = max(rss_max, rss_bytes(server.pid))
                stat = await load.stat()
                # a cut-off is seen by the client (reset) or only by the server's kernel
                # (closed with unsent bytes queued: FIN-WAIT-1 behind a zero window)
                sockets = server_side_sockets(server.port, SLOW_SRC_PREFIX)
                server_cut = max(server_cut, k - sockets["established"])
                orphan_bytes_max = max(orphan_bytes_max, sockets["closing_unsent_bytes"])
                if max(stat["slow_cut"], server_cut) >= k:
                    all_cut = True
                    t_cut = time.monotonic() - t0
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        with CpuWindow(server, load) as cpu:
            slow_main, slow_heavy = await asyncio.gather(
                paced_triggers(target, rate=main_rate, duration=sizes.slow_max_duration,
                               pick=lambda _: ["slow-main"], pool=2, stop=stop, timeout=5.0),
                paced_triggers(target, rate=sizes.slow_heavy_rate,
                               duration=sizes.slow_max_duration, pick=lambda _: ["slow-heavy"],
                               pad=pad, pool=2, stop=stop, timeout=5.0),
            )
            cpu_result = cpu.close()
        all_cut = True
        await watcher
        expected = slow_main["triggers_ok"] * normals
        await wait_delivered(load, "normal_received", expected, 10.0)
        rss_end = rss_bytes(server.pid) if server.pid else 0
        stats, hist = await load.stop()
    finally:
        load.kill()
    base = base_hist.summary()
    during = hist.summary()
    return {
        "conns": n, "slow": k, "subscribed": ready["subscribed"], "failed": ready["failed"],
        "heavy_rate": sizes.slow_heavy_rate, "heavy_bytes": sizes.slow_heavy_bytes,
        "baseline_p50_ms": base["p50_ms"], "baseline_p99_ms": base["p99_ms"],
        "p50_ms": during["p50_ms"], "p99_ms": during["p99_ms"], "max_ms": during["max_ms"],
        "slow_cut": max(stats["slow_cut"], server_cut), "slow_reset_seen": stats["slow_cut"],
        "closed_unsent_mb_max": round(orphan_bytes_max / 2**20, 2),
        "normal_cut": stats["normal_cut"],
        "time_to_cut_s": round(t_cut, 2) if t_cut is not None else None,
        "main_triggers_ok": slow_main["triggers_ok"], "expected": expected,
        "trigger_timeouts": slow_main["trigger_timeouts"] + slow_heavy["trigger_timeouts"],
        "heavy_triggers_ok": slow_heavy["triggers_ok"],
        "trigger_errors": {**slow_main["trigger_errors"], **slow_heavy["trigger_errors"]},
        "received": stats["normal_received"],
        # triggers that timed out may still have been delivered: loss never goes negative
        "loss": max(0, expected - stats["normal_received"]),
        "baseline_loss": base_main["triggers_ok"] * normals - base_stats["normal_received"],
        "rss_start_mb": round(rss_start / 2**20, 2), "rss_max_mb": round(rss_max / 2**20, 2),
        "rss_growth_mb": round((rss_max - rss_start) / 2**20, 2),
        "rss_end_mb": round(rss_end / 2**20, 2), **cpu_result,
    }


async def _snapshot_and_reset(load: LoadGroup) -> tuple[dict[str, int], Any]:
    """Take the counters and latency histogram so far, then zero them in the workers."""
    stat = await load.stat()
    hist = await _dump_hist(load)
    await load.broadcast("RESET", "RESET")
    return stat, hist


async def _dump_hist(load: LoadGroup) -> Any:
    from bench.load import Histogram

    results = await load.broadcast("HIST", "HIST")
    hist = Histogram()
    for result in results:
        hist.merge(result["hist"])
    return hist


async def scenario_limit(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                         ) -> dict[str, Any]:
    """Open more connections than the server's open-file limit: how many hold, what it says."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = hard + sizes.limit_extra
    lines_before = len(server.output)
    load, ready = await _connect(server, n, load_cpu, channel_fmt="limit-%d", concurrency=256,
                                 connect_timeout=60.0)
    try:
        stats, _ = await load.stop()
    finally:
        load.kill()
    said = [line.strip() for line in server.output[lines_before:] if line.strip()][:5]
    return {
        "conns": n, "open_file_limit": hard, "subscribed": ready["subscribed"],
        "failed": ready["failed"], "connect_s": ready["elapsed_s"], "server_said": said,
        "server_alive": server.alive(),
    }


async def scenario_scale(server: RunningServer, sizes: Sizes, load_cpu: int | None,
                         ) -> dict[str, Any]:
    """As many subscribed connections as the server holds (meant for ``pusherd-workers:N``),
    all on one channel, then a few triggers fanned out to all of them: memory, connect
    rate, delivery latency, and how far it got (what failed) if not all connected."""
    n = sizes.scale_conns
    rss0 = server_rss(server)
    redis_rss0 = rss_bytes(server.redis.process.pid) if server.redis is not None else 0
    with CpuWindow(server, None, load_cpu) as cpu:
        load, ready = await _connect(server, n, load_cpu, channel="scale", concurrency=1024,
                                     connect_timeout=240.0)
        connect_cpu = cpu.close()
    try:
        samples = []
        for _ in range(10):
            samples.append(server_rss(server))
            await asyncio.sleep(0.1)
        rss1 = max(samples)
        redis_rss1 = rss_bytes(server.redis.process.pid) if server.redis is not None else 0
        per_node = [(pid, rss_bytes(pid)) for pid in server.pids]
        with CpuWindow(server, load) as cpu:
            triggers = await paced_triggers(
                target_of(server), rate=1 / sizes.scale_interval,
                duration=sizes.scale_triggers * sizes.scale_interval,
                pick=lambda _: ["scale"], pool=1, timeout=30.0)
            expected = triggers["triggers_ok"] * ready["subscribed"]
            stat = await wait_delivered(load, "normal_received", expected, timeout=60.0)
            fan_cpu = cpu.close()
        stats, hist = await load.stop()
    finally:
        load.kill()
    subscribed = ready["subscribed"]
    return {
        "conns": n, "subscribed": subscribed, "failed": ready["failed"],
        "server_processes": len(server.pids), "connect_s": ready["elapsed_s"],
        "connect_rate": round(subscribed / ready["elapsed_s"], 1) if ready["elapsed_s"] else None,
        "connect_server_cpu_s": connect_cpu["server_cpu_s"],
        "redis_cmds_per_subscribe": round(connect_cpu.get("redis_calls", 0) / subscribed, 3)
        if subscribed and "redis_calls" in connect_cpu else None,
        "rss_after_mb": round(rss1 / 2**20, 1),
        "rss_per_conn_kb": round((rss1 - rss0) / subscribed / 1024, 2) if subscribed else None,
        "rss_per_node_mb": [round(r / 2**20, 1) for _, r in per_node],
        "redis_rss_growth_mb": round((redis_rss1 - redis_rss0) / 2**20, 1),
        **triggers, "expected": expected, "received": stat["normal_received"],
        "loss": expected - stats["normal_received"], "cut": stats["cut"],
        **_latency(hist.summary()), **fan_cpu,
        **{k.replace("_per_op", "_per_trigger"): v for k, v in per_op(
            fan_cpu, triggers["triggers_ok"], stats["normal_received"]).items()},
        "server_alive": server.alive(),
    }


SCENARIOS: dict[str, Callable[[RunningServer, Sizes, int | None], Awaitable[dict[str, Any]]]] = {
    "idle": scenario_idle,
    "fanout": scenario_fanout,
    "throughput": scenario_throughput,
    "api": scenario_api,
    "channels": scenario_channels,
    "slow": scenario_slow,
    "limit": scenario_limit,
    "scale": scenario_scale,
}
ALL = ["idle", "fanout", "throughput", "api", "channels", "slow"]
