"""The bus between nodes, and the link's behaviour when Redis goes away and comes back.

Real Redis: the shared server under a private prefix for delivery, and a private
redis-server (killed and restarted by the test) for outages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from pusherd.adapters.cluster.bus import (
    WRITE_BATCH,
    Bus,
    BusMessage,
    CachePut,
    ChangesMessage,
    ClientEventMessage,
    TerminateMessage,
    TriggerMessage,
    decode_bus_frame,
    decode_bus_message,
    encode_bus_message,
    encode_message_body,
)
from pusherd.adapters.cluster.keys import KeyLayout
from pusherd.adapters.cluster.link import RedisLink
from pusherd.adapters.cluster.state import ChangeKind, StateChange, encode_member
from tests.cluster.waiting import wait_until
from tests.support.redis_server import SHARED_REDIS_URL, PrivateRedis


def test_every_message_type_survives_encoding() -> None:
    messages: list[BusMessage] = [
        TriggerMessage("n1", "1001", "ev", ("a", "b"), '{"x":1}', "1.2"),
        TriggerMessage("n1", "1001", "ev", ("a",), "plain", None),
        ClientEventMessage("n2", "1001", "private-c", "client-typing", {"k": [1, "é"]},
                           "3.4", "ann"),
        ChangesMessage("n3", (
            StateChange(ChangeKind.MEMBER_ADDED, "1001", "presence-r", "7",
                        encode_member(7, {"n": "Ann"})),
            StateChange(ChangeKind.COUNT, "1001", "chat", count=3),
            StateChange(ChangeKind.OFFLINE, "1001", "", "ann"),
        ), "5.6"),
        TerminateMessage("n4", "1001", "ann"),
    ]
    for message in messages:
        assert decode_bus_message(encode_bus_message(message)) == message


@pytest.mark.parametrize("payload", [
    b"not json", b"[]", b'{"v": 2, "t": "trigger", "o": "x"}',
    b'{"v": 1, "t": "trigger", "o": "x"}', b'{"v": 1, "t": "nope", "o": "x"}',
])
def test_a_malformed_bus_message_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_bus_message(payload)


async def _raw_messages(raw: PubSub, quiet: float) -> list[bytes]:
    """Every message the raw subscriber got until none came for `quiet` seconds."""
    seen: list[bytes] = []
    while True:
        try:
            message = await asyncio.wait_for(_next(raw), quiet)
        except TimeoutError:
            return seen
        seen.append(message)


async def _next(raw: PubSub) -> bytes:
    while True:
        message = await raw.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            return bytes(message["data"])


@asynccontextmanager
async def _node(url: str, channel: str, node_id: str, handler: Callable[[BusMessage], None],
                on_up: Callable[[], None] | None = None, max_buffered_bytes: int = 1 << 20,
                peers: int = 0, frame_interval: float = 0.0
                ) -> AsyncIterator[tuple[RedisLink, Bus]]:
    holder: list[Bus] = []

    async def up() -> None:
        if on_up is not None:
            on_up()

    link = RedisLink(url, channel, on_message=lambda p: holder[0].receive(p), on_up=up,
                     backoff_min=0.02, backoff_max=0.2, node_id=node_id)
    async def peers_ready() -> bool:
        return int((await link.client.pubsub_numsub(channel))[0][1]) >= peers

    bus = Bus(link, node_id, handler, max_buffered_bytes,
              peers_ready=peers_ready if peers else None, flush_wait=10.0,
              frame_interval=frame_interval)
    holder.append(bus)
    link.start()
    writer = asyncio.create_task(bus.run())
    try:
        assert await link.wait_ready(10)
        yield link, bus
    finally:
        writer.cancel()
        await link.close()


async def test_frames_are_paced_by_frame_interval_and_carry_what_queued_meanwhile(
        redis_prefix: str) -> None:
    # frame_interval (0.4 s here, 5 ms by default) is the least time between two frames of
    # a node: the first message goes in a frame of its own; what is published while the
    # next frame waits goes in that one frame, sent no earlier than the interval allows.
    channel = KeyLayout(redis_prefix).bus
    got: list[BusMessage] = []
    watcher = Redis.from_url(SHARED_REDIS_URL)
    raw = watcher.pubsub(ignore_subscribe_messages=True)
    await raw.subscribe(channel)
    interval = 0.4
    try:
        async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None,
                         frame_interval=interval) as (_, bus_a), \
                _node(SHARED_REDIS_URL, channel, "b", got.append):
            loop = asyncio.get_running_loop()
            sent = [TriggerMessage("a", "1001", f"e{i}", ("c",), str(i)) for i in range(4)]
            before_first = loop.time()
            bus_a.publish(sent[0])
            first = await asyncio.wait_for(_next(raw), 10)
            bus_a.publish(sent[1])
            await asyncio.sleep(0)  # the writer runs: it may not send yet
            bus_a.publish(sent[2])
            bus_a.publish(sent[3])
            second = await asyncio.wait_for(_next(raw), 10)
            # sleep() never returns early: the second frame left at least `interval` after
            # the first, which left after `before_first` (uvloop's timers are in ms).
            assert loop.time() - before_first >= interval - 0.002
            await wait_until(lambda: len(got) == 4, what="delivery on b")
            assert got == sent
            assert decode_bus_frame(first) == sent[:1]
            assert decode_bus_frame(second) == sent[1:]
            assert (bus_a.frames, bus_a.published) == (2, 4)
    finally:
        await raw.aclose()
        await watcher.aclose()


async def test_a_trigger_is_one_publish_that_every_other_node_applies_once_in_order(
        redis_prefix: str) -> None:
    channel = KeyLayout(redis_prefix).bus
    got_a: list[BusMessage] = []
    got_b: list[BusMessage] = []
    got_c: list[BusMessage] = []
    watcher = Redis.from_url(SHARED_REDIS_URL)
    raw = watcher.pubsub(ignore_subscribe_messages=True)
    await raw.subscribe(channel)
    try:
        async with _node(SHARED_REDIS_URL, channel, "a", got_a.append) as (_, bus_a), \
                _node(SHARED_REDIS_URL, channel, "b", got_b.append), \
                _node(SHARED_REDIS_URL, channel, "c", got_c.append):
            first = TriggerMessage("a", "1001", "ev", ("one", "two", "three"), "d", "9.9")
            bus_a.publish(first)
            await wait_until(lambda: len(got_b) == 1 and len(got_c) == 1, what="delivery")
            assert got_b == [first] and got_c == [first]
            # One PUBLISH for the trigger, whatever the number of channels and nodes.
            seen = await _raw_messages(raw, quiet=0.3)
            assert [decode_bus_message(p) for p in seen] == [first]
            # Many messages arrive all, once, in the order sent; never echoed to "a".
            sent = [TriggerMessage("a", "1001", f"e{i}", ("c",), str(i)) for i in range(500)]
            for message in sent:
                bus_a.publish(message)
            await wait_until(lambda: len(got_b) == 501 and len(got_c) == 501, what="500 more")
            assert got_b[1:] == sent and got_c[1:] == sent
            assert got_a == []
            await wait_until(lambda: bus_a.published == 501, what="the writer's count")
    finally:
        await raw.aclose()
        await watcher.aclose()


async def test_a_cache_channel_event_is_stored_before_other_nodes_see_the_trigger(
        redis_prefix: str, redis_client: Redis) -> None:
    keys = KeyLayout(redis_prefix)
    got: list[BusMessage] = []
    stored: list[bytes | None] = []

    def on_message(message: BusMessage) -> None:
        got.append(message)

    async with _node(SHARED_REDIS_URL, keys.bus, "a", lambda m: None) as (_, bus_a), \
            _node(SHARED_REDIS_URL, keys.bus, "b", on_message):
        key = keys.cache("1001", "cache-x")
        bus_a.publish(TriggerMessage("a", "1001", "ev", ("cache-x",), "d"),
                      (CachePut(key, b'["ev","d"]', 60_000),))
        await wait_until(lambda: len(got) == 1, what="the trigger")
        stored.append(await redis_client.get(key))
        assert stored == [b'["ev","d"]']
        assert 0 < await redis_client.pttl(key) <= 60_000


async def test_an_outage_is_logged_once_buffered_within_its_cap_and_healed_on_return(
        private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pusherd.redis")
    channel = "t:bus"
    ups_a: list[int] = []
    got_b: list[BusMessage] = []
    async with _node(private_redis.url, channel, "a", lambda m: None,
                     on_up=lambda: ups_a.append(1), max_buffered_bytes=2_000,
                     peers=2) as (link_a, bus_a), \
            _node(private_redis.url, channel, "b", got_b.append):
        assert ups_a == [1]
        private_redis.kill()
        # The writer finds out on its next send, the subscriber on its next read.
        bus_a.publish(TriggerMessage("a", "1001", "lost?", ("c",), "x"))
        await wait_until(lambda: not link_a.ready, what="not ready")
        # While Redis is down: publishing queues, within the cap (oldest dropped).
        for i in range(100):
            bus_a.publish(TriggerMessage("a", "1001", f"e{i}", ("c",), "x" * 40))
        assert 0 < bus_a.buffered_bytes <= 2_000
        assert bus_a.dropped > 0
        kept = 100 - bus_a.dropped
        # Let the node retry several times while Redis stays down.
        await wait_until(lambda: link_a._attempts >= 3, what="retries")
        warnings = [r for r in caplog.records
                    if r.getMessage().startswith("node a: Redis at")]
        assert len(warnings) == 1  # one line for the whole outage, not one per retry
        assert "not ready" in warnings[0].getMessage()

        private_redis.start()
        await wait_until(lambda: link_a.ready, what="ready again")
        assert ups_a == [1, 1]  # on_up ran again: the node re-registers its state there
        # What was buffered is flushed once the other node has subscribed again, and
        # reaches it.
        await wait_until(lambda: len(got_b) >= kept, what="the buffered messages")
        events = [m.event for m in got_b if isinstance(m, TriggerMessage)]
        assert events[-kept:] == [f"e{i}" for i in range(100 - kept, 100)]
        assert len(events) == len(set(events))  # nothing twice
        back = [r for r in caplog.records if r.getMessage().startswith("node a:")
                and "reachable again" in r.getMessage()]
        assert len(back) == 1
        assert link_a.outages == 1


async def test_the_buffer_cap_applies_only_while_redis_is_unreachable(redis_prefix: str) -> None:
    channel = KeyLayout(redis_prefix).bus
    got: list[BusMessage] = []
    async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None,
                     max_buffered_bytes=0) as (_, bus_a), \
            _node(SHARED_REDIS_URL, channel, "b", got.append):
        burst = [TriggerMessage("a", "1001", f"e{i}", ("c",), "x" * 100) for i in range(50)]
        for message in burst:
            bus_a.publish(message)
        await wait_until(lambda: len(got) == 50, what="the burst")
        assert got == burst and bus_a.dropped == 0


async def test_the_link_hands_on_every_payload_as_published(redis_prefix: str) -> None:
    channel = KeyLayout(redis_prefix).bus
    got: list[bytes] = []
    link = RedisLink(SHARED_REDIS_URL, channel, on_message=got.append, on_up=_nothing)
    publisher = Redis.from_url(SHARED_REDIS_URL)
    sent = [b"first\r\nwith a line break", b"", b"*3\r\n$7\r\nmessage\r\n", b"x" * 300_000,
            b"last"]
    link.start()
    try:
        assert await link.wait_ready(10.0)
        async with publisher.pipeline(transaction=False) as pipe:
            for payload in sent:
                pipe.publish(channel, payload)
            await pipe.execute()
        await wait_until(lambda: len(got) == len(sent), what="every payload")
        assert got == sent and link.outages == 0
    finally:
        await link.close()
        await publisher.aclose()


def test_a_frame_carries_several_messages_in_order_and_a_node_skips_its_own() -> None:
    from pusherd.adapters.cluster.bus import decode_bus_frame, encode_bus_frame, frame_head
    from pusherd.adapters.cluster.bus import encode_message_body as body

    sent: list[BusMessage] = [
        TriggerMessage("n1", "1001", "ev", ("a",), "1"),
        ClientEventMessage("n1", "1001", "private-c", "client-x", {"k": 1}, "3.4"),
        TerminateMessage("n1", "1001", "ann"),
    ]
    frame = encode_bus_frame(frame_head("n1"), [body(m) for m in sent])
    assert decode_bus_frame(frame) == sent
    changes = ChangesMessage("n1", (StateChange(ChangeKind.COUNT, "1001", "chat", count=2),))
    applied: list[BusMessage] = []
    link = RedisLink(SHARED_REDIS_URL, "unused", on_message=lambda p: None,
                     on_up=_nothing)  # never started: receive() does not use it
    own, other = Bus(link, "n1", applied.append), Bus(link, "n2", applied.append)
    own.receive(frame)  # its own triggers were delivered locally already
    assert applied == []
    own.receive(encode_bus_message(changes))  # its own transitions are applied
    assert applied == [changes]
    other.receive(frame)
    assert applied == [changes, *sent]


async def _nothing() -> None:
    return None


async def test_messages_queued_together_go_out_in_one_publish(redis_prefix: str) -> None:
    from pusherd.adapters.cluster.bus import decode_bus_frame

    channel = KeyLayout(redis_prefix).bus
    got: list[BusMessage] = []
    watcher = Redis.from_url(SHARED_REDIS_URL)
    raw = watcher.pubsub(ignore_subscribe_messages=True)
    await raw.subscribe(channel)
    try:
        async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None) as (_, bus_a), \
                _node(SHARED_REDIS_URL, channel, "b", got.append):
            sent = [TriggerMessage("a", "1001", f"e{i}", ("c",), str(i)) for i in range(20)]
            for message in sent:  # in one turn of the loop: the writer has not run yet
                bus_a.publish(message)
            await wait_until(lambda: len(got) == 20, what="20 messages")
            assert got == sent
            frames = await _raw_messages(raw, quiet=0.3)
            assert len(frames) == 1 and decode_bus_frame(frames[0]) == sent
            assert (bus_a.published, bus_a.frames) == (20, 1)
    finally:
        await raw.aclose()
        await watcher.aclose()


async def test_a_raw_trigger_goes_out_as_the_same_message_in_order_with_the_others(
        redis_prefix: str) -> None:
    # publish_trigger queues a trigger's fields unencoded (the API's cheap path); the
    # writer encodes them with the frame. What the other nodes get is the message publish()
    # sends, in the order queued among messages published the other way.
    channel = KeyLayout(redis_prefix).bus
    got: list[BusMessage] = []
    async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None) as (_, bus_a), \
            _node(SHARED_REDIS_URL, channel, "b", got.append):
        sent: list[BusMessage] = []
        for i in range(30):
            message = TriggerMessage("a", "1001", f"e{i}", ("c", f"d{i}"), f'{{"i":{i}}}',
                                     "1.2" if i % 3 else None)
            if i % 2:
                bus_a.publish(message)
            else:
                bus_a.publish_trigger(message.app_id, message.event, message.channels,
                                      message.data, message.socket_id)
            sent.append(message)
        assert bus_a.buffered_bytes == sum(len(encode_message_body(m)) for m in sent)
        await wait_until(lambda: len(got) == 30, what="30 messages")
        assert got == sent
        await wait_until(lambda: bus_a.idle, what="the writer idle")
        assert bus_a.buffered_bytes == 0 and bus_a.published == 30


async def test_full_frames_are_not_paced(redis_prefix: str) -> None:
    # Pacing amortises a round trip over what queued meanwhile; a full frame (WRITE_BATCH
    # messages) is amortised already. Were it paced, the bus would carry at most
    # WRITE_BATCH messages per frame_interval (here 256 per 60 s), and the queue would grow
    # without bound under a higher rate.
    channel = KeyLayout(redis_prefix).bus
    got: list[BusMessage] = []
    async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None,
                     frame_interval=60.0) as (_, bus_a), \
            _node(SHARED_REDIS_URL, channel, "b", got.append):
        count = 3 * WRITE_BATCH + 5
        for i in range(count):
            bus_a.publish_trigger("1001", f"e{i}", ("c",), str(i), None)
        await wait_until(lambda: len(got) == count, bound=20, what="every message")
        assert [m.event for m in got if isinstance(m, TriggerMessage)] == \
            [f"e{i}" for i in range(count)]
        assert bus_a.frames == 4  # three full frames and the rest, none paced


async def test_raw_triggers_are_measured_exactly_when_an_outage_caps_the_buffer(
        redis_prefix: str) -> None:
    # Raw triggers are not measured as they are queued (that is their point). When an
    # outage begins with some still queued, the cap applies to their exact encoded size:
    # the oldest are dropped first, whichever way they were queued.
    channel = KeyLayout(redis_prefix).bus
    async with _node(SHARED_REDIS_URL, channel, "a", lambda m: None,
                     max_buffered_bytes=3_000) as (link_a, bus_a):
        bodies = []
        for i in range(60):  # in one turn of the loop: the writer has not run yet
            bus_a.publish_trigger("1001", f"e{i}", ("c",), "y" * 40, None)
            bodies.append(encode_message_body(
                TriggerMessage("a", "1001", f"e{i}", ("c",), "y" * 40)))
        link_a.report_failure(ConnectionError("a command failed"))  # the outage begins
        for i in range(60, 100):
            message = TriggerMessage("a", "1001", f"e{i}", ("c",), "y" * 40)
            bus_a.publish_trigger(message.app_id, message.event, message.channels,
                                  message.data, None)
            bodies.append(encode_message_body(message))
        kept = 100 - bus_a.dropped
        assert 0 < kept < 100
        assert bus_a.buffered_bytes == sum(len(b) for b in bodies[-kept:]) <= 3_000


async def test_a_refused_subscription_is_one_outage_retried_with_backoff(
        private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    # redis-py sends SUBSCRIBE without reading the answer: the link used to report ready
    # (and log "reachable again", resetting the backoff) before the refusal arrived, so an
    # ACL user without the bus channel flapped several times a second (a reviewer saw 69
    # warnings in 6 s). The link now waits for the confirmation.
    caplog.set_level(logging.INFO, logger="pusherd.redis")
    admin = Redis.from_url(private_redis.url)
    await admin.execute_command("ACL", "SETUSER", "nochan", "on", ">pw", "~*",
                                "resetchannels", "&other*", "+@all")
    url = f"redis://nochan:pw@127.0.0.1:{private_redis.port}/0"
    link = RedisLink(url, "t:bus", on_message=lambda p: None, on_up=_nothing,
                     backoff_min=0.02, backoff_max=0.2, node_id="a")
    link.start()
    try:
        await wait_until(lambda: link._attempts >= 4, what="several attempts")
        assert not link.ready and link.outages == 1
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("node a:")]
        assert len(lines) == 1 and "unreachable" in lines[0], lines
        assert "no permissions" in lines[0]
        # Given the channel, the same link recovers: one outage, one line on return.
        await admin.execute_command("ACL", "SETUSER", "nochan", "&t:*")
        assert await link.wait_ready(10)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("node a:")]
        assert len(lines) == 2 and "reachable again" in lines[1] and link.outages == 1
    finally:
        await link.close()
        await admin.aclose()
