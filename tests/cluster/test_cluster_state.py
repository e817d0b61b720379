"""The shared state in Redis: every transition decided exactly once across nodes.

Real Redis (the shared one, under a key prefix of each test's own). Several
:class:`ClusterState` objects with different node ids stand for several pusherd nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from redis.asyncio import Redis

from pusherd.adapters.cluster.bus import BusMessage, ChangesMessage, decode_bus_message
from pusherd.adapters.cluster.keys import KeyLayout
from pusherd.adapters.cluster.state import (
    ChangeKind,
    ClusterState,
    NodeNotRegistered,
    NodeSnapshot,
    PresenceFull,
    StateChange,
    encode_member,
)

APP = "1001"
LEASE_MS = 60_000


async def _node(redis: Redis, prefix: str, node_id: str, lease_ms: int = LEASE_MS
                ) -> ClusterState:
    state = ClusterState(redis, KeyLayout(prefix), node_id, lease_ms)
    was, changes = await state.sync(NodeSnapshot())
    assert (was, changes) == (False, [])
    return state


def _kinds(changes: list[StateChange]) -> list[tuple[str, str, str | None]]:
    return [(c.kind.value, c.channel, c.user_key) for c in changes]


async def _wait_lapsed(state: ClusterState, node_id: str, bound: float = 5.0) -> None:
    """Wait (bounded) until Redis's clock has passed `node_id`'s lease."""
    deadline = time.monotonic() + bound
    while node_id not in await state.lapsed_nodes():
        assert time.monotonic() < deadline, f"lease of {node_id} never lapsed"
        await asyncio.sleep(0.005)


async def test_subscription_counts_are_cluster_totals_and_occupy_and_vacate_once(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    first = await a.subscribe(APP, "chat")
    assert [(c.kind, c.count) for c in first.changes] == [(ChangeKind.OCCUPIED, 1)]
    second = await b.subscribe(APP, "chat")
    assert [(c.kind, c.count) for c in second.changes] == [(ChangeKind.COUNT, 2)]
    assert (await b.channel_counts(APP, "chat", presence=False)).subscription_count == 2
    assert _kinds(await a.unsubscribe(APP, "chat")) == [("count", "chat", None)]
    assert _kinds(await b.unsubscribe(APP, "chat")) == [("vacated", "chat", None)]
    assert (await a.channel_counts(APP, "chat", presence=False)).subscription_count == 0
    assert await a.occupied_channels(APP) == {}


async def test_a_presence_member_is_added_by_its_first_socket_anywhere_and_removed_by_its_last(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    channel = "presence-room"
    ann = encode_member("ann", {"name": "Ann"})
    joined = await a.subscribe(APP, channel, "ann", ann)
    assert _kinds(joined.changes) == [("occupied", channel, None), ("member_added", channel, "ann")]
    assert joined.changes[1].member_value() == ("ann", {"name": "Ann"})
    # Ann's second socket, on another node, with other user_info: no new member, and
    # the user_info of her first socket is kept.
    again = await b.subscribe(APP, channel, "ann", encode_member("ann", {"name": "Other"}))
    assert _kinds(again.changes) == [("count", channel, None)]
    bob = await b.subscribe(APP, channel, "7", encode_member(7, None))
    assert _kinds(bob.changes)[1] == ("member_added", channel, "7")
    assert bob.roster == {"ann": ("ann", {"name": "Ann"}), "7": (7, None)}
    assert sorted(await a.presence_user_ids(APP, channel)) == ["7", "ann"]
    counts = await a.channel_counts(APP, channel, presence=True)
    assert (counts.subscription_count, counts.user_count) == (3, 2)

    assert _kinds(await a.unsubscribe(APP, channel, "ann")) == [("count", channel, None)]
    left = await b.unsubscribe(APP, channel, "ann")
    assert _kinds(left) == [("member_removed", channel, "ann"), ("count", channel, None)]
    assert left[0].member_value() == ("ann", {"name": "Ann"})
    gone = await b.unsubscribe(APP, channel, "7")
    assert _kinds(gone) == [("member_removed", channel, "7"), ("vacated", channel, None)]
    assert await a.presence_members(APP, channel) == {}


async def test_a_full_presence_channel_refuses_a_new_user_but_not_another_socket_of_a_member(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    await a.subscribe(APP, "presence-x", "u1", encode_member("u1", None), max_members=1)
    with pytest.raises(PresenceFull):
        await a.subscribe(APP, "presence-x", "u2", encode_member("u2", None), max_members=1)
    again = await a.subscribe(APP, "presence-x", "u1", encode_member("u1", None),
                              max_members=1)
    assert again.changes[0].count == 2
    assert (await a.channel_counts(APP, "presence-x", True)).user_count == 1


async def test_concurrent_joins_and_leaves_of_one_user_on_many_nodes_announce_it_exactly_once(
        redis_prefix: str) -> None:
    clients = [Redis.from_url("redis://127.0.0.1:6379/0") for _ in range(4)]
    try:
        nodes = [await _node(c, redis_prefix, f"node-{i}") for i, c in enumerate(clients)]
        member = encode_member("u", None)
        joins = await asyncio.gather(*(
            n.subscribe(APP, "presence-busy", "u", member) for n in nodes for _ in range(5)))
        added = [c for r in joins for c in r.changes if c.kind is ChangeKind.MEMBER_ADDED]
        occupied = [c for r in joins for c in r.changes if c.kind is ChangeKind.OCCUPIED]
        assert (len(added), len(occupied)) == (1, 1)
        leaves = await asyncio.gather(*(
            n.unsubscribe(APP, "presence-busy", "u") for n in nodes for _ in range(5)))
        kinds = Counter(c.kind for changes in leaves for c in changes)
        assert kinds[ChangeKind.MEMBER_REMOVED] == 1
        assert kinds[ChangeKind.VACATED] == 1
    finally:
        for client in clients:
            await client.aclose()


async def test_a_lapsed_node_is_reaped_once_even_when_several_nodes_race_to_do_it(
        redis_prefix: str) -> None:
    clients = [Redis.from_url("redis://127.0.0.1:6379/0") for _ in range(4)]
    try:
        dead = await _node(clients[0], redis_prefix, "dead", lease_ms=LEASE_MS)
        alive = await _node(clients[1], redis_prefix, "alive")
        await dead.subscribe(APP, "presence-r", "ann", encode_member("ann", 1))
        await dead.subscribe(APP, "presence-r", "ann", encode_member("ann", 1))
        await dead.subscribe(APP, "presence-r", "bob", encode_member("bob", 2))
        await alive.subscribe(APP, "presence-r", "bob", encode_member("bob", 2))
        await dead.subscribe(APP, "solo", None)
        await dead.sign_in(APP, "ann")
        # The dead node stops renewing: shorten its lease to 1 ms, as if it had.
        dead.lease_ms = 1
        assert await dead.renew()
        reapers = [ClusterState(c, KeyLayout(redis_prefix), f"reaper-{i}", LEASE_MS)
                   for i, c in enumerate(clients[1:])]
        await _wait_lapsed(reapers[0], "dead")
        results = await asyncio.gather(*(r.reap("dead") for r in reapers))
        assert sorted(len(r) for r in results) == [0, 0, 4]
        changes = next(r for r in results if r)
        assert Counter(_kinds(changes)) == Counter([
            ("member_removed", "presence-r", "ann"), ("count", "presence-r", None),
            ("vacated", "solo", None), ("offline", "", "ann")])
        ordered = [c.kind for c in changes if c.channel == "presence-r"]
        assert ordered == [ChangeKind.MEMBER_REMOVED, ChangeKind.COUNT]
        assert await alive.presence_members(APP, "presence-r") == {"bob": ("bob", 2)}
        counts = await alive.channel_counts(APP, "presence-r", True)
        assert (counts.subscription_count, counts.user_count) == (1, 1)
        assert await alive.user_socket_count(APP, "ann") == 0
        assert await redis_client_keys(clients[1], KeyLayout(redis_prefix).node("dead")) == 0
    finally:
        for client in clients:
            await client.aclose()


async def redis_client_keys(client: Redis, key: str) -> int:
    return int(await client.exists(key))


async def test_a_live_lease_is_not_reaped(redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    other = await _node(redis_client, redis_prefix, "node-b")
    await a.subscribe(APP, "chat")
    assert "node-a" not in await other.lapsed_nodes()
    assert await other.reap("node-a") == []
    assert (await other.channel_counts(APP, "chat", False)).subscription_count == 1


async def test_a_reaped_node_notices_and_reregisters_what_is_still_live(
        redis_client: Redis, redis_prefix: str) -> None:
    frozen = await _node(redis_client, redis_prefix, "frozen")
    other = await _node(redis_client, redis_prefix, "other")
    ann = encode_member("ann", None)
    await frozen.subscribe(APP, "presence-r", "ann", ann)
    await frozen.subscribe(APP, "chat")
    frozen.lease_ms = 1
    await frozen.renew()
    await _wait_lapsed(other, "frozen")
    reaped = await other.reap("frozen")
    assert ("member_removed", "presence-r", "ann") in _kinds(reaped)
    # The frozen node resumes: it is no longer registered, every write is refused, and
    # its renewal tells it so; nothing it writes may become a ghost.
    frozen.lease_ms = LEASE_MS
    assert not await frozen.still_registered()
    assert not await frozen.renew()
    with pytest.raises(NodeNotRegistered):
        await frozen.subscribe(APP, "late")
    with pytest.raises(NodeNotRegistered):
        await frozen.unsubscribe(APP, "chat")
    assert (await other.channel_counts(APP, "late", False)).subscription_count == 0
    # It re-registers what its sockets still hold: Ann is announced again.
    snapshot = NodeSnapshot()
    snapshot.add_subscription(APP, "presence-r", "ann", ann)
    snapshot.add_subscription(APP, "chat")
    was, changes = await frozen.sync(snapshot)
    assert not was
    assert Counter(_kinds(changes)) == Counter([
        ("occupied", "presence-r", None), ("member_added", "presence-r", "ann"),
        ("occupied", "chat", None)])
    assert await frozen.still_registered() and await frozen.renew()
    assert await other.presence_user_ids(APP, "presence-r") == ["ann"]


async def test_sync_of_a_still_registered_node_applies_only_the_difference(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    await a.subscribe(APP, "presence-r", "ann", encode_member("ann", None))
    await a.subscribe(APP, "chat")
    await b.subscribe(APP, "chat")
    # While Redis was out of reach, Ann's socket left and a socket joined "news".
    snapshot = NodeSnapshot()
    snapshot.add_subscription(APP, "chat")
    snapshot.add_subscription(APP, "news")
    was, changes = await a.sync(snapshot)
    assert was
    assert Counter(_kinds(changes)) == Counter([
        ("occupied", "news", None), ("member_removed", "presence-r", "ann"),
        ("vacated", "presence-r", None)])
    assert sorted(await b.occupied_channels(APP)) == ["chat", "news"]
    # Syncing the same snapshot again changes nothing.
    assert await a.sync(snapshot) == (True, [])


async def test_signed_in_users_go_online_and_offline_once_across_nodes(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    first = await a.sign_in(APP, "ann", ["bob", "cy"])
    assert _kinds(first.changes) == [("online", "", "ann")]
    assert first.online == {"bob": False, "cy": False}
    watcher = await b.sign_in(APP, "bob", ["ann", "cy"])
    assert watcher.online == {"ann": True, "cy": False}
    assert (await b.sign_in(APP, "ann")).changes == []
    assert await a.user_socket_count(APP, "ann") == 2
    assert await a.sign_out(APP, "ann") == []
    assert _kinds(await b.sign_out(APP, "ann")) == [("offline", "", "ann")]
    assert await a.online_users(APP, ["ann", "bob"]) == {"ann": False, "bob": True}


async def test_the_channel_list_filters_by_prefix_and_counts_presence_users(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    await a.subscribe(APP, "presence-one", "u1", encode_member("u1", None))
    await b.subscribe(APP, "presence-one", "u2", encode_member("u2", None))
    await b.subscribe(APP, "private-x")
    await a.subscribe(APP, "#server-to-user-u1")
    await a.subscribe("other-app", "presence-one", "u9", encode_member("u9", None))
    listed = await b.occupied_channels(APP, "presence-", user_counts=True)
    assert {n: (c.subscription_count, c.user_count) for n, c in listed.items()} == {
        "presence-one": (2, 2)}
    everything = await a.occupied_channels(APP)
    assert sorted(everything) == ["presence-one", "private-x"]
    assert everything["private-x"].user_count is None


async def test_a_cache_channel_keeps_its_last_event_for_its_ttl(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    b = await _node(redis_client, redis_prefix, "node-b")
    await a.put_cached_event(APP, "cache-news", "update", '{"n":1}', ttl_ms=60_000)
    cached = await b.cached_event(APP, "cache-news")
    assert cached is not None and cached[:2] == ("update", '{"n":1}')
    assert 0 < cached[2] <= 60_000
    joined = await b.subscribe(APP, "cache-news", want_cache=True)
    assert joined.cached is not None and joined.cached[0] == b'["update","{\\"n\\":1}"]'
    await a.put_cached_event(APP, "cache-short", "e", "d", ttl_ms=1)
    deadline = time.monotonic() + 5
    while await b.cached_event(APP, "cache-short") is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    assert (await b.subscribe(APP, "cache-short", want_cache=True)).cached is None


async def test_two_prefixes_share_one_redis_without_seeing_each_other(
        redis_client: Redis, redis_prefix: str) -> None:
    one = await _node(redis_client, redis_prefix, "node-a")
    two = await _node(redis_client, redis_prefix + "-other", "node-a")
    try:
        await one.subscribe(APP, "chat")
        assert await two.occupied_channels(APP) == {}
        assert (await two.subscribe(APP, "chat")).changes[0].kind is ChangeKind.OCCUPIED
    finally:
        await two.leave()


async def test_a_leaving_node_takes_its_entries_with_it(
        redis_client: Redis, redis_prefix: str) -> None:
    a = await _node(redis_client, redis_prefix, "node-a")
    await a.subscribe(APP, "presence-r", "ann", encode_member("ann", None))
    changes = await a.leave()
    assert _kinds(changes) == [("member_removed", "presence-r", "ann"),
                               ("vacated", "presence-r", None)]
    assert not await a.still_registered()


async def test_a_script_publishes_what_it_decided_on_the_bus_in_the_same_step(
        redis_client: Redis, redis_prefix: str) -> None:
    keys = KeyLayout(redis_prefix)
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    await listener.subscribe(keys.bus)
    try:
        a = await _node(redis_client, redis_prefix, "node-a")
        await a.subscribe(APP, "presence-r", "ann", encode_member("ann", None),
                          socket_id="1.1")
        await a.subscribe(APP, "presence-r", "ann", encode_member("ann", None),
                          socket_id="1.2")
        received: list[BusMessage] = []

        async def two() -> None:
            while len(received) < 2:
                message = await listener.get_message(timeout=1.0)
                if message is not None:
                    received.append(decode_bus_message(message["data"]))

        await asyncio.wait_for(two(), 10)
        first, second = received
        assert isinstance(first, ChangesMessage) and isinstance(second, ChangesMessage)
        assert (first.origin, first.socket_id) == ("node-a", "1.1")
        assert _kinds(list(first.changes)) == [("occupied", "presence-r", None),
                                               ("member_added", "presence-r", "ann")]
        assert first.changes[1].member_value() == ("ann", None)
        assert _kinds(list(second.changes)) == [("count", "presence-r", None)]
    finally:
        await listener.aclose()
