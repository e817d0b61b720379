"""The HTTP fallback transports on the wire (spec §15): streams, polls, heartbeats, resume,
expiry, the queue cap, CORS, malformed sends and session ownership."""

from __future__ import annotations

import asyncio
import json

from pusherd.server.server import Server
from tests.pusherd.conftest import DEFAULT_TOML, StartServer
from tests.pusherd.fallback_wire import (
    Stream,
    frames_of,
    new_session_path,
    poll,
    request,
    send,
    url,
)
from tests.pusherd.wire import OTHER_APP, Client, channel_auth, error_code, trigger_raw

FAST_TOML = DEFAULT_TOML.replace(
    "shutdown_timeout = 1",
    "shutdown_timeout = 1\nfallback_session_timeout = 0.5\nfallback_heartbeat_interval = 0.3",
)


async def _trigger(port: int, channel: str, event: str, data: str) -> None:
    reply = await trigger_raw(port, {"name": event, "channels": [channel], "data": data})
    assert reply.status == 200, reply


async def _subscribe(port: int, session: str, stream: Stream, channel: str,
                     auth: str = "", channel_data: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {"channel": channel, "auth": auth}
    if channel_data is not None:
        data["channel_data"] = channel_data
    assert (await send(port, session, [{"event": "pusher:subscribe", "data": data}])
            ).status == 204
    return await stream.expect("pusher_internal:subscription_succeeded")


async def test_a_stream_opens_with_o_then_connection_established_and_cors_headers(
        port: int) -> None:
    session = new_session_path()
    stream = await Stream.open(port, session)
    assert stream.headers["access-control-allow-origin"] == "http://page.test"
    assert "no-store" in stream.headers["cache-control"]
    socket_id = await stream.handshake()
    assert socket_id.count(".") == 1
    frame = await _subscribe(port, session, stream, "news")
    assert frame["channel"] == "news"
    await _trigger(port, "news", "headline", '{"n":1}')
    event = await stream.expect("headline")
    assert event == {"event": "headline", "channel": "news", "data": '{"n":1}'}
    stream.abort()


async def test_a_poll_gets_o_and_the_handshake_then_is_held_until_an_event(port: int) -> None:
    session = new_session_path()
    first = await poll(port, session)
    assert first.status == 200
    lines = first.body.split(b"\n")
    assert lines[0] == b"o"
    established = frames_of(lines[1:])[0]
    assert established["event"] == "pusher:connection_established"
    assert (await send(port, session, [{"event": "pusher:subscribe",
                                        "data": {"channel": "polled", "auth": ""}}])).status == 204
    subscribed = frames_of((await poll(port, session)).body.split(b"\n"))
    assert subscribed[0]["event"] == "pusher_internal:subscription_succeeded"
    # The next poll is held; an event answers it.

    held = asyncio.create_task(poll(port, session))
    await _trigger(port, "polled", "tick", "1")
    answered = frames_of((await held).body.split(b"\n"))
    assert answered == [{"event": "tick", "channel": "polled", "data": "1"}]


async def test_idle_streams_and_held_polls_get_heartbeats(start_server: StartServer) -> None:
    server = await start_server(FAST_TOML)
    session = new_session_path()
    stream = await Stream.open(server.port, session)
    await stream.handshake()
    assert await stream.line() == b"h"
    assert await stream.line() == b"h"
    stream.abort()
    polled = new_session_path()
    assert (await poll(server.port, polled)).body.startswith(b"o\n")
    assert (await poll(server.port, polled)).body == b"h\n"


async def test_a_reopened_stream_resumes_the_same_session_with_the_frames_sent_meanwhile(
        port: int, server: Server) -> None:
    session = new_session_path()
    stream = await Stream.open(port, session)
    socket_id = await stream.handshake()
    await _subscribe(port, session, stream, "resume")
    stream.abort()
    await _trigger(port, "resume", "while-away", "1")
    reopened = await Stream.open(port, session)
    # No second "o": the session continues, with what was queued for it.
    assert await reopened.line() == b"a" + json.dumps(
        [json.dumps({"event": "while-away", "channel": "resume", "data": "1"},
                    separators=(",", ":"))]).encode()
    assert socket_id in server.state.connections
    assert (await send(port, session, [{"event": "pusher:ping", "data": {}}])).status == 204
    assert (await reopened.frame())["event"] == "pusher:pong"
    reopened.abort()


async def test_a_stream_takes_nothing_past_256kb_and_the_reopened_stream_gets_the_rest(
        port: int) -> None:
    session = new_session_path()
    stream = await Stream.open(port, session)
    await stream.handshake()
    await _subscribe(port, session, stream, "big")
    payload = "x" * 9000
    while stream.read_bytes <= 256 * 1024:
        await _trigger(port, "big", "chunk", payload)
        await stream.expect("chunk")
    await _trigger(port, "big", "after", "1")
    reopened = await Stream.open(port, session)
    assert (await reopened.frame())["event"] == "after"
    stream.abort()
    assert not any(b"after" in line for line in stream.lines)
    reopened.abort()


async def test_a_session_without_a_receive_request_expires_and_its_member_is_removed(
        start_server: StartServer) -> None:
    server = await start_server(FAST_TOML)
    port = server.port
    watcher = await Client.open(port)
    channel = "presence-room"
    data = json.dumps({"user_id": "watcher"})
    await watcher.subscribe_ok(channel, channel_auth(watcher.socket_id, channel, data), data)
    session = new_session_path()
    stream = await Stream.open(port, session)
    socket_id = await stream.handshake()
    member = json.dumps({"user_id": "fallback-user"})
    await _subscribe(port, session, stream, channel,
                     channel_auth(socket_id, channel, member), member)
    added = await watcher.expect("pusher_internal:member_added", channel)
    assert json.loads(added["data"])["user_id"] == "fallback-user"
    stream.abort()  # and no new receive request: the session ends after 0.5 s
    removed = await watcher.expect("pusher_internal:member_removed", channel)
    assert json.loads(removed["data"]) == {"user_id": "fallback-user"}
    assert socket_id not in server.state.connections
    assert (await send(port, session, [])).status == 404
    # Counted and logged like a WebSocket: opened, then closed without a close (1006).
    telemetry = server.state.telemetry
    assert telemetry.connections_opened["1001"] == 2  # the watcher and the session
    assert telemetry.connections_closed[("1001", 1006)] == 1
    await watcher.close()


async def test_a_session_whose_queue_passes_the_cap_is_cut_off(
        start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        "shutdown_timeout = 1", "shutdown_timeout = 1\nmax_write_buffer_size = 20000"))
    port = server.port
    session = new_session_path()
    stream = await Stream.open(port, session)
    socket_id = await stream.handshake()
    await _subscribe(port, session, stream, "flood")
    stream.abort()
    for _ in range(5):
        await _trigger(port, "flood", "blob", "y" * 5000)
    assert socket_id not in server.state.connections
    assert server.state.slow_consumers == 1
    # The client's next request finds no session: a new one opens (pusher-js then reports
    # "Server lost session" and reconnects).
    again = await Stream.open(port, session)
    assert await again.line() == b"o"
    again.abort()


