"""Redis outages as the sockets see them: local presence goes on while Redis is away,
and its return (with its data, or restarted empty) announces each change once, to the
sockets that did not know it, never to a member about itself. Also: a node frozen past
its lease, messages buffered during an outage, and the buffer's drop log.

Real pusherd processes against a private redis-server that the test starts, kills,
freezes and restarts on a free port; the shared Redis is never touched."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from tests.cluster.nodes import join_presence, run_cluster
from tests.cluster.test_cluster_faults import _wait_ready
from tests.cluster.test_cluster_nodes import fence
from tests.cluster.waiting import wait_until
from tests.pusherd.wire import Client, call, sdk
from tests.support.pusherd_process import PusherdProcess
from tests.support.redis_server import PrivateRedis

LEASE_TTL = 2.0
REAP_INTERVAL = 0.25
ROOM = "presence-room"
MEMBER_EVENTS = ("pusher_internal:member_added", "pusher_internal:member_removed")


def member_events(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """("added"|"removed", user_id) of every member frame, in order."""
    return [(f["event"].rsplit("_", 1)[1], json.loads(f["data"])["user_id"])
            for f in frames if f.get("event") in MEMBER_EVENTS]


async def read_until_member(client: Client, kind: str, user_id: Any,
                            seen: list[dict[str, Any]], timeout: float = 30) -> None:
    """Read `client`'s frames into `seen` until member_<kind> of `user_id` is among
    them (bounded)."""
    while (kind, user_id) not in member_events(seen):
        seen.append(await client.recv(timeout=timeout))


async def settle(node: PusherdProcess, clients: dict[str, Client],
                 seen: dict[str, list[dict[str, Any]]]) -> None:
    """Add to `seen` every frame each client got before a trigger sent now: the bus
    orders everything published before it (the resyncs' transitions included)."""
    names = list(clients)
    for name, frames in zip(names, await fence(node, ROOM, *clients.values()), strict=True):
        seen[name] += frames


async def test_local_presence_goes_on_while_redis_is_away_and_its_empty_return_announces_each_change_once(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "outage", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (one, two):
        v0, _ = await join_presence(one, ROOM, "v0")
        gone, _ = await join_presence(one, ROOM, "gone")
        w1, _ = await join_presence(two, ROOM, "w1")
        clients = {"v0": v0, "gone": gone, "w1": w1}
        seen: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        await settle(one, clients, seen)
        seen = {name: [] for name in clients}

        private_redis.kill()
        await _wait_ready(one, 503)
        await _wait_ready(two, 503)
        # Redis away: gone's leave and w4's join reach v0, on the same node, at once.
        del clients["gone"]
        await gone.close()
        await read_until_member(v0, "removed", "gone", seen["v0"], timeout=10)
        w4, roster = await join_presence(one, ROOM, "w4")
        assert sorted(roster["ids"]) == ["v0", "w1", "w4"]
        await read_until_member(v0, "added", "w4", seen["v0"], timeout=10)
        assert member_events(seen["v0"]) == [("removed", "gone"), ("added", "w4")]

        # Node two is slower to come back: the first node back finds an empty Redis
        # without w1, whose socket never closed.
        two.process.send_signal(signal.SIGSTOP)
        try:
            private_redis.start()  # empty: its data was lost with the process
            await _wait_ready(one, 200)
        finally:
            two.process.send_signal(signal.SIGCONT)
        await _wait_ready(two, 200)
        clients["w4"] = w4
        seen["w4"] = []
        # The other node's sockets hear of both once Redis is back.
        await read_until_member(w1, "removed", "gone", seen["w1"])
        await read_until_member(w1, "added", "w4", seen["w1"])
        await settle(one, clients, seen)
        await settle(two, clients, seen)
        # Nobody is told twice, nobody whose socket stayed open left, and no member
        # is told about itself.
        assert member_events(seen["v0"]) == [("removed", "gone"), ("added", "w4")]
        assert sorted(member_events(seen["w1"])) == [("added", "w4"), ("removed", "gone")]
        assert member_events(seen["w4"]) == []
        for node in (one, two):
            users = await call(sdk(node.port).users_info, ROOM)
            assert sorted(u["id"] for u in users["users"]) == ["v0", "w1", "w4"]


async def test_a_frozen_redis_that_keeps_its_data_announces_a_join_made_meanwhile_once(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "outage", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (one, two):
        v0, _ = await join_presence(one, ROOM, "v0")
        w1, _ = await join_presence(two, ROOM, "w1")
        clients = {"v0": v0, "w1": w1}
        seen: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        await settle(one, clients, seen)
        seen = {name: [] for name in clients}

        assert private_redis.process is not None
        private_redis.process.send_signal(signal.SIGSTOP)
        try:
            await _wait_ready(one, 503, bound=30)
            await _wait_ready(two, 503, bound=30)
            w4, _ = await join_presence(two, ROOM, "w4")
            await read_until_member(w1, "added", "w4", seen["w1"], timeout=10)
        finally:
            private_redis.process.send_signal(signal.SIGCONT)
        await _wait_ready(one, 200, bound=30)
        await _wait_ready(two, 200, bound=30)
        clients["w4"] = w4
        seen["w4"] = []
        await read_until_member(v0, "added", "w4", seen["v0"])
        await settle(one, clients, seen)
        await settle(two, clients, seen)
        # The leases lapsed while Redis was frozen: the first node back did not reap
        # the other (nobody saw a member leave), and w4 was announced once to each.
        assert member_events(seen["v0"]) == [("added", "w4")]
        assert member_events(seen["w1"]) == [("added", "w4")]
        assert member_events(seen["w4"]) == []


async def test_a_node_frozen_past_its_lease_does_not_tell_its_own_sockets_they_left(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "outage", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (frozen, other):
        ann, _ = await join_presence(frozen, ROOM, "ann")
        bob, _ = await join_presence(frozen, ROOM, "bob")
        watcher, _ = await join_presence(other, ROOM, "w")
        clients = {"ann": ann, "bob": bob, "w": watcher}
        seen: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        await settle(other, clients, seen)
        seen = {name: [] for name in clients}

        frozen.process.send_signal(signal.SIGSTOP)
        try:
            await read_until_member(watcher, "removed", "ann", seen["w"])
            await read_until_member(watcher, "removed", "bob", seen["w"])
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        await read_until_member(watcher, "added", "ann", seen["w"])
        await read_until_member(watcher, "added", "bob", seen["w"])
        await wait_until(lambda: any("re-registered" in line for line in frozen.output),
                         what="the re-registration log line")
        await settle(other, clients, seen)
        # The other node's watcher saw them leave and come back, once; the frozen
        # node's own sockets, whose connections never closed, saw nothing.
        assert sorted(member_events(seen["w"])[:2]) == [("removed", "ann"),
                                                        ("removed", "bob")]
        assert sorted(member_events(seen["w"])[2:]) == [("added", "ann"), ("added", "bob")]
        assert member_events(seen["ann"]) == []
        assert member_events(seen["bob"]) == []


async def test_messages_buffered_during_an_outage_reach_a_node_slow_to_come_back_after_an_empty_restart(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "outage", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL) as (one, slow):
        near = await Client.open(one.port)
        await near.subscribe_ok("news")
        far = await Client.open(slow.port)
        await far.subscribe_ok("news")
        await call(sdk(one.port).trigger, "news", "before", {})
        await far.expect("before", "news")
        await near.expect("before", "news")

        private_redis.kill()
        await _wait_ready(one, 503)
        await _wait_ready(slow, 503)
        slow.process.send_signal(signal.SIGSTOP)
        try:
            for n in range(20):
                await call(sdk(one.port).trigger, "news", "tick", {"n": n})
            private_redis.start()  # empty: no lease of the slow node in it
            await _wait_ready(one, 200)
            # The slow node stays away longer than the old 2 s flush fallback, as a node
            # does whose reconnect backoff was near its cap. (This pause is the fault
            # being simulated, not a wait for an event.)
            await asyncio.sleep(2.5)
        finally:
            slow.process.send_signal(signal.SIGCONT)
        got = []
        while len(got) < 20:
            frame = await far.recv(timeout=30)
            if frame.get("event") == "tick":
                got.append(json.loads(frame["data"])["n"])
        assert got == list(range(20))


async def test_a_full_outage_buffer_is_logged_once_per_outage_with_its_total_on_return(
        private_redis: PrivateRedis) -> None:
    with run_cluster(1, private_redis.url, "outage", lease_ttl=LEASE_TTL,
                     reap_interval=REAP_INTERVAL,
                     extra_redis="max_buffered_bytes = 300") as (node,):
        for outage in range(2):
            private_redis.kill()
            await _wait_ready(node, 503)
            for n in range(20):
                await call(sdk(node.port).trigger, "news", "tick", {"n": n})
            private_redis.start()
            await _wait_ready(node, 200)
            await wait_until(lambda: sum("dropped during the outage" in line
                                         for line in node.output) == outage + 1,
                             what="the outage's drop total")
            full = [line for line in node.output if "bus buffer full" in line]
            totals = [line for line in node.output if "dropped during the outage" in line]
            assert len(full) == outage + 1, full  # the first drop of each outage
            dropped = int(totals[-1].split("bus buffer: ")[1].split()[0])
            assert 0 < dropped < 20, totals
