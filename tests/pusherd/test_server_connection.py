"""The WebSocket endpoint over real sockets: handshake, refusals, keepalive (spec §1, §4, §5)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from pusherd.server.server import Server
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import Client, RawWebSocket, error_code, http_request

SOCKET_ID = re.compile(r"\A\d+\.\d+\Z")


async def test_the_first_frame_is_connection_established_with_string_data(port: int) -> None:
    client = await Client.open(port)
    assert SOCKET_ID.match(client.socket_id)
    assert client.activity_timeout == 120
    assert set(client.established) == {"event", "data"}
    await client.close()


async def test_every_connection_gets_a_distinct_socket_id(port: int) -> None:
    clients = [await Client.open(port) for _ in range(20)]
    assert len({c.socket_id for c in clients}) == 20
    for client in clients:
        await client.close()


async def test_the_advertised_activity_timeout_follows_the_config(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\nactivity_timeout = 30\n'
        '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n')
    client = await Client.open(server.port, "k")
    assert client.activity_timeout == 30
    await client.close()


@pytest.mark.parametrize("protocol", ["5", "6", "7"])
async def test_protocol_versions_5_to_7_are_accepted(port: int, protocol: str) -> None:
    client = await Client.open(port, query=f"protocol={protocol}&client=js&version=8.6.0")
    await client.close()


async def test_a_missing_protocol_is_accepted_as_7_by_default(port: int) -> None:
    client = await Client.open(port, query=None)
    assert SOCKET_ID.match(client.socket_id)
    await client.close()


async def _refused(client: Client, code: int) -> None:
    frame = await client.recv()
    assert error_code(frame) == code
    close_code, rest = await client.closed()
    assert close_code == code
    assert rest == []


async def test_an_unknown_app_key_is_refused_with_4001(port: int) -> None:
    await _refused(await Client.open(port, "no-such-key", handshake=False), 4001)


async def test_an_unsupported_protocol_is_refused_with_4007(port: int) -> None:
    client = await Client.open(port, query="protocol=8&client=js&version=8.6.0",
                               handshake=False)
    await _refused(client, 4007)


@pytest.mark.parametrize("protocol", ["4", "1", "abc", ""])
async def test_retired_or_malformed_protocols_are_refused_with_4007(
    port: int, protocol: str
) -> None:
    client = await Client.open(port, query=f"protocol={protocol}&client=js", handshake=False)
    await _refused(client, 4007)


@pytest.mark.parametrize("version", ["<script>", "8 6", "-1", "x" * 65])
async def test_a_malformed_version_string_is_refused_with_4006(port: int, version: str) -> None:
    from urllib.parse import quote

    client = await Client.open(port, query=f"protocol=7&client=js&version={quote(version)}",
                               handshake=False)
    await _refused(client, 4006)


@pytest.mark.parametrize("version", ["8.6.0", "7.0.3-beta", "1"])
async def test_well_formed_version_strings_are_accepted(port: int, version: str) -> None:
    client = await Client.open(port, query=f"protocol=7&client=js&version={version}")
    await client.close()


async def test_an_idle_http_connection_is_closed(start_server: StartServer) -> None:
    server = await start_server(
        "[server]\nport = 0\nhttp_idle_timeout = 0.3\n"
        '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n')
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    # Then nothing is sent: the server ends the keep-alive connection by itself.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_a_missing_protocol_is_refused_with_4008_in_strict_mode(
    start_server: StartServer,
) -> None:
    server = await start_server(
        "[server]\nport = 0\nstrict_protocol_version = true\n"
        '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n')
    await _refused(await Client.open(server.port, "k", query="client=js", handshake=False),
                   4008)
    ok = await Client.open(server.port, "k")
    await ok.close()


async def test_a_disabled_app_is_refused_with_4003(start_server: StartServer) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nenabled = false\n')
    await _refused(await Client.open(server.port, "k", handshake=False), 4003)


async def test_connections_over_the_app_quota_are_refused_with_4004(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
        "max_connections = 2\n"
        '[[apps]]\nid = "2"\nkey = "k2"\nsecret = "s2"\nmax_connections = 1\n')
    first, second = await Client.open(server.port, "k"), await Client.open(server.port, "k")
    await _refused(await Client.open(server.port, "k", handshake=False), 4004)
    # The quota is per app.
    other = await Client.open(server.port, "k2")
    # A closed connection frees its slot.
    await first.close()
    await first.ws.wait_closed()
    assert await second.barrier() == []
    third = await Client.open(server.port, "k")
    for client in (second, third, other):
        await client.close()


async def test_a_disallowed_origin_is_refused_with_4009(start_server: StartServer) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
        'allowed_origins = ["https://app.example", "*.trusted.example"]\n')
    await _refused(await Client.open(server.port, "k", origin="https://evil.example",
                                     handshake=False), 4009)
    await _refused(await Client.open(server.port, "k", handshake=False), 4009)
    for origin in ("https://app.example", "https://a.trusted.example"):
        client = await Client.open(server.port, "k", origin=origin)
        await client.close()


async def test_a_wildcard_origin_admits_subdomains_on_any_port_over_a_real_upgrade(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
        'allowed_origins = ["*.example.com"]\n')
    for origin in ("http://app.example.com:5173", "https://a.b.example.com:8443"):
        client = await Client.open(server.port, "k", origin=origin)
        await client.close()
    for origin in ("https://example.com", "https://evil-example.com",
                   "https://app.example.com.evil.net"):
        await _refused(await Client.open(server.port, "k", origin=origin, handshake=False),
                       4009)


async def test_a_websocket_on_another_path_gets_404(port: int) -> None:
    reply = await http_request(port, "GET", "/nowhere", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert reply.status == 404


async def test_the_server_answers_pusher_ping_with_pusher_pong(port: int) -> None:
    client = await Client.open(port)
    await client.send({"event": "pusher:ping", "data": {}})
    assert await client.recv() == {"event": "pusher:pong", "data": {}}
    # Absent data is accepted too.
    await client.send({"event": "pusher:ping"})
    assert (await client.recv())["event"] == "pusher:pong"
    await client.close()


KEEPALIVE_TOML = """
[server]
port = 0
activity_timeout = 1
ping_grace = 0
pong_timeout = 0.5
[[apps]]
id = "1"
key = "k"
secret = "s"
"""


async def test_the_server_pings_an_idle_client_and_keeps_it_when_it_answers(
    start_server: StartServer,
) -> None:
    server = await start_server(KEEPALIVE_TOML)
    client = await Client.open(server.port, "k")
    for _ in range(3):
        assert await client.recv(timeout=5) == {"event": "pusher:ping", "data": {}}
        await client.send({"event": "pusher:pong", "data": {}})
    await client.close()


async def test_a_client_that_never_answers_the_ping_is_closed_with_4201(
    start_server: StartServer,
) -> None:
    server = await start_server(KEEPALIVE_TOML)
    client = await Client.open(server.port, "k")
    assert (await client.recv(timeout=5))["event"] == "pusher:ping"
    code, frames = await client.closed(timeout=5)
    assert code == 4201
    assert [error_code(f) for f in frames] == [4201]


async def test_up_answers_200_while_serving(port: int) -> None:
    reply = await http_request(port, "GET", "/up")
    assert reply.status == 200


async def test_a_raw_client_can_speak_the_protocol(port: int) -> None:
    raw, established = await RawWebSocket.open(port)
    assert established["event"] == "pusher:connection_established"
    raw.send_text('{"event":"pusher:ping","data":{}}')
    assert (await raw.read_json())["event"] == "pusher:pong"
    raw.close()


async def test_refused_connections_do_not_stay_registered(server: Server) -> None:
    client = await Client.open(server.port, "no-such-key", handshake=False)
    await _refused(client, 4001)
    ok = await Client.open(server.port)
    assert await ok.barrier() == []
    assert list(server.websockets) == [ok.socket_id]
    await ok.close()


async def test_a_frame_sent_right_behind_the_upgrade_request_is_handled_after_the_handshake(
    port: int,
) -> None:
    import asyncio
    import base64
    import os
    import struct

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    nonce = base64.b64encode(os.urandom(16)).decode()
    payload = b'{"event":"pusher:ping","data":{}}'
    mask = os.urandom(4)
    frame = struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(
        f"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode() + frame)
    await writer.drain()
    raw = RawWebSocket(reader, writer)
    assert b" 101 " in await asyncio.wait_for(reader.readline(), 5)
    while (await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
        pass
    assert (await raw.read_json())["event"] == "pusher:connection_established"
    assert (await raw.read_json())["event"] == "pusher:pong"
    raw.close()


async def test_websocket_ping_control_frames_are_answered(port: int) -> None:
    client = await Client.open(port)
    pong = await client.ws.ping(b"are you there")
    await asyncio.wait_for(pong, 5)
    assert await client.barrier() == []
    await client.close()


async def test_websocket_pings_count_as_activity(server: Server) -> None:
    # Deterministic: instead of waiting out a timeout, both sockets are made to look idle
    # for 1000 s and one sweep pass is run by hand (the background sweeper, at 120 s
    # activity_timeout, stays out of the way).
    pinger, silent = await Client.open(server.port), await Client.open(server.port)
    for client in (pinger, silent):
        session = server.websockets[client.socket_id].session
        assert session is not None
        session.last_activity -= 1000
    await asyncio.wait_for(await pinger.ws.ping(), 5)
    server.sweep(time.monotonic())
    assert await pinger.barrier() == []
    assert (await silent.recv())["event"] == "pusher:ping"
    await pinger.close()
    await silent.close()


async def test_a_normal_close_by_the_client_frees_everything(server: Server) -> None:
    client = await Client.open(server.port)
    await client.subscribe_ok("orders")
    await client.close()
    watcher = await Client.open(server.port)
    assert await watcher.barrier() == []
    assert list(server.websockets) == [watcher.socket_id]
    reply = await http_request(server.port, "GET", "/up")
    assert reply.status == 200
    await watcher.close()
