"""Client events over real sockets (spec §9)."""

from __future__ import annotations

from typing import Any

from tests.pusherd.conftest import StartServer
import json
import struct

from tests.pusherd.wire import Client, RawWebSocket, channel_auth, error_code, sdk


async def _pair(port: int, channel: str, key: str = "app-key") -> tuple[Client, Client]:
    sender, receiver = await Client.open(port, key), await Client.open(port, key)
    for client in (sender, receiver):
        await client.subscribe_ok(channel, channel_auth(client.socket_id, channel))
    return sender, receiver


async def _rejected(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send(frame)
    reply = await client.recv()
    assert error_code(reply) == 4301 or error_code(reply) is None, reply
    return reply


async def test_a_client_event_reaches_others_unchanged_and_is_never_echoed(port: int) -> None:
    sender, receiver = await _pair(port, "private-chat")
    data = {"name": "Ada", "nested": [1, {"x": None}], "text": "é ✓"}
    await sender.send({"event": "client-typing", "channel": "private-chat", "data": data})
    frame = await receiver.expect("client-typing", "private-chat")
    assert frame["data"] == data  # an object stays an object
    assert "user_id" not in frame
    assert await sender.barrier() == []  # not echoed
    await sender.close()
    await receiver.close()


async def test_a_string_client_event_payload_stays_a_string(port: int) -> None:
    sender, receiver = await _pair(port, "private-chat")
    await sender.send({"event": "client-x", "channel": "private-chat", "data": '{"a":1}'})
    assert (await receiver.expect("client-x", "private-chat"))["data"] == '{"a":1}'
    await sender.close()
    await receiver.close()


async def test_presence_client_events_carry_the_senders_user_id(port: int) -> None:
    backend = sdk(port)
    sender, receiver = await Client.open(port), await Client.open(port)
    for client, user in ((sender, "7"), (receiver, "9")):
        auth = backend.authenticate("presence-room", client.socket_id, {"user_id": user})
        await client.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])
    await sender.expect("pusher_internal:member_added", "presence-room")
    await sender.send({"event": "client-wave", "channel": "presence-room", "data": {}})
    frame = await receiver.expect("client-wave", "presence-room")
    assert frame["user_id"] == "7"
    assert await sender.barrier() == []
    await sender.close()
    await receiver.close()


async def test_client_events_are_rejected_when_the_app_disables_them(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'
        "enable_client_events = false\n")
    sender, receiver = await _pair(server.port, "private-chat")
    reply = await _rejected(sender, {"event": "client-x", "channel": "private-chat", "data": {}})
    assert error_code(reply) == 4301
    assert "enable_client_events" in reply["data"]["message"]
    assert await receiver.barrier() == []
    await sender.close()
    await receiver.close()


async def test_client_events_are_on_for_an_app_from_a_config_file_that_does_not_say(
    start_server: StartServer,
) -> None:
    server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n')
    sender, receiver = await _pair(server.port, "private-chat")
    await sender.send({"event": "client-x", "channel": "private-chat", "data": {"n": 1}})
    assert (await receiver.expect("client-x", "private-chat"))["data"] == {"n": 1}
    await sender.close()
    await receiver.close()


async def test_client_events_on_a_public_channel_are_rejected(port: int) -> None:
    sender, receiver = await Client.open(port), await Client.open(port)
    await sender.subscribe_ok("lobby")
    await receiver.subscribe_ok("lobby")
    await _rejected(sender, {"event": "client-x", "channel": "lobby", "data": {}})
    assert await receiver.barrier() == []
    await sender.close()
    await receiver.close()


async def test_client_events_on_an_encrypted_channel_are_rejected(port: int) -> None:
    sender, receiver = await _pair(port, "private-encrypted-chat")
    await _rejected(sender, {"event": "client-x", "channel": "private-encrypted-chat",
                             "data": {}})
    assert await receiver.barrier() == []
    await sender.close()
    await receiver.close()


async def test_client_events_on_a_channel_the_sender_is_not_subscribed_to_are_rejected(
    port: int,
) -> None:
    outsider = await Client.open(port)
    _, receiver = await _pair(port, "private-chat")
    await _rejected(outsider, {"event": "client-x", "channel": "private-chat", "data": {}})
    assert await receiver.barrier() == []
    await outsider.close()
    await receiver.close()


async def test_the_eleventh_client_event_within_a_second_gets_4301(port: int) -> None:
    sender, receiver = await _pair(port, "private-chat")
    for n in range(11):
        await sender.send({"event": "client-n", "channel": "private-chat", "data": {"n": n}})
    reply = await sender.recv()
    assert error_code(reply) == 4301
    received = await receiver.barrier()
    # At most ten got through (a second boundary may fall inside the burst), the socket
    # stays open, and the rejected one is dropped.
    assert 1 <= len(received) <= 10
    assert all(f["event"] == "client-n" for f in received)
    assert await sender.barrier() == []
    await sender.close()
    await receiver.close()


async def test_oversized_client_event_data_is_rejected(port: int) -> None:
    sender, receiver = await _pair(port, "private-chat")
    await _rejected(sender, {"event": "client-big", "channel": "private-chat",
                             "data": "x" * 11_000})
    assert await receiver.barrier() == []
    await sender.send({"event": "client-small", "channel": "private-chat", "data": "ok"})
    await receiver.expect("client-small", "private-chat")
    await sender.close()
    await receiver.close()


async def test_a_user_id_supplied_by_the_sender_is_never_trusted(port: int) -> None:
    sender, receiver = await _pair(port, "private-chat")
    await sender.send({"event": "client-x", "channel": "private-chat", "data": {},
                       "user_id": "admin"})
    frame = await receiver.expect("client-x", "private-chat")
    assert "user_id" not in frame
    await sender.close()
    await receiver.close()

    backend = sdk(port)
    sender, receiver = await Client.open(port), await Client.open(port)
    for client, user in ((sender, "7"), (receiver, "9")):
        auth = backend.authenticate("presence-room", client.socket_id, {"user_id": user})
        await client.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])
    await sender.expect("pusher_internal:member_added", "presence-room")
    await sender.send({"event": "client-x", "channel": "presence-room", "data": {},
                       "user_id": "admin"})
    assert (await receiver.expect("client-x", "presence-room"))["user_id"] == "7"
    await sender.close()
    await receiver.close()


async def test_a_message_sent_right_before_the_close_frame_is_still_handled(port: int) -> None:
    # A client that says goodbye and closes at once: its last event and its Close frame
    # arrive in one read. The Close made the connection CLOSING before the event was
    # handled, and the event used to be dropped (RFC 6455 §1.4: what came before the
    # Close is the client's to send). Each round sends both in one write.
    receiver = await Client.open(port)
    await receiver.subscribe_ok("private-chat", channel_auth(receiver.socket_id,
                                                              "private-chat"))
    for round_ in range(5):
        raw, established = await RawWebSocket.open(port)
        socket_id = json.loads(established["data"])["socket_id"]
        raw.send_text(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": "private-chat", "auth": channel_auth(socket_id, "private-chat")}}))
        assert (await raw.read_json())["event"] == "pusher_internal:subscription_succeeded"
        bye = json.dumps({"event": "client-bye", "channel": "private-chat",
                          "data": {"round": round_}}).encode()
        raw.writer.write(RawWebSocket.frame(0x1, bye) +
                         RawWebSocket.frame(0x8, struct.pack("!H", 1000)))
        frame = await receiver.expect("client-bye", "private-chat")
        assert frame["data"] == {"round": round_}
        code, _ = await raw.read_close_code()
        assert code == 1000
        raw.close()
    await receiver.close()
