"""``pusherd --workers N``: N processes on one port as one cluster, supervised."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

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


async def test_workers_share_the_port_as_one_cluster_and_a_dead_worker_is_replaced(
        redis_prefix: str, redis_client: Redis) -> None:
    toml = cluster_toml(SHARED_REDIS_URL, redis_prefix, lease_ttl=2.0, reap_interval=0.25)
    nodes_key = f"{redis_prefix}:nodes"
    with run_pusherd(toml, extra_args=("--workers", "2")) as parent:
        assert sum("pusherd listening on" in line for line in parent.output) == 1
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
