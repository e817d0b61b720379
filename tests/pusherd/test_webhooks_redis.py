"""The Redis webhook store against a real Redis (the shared server, a unique key prefix):
a node that dies with deliveries pending has them delivered by exactly one other node, and
dead letters are shared by every node. The nodes are senders in this process, fed with
transitions directly (the Redis adapter decides them in a cluster)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from pusherd.config import WebhooksConfig
from pusherd.core.app import App, Webhook
from pusherd.core.ids import AppId, AppKey
from pusherd.core.transitions import ChannelOccupied
from pusherd.webhooks.redis_store import RedisStore
from pusherd.webhooks.sender import WebhookSender
from tests.support.webhook_receiver import WebhookReceiver

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-wh-{secrets.token_hex(4)}"
    yield name
    client = redis_asyncio.Redis.from_url(URL)
    keys = [key async for key in client.scan_iter(match=f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def node(receiver: WebhookReceiver, prefix: str, **settings: Any) -> WebhookSender:
    app = App(AppId("1"), AppKey("key"), "secret", webhooks=(Webhook(receiver.url),))
    config = WebhooksConfig(journal="", grace=0.0, retry_base=0.05, retry_max=0.1,
                            **settings)
    return WebhookSender([app], config,
                         RedisStore(URL, prefix, lease_ttl=1.0, reclaim_interval=0.1))


async def crash(sender: WebhookSender) -> None:
    """Stop a node as SIGKILL would: no lease given up, nothing more written."""
    store = sender.store
    assert isinstance(store, RedisStore)
    await store._write()  # what it accepted before dying had reached Redis
    tasks = [lane.task for lane in sender._lanes.values() if lane.task is not None]
    tasks += [t for lane in sender._lanes.values() for t in lane.requests]
    tasks += [t for t in (store._lease, sender._maintainer, store._flushing) if t is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.client.aclose()


async def test_a_dead_nodes_pending_events_are_delivered_once_by_one_survivor(
        prefix: str) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    dying, survivors = node(receiver, prefix), [node(receiver, prefix) for _ in range(2)]
    try:
        for sender in (dying, *survivors):
            await sender.start()
        now = int(time.time() * 1000)
        for i in range(5):
            dying.on_transition(ChannelOccupied(AppId("1"), f"room-{i}", now))
        await receiver.wait_for(lambda r: len({e["id"] for q in r.requests for e in q.events})
                                == 5, "a refused attempt of each event")
        await crash(dying)
        answer["status"] = 200
        events = await receiver.wait_unique(5)
        assert sorted(e["channel"] for e in events) == [f"room-{i}" for i in range(5)]
        # Exactly one survivor took them over: every event was accepted exactly once.
        accepted = [e["id"] for e in receiver.accepted_events()]
        assert sorted(accepted) == sorted({e["id"] for e in events})
        assert sum(s.counters.delivered for s in survivors) == 5
        assert [s.counters.delivered for s in survivors].count(0) == 1
    finally:
        for sender in survivors:
            await sender.close()
        await receiver.stop()


async def test_dead_letters_are_listed_and_replayed_by_any_node(prefix: str) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    first = node(receiver, prefix, retry_window=0.3)
    second = node(receiver, prefix)
    try:
        await first.start()
        await second.start()
        dead = asyncio.get_running_loop().create_future()
        first.add_observer(lambda outcome, d: outcome == "dead" and not dead.done()
                           and dead.set_result(d))
        first.on_transition(ChannelOccupied(AppId("1"), "lost", int(time.time() * 1000)))
        delivery = await asyncio.wait_for(dead, 10)
        assert isinstance(second.store, RedisStore)
        await first.store._write()  # type: ignore[attr-defined]
        shared = await second.store.load_failed()
        assert shared is not None and [d.event_id for d in shared] == [delivery.event_id]
        second._failed.clear()  # take the shared list as the next refresh would
        for letter in shared:
            second._failed[(letter.event_id, letter.key)] = letter
        assert [f["id"] for f in second.failed_events("1")] == [delivery.event_id]
        answer["status"] = 200
        assert second.replay("1", [delivery.event_id]) == 1
        [event] = await receiver.wait_unique(1)
        assert event["id"] == delivery.event_id and event["channel"] == "lost"
        await second.store._write()  # type: ignore[attr-defined]
        assert await second.store.load_failed() == []
    finally:
        await first.close()
        await second.close()
        await receiver.stop()