async def test_cors_preflight_allows_post_with_a_json_content_type(port: int) -> None:
    reply = await request(port, "OPTIONS", url(new_session_path(), "xhr_send"), headers={
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
        "Origin": "https://app.example"})
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert reply.headers["access-control-allow-headers"].lower() == "content-type"
    assert int(reply.headers["access-control-max-age"]) > 0


async def test_malformed_sends_get_a_clear_400_and_the_session_goes_on(port: int) -> None:
    session = new_session_path()
    stream = await Stream.open(port, session)
    await stream.handshake()
    other = new_session_path()
    other_stream = await Stream.open(port, other)
    await other_stream.handshake()
    for body, words in ((b"", b"Payload expected"), (b"{not json", b"Broken JSON"),
                        (b'{"event":"pusher:ping"}', b"array of strings"),
                        (b"[1, 2]", b"array of strings")):
        reply = await send(port, session, body=body)
        assert reply.status == 400 and words in reply.body, (body, reply)
        assert reply.headers["access-control-allow-origin"] == "http://page.test"
    # A string that is not a Pusher frame is answered in-band, like on a WebSocket.
    assert (await send(port, session, body=b'["not a frame"]')).status == 204
    assert error_code(await stream.frame()) is None
    for sid, receiver in ((session, stream), (other, other_stream)):
        assert (await send(port, sid, [{"event": "pusher:ping", "data": {}}])).status == 204
        assert (await receiver.frame())["event"] == "pusher:pong"
    stream.abort()
    other_stream.abort()


