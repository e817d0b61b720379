"""Failures of a cluster: a node killed, a node frozen past its lease, Redis killed and
restarted under traffic. Real pusherd processes against a private redis-server that the
test starts (and kills) on a free port; the shared Redis is never touched."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from typing import Any

from tests.cluster.nodes import cluster_toml, join_presence, join_private, run_cluster
from tests.cluster.test_cluster_nodes import fence
from tests.cluster.waiting import wait_until
from tests.pusherd.wire import call, sdk
from tests.support.pusherd_process import PusherdProcess, run_pusherd
from tests.support.redis_server import SHARED_REDIS_URL, PrivateRedis

LEASE_TTL = 2.0
REAP_INTERVAL = 0.25
# What the docs promise: a dead node's members are gone lease_ttl + reap_interval after
# its last renewal. The allowance covers the bus hop and a loaded 2-core test machine.
BOUND = LEASE_TTL + REAP_INTERVAL
ALLOWANCE = 0.75


def _get(node: PusherdProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{node.http_url}{path}", timeout=5) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


async def _wait_ready(node: PusherdProcess, status: int, bound: float = 20.0) -> None:
    """Wait until ``/ready`` answers `status` (503: ``adapter_unavailable``); ``/up``
    (liveness) answers 200 throughout: a node that lost Redis still serves its own
    sockets, and a liveness probe must not restart it."""
    deadline = time.monotonic() + bound
    while (reply := await asyncio.to_thread(_get, node, "/ready"))[0] != status:
        assert time.monotonic() < deadline, f"/ready never answered {status}"
        await asyncio.sleep(0.05)
    if status == 503:
        assert json.loads(reply[1]) == {"status": "adapter_unavailable"}
    assert await asyncio.to_thread(_get, node, "/up") == (200, b'{"status":"ok"}')


async def test_kill_9_of_a_node_removes_its_members_once_within_the_lease_bound(
        private_redis: PrivateRedis) -> None:
    with run_cluster(3, private_redis.url, "faults", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (victim, two, three):
        room = "presence-room"
        await join_presence(victim, room, "ann")
        await join_private(victim, "private-x")
        watcher_two, _ = await join_presence(two, room, "w2")
        watcher_three, _ = await join_presence(three, room, "w3")
        await watcher_two.expect("pusher_internal:member_added", room)  # w3
        killed_at = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        removed = []
        for watcher in (watcher_two, watcher_three):
            frame = await watcher.expect("pusher_internal:member_removed", room, timeout=15)
            removed.append(time.monotonic() - killed_at)
            assert json.loads(frame["data"]) == {"user_id": "ann"}
        print(f"member_removed after kill -9: {removed} s (bound {BOUND} s)")
        assert max(removed) <= BOUND + ALLOWANCE, f"{removed} s > {BOUND} s bound"
        # Two surviving nodes raced to reap: the removal was announced once.
        assert await fence(two, room, watcher_two, watcher_three) == [[], []]
        info = await call(sdk(three.port).channel_info, "private-x")
        assert info == {"occupied": False}
        users = await call(sdk(two.port).users_info, room)
        assert sorted(u["id"] for u in users["users"]) == ["w2", "w3"]


async def test_a_node_frozen_past_its_lease_reregisters_its_live_sockets_when_it_resumes(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "faults", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (frozen, other):
        room = "presence-room"
        ann, _ = await join_presence(frozen, room, "ann")
        watcher, _ = await join_presence(other, room, "w")
        await ann.expect("pusher_internal:member_added", room)
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            frame = await watcher.expect("pusher_internal:member_removed", room, timeout=15)
            assert json.loads(frame["data"]) == {"user_id": "ann"}
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        # It notices at its next renewal, re-registers Ann (announced again) and says so.
        frame = await watcher.expect("pusher_internal:member_added", room, timeout=15)
        assert json.loads(frame["data"])["user_id"] == "ann"
        await wait_until(lambda: any("re-registered" in line for line in frozen.output),
                         what="the re-registration log line")
        # Ann's socket is whole again: it receives a trigger sent through the other node,
        # and the cluster lists her.
        await call(sdk(other.port).trigger, room, "hello", {})
        seen = []
        while True:
            frame = await ann.recv(timeout=10)
            seen.append(frame.get("event"))
            if frame.get("event") == "hello":
                break
        users = await call(sdk(other.port).users_info, room)
        assert sorted(u["id"] for u in users["users"]) == ["ann", "w"]
        assert frozen.process.poll() is None


async def test_redis_killed_and_restarted_under_traffic_heals_the_cluster_view(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "faults", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (one, two):
        near = await join_private(one, "private-x")
        far = await join_private(two, "private-x")
        ann, _ = await join_presence(one, "presence-r", "ann")
        bob, _ = await join_presence(two, "presence-r", "bob")
        await ann.expect("pusher_internal:member_added", "presence-r")
        sent: list[int] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            client = sdk(one.port)
            while not stop.is_set():
                await call(client.trigger, "private-x", "tick", {"n": len(sent)})
                sent.append(1)
                await asyncio.sleep(0.02)

        load = asyncio.create_task(traffic())
        try:
            await wait_until(lambda: len(sent) >= 5, what="traffic")
            private_redis.kill()
            await _wait_ready(one, 503)
            await _wait_ready(two, 503)
            # Down: each node still serves its own sockets.
            while_down = len(sent)
            await wait_until(lambda: len(sent) >= while_down + 5, what="traffic while down")
            late, _ = await join_presence(two, "presence-r", "cy")
            private_redis.start()
            await _wait_ready(one, 200)
            await _wait_ready(two, 200)
        finally:
            stop.set()
            await load
        assert one.process.poll() is None and two.process.poll() is None
        # The cluster view is whole again: both nodes' channels, counts and members.
        client_one, client_two = sdk(one.port), sdk(two.port)
        for _ in range(100):
            users = await call(client_one.users_info, "presence-r")
            if sorted(u["id"] for u in users["users"]) == ["ann", "bob", "cy"]:
                break
            await asyncio.sleep(0.05)
        assert sorted(u["id"] for u in users["users"]) == ["ann", "bob", "cy"]
        expected = {"occupied": True, "subscription_count": 2}
        for _ in range(100):  # each node re-registers on its own; the mirrors converge
            info = await call(client_two.channel_info, "private-x",
                              attributes=["subscription_count"])
            if info == expected:
                break
            await asyncio.sleep(0.05)
        assert info == expected
        # Cy, who joined while Redis was away, is announced to the other node's members.
        frames: list[Any] = []
        while True:
            frame = await ann.recv(timeout=10)
            frames.append(frame)
            if frame.get("event") == "pusher_internal:member_added" and \
                    json.loads(frame["data"])["user_id"] == "cy":
                break
        # Cross-node delivery works again.
        await call(client_one.trigger, "private-x", "after", {})
        for client in (near, far):
            while (await client.recv(timeout=10)).get("event") != "after":
                pass
        # One warning per node for the outage, not one per message or per retry.
        for node in (one, two):
            lost = [line for line in node.output if "unreachable" in line]
            assert len(lost) == 1, lost
        del late, bob


async def test_a_frozen_redis_is_an_outage_that_heals_when_it_resumes(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "faults", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (one, two):
        near = await join_private(one, "private-f")
        far = await join_private(two, "private-f")
        assert private_redis.process is not None
        private_redis.process.send_signal(signal.SIGSTOP)
        try:
            # Nothing breaks the connections: the health checks and command timeouts
            # must notice the silence.
            await _wait_ready(one, 503, bound=30)
            await call(sdk(one.port).trigger, "private-f", "local", {})
            await near.expect("local", "private-f")  # the node still serves its sockets
        finally:
            private_redis.process.send_signal(signal.SIGCONT)
        await _wait_ready(one, 200, bound=30)
        await _wait_ready(two, 200, bound=30)
        await call(sdk(one.port).trigger, "private-f", "across", {})
        while (await far.recv(timeout=10)).get("event") != "across":
            pass


def test_a_tls_url_against_a_redis_without_tls_says_what_to_check(redis_prefix: str) -> None:
    # The shared Redis speaks plain RESP: the TLS handshake times out (or fails on the
    # plain answer). That is an outage, retried, and its one line says what to check.
    url = SHARED_REDIS_URL.replace("redis://", "rediss://", 1)
    with run_pusherd(cluster_toml(url, redis_prefix)) as node:
        index = node.wait_for_output("unreachable", timeout=60)
        assert index is not None, "".join(node.output)
        line = node.output[index]
    assert "the URL asks for TLS: check that the server speaks TLS on this port" in line, line
