"""Cache channels in a cluster: a trigger's answer waits until the channel's last event is
in Redis, so a subscriber on any node after the answer gets that event; a store that
fails or hangs is answered with a 503, never with a hang.

Real pusherd processes on port 0, real WebSocket clients, signed HTTP triggers; the
shared Redis for delivery, a private redis-server (frozen by the test) for the failure.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest

from tests.cluster.nodes import run_cluster
from tests.cluster.test_cluster_faults import _wait_ready
from tests.pusherd.wire import (
    APP,
    Client,
    HttpReply,
    http_request,
    read_http_reply,
    signed_query,
    trigger_raw,
)
from tests.support.redis_server import SHARED_REDIS_URL, PrivateRedis, delete_prefix, unique_prefix

ROUNDS = 25


async def _slow_trigger(port: int, data: str) -> HttpReply:
    """A trigger whose answer may take the node's whole store timeout (30 s bound)."""
    path, body = f"/apps/{APP.id}/events", json.dumps(
        {"name": "price", "channels": ["cache-frozen"], "data": data}).encode()
    query = signed_query("POST", path, body)
    return await http_request(port, "POST", f"{path}?{query}", body, timeout=30)


@pytest.fixture
def prefix() -> Any:
    name = unique_prefix()
    yield name
    delete_prefix(SHARED_REDIS_URL, name)


async def test_a_subscriber_on_another_node_right_after_the_answer_gets_the_new_event(
        prefix: str) -> None:
    with run_cluster(2, SHARED_REDIS_URL, prefix) as (one, two):
        for number in range(ROUNDS):
            late = await Client.open(two.port)  # connected before: subscribes at once
            reply = await trigger_raw(one.port, {
                "name": "price", "channels": ["cache-race"], "data": json.dumps({"n": number})})
            assert reply.status == 200, reply.body
            await late.subscribe_ok("cache-race")
            frame = await late.recv()
            # The first frame after the success is this trigger's event: never the
            # previous round's (the answer came after Redis stored it).
            assert (frame.get("event"), json.loads(frame["data"])) == (
                "price", {"n": number}), frame
            await late.close()


async def test_a_cache_trigger_is_answered_503_when_redis_does_not_store_it(
        private_redis: PrivateRedis) -> None:
    with run_cluster(2, private_redis.url, "cache-fault") as (one, two):
        near = await Client.open(one.port)
        await near.subscribe_ok("cache-frozen")
        await near.expect("pusher:cache_miss", "cache-frozen")
        assert private_redis.process is not None
        private_redis.process.send_signal(signal.SIGSTOP)
        try:
            # Redis hangs: the writer's round trip times out; the answer says so (bounded
            # by the node's own timeout; the wait below only bounds the test).
            reply = await _slow_trigger(one.port, "1")
            assert reply.status == 503, reply.body
            assert "cache channel's last event" in reply.json()["error"]
            # The node's own subscribers got it all the same.
            frame = await near.expect("price", "cache-frozen")
            assert frame["data"] == "1"
            # While the node knows Redis is away, triggers are answered at once (the
            # documented outage behaviour: buffered, stored when Redis returns).
            await _wait_ready(one, 503, bound=30)
            reply = await trigger_raw(one.port, {
                "name": "price", "channels": ["cache-frozen"], "data": "2"})
            assert reply.status == 200, reply.body
        finally:
            private_redis.process.send_signal(signal.SIGCONT)
        await _wait_ready(one, 200, bound=30)
        await _wait_ready(two, 200, bound=30)
        reply = await trigger_raw(one.port, {
            "name": "price", "channels": ["cache-frozen"], "data": "3"})
        assert reply.status == 200, reply.body
        late = await Client.open(two.port)
        await late.subscribe_ok("cache-frozen")
        frame = await late.recv()
        assert (frame.get("event"), frame.get("data")) == ("price", "3"), frame


async def test_answers_pipelined_behind_a_cache_trigger_keep_their_order(prefix: str) -> None:
    with run_cluster(1, SHARED_REDIS_URL, prefix) as (one,):
        requests = b""
        for number in range(3):
            for channel in ("cache-order", "plain-order"):  # waits, then does not
                path = f"/apps/{APP.id}/events"
                trigger = {"name": "n", "channels": [channel], "data": str(number)}
                if channel == "plain-order":  # an answer that differs from the other's
                    trigger["info"] = "subscription_count"
                body = json.dumps(trigger).encode()
                requests += (f"POST {path}?{signed_query('POST', path, body)} HTTP/1.1\r\n"
                             f"Host: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
                             ).encode() + body
        path = f"/apps/{APP.id}/channels/plain-order"
        requests += (f"GET {path}?{signed_query('GET', path)} HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", one.port)
        try:
            writer.write(requests)  # seven requests in one write
            replies = [await asyncio.wait_for(read_http_reply(reader), 30) for _ in range(7)]
        finally:
            writer.close()
        assert [r.status for r in replies] == [200] * 7
        plain = {"channels": {"plain-order": {"subscription_count": 0}}}
        assert [r.json() for r in replies[:6]] == [{}, plain] * 3
        assert replies[6].json() == {"occupied": False}


async def test_more_pipelined_cache_triggers_than_the_answer_queue_holds_are_all_answered(
        prefix: str) -> None:
    # Beyond MAX_WAITING_ANSWERS queued answers the node stops reading the connection
    # until half are written (back-pressure); it used to close the connection instead,
    # with no answer and no log line. 2.5 times the queue, in one write, all answered.
    from pusherd.server.protocol import MAX_WAITING_ANSWERS

    count = MAX_WAITING_ANSWERS * 5 // 2
    with run_cluster(1, SHARED_REDIS_URL, prefix) as (one,):
        path = f"/apps/{APP.id}/events"
        requests = []
        for number in range(count):
            body = json.dumps({"name": "n", "channels": ["cache-burst"],
                               "data": str(number)}).encode()
            requests.append((f"POST {path}?{signed_query('POST', path, body)} HTTP/1.1\r\n"
                             f"Host: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
                             ).encode() + body)
        reader, writer = await asyncio.open_connection("127.0.0.1", one.port)
        try:
            writer.write(b"".join(requests))
            replies = [await asyncio.wait_for(read_http_reply(reader), 30)
                       for _ in range(count)]
        finally:
            writer.close()
        assert [r.status for r in replies] == [200] * count
        # The last one is the channel's cached event: a new subscriber gets it.
        late = await Client.open(one.port)
        await late.subscribe_ok("cache-burst")
        frame = await late.recv()
        assert (frame["event"], frame["data"]) == ("n", str(count - 1)), frame
        await late.close()