async def test_a_session_is_not_reachable_through_another_app_address_or_origin(
        port: int, server: Server) -> None:
    session = new_session_path()
    stream = await Stream.open(port, session)
    socket_id = await stream.handshake()
    await _subscribe(port, session, stream, "private-owned",
                     channel_auth(socket_id, "private-owned"))
    subscribe = {"event": "pusher:subscribe", "data": {"channel": "hijacked", "auth": ""}}
    assert (await send(port, session, [subscribe], key=OTHER_APP.key)).status == 404
    assert (await send(port, session, [subscribe], local_host="127.0.0.2")).status == 404
    assert (await send(port, session, [subscribe], origin="https://other.example")
            ).status == 404
    # Another app's receive request with the same path is a session of its own.
    other = await Stream.open(port, session, key=OTHER_APP.key)
    other_id = await other.handshake()
    assert other_id != socket_id
    assert server.state.connections[other_id].app.key == OTHER_APP.key
    # Nothing reached the owner's session: its next frame answers its own ping.
    assert (await send(port, session, [{"event": "pusher:ping", "data": {}}])).status == 204
    assert (await stream.frame())["event"] == "pusher:pong"
    stream.abort()
    other.abort()


async def test_refusals_arrive_as_error_frame_then_close_line(port: int) -> None:
    stream = await Stream.open(port, new_session_path(), key="no-such-key")
    assert await stream.line() == b"o"
    assert error_code(await stream.frame()) == 4001
    assert await stream.line() == b'c[4001, "Application does not exist"]'
    assert await stream.line() == b""  # and the response ends


async def test_fallback_sessions_count_toward_the_app_connection_limit(
        start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        'secret = "app-secret"', 'secret = "app-secret"\nmax_connections = 1'))
    first = await Stream.open(server.port, new_session_path())
    await first.handshake()
    second = await Stream.open(server.port, new_session_path())
    assert await second.line() == b"o"
    assert error_code(await second.frame()) == 4004
    assert (await second.line()).startswith(b"c[4004,")
    first.abort()


async def test_whispers_cross_between_a_fallback_session_and_a_websocket(port: int) -> None:
    channel = "private-chat"
    ws = await Client.open(port)
    await ws.subscribe_ok(channel, channel_auth(ws.socket_id, channel))
    session = new_session_path()
    stream = await Stream.open(port, session)
    socket_id = await stream.handshake()
    await _subscribe(port, session, stream, channel, channel_auth(socket_id, channel))
    assert (await send(port, session, [{"event": "client-hi", "channel": channel,
                                        "data": {"from": "xhr"}}])).status == 204
    assert (await ws.expect("client-hi", channel))["data"] == {"from": "xhr"}
    await ws.send({"event": "client-hi", "channel": channel, "data": {"from": "ws"}})
    assert (await stream.expect("client-hi"))["data"] == {"from": "ws"}
    await ws.close()
    stream.abort()


