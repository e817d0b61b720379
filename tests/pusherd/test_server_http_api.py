"""The HTTP API over real sockets, with the official Python SDK and hand-signed requests
(spec §12, §13)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from urllib.parse import quote

import pusher
import pytest
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus

from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import (
    APP,
    OTHER_APP,
    AppCredentials,
    Client,
    call,
    http_request,
    read_http_reply,
    sdk,
    signed_query,
    signed_request,
    trigger_raw,
)


async def _subscribe_presence(port: int, client: Client, channel: str, user_id: str) -> None:
    auth = sdk(port).authenticate(channel, client.socket_id, {"user_id": user_id})
    await client.subscribe_ok(channel, auth["auth"], auth["channel_data"])


# --- triggers --------------------------------------------------------------------------


async def test_an_sdk_trigger_is_answered_with_an_empty_json_object(port: int) -> None:
    assert await call(sdk(port).trigger, "orders", "e", "x") == {}


async def test_the_sender_socket_is_excluded_by_socket_id(port: int) -> None:
    sender, other = await Client.open(port), await Client.open(port)
    await sender.subscribe_ok("orders")
    await other.subscribe_ok("orders")
    await call(sdk(port).trigger, "orders", "e", "x", sender.socket_id)
    await other.expect("e", "orders")
    assert await sender.barrier() == []
    # An unknown socket id excludes nobody.
    await call(sdk(port).trigger, "orders", "e2", "y", "1.1")
    await sender.expect("e2", "orders")
    await other.expect("e2", "orders")
    await sender.close()
    await other.close()


async def test_trigger_info_returns_counts_per_channel(port: int) -> None:
    a, b = await Client.open(port), await Client.open(port)
    await a.subscribe_ok("orders")
    await b.subscribe_ok("orders")
    await _subscribe_presence(port, a, "presence-room", "1")
    await _subscribe_presence(port, b, "presence-room", "1")
    reply = await trigger_raw(port, {
        "name": "e", "channels": ["orders", "presence-room", "empty"], "data": "x",
        "info": "subscription_count,user_count"})
    assert reply.status == 200
    assert reply.json() == {"channels": {
        "orders": {"subscription_count": 2},
        "presence-room": {"user_count": 1, "subscription_count": 2},
        "empty": {"subscription_count": 0},
    }}
    await a.close()
    await b.close()


async def test_subscription_count_is_given_for_presence_channels_wherever_info_is_accepted(
    port: int,
) -> None:
    # One user on two sockets: one user, two subscriptions.
    a, b = await Client.open(port), await Client.open(port)
    await _subscribe_presence(port, a, "presence-room-42", "1")
    await _subscribe_presence(port, b, "presence-room-42", "1")
    both = {"user_count": 1, "subscription_count": 2}
    backend = sdk(port)
    assert await call(backend.channel_info, "presence-room-42",
                      ["user_count", "subscription_count"]) == {"occupied": True, **both}
    assert await call(backend.channels_info, "presence-",
                      ["user_count", "subscription_count"]) == {
        "channels": {"presence-room-42": both}}
    trigger = await trigger_raw(port, {"name": "e", "channels": ["presence-room-42"],
                                       "data": "x", "info": "user_count,subscription_count"})
    assert trigger.json() == {"channels": {"presence-room-42": both}}
    batch = await signed_request(port, "POST", f"/apps/{APP.id}/batch_events", json.dumps(
        {"batch": [{"name": "e", "channel": "presence-room-42", "data": "x",
                    "info": "user_count,subscription_count"}]}).encode())
    assert batch.json() == {"batch": [both]}
    await a.close()
    await b.close()


async def test_a_batch_delivers_every_item_and_answers_an_empty_object(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a")
    await client.subscribe_ok("b")
    result = await call(sdk(port).trigger_batch, [
        {"channel": "a", "name": "one", "data": {"n": 1}},
        {"channel": "b", "name": "two", "data": "2"},
    ])
    assert result == {}
    assert (await client.expect("one", "a"))["data"] == '{"n": 1}'
    assert (await client.expect("two", "b"))["data"] == "2"
    await client.close()


async def test_batch_info_is_index_aligned_with_empty_objects_for_items_without_info(
    port: int,
) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a")
    reply = await signed_request(port, "POST", f"/apps/{APP.id}/batch_events", json.dumps(
        {"batch": [
            {"channel": "a", "name": "e", "data": "1", "info": "subscription_count"},
            {"channel": "b", "name": "e", "data": "2"},
        ]}).encode())
    assert reply.status == 200
    assert reply.json() == {"batch": [{"subscription_count": 1}, {}]}
    await client.close()


async def test_a_batch_of_eleven_is_400(port: int) -> None:
    batch = [{"channel": "a", "name": "e", "data": "x"} for _ in range(11)]
    with pytest.raises(PusherBadRequest):
        await call(sdk(port).trigger_batch, batch)


async def test_one_hundred_and_one_channels_are_400(port: int) -> None:
    reply = await trigger_raw(port, {"name": "e", "channels": [f"c{n}" for n in range(101)],
                                     "data": ""})
    assert reply.status == 400
    ok = await trigger_raw(port, {"name": "e", "channels": [f"c{n}" for n in range(100)],
                                  "data": ""})
    assert ok.status == 200


async def test_data_over_10_kb_is_413(port: int) -> None:
    assert (await trigger_raw(port, {"name": "e", "channels": ["a"],
                                     "data": "x" * 10240})).status == 200
    assert (await trigger_raw(port, {"name": "e", "channels": ["a"],
                                     "data": "x" * 10241})).status == 413


async def test_reserved_event_names_are_400(port: int) -> None:
    with pytest.raises(PusherBadRequest):
        await call(sdk(port).trigger, "a", "pusher:subscribe", "x")


async def test_data_that_is_not_a_string_is_400(port: int) -> None:
    reply = await trigger_raw(port, {"name": "e", "channels": ["a"], "data": {"x": 1}})
    assert reply.status == 400


async def test_an_invalid_socket_id_is_400(port: int) -> None:
    reply = await trigger_raw(port, {"name": "e", "channels": ["a"], "data": "",
                                     "socket_id": "not-a-socket"})
    assert reply.status == 400


async def test_an_empty_data_string_is_delivered(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a")
    assert (await trigger_raw(port, {"name": "e", "channels": ["a"], "data": ""})).status == 200
    assert (await client.expect("e", "a"))["data"] == ""
    await client.close()


async def test_a_php_style_single_channel_trigger_is_delivered(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a")
    body = json.dumps({"name": "e", "channel": "a", "data": "{\"u\":\"http:\\/\\/x\"}"},
                      separators=(",", ":")).encode()
    reply = await signed_request(port, "POST", f"/apps/{APP.id}/events", body)
    assert reply.status == 200
    assert (await client.expect("e", "a"))["data"] == '{"u":"http:\\/\\/x"}'
    await client.close()


async def test_unicode_bodies_are_verified_over_their_raw_bytes(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a")
    body = json.dumps({"name": "e", "channels": ["a"], "data": "héllo ✓"},
                      ensure_ascii=False).encode()
    reply = await signed_request(port, "POST", f"/apps/{APP.id}/events", body)
    assert reply.status == 200
    assert (await client.expect("e", "a"))["data"] == "héllo ✓"
    await client.close()


# --- queries ---------------------------------------------------------------------------


async def test_channels_lists_occupied_channels_with_prefix_and_user_count(port: int) -> None:
    a, b = await Client.open(port), await Client.open(port)
    await a.subscribe_ok("orders")
    await _subscribe_presence(port, a, "presence-one", "1")
    await _subscribe_presence(port, b, "presence-one", "2")
    await _subscribe_presence(port, b, "presence-two", "2")
    backend = sdk(port)
    everything = await call(backend.channels_info)
    assert everything == {"channels": {"orders": {}, "presence-one": {}, "presence-two": {}}}
    presence = await call(backend.channels_info, "presence-", ["user_count"])
    assert presence == {"channels": {"presence-one": {"user_count": 2},
                                     "presence-two": {"user_count": 1}}}
    with pytest.raises(PusherBadRequest):
        await call(backend.channels_info, "orders", ["user_count"])
    await a.close()
    await b.close()


async def test_channels_query_in_node_style_without_body_md5_is_accepted(port: int) -> None:
    client = await Client.open(port)
    await _subscribe_presence(port, client, "presence-x", "1")
    reply = await signed_request(port, "GET", f"/apps/{APP.id}/channels",
                                 params={"filter_by_prefix": "presence-", "info": "user_count"},
                                 body_md5=False)
    assert reply.status == 200
    assert reply.json() == {"channels": {"presence-x": {"user_count": 1}}}
    await client.close()


async def test_php_style_percent_encoded_info_is_accepted(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    path = f"/apps/{APP.id}/channels/orders"
    timestamp = str(int(time.time()))
    params = {"auth_key": APP.key, "auth_timestamp": timestamp, "auth_version": "1.0",
              "info": "subscription_count"}
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    signature = hmac.new(APP.secret.encode(), f"GET\n{path}\n{text}".encode(),
                         hashlib.sha256).hexdigest()
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    reply = await http_request(port, "GET", f"{path}?{query}&auth_signature={signature}",
                               headers={"Content-Type": "application/json"})
    assert reply.status == 200
    assert reply.json() == {"occupied": True, "subscription_count": 1}
    await client.close()


async def test_channel_info_reports_occupied_and_counts(port: int) -> None:
    backend = sdk(port)
    assert await call(backend.channel_info, "orders", ["subscription_count"]) == {
        "occupied": False, "subscription_count": 0}
    assert await call(backend.channel_info, "presence-x", ["user_count"]) == {
        "occupied": False, "user_count": 0}
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    assert await call(backend.channel_info, "orders") == {"occupied": True}
    await client.close()


@pytest.mark.parametrize(("channel", "attribute"), [
    ("orders", "user_count"), ("private-x", "user_count"), ("orders", "cache"),
])
async def test_inapplicable_channel_info_is_400(port: int, channel: str, attribute: str) -> None:
    with pytest.raises(PusherBadRequest):
        await call(sdk(port).channel_info, channel, [attribute])


async def test_users_of_a_public_channel_is_400(port: int) -> None:
    with pytest.raises(PusherBadRequest):
        await call(sdk(port).users_info, "orders")


async def test_users_lists_distinct_ids(port: int) -> None:
    clients = [await Client.open(port) for _ in range(3)]
    for client, user in zip(clients, ["1", "1", "2"], strict=True):
        await _subscribe_presence(port, client, "presence-room", user)
    users = await call(sdk(port).users_info, "presence-room")
    assert sorted(u["id"] for u in users["users"]) == ["1", "2"]
    for client in clients:
        await client.close()


async def test_a_channel_name_with_escaped_characters_is_found(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("a;b@c")
    path = f"/apps/{APP.id}/channels/a%3Bb%40c"
    # Signed over the decoded path (clients that escape on the wire but sign unescaped).
    decoded = f"/apps/{APP.id}/channels/a;b@c"
    reply = await http_request(port, "GET", f"{path}?{signed_query('GET', decoded)}")
    assert reply.status == 200 and reply.json() == {"occupied": True}
    await client.close()


# --- authentication and routing --------------------------------------------------------


async def test_a_forged_signature_is_401(port: int) -> None:
    reply = await signed_request(port, "POST", f"/apps/{APP.id}/events",
                                 b'{"name":"e","channels":["a"],"data":""}', secret="forged")
    assert reply.status == 401


@pytest.mark.parametrize("offset", [-601, 601, -3600])
async def test_a_stale_or_future_timestamp_is_401(port: int, offset: int) -> None:
    reply = await signed_request(port, "GET", f"/apps/{APP.id}/channels",
                                 timestamp=int(time.time()) + offset)
    assert reply.status == 401


async def test_a_tampered_body_is_401(port: int) -> None:
    body = b'{"name":"e","channels":["a"],"data":"x"}'
    query = signed_query("POST", f"/apps/{APP.id}/events", body)
    reply = await http_request(port, "POST", f"/apps/{APP.id}/events?{query}",
                               body.replace(b'"x"', b'"y"'))
    assert reply.status == 401


async def test_a_bad_signature_answer_shows_the_string_to_sign_and_no_secret(port: int) -> None:
    body = b'{"name":"e","channels":["orders"],"data":"x"}'
    query = signed_query("POST", f"/apps/{APP.id}/events", body, secret="not-the-secret",
                         timestamp=int(time.time()))
    reply = await http_request(port, "POST", f"/apps/{APP.id}/events?{query}", body)
    assert reply.status == 401
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    string_to_sign = (f"POST\\n/apps/{APP.id}/events\\nauth_key={APP.key}"
                      f"&auth_timestamp={params['auth_timestamp']}&auth_version=1.0"
                      f"&body_md5={hashlib.md5(body).hexdigest()}")
    message = reply.json()["error"]
    assert f'"{string_to_sign}"' in message
    assert APP.secret not in message


async def test_another_apps_secret_or_key_is_refused_with_401(port: int) -> None:
    wrong_secret = AppCredentials(OTHER_APP.id, OTHER_APP.key, APP.secret)
    with pytest.raises(PusherBadAuth):
        await call(sdk(port, wrong_secret).trigger, "a", "e", "x")
    wrong_key = AppCredentials(OTHER_APP.id, APP.key, APP.secret)
    with pytest.raises(PusherBadAuth):
        await call(sdk(port, wrong_key).trigger, "a", "e", "x")


async def test_an_unknown_app_is_404(port: int) -> None:
    with pytest.raises(PusherBadStatus, match="404"):
        await call(sdk(port, AppCredentials("999", APP.key, APP.secret)).trigger, "a", "e", "x")


async def test_an_unknown_path_is_404(port: int) -> None:
    assert (await signed_request(port, "GET", f"/apps/{APP.id}/nothing")).status == 404
    assert (await http_request(port, "GET", "/favicon.ico")).status == 404


@pytest.mark.parametrize("signed", [True, False])
async def test_a_known_path_with_another_method_is_405_signed_or_not(
        port: int, signed: bool) -> None:
    send = signed_request if signed else http_request
    for method, path, allowed in (
        ("DELETE", f"/apps/{APP.id}/events", "POST"),
        ("GET", f"/apps/{APP.id}/events", "POST"),
        ("PUT", f"/apps/{APP.id}/channels", "GET"),
        ("POST", f"/apps/{APP.id}/channels", "GET"),
        ("GET", f"/apps/{APP.id}/webhooks/replay", "POST"),
    ):
        reply = await send(port, method, path)
        assert reply.status == 405, (method, path, reply.body)
        assert reply.json()["error"].endswith(f"use {allowed}")


async def test_a_key_of_another_app_is_named_as_such(port: int) -> None:
    wrong_key = AppCredentials(APP.id, OTHER_APP.key, OTHER_APP.secret)
    reply = await signed_request(port, "GET", f"/apps/{APP.id}/channels", app=wrong_key)
    assert reply.status == 401 and "not this app's key" in reply.json()["error"]


async def test_a_request_without_signature_is_401(port: int) -> None:
    reply = await http_request(port, "GET", f"/apps/{APP.id}/channels")
    assert reply.status == 401


async def test_a_body_over_the_request_limit_is_refused_before_it_is_read(
    start_server: StartServer,
) -> None:
    server = await start_server(
        "[server]\nport = 0\nmax_request_size = 4096\n"
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /apps/{APP.id}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 50000000\r\n\r\n".encode() + b"{" * 1000
    )
    await writer.drain()
    # Only 1 KB of the announced 50 MB was sent: the answer cannot wait for the rest.
    reply = await asyncio.wait_for(read_http_reply(reader), 5)
    assert reply.status == 413
    assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
    writer.close()
    # The server still serves.
    assert await call(sdk(server.port).trigger, "a", "e", "x") == {}


async def test_a_chunked_body_over_the_limit_is_refused_as_it_crosses_it(
    start_server: StartServer,
) -> None:
    server = await start_server(
        "[server]\nport = 0\nmax_request_size = 4096\n"
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"POST /apps/{APP.id}/events HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"x" * 1024
    for _ in range(6):  # 6 KB, never terminated
        writer.write(b"400\r\n" + chunk + b"\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(read_http_reply(reader), 5)
    assert reply.status == 413
    writer.close()


async def test_up_is_served_on_the_same_port_as_the_api(port: int) -> None:
    reply = await http_request(port, "GET", "/up")
    assert reply.status == 200


# --- many apps -------------------------------------------------------------------------


async def test_the_same_channel_name_in_two_apps_never_mixes(port: int) -> None:
    mine, theirs = await Client.open(port, APP.key), await Client.open(port, OTHER_APP.key)
    await mine.subscribe_ok("shared")
    await theirs.subscribe_ok("shared")
    await theirs.expect("pusher_internal:subscription_count", "shared")  # app 2 counts
    await call(sdk(port, APP).trigger, "shared", "for-app-1", "1")
    await mine.expect("for-app-1", "shared")
    assert await theirs.barrier() == []
    await call(sdk(port, OTHER_APP).trigger, "shared", "for-app-2", "2")
    await theirs.expect("for-app-2", "shared")
    assert await mine.barrier() == []
    # Queries see only their own app.
    await mine.subscribe_ok("only-mine")
    assert await call(sdk(port, OTHER_APP).channels_info) == {"channels": {"shared": {}}}
    await mine.close()
    await theirs.close()


async def test_presence_members_of_two_apps_never_mix(port: int) -> None:
    mine, theirs = await Client.open(port, APP.key), await Client.open(port, OTHER_APP.key)
    for client, app in ((mine, APP), (theirs, OTHER_APP)):
        auth = sdk(port, app).authenticate("presence-room", client.socket_id,
                                           {"user_id": app.id})
        frame = await client.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])
        assert json.loads(frame["data"])["presence"]["ids"] == [app.id]
    assert await mine.barrier() == []  # no member_added across apps
    await mine.close()
    await theirs.close()


async def test_a_string_app_id_works_with_signed_requests(start_server: StartServer) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "app-id"\nkey = "app-key"\nsecret = "app-secret"\n')
    client = await Client.open(server.port)
    await client.subscribe_ok("a")
    app = AppCredentials("app-id", "app-key", "app-secret")
    reply = await signed_request(server.port, "POST", "/apps/app-id/events",
                                 b'{"name":"e","channels":["a"],"data":"s"}', app=app)
    assert reply.status == 200
    assert (await client.expect("e", "a"))["data"] == "s"
    await client.close()


async def test_the_sdk_reaches_the_server_with_its_own_http_stack(port: int) -> None:
    # pusher.Pusher (requests backend) end to end, including channel queries.
    backend = pusher.Pusher(app_id=APP.id, key=APP.key, secret=APP.secret, host="127.0.0.1",
                            port=port, ssl=False)
    assert await call(backend.channels_info) == {"channels": {}}


# --- HTTP/1.1 plumbing -----------------------------------------------------------------


async def test_responses_are_json(port: int) -> None:
    reply = await signed_request(port, "GET", f"/apps/{APP.id}/channels")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    error = await signed_request(port, "GET", f"/apps/{APP.id}/channels", secret="x")
    assert error.status == 401
    assert error.headers["content-type"].startswith("application/json")


async def test_pipelined_requests_on_one_keep_alive_connection_are_answered_in_order(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"name":"e","channels":["a"],"data":"x"}'
    requests = b""
    for _ in range(3):
        query = signed_query("POST", f"/apps/{APP.id}/events", body)
        target = f"/apps/{APP.id}/events?{query}"
        requests += (f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    requests += b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(requests)
    await writer.drain()
    replies = [await asyncio.wait_for(read_http_reply(reader), 5) for _ in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 200]
    assert [r.body for r in replies[:3]] == [b"{}"] * 3
    writer.close()


async def test_head_up_answers_200_without_a_body(port: int) -> None:
    # RFC 9110 §9.3.2: a HEAD response carries no content, even with Content-Length; a
    # body would corrupt the next response on a keep-alive connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /up HTTP/1.1\r\nHost: x\r\n\r\nGET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.startswith(b"HTTP/1.1 200")
    while (await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
        pass
    second = await asyncio.wait_for(read_http_reply(reader), 5)
    assert second.status == 200 and second.json()
    writer.close()


async def test_the_python_sdk_terminate_path_with_an_unknown_key_is_401(port: int) -> None:
    stranger = AppCredentials(APP.id, "no-such-key", "whatever")
    reply = await signed_request(port, "POST", "/users/1/terminate_connections", b"{}",
                                 app=stranger)
    assert reply.status == 401


async def test_a_channel_is_vacated_when_its_last_subscriber_disconnects(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    assert await call(sdk(port).channels_info) == {"channels": {"orders": {}}}
    await client.close()
    await client.ws.wait_closed()
    probe = await Client.open(port)
    assert await probe.barrier() == []  # the server has processed the close by now
    assert await call(sdk(port).channels_info) == {"channels": {}}
    await probe.close()


async def test_a_mount_prefix_serves_websocket_and_api_signed_without_the_prefix(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\npath_prefix = "/realtime"\n'
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{server.port}/realtime/app/app-key?protocol=7",
                       proxy=None) as ws:
        client = Client(ws)
        established = await client.expect("pusher:connection_established")
        assert json.loads(established["data"])["socket_id"]
        await client.subscribe_ok("orders")
        body = b'{"name":"e","channels":["orders"],"data":"p"}'
        query = signed_query("POST", f"/apps/{APP.id}/events", body)
        reply = await http_request(server.port, "POST",
                                   f"/realtime/apps/{APP.id}/events?{query}", body)
        assert reply.status == 200
        assert (await client.expect("e", "orders"))["data"] == "p"
    assert (await http_request(server.port, "GET", "/realtime/up")).status == 200
    # Load balancers probe the root: /up answers there too under a mount prefix.
    assert (await http_request(server.port, "GET", "/up")).status == 200
    assert (await http_request(server.port, "GET", f"/apps/{APP.id}/channels")).status == 404


async def test_a_mount_prefix_applies_to_websocket_as_to_the_http_api(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\npath_prefix = "/pusher"\n'
        '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    # Without the prefix: 404 for the WebSocket upgrade as for a signed API request.
    bare = await http_request(server.port, "GET", f"/app/{APP.key}?protocol=7", headers=upgrade)
    assert bare.status == 404
    api_bare = await signed_request(server.port, "GET", f"/apps/{APP.id}/channels")
    assert api_bare.status == 404
    # With it, both are served.
    prefixed = await http_request(server.port, "GET", f"/pusher/app/{APP.key}?protocol=7",
                                  headers=upgrade)
    assert prefixed.status == 101
    query = signed_query("GET", f"/apps/{APP.id}/channels")
    api = await http_request(server.port, "GET", f"/pusher/apps/{APP.id}/channels?{query}")
    assert (api.status, api.json()) == (200, {"channels": {}})


async def test_an_unsupported_websocket_version_gets_426(port: int) -> None:
    reply = await http_request(port, "GET", f"/app/{APP.key}?protocol=7", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert reply.status == 426


async def test_expect_100_continue_is_answered_before_the_body_is_sent(port: int) -> None:
    # curl (PHP's Guzzle) sends Expect: 100-continue for bodies over 1 KB and holds the body
    # until the interim answer comes (or a second passes).
    body = json.dumps({"name": "e", "channels": ["orders"], "data": "x" * 3000}).encode()
    query = signed_query("POST", f"/apps/{APP.id}/events", body)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /apps/{APP.id}/events?{query} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                  "Expect: 100-continue\r\n\r\n").encode())
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(body)
    await writer.drain()
    reply = await asyncio.wait_for(read_http_reply(reader), 5)
    assert reply.status == 200 and reply.json() == {}
    writer.close()
