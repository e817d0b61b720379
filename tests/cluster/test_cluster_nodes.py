"""Several pusherd processes as one cluster over the shared Redis: real processes on port
0, real WebSocket clients spread over the nodes, the official Python SDK triggering on
one node. The three nodes are shared by the tests of this module (starting them is most of
the cost); each test uses channel and user names of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pusherd.adapters.cluster.bus import BusMessage, TriggerMessage, decode_bus_frame
from tests.cluster.nodes import join_presence, join_private, run_cluster, sign_in
from tests.pusherd.wire import OTHER_APP, Client, call, channel_auth, sdk
from tests.support.pusherd_process import PusherdProcess
from tests.support.redis_server import SHARED_REDIS_URL, delete_prefix, unique_prefix


@pytest.fixture(scope="module")
def cluster_prefix() -> Any:
    prefix = unique_prefix()
    yield prefix
    delete_prefix(SHARED_REDIS_URL, prefix)


@pytest.fixture(scope="module")
def three_nodes(cluster_prefix: str) -> Any:
    with run_cluster(3, SHARED_REDIS_URL, cluster_prefix) as nodes:
        yield nodes


async def fence(node: PusherdProcess, channel: str, *clients: Client) -> list[list[Any]]:
    """Trigger a marker on `channel` through `node` and return, per client, every frame
    that arrived before the marker. Redis orders everything published on the bus, so a
    frame caused before the marker is read before it: an empty list proves nothing else
    (no duplicate, no echo) was on its way."""
    await call(sdk(node.port).trigger, channel, "fence", {})
    seen: list[list[Any]] = []
    for client in clients:
        before: list[Any] = []
        while True:
            frame = await client.recv()
            if frame.get("event") == "fence":
                break
            before.append(frame)
        seen.append(before)
    return seen


def events(frames: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("event") == name]


async def test_presence_is_exact_across_nodes_and_sockets(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    room = "presence-room"
    watcher, roster = await join_presence(one, room, "watcher", {"n": 0})
    assert roster["ids"] == ["watcher"]
    ann, roster = await join_presence(two, room, "ann", {"n": 1})
    assert sorted(roster["ids"]) == ["ann", "watcher"]  # the roster spans the nodes
    assert roster["hash"]["watcher"] == {"n": 0}
    added = await watcher.expect("pusher_internal:member_added", room)
    assert json.loads(added["data"]) == {"user_id": "ann", "user_info": {"n": 1}}
    # Ann's second socket, on a third node: no second member_added anywhere.
    ann_again, roster = await join_presence(three, room, "ann", {"n": 1})
    assert sorted(roster["ids"]) == ["ann", "watcher"]
    assert await fence(one, room, watcher, ann, ann_again) == [[], [], []]
    # Her first socket leaves: she is still present through the other one.
    await ann.close()
    assert await fence(three, room, watcher, ann_again) == [[], []]
    # Her last socket leaves: member_removed, once, on another node.
    await ann_again.close()
    removed = await watcher.expect("pusher_internal:member_removed", room)
    assert json.loads(removed["data"]) == {"user_id": "ann"}
    assert await fence(two, room, watcher) == [[]]


async def test_a_trigger_on_one_node_reaches_every_node_once_and_skips_the_excluded_socket(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    channel = "private-news"
    near = await join_private(one, channel)
    far = await join_private(two, channel)
    excluded = await join_private(three, channel)
    other = await join_private(three, channel)
    await call(sdk(one.port).trigger, channel, "update", {"n": 1},
               socket_id=excluded.socket_id)
    for client in (near, far, other):
        frame = await client.expect("update", channel)
        assert json.loads(frame["data"]) == {"n": 1}
    # Nothing else pending anywhere: no duplicate, and nothing for the excluded socket.
    fenced = await fence(two, channel, near, far, excluded, other)
    assert fenced == [[], [], [], []]


async def test_client_events_reach_other_nodes_exactly_once_and_never_echo(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    channel = "private-chat"
    sender = await join_private(one, channel)
    same_node = await join_private(one, channel)
    far = await join_private(two, channel)
    farther = await join_private(three, channel)
    await sender.send({"event": "client-typing", "channel": channel, "data": {"who": "me"}})
    for client in (same_node, far, farther):
        frame = await client.expect("client-typing", channel)
        assert frame["data"] == {"who": "me"}
    assert await fence(three, channel, sender, same_node, far, farther) == [[], [], [], []]


async def _consistent(nodes: list[PusherdProcess], query: Callable[[Any], Any],
                      expected: Any) -> None:
    """Every node answers `expected` (the mirror of another node's change arrives within
    milliseconds; wait for it, bounded)."""
    clients = [sdk(node.port) for node in nodes]
    answers: list[Any] = []

    async def check() -> bool:
        answers[:] = [await call(query, client) for client in clients]
        return all(a == expected for a in answers)

    for _ in range(200):
        if await check():
            return
    raise AssertionError(f"nodes disagree or are wrong: {answers}")


async def test_channel_and_user_queries_answer_the_cluster_view_on_every_node(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    await join_presence(one, "presence-q-a", "u1")
    await join_presence(two, "presence-q-a", "u2")
    await join_presence(three, "presence-q-a", "u2")
    await join_presence(three, "presence-q-b", "u3")
    await join_private(one, "private-q-x")
    await join_private(two, "private-q-x")
    await _consistent(three_nodes, lambda c: c.channels_info(
        prefix_filter="presence-q-", attributes=["user_count"]), {"channels": {
            "presence-q-a": {"user_count": 2}, "presence-q-b": {"user_count": 1}}})
    await _consistent(three_nodes, lambda c: c.channel_info(
        "private-q-x", attributes=["subscription_count"]),
        {"occupied": True, "subscription_count": 2})
    await _consistent(three_nodes, lambda c: sorted(
        u["id"] for u in c.users_info("presence-q-a")["users"]), ["u1", "u2"])
    await _consistent(three_nodes, lambda c: c.channel_info(
        "presence-q-a", attributes=["user_count"]), {"occupied": True, "user_count": 2})


async def test_subscription_count_is_the_cluster_total(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, _ = three_nodes
    first = await join_private(one, "private-count", OTHER_APP)
    frame = await first.expect("pusher_internal:subscription_count", "private-count")
    assert json.loads(frame["data"]) == {"subscription_count": 1}
    await join_private(two, "private-count", OTHER_APP)
    frame = await first.expect("pusher_internal:subscription_count", "private-count")
    assert json.loads(frame["data"]) == {"subscription_count": 2}


async def test_terminate_connections_closes_the_users_sockets_on_every_node(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    ann_two, _ = await sign_in(two, "t-ann")
    ann_three, _ = await sign_in(three, "t-ann")
    bob, _ = await sign_in(three, "t-bob")
    await call(sdk(one.port).terminate_user_connections, "t-ann")
    for client in (ann_two, ann_three):
        code, frames = await client.closed()
        assert code == 4009
        assert events(frames, "pusher:error")[0]["data"]["code"] == 4009
    assert await bob.barrier() == []  # bob's socket is still open and untouched


async def test_server_to_user_and_watchlist_events_cross_nodes(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    watcher, initial = await sign_in(one, "w-watcher", ["w-ann", "w-bob"])
    assert initial == [{"event": "pusher_internal:watchlist_events", "data": {
        "events": [{"name": "offline", "user_ids": ["w-ann", "w-bob"]}]}}]
    ann, _ = await sign_in(two, "w-ann")
    frame = await watcher.expect("pusher_internal:watchlist_events")
    assert frame["data"] == {"events": [{"name": "online", "user_ids": ["w-ann"]}]}
    _, initial = await sign_in(three, "w-late", ["w-ann"])
    assert initial[0]["data"] == {"events": [{"name": "online", "user_ids": ["w-ann"]}]}
    await call(sdk(three.port).send_to_user, "w-ann", "note", {"x": 1})
    frame = await ann.expect("note", "#server-to-user-w-ann")
    assert json.loads(frame["data"]) == {"x": 1}
    await ann.close()
    frame = await watcher.expect("pusher_internal:watchlist_events")
    assert frame["data"] == {"events": [{"name": "offline", "user_ids": ["w-ann"]}]}


async def test_a_cache_channel_serves_its_last_event_on_every_node(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, _ = three_nodes
    first = await Client.open(two.port)
    await first.subscribe_ok("cache-prices")
    await first.expect("pusher:cache_miss", "cache-prices")
    await call(sdk(one.port).trigger, "cache-prices", "price", {"p": 3})
    await first.expect("price", "cache-prices")
    late = await Client.open(two.port)
    await late.subscribe_ok("cache-prices")
    frame = await late.expect("price", "cache-prices")
    assert json.loads(frame["data"]) == {"p": 3}
    info = await call(sdk(two.port).channel_info, "cache-prices", attributes=["cache"])
    assert info["cache"]["event"] == "price" and 0 < info["cache"]["ttl"] <= 60


async def test_a_full_presence_channel_refuses_a_new_user_whichever_node_it_comes_to(
        three_nodes: list[PusherdProcess]) -> None:
    one, two, three = three_nodes
    for index, node in enumerate((one, two, three)):
        await join_presence(node, "presence-small", f"u{index}")
    client = await Client.open(two.port)
    data = json.dumps({"user_id": "u9"})
    # The mirror of the third member may trail by a moment: retry until it is refused.
    for _ in range(100):
        frame = await client.subscribe(
            "presence-small", channel_auth(client.socket_id, "presence-small", data), data)
        if frame["event"] == "pusher:error":
            break
        await client.unsubscribe("presence-small")
    assert frame["event"] == "pusher:error" and frame["data"]["code"] == 4009


async def test_a_trigger_to_several_channels_is_one_publish_on_the_bus(
        three_nodes: list[PusherdProcess], cluster_prefix: str) -> None:
    one, two, three = three_nodes
    channels = ["private-p1", "private-p2", "private-p3"]
    receivers = [await join_private(node, channel)
                 for node, channel in zip((two, three, two), channels, strict=True)]
    watcher = Redis.from_url(SHARED_REDIS_URL)
    bus = watcher.pubsub(ignore_subscribe_messages=True)
    await bus.subscribe(f"{cluster_prefix}:bus")
    try:
        await call(sdk(one.port).trigger, channels, "multi", {"n": 1})
        for client, channel in zip(receivers, channels, strict=True):
            await client.expect("multi", channel)
        await call(sdk(one.port).trigger, "private-p1", "after", {})
        await receivers[0].expect("after", "private-p1")
        seen: list[BusMessage] = []

        async def read_until_after() -> None:
            while not any(isinstance(m, TriggerMessage) and m.event == "after" for m in seen):
                message = await bus.get_message(timeout=1.0)
                if message is not None:
                    seen.extend(decode_bus_frame(message["data"]))

        await asyncio.wait_for(read_until_after(), 10)
        triggers = [m for m in seen if isinstance(m, TriggerMessage)]
        assert [(m.event, m.channels) for m in triggers] == [
            ("multi", tuple(channels)), ("after", ("private-p1",))]
    finally:
        await bus.aclose()
        await watcher.aclose()


async def test_a_nodes_metrics_show_its_redis_link(three_nodes: list[PusherdProcess]) -> None:
    from tests.pusherd.test_server_metrics import scrape, value

    one = three_nodes[0]
    before = await scrape(one.port)
    listener = await join_private(three_nodes[1], "private-metered")
    await call(sdk(one.port).trigger, "private-metered", "tick", {"n": 1})
    await listener.expect("tick", "private-metered")
    # The other node can deliver the message before this node has read Redis's reply to
    # its round trip (and counted it): scrape until the count moves, with a bound.
    deadline = asyncio.get_running_loop().time() + 10
    after = await scrape(one.port)
    while value(after, "pusherd_redis_bus_published_total") <= value(
            before, "pusherd_redis_bus_published_total"):
        assert asyncio.get_running_loop().time() < deadline, "the publish was never counted"
        await asyncio.sleep(0.01)
        after = await scrape(one.port)
    assert value(after, "pusherd_redis_up") == 1
    assert value(after, "pusherd_redis_outages_total") == 0
    # The trigger went out in a pipeline round trip that the histogram counted.
    assert value(after, "pusherd_redis_bus_published_total") > value(
        before, "pusherd_redis_bus_published_total")
    count = value(after, "pusherd_redis_round_trip_seconds_count")
    assert count > value(before, "pusherd_redis_round_trip_seconds_count")
    assert value(after, "pusherd_redis_round_trip_seconds_bucket", le="+Inf") == count
    assert value(after, "pusherd_redis_round_trip_seconds_sum") > 0


async def test_deployments_told_apart_by_database_number_alone_do_not_share_the_bus() -> None:
    # Pub/sub ignores the database number: before the bus channel named it, nodes of one
    # prefix on databases 1 and 2 heard each other's triggers, client events and
    # transitions, and reaped none of each other's members (ghosts; a reviewer found it).
    prefix = unique_prefix()
    base = SHARED_REDIS_URL.rstrip("/").rsplit("/", 1)[0] if SHARED_REDIS_URL.count("/") > 2 \
        else SHARED_REDIS_URL
    on_1, on_2 = f"{base}/1", f"{base}/2"
    try:
        with run_cluster(2, on_1, prefix) as (a, c), run_cluster(2, on_2, prefix) as (b, b2):
            watcher = Redis.from_url(SHARED_REDIS_URL)
            try:
                counts = dict(await watcher.pubsub_numsub(
                    f"{prefix}:bus@db1", f"{prefix}:bus@db2", f"{prefix}:bus"))
            finally:
                await watcher.aclose()
            assert counts == {f"{prefix}:bus@db1".encode(): 2,
                              f"{prefix}:bus@db2".encode(): 2, f"{prefix}:bus".encode(): 0}
            on_c = await join_private(c, "private-shared")
            on_b = await join_private(b, "private-shared")
            # a's trigger has been through Redis once c has it; a fence through b2 is
            # published after it, so on a shared bus b would read a's frame first
            await call(sdk(a.port).trigger, "private-shared", "from-db1", {})
            await on_c.expect("from-db1", "private-shared")
            (before,) = await fence(b2, "private-shared", on_b)
            assert before == []
            await on_c.close()
            await on_b.close()
    finally:
        delete_prefix(on_1, prefix)
        delete_prefix(on_2, prefix)
