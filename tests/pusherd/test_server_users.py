"""User sign-in, server-to-user events, terminate_connections, watchlist (spec §10)."""

from __future__ import annotations

import json
from typing import Any

from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import (
    APP,
    Client,
    call,
    channel_auth,
    error_code,
    sdk,
    signed_request,
    user_auth,
)


async def _sign_in(port: int, client: Client, user: dict[str, Any]) -> dict[str, Any]:
    signed = sdk(port).authenticate_user(client.socket_id, user)
    await client.send({"event": "pusher:signin",
                       "data": {"auth": signed["auth"], "user_data": signed["user_data"]}})
    frame = await client.expect("pusher:signin_success")
    assert frame["data"] == {"user_data": signed["user_data"]}
    return frame


async def test_a_signed_in_socket_subscribes_to_its_server_to_user_channel(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "42", "user_info": {"name": "Ada"}})
    frame = await client.subscribe_ok("#server-to-user-42")
    assert frame["data"] == "{}"
    await client.close()


async def test_signin_data_may_be_a_json_string(port: int) -> None:
    client = await Client.open(port)
    signed = sdk(port).authenticate_user(client.socket_id, {"id": "42"})
    await client.send({"event": "pusher:signin", "data": json.dumps(signed)})
    await client.expect("pusher:signin_success")
    await client.close()


async def test_a_bad_signin_gets_an_error_and_the_socket_stays_open(port: int) -> None:
    client = await Client.open(port)
    user_data = '{"id":"42"}'
    for auth, data in (
        (user_auth(client.socket_id, user_data, secret="forged"), user_data),
        (user_auth("1.1", user_data), user_data),
        (user_auth(client.socket_id, '{"user_info":{}}'), '{"user_info":{}}'),
        (user_auth(client.socket_id, '{"id":42}'), '{"id":42}'),
    ):
        await client.send({"event": "pusher:signin", "data": {"auth": auth, "user_data": data}})
        assert error_code(await client.recv()) == 4009
    # Not signed in: the user channel stays closed to it.
    refused = await client.subscribe("#server-to-user-42")
    assert refused["event"] == "pusher:error"
    await client.barrier()
    await _sign_in(port, client, {"id": "42"})
    await client.close()


async def test_signing_in_as_another_user_on_a_signed_in_socket_fails(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "1"})
    signed = sdk(port).authenticate_user(client.socket_id, {"id": "2"})
    await client.send({"event": "pusher:signin", "data": signed})
    assert error_code(await client.recv()) == 4009
    refused = await client.subscribe("#server-to-user-2")
    assert refused["event"] == "pusher:error"
    await client.close()


async def test_another_users_server_to_user_channel_is_refused(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "1"})
    frame = await client.subscribe("#server-to-user-2")
    assert error_code(frame) in (4009, None)
    await client.close()


async def test_send_to_user_reaches_every_socket_of_that_user_and_nobody_else(
    port: int,
) -> None:
    tab1, tab2 = await Client.open(port), await Client.open(port)
    stranger, anonymous = await Client.open(port), await Client.open(port)
    await _sign_in(port, tab1, {"id": "42"})
    await _sign_in(port, tab2, {"id": "42"})
    await _sign_in(port, stranger, {"id": "7"})
    await tab1.subscribe_ok("#server-to-user-42")  # tab2 does not subscribe: still reached
    await call(sdk(port).send_to_user, "42", "notice", {"text": "hello"})
    for tab in (tab1, tab2):
        frame = await tab.expect("notice", "#server-to-user-42")
        assert json.loads(frame["data"]) == {"text": "hello"}
        assert await tab.barrier() == []
    assert await stranger.barrier() == []
    assert await anonymous.barrier() == []
    for client in (tab1, tab2, stranger, anonymous):
        await client.close()


async def test_server_to_user_channels_are_never_listed(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "42"})
    await client.subscribe_ok("#server-to-user-42")
    channels = await call(sdk(port).channels_info)
    assert channels == {"channels": {}}
    await client.close()


async def test_terminate_user_connections_closes_that_users_sockets_with_4009(
    port: int,
) -> None:
    tab1, tab2, stranger = [await Client.open(port) for _ in range(3)]
    await _sign_in(port, tab1, {"id": "42"})
    await _sign_in(port, tab2, {"id": "42"})
    await _sign_in(port, stranger, {"id": "7"})
    # The SDK posts to /users/42/terminate_connections (without /apps/{id}, §13.4).
    assert await call(sdk(port).terminate_user_connections, "42") == {}
    for tab in (tab1, tab2):
        code, frames = await tab.closed()
        assert code == 4009
        assert [error_code(f) for f in frames] == [4009]
    assert await stranger.barrier() == []
    await stranger.close()


async def test_terminate_connections_on_the_documented_path_works_too(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "42"})
    reply = await signed_request(port, "POST", f"/apps/{APP.id}/users/42/terminate_connections",
                                 b"{}")
    assert reply.status == 200 and reply.json() == {}
    code, _ = await client.closed()
    assert code == 4009


async def test_terminate_closes_only_signed_in_sockets_not_presence_members(port: int) -> None:
    member = await Client.open(port)
    auth = sdk(port).authenticate("presence-room", member.socket_id, {"user_id": "42"})
    await member.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])
    assert await call(sdk(port).terminate_user_connections, "42") == {}
    assert await member.barrier() == []
    await member.close()


async def test_a_signed_in_socket_joins_presence_with_the_short_signature(port: int) -> None:
    client = await Client.open(port)
    await _sign_in(port, client, {"id": "42", "user_info": {"name": "Ada"}})
    frame = await client.subscribe_ok("presence-room",
                                      channel_auth(client.socket_id, "presence-room"))
    roster = json.loads(frame["data"])["presence"]
    assert roster == {"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}
    await client.close()


async def test_watchlist_events_report_online_and_offline_users(port: int) -> None:
    friend = await Client.open(port)
    await _sign_in(port, friend, {"id": "9"})
    watcher = await Client.open(port)
    await _sign_in(port, watcher, {"id": "1", "watchlist": ["9", "12"]})
    first = await watcher.expect("pusher_internal:watchlist_events")
    events = {e["name"]: e["user_ids"] for e in first["data"]["events"]}
    assert events == {"online": ["9"], "offline": ["12"]}

    late = await Client.open(port)
    await _sign_in(port, late, {"id": "12"})
    online = await watcher.expect("pusher_internal:watchlist_events")
    assert online["data"] == {"events": [{"name": "online", "user_ids": ["12"]}]}
    await late.close()
    offline = await watcher.expect("pusher_internal:watchlist_events")
    assert offline["data"] == {"events": [{"name": "offline", "user_ids": ["12"]}]}
    await watcher.close()
    await friend.close()


async def test_signin_is_refused_when_the_app_disables_user_authentication(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'
        "enable_user_authentication = false\n")
    client = await Client.open(server.port)
    signed = sdk(server.port).authenticate_user(client.socket_id, {"id": "42"})
    await client.send({"event": "pusher:signin", "data": signed})
    assert error_code(await client.recv()) == 4009
    await client.close()
