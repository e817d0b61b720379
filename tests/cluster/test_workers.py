"""``pusherd --workers N``: N processes on one port as one cluster, supervised."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from redis.asyncio import Redis

from pusherd.server.workers import watch_parent
from tests.cluster.nodes import cluster_toml, join_presence
from tests.cluster.waiting import wait_until
from tests.pusherd.wire import call, sdk
from tests.support.pusherd_process import REPO_ROOT, run_pusherd
from tests.support.redis_server import SHARED_REDIS_URL


def _children(pid: int) -> set[int]:
    """Pids of the processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_more_than_one_worker_without_redis_is_refused_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "pusherd.toml"
    config.write_text('[server]\nport = 0\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PUSHERD_", "REVERB_", "REDIS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pusherd", "--config", str(config), "--workers", "2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "2 workers need Redis" in result.stderr


def test_far_more_workers_than_cores_are_refused_before_any_is_started(
        tmp_path: Path) -> None:
    # A reviewer's --workers 1000 forked on a 2-core machine until its load average was 130.
    config = tmp_path / "pusherd.toml"
    config.write_text('[server]\nport = 0\n[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PUSHERD_", "REVERB_", "REDIS_"))}
    too_many = 16 * (os.cpu_count() or 1) + 1
    result = subprocess.run(
        [sys.executable, "-m", "pusherd", "--config", str(config), "--workers", str(too_many)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "at most 16 per core" in result.stderr and f"got {too_many}" in result.stderr
    assert "listening" not in result.stdout


async def test_workers_share_the_port_as_one_cluster_and_a_dead_worker_is_replaced(
        redis_prefix: str, redis_client: Redis) -> None:
    toml = cluster_toml(SHARED_REDIS_URL, redis_prefix, lease_ttl=2.0, reap_interval=0.25)
    nodes_key = f"{redis_prefix}:nodes"
    with run_pusherd(toml, extra_args=("--workers", "2")) as parent:
        assert sum("pusherd listening on" in line for line in parent.output) == 1
        # Each worker's text log lines say which worker wrote them.
        for index in (0, 1):
            assert parent.wait_for_output(f"[worker {index} pid ", timeout=30) is not None
        workers = _children(parent.process.pid)
        assert len(workers) == 2
        assert await redis_client.zcard(nodes_key) == 2  # two nodes in the cluster
        # Clients on the one port, whichever worker the kernel hands them to, see one
        # presence channel.
        clients = [await join_presence(parent, "presence-w", f"u{i}") for i in range(3)]
        _, roster = clients[-1]
        assert sorted(roster["ids"]) == [f"u{i}" for i in range(3)]
        listed = await call(sdk(parent.port).users_info, "presence-w")
        assert len(listed["users"]) == 3
        # kill -9 of a worker: the parent starts another; the dead node is reaped.
        victim = sorted(workers)[0]
        before = {m.decode() for m in await redis_client.zrange(nodes_key, 0, -1)}
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: len(_children(parent.process.pid) - {victim}) == 2,
                         bound=30, what="a replacement worker")
        deadline = time.monotonic() + 30
        while True:
            after = {m.decode() for m in await redis_client.zrange(nodes_key, 0, -1)}
            if len(after) == 2 and len(after & before) == 1:
                break
            assert time.monotonic() < deadline, (before, after)
            await asyncio.sleep(0.05)
        # The sockets the dead worker held are gone from the member list; the others stay.
        alive = []
        for client, _ in clients:
            try:
                await client.send({"event": "pusher:ping", "data": {}})
                while (await client.recv(timeout=5)).get("event") != "pusher:pong":
                    pass
                alive.append(client)
            except Exception:
                continue
        for _ in range(200):
            listed = await call(sdk(parent.port).users_info, "presence-w")
            if len(listed["users"]) == len(alive):
                break
            await asyncio.sleep(0.05)
        assert len(listed["users"]) == len(alive)
        assert any("exited with status" in line for line in parent.output)
        # SIGTERM to the parent drains every worker and stops cleanly.
        assert parent.stop(signal.SIGTERM) == 0
        assert _children(parent.process.pid) == set()
    assert await redis_client.zcard(nodes_key) == 0  # both left the cluster cleanly


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_workers_stop_when_the_parent_is_killed_and_their_logs_name_them(
        redis_prefix: str, redis_client: Redis) -> None:
    toml = cluster_toml(SHARED_REDIS_URL, redis_prefix, lease_ttl=2.0, reap_interval=0.25)
    toml = toml.replace("[redis]", "[metrics]\nport = 0\n\n[redis]", 1).replace(
        "shutdown_timeout = 2", "shutdown_timeout = 2\ndrain_grace = 0.5\ndrain_seconds = 0.5")
    with run_pusherd(toml, extra_args=("--workers", "2", "--log-format", "json")) as parent:
        # The banner gives the metrics listener every worker shares (port 0 resolved once).
        banner = "".join(parent.output)
        metrics = re.search(r"metrics: (http://127\.0\.0\.1:(\d+)/metrics)", banner)
        assert metrics is not None and int(metrics.group(2)) not in (0, parent.port), banner
        scraped = await asyncio.to_thread(_fetch, metrics.group(1))
        assert "pusherd_ready 1.0" in scraped
        assert "cluster: 2 nodes (one per worker) over Redis" in banner
        workers = _children(parent.process.pid)
        assert len(workers) == 2
        # Each worker's JSON log lines carry its index, pid and node id.
        nodes = {m.decode() for m in await redis_client.zrange(f"{redis_prefix}:nodes", 0, -1)}
        seen: dict[int, dict[str, object]] = {}

        def cluster_lines() -> int:
            for line in parent.output:
                if '"event":"cluster_node"' in line.replace(" ", ""):
                    entry = json.loads(line)
                    seen[int(entry["worker"])] = entry
            return len(seen)

        await wait_until(lambda: cluster_lines() == 2, bound=30, what="both workers' logs")
        assert {int(e["pid"]) for e in seen.values()} == workers
        assert {str(e["node"]) for e in seen.values()} == nodes
        # kill -9 of the parent: no signal is passed on, yet the workers drain and exit.
        client, _ = await join_presence(parent, "presence-orphan", "ann")
        parent.process.kill()
        parent.process.wait()
        await wait_until(lambda: not any(_running(pid) for pid in workers), bound=60,
                         what="the workers' exit after the parent's death")
        code, _ = await client.closed(timeout=30)
        assert code == 4200  # told to reconnect, as in a drain
        assert parent.wait_for_output("parent process is gone", timeout=10) is not None
    # They left the cluster cleanly (no wait for the lease).
    assert await redis_client.zcard(f"{redis_prefix}:nodes") == 0


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def test_the_parent_watch_fires_when_the_pipe_s_only_writer_closes() -> None:
    # The fallback where the kernel cannot signal a parent's death: a real pipe and thread.
    read_fd, write_fd = os.pipe()
    gone = threading.Event()
    try:
        watch_parent(read_fd, gone.set)
        os.close(write_fd)
        assert gone.wait(30)
    finally:
        os.close(read_fd)
