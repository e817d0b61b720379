"""The adapter contract: what every adapter must do, whatever engine keeps its state.

Each test runs against every adapter in ``ADAPTERS`` (the in-memory one; a distributed
adapter joins the parametrisation). Connections are :class:`Peer` objects: real sessions
whose actions go through the real action interpreter. Waits use :func:`until` so that an
adapter deciding in the background passes the same tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pusherd.adapters.base import Adapter
from pusherd.adapters.memory import MemoryAdapter
from pusherd.adapters.redis import RedisAdapter
from pusherd.config import RedisConfig
from pusherd.core.api import Trigger
from pusherd.core.app import App
from pusherd.core.ids import AppId, AppKey
from pusherd.core.transitions import Transition
from pusherd.server.actions import wall_ms
from tests.pusherd.adapter_harness import Peer, until
from tests.support.redis_server import SHARED_REDIS_URL, delete_prefix, unique_prefix

APP = App(id=AppId("1001"), key=AppKey("app-key"), secret="app-secret",
          enable_client_events=True, enable_subscription_count=True)
OTHER = App(id=AppId("1002"), key=AppKey("other-key"), secret="other-secret")



def _redis_adapter() -> Adapter:
    """A one-node cluster on the shared Redis, under a key prefix of its own."""
    config = RedisConfig(url=SHARED_REDIS_URL, prefix=unique_prefix())
    return RedisAdapter(config, [APP, OTHER])


ADAPTERS: dict[str, Callable[[], Adapter]] = {"memory": MemoryAdapter, "redis": _redis_adapter}


@pytest.fixture(params=sorted(ADAPTERS))
async def adapter(request: pytest.FixtureRequest) -> AsyncIterator[Adapter]:
    instance = ADAPTERS[request.param]()
    await instance.start()
    yield instance
    await instance.close()
    if isinstance(instance, RedisAdapter):  # what outlives the node: cached events
        delete_prefix(SHARED_REDIS_URL, instance.config.prefix)


@pytest.fixture
def transitions(adapter: Adapter) -> list[Transition]:
    seen: list[Transition] = []
    adapter.add_listener(seen.append)
    return seen


def _trigger(channels: tuple[str, ...], data: str = '{"n":1}', socket_id: str | None = None,
             name: str = "update") -> Trigger:
    return Trigger(name, data, channels, socket_id, frozenset())


def _names(transitions: list[Transition]) -> list[tuple[str, str, Any]]:
    return [(t.name, t.channel, getattr(t, "user_id", None)) for t in transitions]


# --- presence ----------------------------------------------------------------------------


async def test_presence_counts_a_user_once_across_sockets(adapter: Adapter) -> None:
    watcher, ada_1, ada_2 = Peer(adapter, APP), Peer(adapter, APP), Peer(adapter, APP)
    watcher.subscribe("presence-room", "w")
    ada_1.subscribe("presence-room", "ada", {"name": "Ada"})
    ada_2.subscribe("presence-room", "ada", {"name": "Ada"})
    await until(lambda: len(ada_2.events("pusher_internal:subscription_succeeded")) == 1)
    assert watcher.data_of("pusher_internal:member_added", "presence-room") == [
        {"user_id": "ada", "user_info": {"name": "Ada"}}]
    roster = ada_2.data_of("pusher_internal:subscription_succeeded")[0]["presence"]
    assert sorted(roster["ids"]) == ["ada", "w"] and roster["count"] == 2
    snapshot = adapter.channel_snapshot(APP, "presence-room")
    assert (snapshot.occupied, snapshot.user_count, snapshot.subscription_count) == (True, 2, 3)

    ada_1.disconnect()
    await until(lambda: adapter.channel_snapshot(APP, "presence-room").subscription_count == 2)
    assert watcher.events("pusher_internal:member_removed") == []
    ada_2.unsubscribe("presence-room")
    await until(lambda: len(watcher.events("pusher_internal:member_removed")) == 1)
    assert watcher.data_of("pusher_internal:member_removed") == [{"user_id": "ada"}]
    assert adapter.presence_user_ids(APP, "presence-room") == ["w"]


async def test_a_repeated_presence_subscribe_leaves_no_ghost(adapter: Adapter) -> None:
    # The replayed report: alice, then the same socket again as bob, then leave.
    observer, socket = Peer(adapter, APP), Peer(adapter, APP)
    observer.subscribe("presence-lobby.7", "observer")
    socket.subscribe("presence-lobby.7", "alice")
    socket.subscribe("presence-lobby.7", "bob")
    socket.unsubscribe("presence-lobby.7")
    socket.disconnect()
    await until(lambda: len(observer.events("pusher_internal:member_removed")) == 1)
    assert observer.data_of("pusher_internal:member_added") == [
        {"user_id": "alice", "user_info": None}]
    assert observer.data_of("pusher_internal:member_removed") == [{"user_id": "alice"}]
    assert adapter.presence_user_ids(APP, "presence-lobby.7") == ["observer"]
    assert adapter.channel_snapshot(APP, "presence-lobby.7").user_count == 1
    late = Peer(adapter, APP)
    late.subscribe("presence-lobby.7", "late")
    await until(lambda: len(late.events("pusher_internal:subscription_succeeded")) == 1)
    assert sorted(late.data_of("pusher_internal:subscription_succeeded")[0]["presence"]["ids"]
                  ) == ["late", "observer"]


async def test_a_full_presence_channel_refuses_a_new_user_and_keeps_nothing(
    adapter: Adapter,
) -> None:
    small = dataclasses.replace(APP, max_presence_members=1)
    first, second = Peer(adapter, small), Peer(adapter, small)
    first.subscribe("presence-small", "1")
    second.subscribe("presence-small", "2")
    await until(lambda: len(second.events("pusher:subscription_error")) == 1)
    assert second.data_of("pusher:subscription_error")[0]["status"] == 4100
    assert "presence-small" not in second.session.subscriptions
    assert adapter.presence_user_ids(small, "presence-small") == ["1"]
    assert adapter.channel_snapshot(small, "presence-small").subscription_count == 1


# --- counts and listings ------------------------------------------------------------------


async def test_channels_are_listed_by_prefix_with_their_counts(adapter: Adapter) -> None:
    a, b = Peer(adapter, APP), Peer(adapter, APP)
    for peer in (a, b):
        peer.subscribe("orders")
    a.subscribe("presence-room", "1")
    b.subscribe("presence-room", "2")
    a.subscribe("private-chat")
    await until(lambda: len(adapter.presence_user_ids(APP, "presence-room")) == 2)
    listed = dict(adapter.occupied_channels(APP, ""))
    assert sorted(listed) == ["orders", "presence-room", "private-chat"]
    assert listed["orders"].subscription_count == 2 and listed["orders"].user_count is None
    assert listed["presence-room"].user_count == 2
    assert [name for name, _ in adapter.occupied_channels(APP, "presence-")] == ["presence-room"]
    assert list(adapter.occupied_channels(OTHER, "")) == []


async def test_the_subscription_count_is_announced_to_the_channel(adapter: Adapter) -> None:
    a, b = Peer(adapter, APP), Peer(adapter, APP)
    a.subscribe("orders")
    b.subscribe("orders")
    await until(lambda: len(a.events("pusher_internal:subscription_count")) == 2)
    assert [d["subscription_count"] for d in a.data_of("pusher_internal:subscription_count")
            ] == [1, 2]
    b.disconnect()
    await until(lambda: len(a.events("pusher_internal:subscription_count")) == 3)
    assert a.data_of("pusher_internal:subscription_count")[-1] == {"subscription_count": 1}


async def test_connections_are_counted_per_app_and_the_quota_is_enforced(
    adapter: Adapter,
) -> None:
    quota = dataclasses.replace(OTHER, max_connections=1)
    first, second = Peer(adapter, quota), Peer(adapter, quota)
    assert first.events("pusher:connection_established")
    assert second.closed_with == 4004
    assert adapter.connection_count(quota) == 1
    first.disconnect()
    assert adapter.connection_count(quota) == 0


# --- delivery -----------------------------------------------------------------------------


async def test_a_trigger_reaches_every_subscriber_but_the_excluded_socket(
    adapter: Adapter,
) -> None:
    a, b, outsider = Peer(adapter, APP), Peer(adapter, APP), Peer(adapter, APP)
    a.subscribe("orders")
    b.subscribe("orders")
    adapter.trigger(APP, _trigger(("orders", "empty"), socket_id=a.socket_id), wall_ms())
    await until(lambda: len(b.events("update")) == 1)
    assert b.events("update") == [{"event": "update", "channel": "orders", "data": '{"n":1}'}]
    assert a.events("update") == [] and outsider.events("update") == []


async def test_apps_are_isolated(adapter: Adapter) -> None:
    mine, theirs = Peer(adapter, APP), Peer(adapter, OTHER)
    mine.subscribe("orders")
    theirs.subscribe("orders")
    adapter.trigger(OTHER, _trigger(("orders",)), wall_ms())
    await until(lambda: len(theirs.events("update")) == 1)
    assert mine.events("update") == []


async def test_a_client_event_reaches_the_others_never_the_sender(
    adapter: Adapter, transitions: list[Transition],
) -> None:
    a, b = Peer(adapter, APP), Peer(adapter, APP)
    a.subscribe("presence-chat", "1")
    b.subscribe("presence-chat", "2")
    a.send({"event": "client-typing", "channel": "presence-chat", "data": {"x": 1}})
    await until(lambda: len(b.events("client-typing")) == 1)
    assert b.events("client-typing")[0]["user_id"] == "1"
    assert a.events("client-typing") == []
    sent = [t for t in transitions if t.name == "client_event"]
    assert len(sent) == 1 and sent[0].socket_id == a.socket_id


async def test_a_cache_channel_replays_its_last_event_until_it_expires(
    adapter: Adapter, transitions: list[Transition],
) -> None:
    early = Peer(adapter, APP)
    early.subscribe("cache-prices")
    await until(lambda: len(early.events("pusher:cache_miss")) == 1)
    adapter.trigger(APP, _trigger(("cache-prices",), '{"p":1}', name="price"), wall_ms())
    late = Peer(adapter, APP)
    late.subscribe("cache-prices")
    await until(lambda: len(late.events("price")) == 1)
    assert late.events("pusher:cache_miss") == []
    cached = adapter.cached_event(APP, "cache-prices", wall_ms())
    assert cached is not None and (cached.event, cached.data) == ("price", '{"p":1}')
    assert 0 < cached.ttl_ms <= APP.cache_ttl * 1000
    assert adapter.cached_event(APP, "cache-prices", wall_ms() + APP.cache_ttl * 1000) is None
    assert [t.name for t in transitions].count("cache_miss") == 1


async def test_terminate_closes_every_socket_of_the_user_only(adapter: Adapter) -> None:
    one, two, other = Peer(adapter, APP), Peer(adapter, APP), Peer(adapter, APP)
    one.sign_in("42")
    two.sign_in("42")
    other.sign_in("7")
    await until(lambda: len(two.events("pusher:signin_success")) == 1)
    assert adapter.terminate_user(APP, "42") == 2
    assert (one.closed_with, two.closed_with, other.closed_with) == (4009, 4009, None)


async def test_server_to_user_events_reach_every_socket_of_the_user(adapter: Adapter) -> None:
    one, two = Peer(adapter, APP), Peer(adapter, APP)
    one.sign_in("42")
    await until(lambda: len(one.events("pusher:signin_success")) == 1)
    adapter.trigger(APP, _trigger(("#server-to-user-42",)), wall_ms())
    await until(lambda: len(one.events("update")) == 1)
    assert two.events("update") == []


async def test_watchers_learn_when_a_user_comes_online_and_goes_offline(
    adapter: Adapter,
) -> None:
    watcher, user = Peer(adapter, APP), Peer(adapter, APP)
    watcher.sign_in("w", watchlist=["42"])
    await until(lambda: len(watcher.events("pusher_internal:watchlist_events")) == 1)
    assert watcher.data_of("pusher_internal:watchlist_events")[0] == {
        "events": [{"name": "offline", "user_ids": ["42"]}]}
    user.sign_in("42")
    await until(lambda: len(watcher.events("pusher_internal:watchlist_events")) == 2)
    user.disconnect()
    await until(lambda: len(watcher.events("pusher_internal:watchlist_events")) == 3)
    assert [d["events"] for d in watcher.data_of("pusher_internal:watchlist_events")[1:]] == [
        [{"name": "online", "user_ids": ["42"]}], [{"name": "offline", "user_ids": ["42"]}]]


# --- transitions --------------------------------------------------------------------------


async def test_transitions_are_emitted_once_each_in_order(
    adapter: Adapter, transitions: list[Transition],
) -> None:
    a, a_again, b = Peer(adapter, APP), Peer(adapter, APP), Peer(adapter, APP)
    a.subscribe("presence-room", "1")
    a_again.subscribe("presence-room", "1")
    b.subscribe("presence-room", "2")
    a.subscribe("orders")
    for peer in (a, a_again, b):
        peer.disconnect()
    await until(lambda: ("channel_vacated", "presence-room", None) in _names(transitions))
    names = [n for n in _names(transitions) if n[0] != "subscription_count"]
    assert names == [
        ("channel_occupied", "presence-room", None),
        ("member_added", "presence-room", "1"),
        ("member_added", "presence-room", "2"),
        ("channel_occupied", "orders", None),
        ("channel_vacated", "orders", None),
        ("member_removed", "presence-room", "1"),
        ("member_removed", "presence-room", "2"),
        ("channel_vacated", "presence-room", None),
    ]
    times = [t.time_ms for t in transitions]
    assert times == sorted(times) and abs(times[0] - wall_ms()) < 60_000
