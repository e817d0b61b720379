"""Bad input gets a protocol-correct answer and everyone else keeps being served.

Never 4200 for bad input: it means "reconnect now" to pusher-js (spec §3.1, §4).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pusherd.server.server import Server
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import (
    APP,
    Client,
    RawWebSocket,
    call,
    error_code,
    sdk,
    signed_request,
)


async def _still_served(port: int, bystander: Client) -> None:
    """The bystander still receives triggers and a new client still connects."""
    await call(sdk(port).trigger, "bystander", "still-here", "ok")
    await bystander.expect("still-here", "bystander")
    fresh = await Client.open(port)
    await fresh.close()


@pytest.fixture
async def bystander(port: int) -> Client:
    client = await Client.open(port)
    await client.subscribe_ok("bystander")
    return client


BAD_FRAMES: list[Any] = [
    "not json",
    "{",
    "[]",
    "42",
    '"pusher:ping"',
    "{}",
    '{"event":5}',
    '{"event":null,"data":{}}',
    '{"event":"pusher:subscribe","data":5}',
    '{"event":"pusher:subscribe","data":{"channel":["x"]}}',
    '{"event":"pusher:subscribe","data":"{not json"}',
    '{"event":"pusher:unsubscribe"}',
    '{"event":"pusher:signin","data":{"auth":5}}',
    '{"event":"pusher:unknown","data":{}}',
    '{"event":"pusher_internal:member_added","data":"{}"}',
    '{"event":"client-x"}',
    '{"event":"something-else","channel":"x","data":{}}',
]


@pytest.mark.parametrize("payload", BAD_FRAMES)
async def test_a_malformed_frame_gets_an_error_with_code_null_and_the_socket_stays(
    port: int, bystander: Client, payload: str
) -> None:
    client = await Client.open(port)
    await client.send(payload)
    reply = await client.recv()
    assert error_code(reply) is None
    await client.subscribe_ok("after-bad-input")
    await _still_served(port, bystander)
    await client.close()


async def test_a_binary_frame_gets_an_error_and_the_socket_stays(
    port: int, bystander: Client
) -> None:
    client = await Client.open(port)
    await client.send(b'{"event":"pusher:ping","data":{}}')
    reply = await client.recv()
    assert error_code(reply) in (None,)  # never 4200
    assert await client.barrier() == []
    await _still_served(port, bystander)
    await client.close()


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    port: int, bystander: Client
) -> None:
    client = await Client.open(port)
    await client.ws.send(b'{"event":"pusher:ping","data":"\xff\xfe"}', text=True)
    code, frames = await client.closed()
    assert code == 1007
    assert frames == []
    await _still_served(port, bystander)


async def _small_frames_server(start_server: StartServer) -> Server:
    return await start_server(
        "[server]\nport = 0\nmax_message_size = 1024\n"
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')


async def test_a_frame_over_the_message_size_limit_closes_with_1009(
    start_server: StartServer,
) -> None:
    server = await _small_frames_server(start_server)
    bystander = await Client.open(server.port)
    await bystander.subscribe_ok("bystander")
    ok = await Client.open(server.port)
    await ok.send(json.dumps({"event": "pusher:ping", "data": {"pad": "x" * 900}}))
    assert (await ok.recv())["event"] == "pusher:pong"
    client = await Client.open(server.port)
    await client.send(json.dumps({"event": "pusher:ping", "data": {"pad": "x" * 2000}}))
    code, _ = await client.closed()
    assert code == 1009
    await _still_served(server.port, bystander)
    await ok.close()


async def test_fragmented_messages_are_reassembled_and_count_against_the_limit(
    start_server: StartServer,
) -> None:
    server = await _small_frames_server(start_server)
    raw, _ = await RawWebSocket.open(server.port)
    raw.send_frame(0x1, b'{"event":"pusher:', fin=False)
    raw.send_frame(0x0, b'ping","data":{}}', fin=True)
    assert (await raw.read_json())["event"] == "pusher:pong"
    raw.send_frame(0x1, b'{"event":"pusher:ping","data":"' + b"x" * 600, fin=False)
    raw.send_frame(0x0, b"x" * 600, fin=False)
    raw.send_frame(0x0, b'"}', fin=True)
    code, texts = await raw.read_close_code()
    assert code == 1009 and texts == []
    raw.close()


async def test_bad_http_input_never_disturbs_websocket_clients(
    port: int, bystander: Client
) -> None:
    statuses = []
    for body in (b"not json", b"[]", b'{"name":"e"}', b'{"name":"e","channels":["a"]}',
                 b'{"name":"e","channels":["a"],"data":"\xff\xfe"}'):
        statuses.append((await signed_request(port, "POST", f"/apps/{APP.id}/events",
                                              body)).status)
    assert statuses == [400, 400, 400, 400, 400]
    assert (await signed_request(port, "POST", f"/apps/{APP.id}/events",
                                 b'{"name":"e","channels":["a"],"data":""}',
                                 secret="forged")).status == 401
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GARBAGE \x00\x01\x02 HTTP/9\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(), 5)
    assert head.startswith(b"HTTP/1.1 400")
    writer.close()
    await _still_served(port, bystander)


async def test_a_slow_consumer_is_cut_off_at_the_buffer_cap_while_others_receive(
    start_server: StartServer,
) -> None:
    server = await start_server(
        "[server]\nport = 0\nmax_write_buffer_size = 65536\n"
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    port = server.port
    healthy = await Client.open(port)
    await healthy.subscribe_ok("firehose")
    # A raw client with a tiny receive buffer that stops reading after subscribing.
    slow, _ = await RawWebSocket.open(port, receive_buffer=4096, stream_limit=1024)
    slow.send_text(json.dumps({"event": "pusher:subscribe",
                               "data": {"auth": "", "channel": "firehose"}}))
    assert (await slow.read_json())["event"] == "pusher_internal:subscription_succeeded"

    received = 0

    async def drain_healthy(expected: int) -> None:
        nonlocal received
        while received < expected:
            frame = await healthy.recv()
            assert frame["event"] == "bulk" and frame["channel"] == "firehose"
            received += 1

    payload = "x" * 10_000
    batch = json.dumps({"batch": [{"channel": "firehose", "name": "bulk", "data": payload}
                                  for _ in range(10)]}).encode()
    sent = 0
    for _ in range(400):  # at most 40 MB: far more than any socket buffers
        reply = await signed_request(port, "POST", f"/apps/{APP.id}/batch_events", batch)
        assert reply.status == 200
        sent += 10
        await drain_healthy(sent)
        info = await call(sdk(port).channel_info, "firehose", ["subscription_count"])
        if info["subscription_count"] == 1:
            break
    else:
        pytest.fail("the slow consumer was never cut off")
    assert server.state.slow_consumers == 1
    assert received == sent
    await call(sdk(port).trigger, "firehose", "bulk", "after")
    assert (await healthy.expect("bulk", "firehose"))["data"] == "after"
    slow.close()
    await healthy.close()