async def test_a_draining_server_closes_fallback_sessions_with_4200(
        start_server: StartServer) -> None:
    server = await start_server()
    stream = await Stream.open(server.port, new_session_path())
    await stream.handshake()

    shutdown = asyncio.create_task(server.shutdown())
    assert error_code(await stream.frame()) == 4200
    assert (await stream.line()).startswith(b"c[4200,")
    await shutdown


async def test_a_draining_server_opens_no_new_fallback_session(
        start_server: StartServer) -> None:
    # The in-band refusal (c[4200]) would have pusher-js retry here at once, session after
    # session, for the whole drain: an HTTP 503 makes it back off and go elsewhere.
    server = await start_server()
    server.state.draining = True
    for kind in ("xhr_streaming", "xhr"):
        reply = await request(server.port, "POST", url(new_session_path(), kind))
        assert reply.status == 503 and reply.headers.get("connection") == "close"
    assert not server.state.connections


async def test_requests_outside_the_http_path_or_with_other_methods_are_refused(
        port: int) -> None:
    assert (await request(port, "GET", url(new_session_path(), "xhr_streaming"))).status == 405
    assert (await request(port, "POST", "/pusher/app/app-key/xhr")).status == 404


async def test_a_silent_fallback_session_is_pinged_then_closed_with_4201(
        start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        "activity_timeout = 120",
        "activity_timeout = 1\nping_grace = 0.2\npong_timeout = 0.5\n"
        "fallback_heartbeat_interval = 60"))
    stream = await Stream.open(server.port, new_session_path())
    await stream.handshake()
    assert (await stream.frame())["event"] == "pusher:ping"
    assert error_code(await stream.frame()) == 4201
    assert (await stream.line()).startswith(b"c[4201,")


async def test_an_origin_the_app_does_not_allow_is_refused_with_4009(
        start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        'secret = "app-secret"',
        'secret = "app-secret"\nallowed_origins = ["https://good.example"]'))
    refused = await Stream.open(server.port, new_session_path(), origin="https://evil.example")
    assert await refused.line() == b"o"
    assert error_code(await refused.frame()) == 4009
    assert (await refused.line()).startswith(b"c[4009,")
    allowed = await Stream.open(server.port, new_session_path(), origin="https://good.example")
    await allowed.handshake()
    allowed.abort()


async def test_fallback_urls_live_under_path_prefix_and_http_path(
        start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        "shutdown_timeout = 1",
        'shutdown_timeout = 1\npath_prefix = "/ws"\nhttp_path = "/fallback"\n'
        'fallback_hostname = "node-a.example"'))
    session = new_session_path()
    assert (await request(server.port, "POST", url(session, "xhr", prefix="/pusher"))
            ).status == 404
    answer = await request(server.port, "POST", url(session, "xhr", prefix="/ws/fallback"))
    assert answer.status == 200
    # The "o" frame pins the session's later requests to this node's host name.
    assert answer.body.split(b"\n")[0] == b'o{"hostname": "node-a.example"}'


async def test_fallback_transports_can_be_turned_off(start_server: StartServer) -> None:
    server = await start_server(DEFAULT_TOML.replace(
        "shutdown_timeout = 1", "shutdown_timeout = 1\nhttp_fallback = false"))
    reply = await request(server.port, "POST", url(new_session_path(), "xhr_streaming"))
    assert reply.status == 404


async def test_sessions_without_an_open_request_still_count_toward_the_process_limit(
        server: Server, port: int) -> None:
    server.state.max_open_connections = 2
    # One keep-alive TCP connection (one transport) opens sessions with polls: each session
    # counts, although none holds a socket of its own.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    for _ in range(3):
        writer.write(f"POST {url(new_session_path(), 'xhr')} HTTP/1.1\r\nHost: x\r\n"
                     "Origin: http://page.test\r\nContent-Length: 0\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        statuses.append((int(head.split(b" ")[1]), body[:1]))
    assert statuses == [(200, b"o"), (200, b"o"), (503, b"S")]  # "Server is at its ..."
    assert len(server.state.connections) == 2
    writer.close()
