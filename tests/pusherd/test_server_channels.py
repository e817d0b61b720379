"""Channels end to end: WebSocket subscribers, the official Python SDK triggering
(spec §6-§8, §11)."""

from __future__ import annotations

import base64
import json

import nacl.secret
import pytest
from pusher.errors import PusherBadRequest

from pusherd.server.server import Server
from tests.pusherd.wire import (
    OTHER_APP,
    Client,
    call,
    channel_auth,
    error_code,
    sdk,
)

MASTER_KEY_B64 = base64.b64encode(bytes(range(32))).decode()


def _roster(frame: dict) -> dict:
    return json.loads(frame["data"])["presence"]


async def _refused_subscription(client: Client, channel: str, frame: dict) -> None:
    """§7.5: an error frame (code 4009 or null), an optional subscription_error, no close."""
    assert error_code(frame) in (4009, None), frame
    for extra in await client.barrier():
        assert extra["event"] == "pusher:subscription_error" and extra["channel"] == channel
        assert isinstance(extra["data"], dict)


# --- public ----------------------------------------------------------------------------


async def test_a_public_subscriber_receives_an_sdk_trigger_verbatim(port: int) -> None:
    client = await Client.open(port)
    frame = await client.subscribe_ok("orders")
    assert frame["data"] == "{}"
    await call(sdk(port).trigger, "orders", "App\\Events\\OrderShipped",
               {"id": 7, "status": "shipped"})
    event = await client.expect("App\\Events\\OrderShipped", "orders")
    assert isinstance(event["data"], str)
    assert json.loads(event["data"]) == {"id": 7, "status": "shipped"}
    await client.close()


async def test_subscribe_data_may_be_sent_as_a_json_string(port: int) -> None:
    client = await Client.open(port)
    await client.send({"event": "pusher:subscribe",
                       "data": json.dumps({"auth": "", "channel": "orders"})})
    frame = await client.expect("pusher_internal:subscription_succeeded", "orders")
    assert frame["data"] == "{}"
    await client.close()


async def test_a_data_string_is_relayed_byte_for_byte(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    data = '{"b":2,   "a":"\\u00e9 é ✓",\n"c":[1.50]}'
    await call(sdk(port).trigger, ["orders"], "e", data)
    assert (await client.expect("e", "orders"))["data"] == data
    await client.close()


async def test_an_event_reaches_every_listed_channel_once(port: int) -> None:
    a, b = await Client.open(port), await Client.open(port)
    await a.subscribe_ok("ch-a")
    await a.subscribe_ok("ch-b")
    await b.subscribe_ok("ch-b")
    await call(sdk(port).trigger, ["ch-a", "ch-b", "ch-c"], "e", "x")
    got = [await a.recv(), await a.recv()]
    assert sorted(f["channel"] for f in got) == ["ch-a", "ch-b"]
    assert (await b.expect("e", "ch-b"))["data"] == "x"
    assert await a.barrier() == [] and await b.barrier() == []
    await a.close()
    await b.close()


async def test_after_unsubscribe_no_more_events_arrive(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    await client.subscribe_ok("other")
    await client.unsubscribe("orders")
    assert await client.barrier() == []  # no reply to an unsubscribe
    await call(sdk(port).trigger, ["orders", "other"], "e", "x")
    assert (await client.recv())["channel"] == "other"
    assert await client.barrier() == []
    await client.close()


async def test_unsubscribing_an_unknown_channel_is_ignored(port: int) -> None:
    client = await Client.open(port)
    await client.unsubscribe("never-subscribed")
    assert await client.barrier() == []
    await client.close()


async def test_resubscribing_is_idempotent(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("orders")
    await client.subscribe_ok("orders")
    info = await call(sdk(port).channel_info, "orders", ["subscription_count"])
    assert info == {"occupied": True, "subscription_count": 1}
    await call(sdk(port).trigger, "orders", "e", "x")
    await client.expect("e", "orders")
    assert await client.barrier() == []  # delivered once
    await client.close()


async def test_rapid_subscribe_unsubscribe_subscribe_ends_subscribed(port: int) -> None:
    client = await Client.open(port)
    await client.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": "x"}})
    await client.unsubscribe("x")
    await client.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": "x"}})
    frames = await client.barrier()
    assert [f["event"] for f in frames] == ["pusher_internal:subscription_succeeded"] * 2
    await call(sdk(port).trigger, "x", "e", "1")
    await client.expect("e", "x")
    await client.close()


@pytest.mark.parametrize("channel", ["bad name", "#private", "x" * 165, "#server-to-user-1"])
async def test_invalid_channel_names_are_refused_and_the_socket_stays(
    port: int, channel: str
) -> None:
    client = await Client.open(port)
    await _refused_subscription(client, channel, await client.subscribe(channel))
    await client.subscribe_ok("fine")
    await client.close()


# --- private ---------------------------------------------------------------------------


async def test_a_private_channel_accepts_the_sdks_authorization(port: int) -> None:
    client = await Client.open(port)
    auth = sdk(port).authenticate("private-orders.7", client.socket_id)
    frame = await client.subscribe_ok("private-orders.7", auth["auth"])
    assert frame["data"] == "{}"
    await call(sdk(port).trigger, "private-orders.7", "e", {"ok": True})
    assert json.loads((await client.expect("e", "private-orders.7"))["data"]) == {"ok": True}
    await client.close()


async def test_private_subscriptions_with_bad_auth_are_refused_and_the_socket_survives(
    port: int,
) -> None:
    client, other = await Client.open(port), await Client.open(port)
    channel = "private-orders"
    cases = [
        channel_auth(client.socket_id, channel, secret="guessed"),  # forged
        channel_auth(other.socket_id, channel),  # another socket's signature
        None,  # missing auth
        "",  # empty auth
        channel_auth(client.socket_id, channel).replace("app-key:", "other-key:"),
        channel_auth(client.socket_id, "private-elsewhere"),
    ]
    for auth in cases:
        await _refused_subscription(client, channel, await client.subscribe(channel, auth))
    await call(sdk(port).trigger, channel, "e", "x")
    assert await client.barrier() == []  # never subscribed
    await client.subscribe_ok(channel, channel_auth(client.socket_id, channel))
    await client.close()
    await other.close()


async def test_another_apps_secret_does_not_sign_for_this_app(port: int) -> None:
    client = await Client.open(port)
    auth = sdk(port, OTHER_APP).authenticate("private-x", client.socket_id)["auth"]
    await _refused_subscription(client, "private-x", await client.subscribe("private-x", auth))
    await client.close()


# --- presence --------------------------------------------------------------------------


async def _join(port: int, client: Client, channel: str, user_id: object,
                user_info: object = None) -> dict:
    data: dict = {"user_id": user_id}
    if user_info is not None:
        data["user_info"] = user_info
    auth = sdk(port).authenticate(channel, client.socket_id, data)
    return await client.subscribe(channel, auth["auth"], auth["channel_data"])


async def test_presence_roster_member_added_and_removed(port: int) -> None:
    ada, linus = await Client.open(port), await Client.open(port)
    first = await _join(port, ada, "presence-room", "1", {"name": "Ada"})
    assert first["event"] == "pusher_internal:subscription_succeeded"
    assert _roster(first) == {"ids": ["1"], "hash": {"1": {"name": "Ada"}}, "count": 1}

    second = await _join(port, linus, "presence-room", "2", {"name": "Linus"})
    roster = _roster(second)
    assert sorted(roster["ids"]) == ["1", "2"] and roster["count"] == 2
    assert roster["hash"] == {"1": {"name": "Ada"}, "2": {"name": "Linus"}}

    added = await ada.expect("pusher_internal:member_added", "presence-room")
    assert json.loads(added["data"]) == {"user_id": "2", "user_info": {"name": "Linus"}}
    assert await linus.barrier() == []  # the joiner gets no member_added for itself

    users = await call(sdk(port).users_info, "presence-room")
    assert sorted(u["id"] for u in users["users"]) == ["1", "2"]

    await linus.unsubscribe("presence-room")
    removed = await ada.expect("pusher_internal:member_removed", "presence-room")
    assert json.loads(removed["data"]) == {"user_id": "2"}
    await ada.close()
    await linus.close()


async def test_one_user_on_two_sockets_is_added_once_and_removed_after_both_leave(
    port: int,
) -> None:
    watcher = await Client.open(port)
    tab1, tab2 = await Client.open(port), await Client.open(port)
    await _join(port, watcher, "presence-room", "w")
    await _join(port, tab1, "presence-room", "7", {"name": "Ada"})
    await watcher.expect("pusher_internal:member_added", "presence-room")
    joined = await _join(port, tab2, "presence-room", "7", {"name": "Ada"})
    assert _roster(joined)["count"] == 2  # distinct users: w and 7
    assert await watcher.barrier() == []  # no second member_added
    assert await tab1.barrier() == []  # tab1 is the same user: nothing either

    info = await call(sdk(port).channel_info, "presence-room", ["user_count"])
    assert info == {"occupied": True, "user_count": 2}

    await tab1.close()  # disconnect without unsubscribe
    await tab1.ws.wait_closed()
    assert await watcher.barrier() == []  # 7 still has tab2
    await tab2.close()
    removed = await watcher.expect("pusher_internal:member_removed", "presence-room")
    assert json.loads(removed["data"]) == {"user_id": "7"}
    await watcher.close()


async def test_a_numeric_user_id_and_a_member_without_user_info_are_kept(port: int) -> None:
    client = await Client.open(port)
    frame = await _join(port, client, "presence-numbers", 42)
    roster = _roster(frame)
    assert roster["ids"] == ["42"] and roster["hash"] == {"42": None} and roster["count"] == 1
    other = await Client.open(port)
    await _join(port, other, "presence-numbers", 43)
    added = await client.expect("pusher_internal:member_added", "presence-numbers")
    assert json.loads(added["data"])["user_id"] == 43
    await client.close()
    await other.close()


async def test_presence_channel_data_altered_after_signing_is_refused(port: int) -> None:
    client = await Client.open(port)
    auth = sdk(port).authenticate("presence-room", client.socket_id, {"user_id": "7"})
    altered = auth["channel_data"].replace('"7"', '"1"')
    frame = await client.subscribe("presence-room", auth["auth"], altered)
    await _refused_subscription(client, "presence-room", frame)
    missing = await client.subscribe("presence-room", auth["auth"], None)
    await _refused_subscription(client, "presence-room", missing)
    ok = await client.subscribe("presence-room", auth["auth"], auth["channel_data"])
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    await client.close()


async def test_the_presence_member_limit_refuses_one_more_user(start_server) -> None:
    server: Server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'
        "max_presence_members = 2\n")
    port = server.port
    clients = [await Client.open(port) for _ in range(4)]
    assert (await _join(port, clients[0], "presence-full", "1"))["event"].endswith("succeeded")
    assert (await _join(port, clients[1], "presence-full", "2"))["event"].endswith("succeeded")
    refused = await _join(port, clients[2], "presence-full", "3")
    assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4009
    assert "at most 2 members" in refused["data"]["message"]
    detail = await clients[2].expect("pusher:subscription_error", "presence-full")
    assert detail["data"]["status"] == 4100
    assert await clients[2].barrier() == []
    # A further socket of a present user still fits.
    again = await _join(port, clients[3], "presence-full", "2")
    assert again["event"] == "pusher_internal:subscription_succeeded"
    for client in clients:
        await client.close()


async def test_user_info_over_the_size_limit_is_refused(start_server) -> None:
    server: Server = await start_server(
        '[server]\nport = 0\n[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'
        "max_presence_user_info_size = 100\n")
    client = await Client.open(server.port)
    frame = await _join(server.port, client, "presence-big", "1", {"bio": "x" * 200})
    assert frame["event"] == "pusher:error" and frame["data"]["code"] == 4009
    detail = await client.expect("pusher:subscription_error", "presence-big")
    assert detail["data"]["status"] == 4301
    assert await client.barrier() == []
    ok = await _join(server.port, client, "presence-big", "1", {"bio": "short"})
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    await client.close()


# --- encrypted -------------------------------------------------------------------------


async def test_an_encrypted_channel_relays_ciphertext_that_the_shared_secret_opens(
    port: int,
) -> None:
    backend = sdk(port, encryption_master_key_base64=MASTER_KEY_B64)
    client = await Client.open(port)
    channel = "private-encrypted-payroll"
    auth = backend.authenticate(channel, client.socket_id)
    await client.subscribe_ok(channel, auth["auth"])
    await call(backend.trigger, channel, "salary", {"amount": 42})
    frame = await client.expect("salary", channel)
    envelope = json.loads(frame["data"])
    assert set(envelope) == {"nonce", "ciphertext"}
    shared = auth["shared_secret"]
    box = nacl.secret.SecretBox(base64.b64decode(shared))
    plain = box.decrypt(base64.b64decode(envelope["ciphertext"]),
                        base64.b64decode(envelope["nonce"]))
    assert json.loads(plain) == {"amount": 42}
    await client.close()


async def test_an_encrypted_channel_refuses_a_bad_signature(port: int) -> None:
    client = await Client.open(port)
    channel = "private-encrypted-x"
    frame = await client.subscribe(channel, channel_auth(client.socket_id, channel,
                                                         secret="nope"))
    await _refused_subscription(client, channel, frame)
    await client.close()


# --- cache -----------------------------------------------------------------------------


async def test_a_cache_channel_sends_cache_miss_after_success_when_empty(port: int) -> None:
    client = await Client.open(port)
    await client.subscribe_ok("cache-prices")
    miss = await client.expect("pusher:cache_miss", "cache-prices")
    assert miss.get("data") in (None, "{}")
    await client.close()


@pytest.mark.parametrize("channel", ["cache-prices", "private-cache-prices",
                                     "presence-cache-lobby", "private-encrypted-cache-x"])
async def test_a_cache_channel_replays_the_last_event_right_after_success(
    port: int, channel: str
) -> None:
    backend = sdk(port, encryption_master_key_base64=MASTER_KEY_B64)
    await call(backend.trigger, channel, "price", {"v": 1})
    await call(backend.trigger, channel, "price", {"v": 2})
    client = await Client.open(port)
    if channel.startswith("presence-"):
        auth = backend.authenticate(channel, client.socket_id, {"user_id": "1"})
        await client.subscribe_ok(channel, auth["auth"], auth["channel_data"])
    elif channel.startswith("private-"):
        await client.subscribe_ok(channel, backend.authenticate(channel, client.socket_id)["auth"])
    else:
        await client.subscribe_ok(channel)
    replay = await client.expect("price", channel)
    if "encrypted" in channel:
        assert set(json.loads(replay["data"])) == {"nonce", "ciphertext"}
    else:
        assert json.loads(replay["data"]) == {"v": 2}
    assert await client.barrier() == []
    await client.close()


async def test_the_cache_is_visible_through_channel_info(port: int) -> None:
    backend = sdk(port)
    empty = await call(backend.channel_info, "cache-quotes", ["cache"])
    assert empty == {"occupied": False, "cache": None}
    await call(backend.trigger, "cache-quotes", "quote", "q1")
    info = await call(backend.channel_info, "cache-quotes", ["cache"])
    assert info["occupied"] is False
    assert info["cache"]["data"] == "q1"
    assert 0 < info["cache"]["ttl"] <= 1800


async def test_cache_info_on_a_plain_channel_is_400(port: int) -> None:
    with pytest.raises(PusherBadRequest):
        await call(sdk(port).channel_info, "plain", ["cache"])


async def test_client_events_are_not_cached(port: int) -> None:
    sender, late = await Client.open(port), await Client.open(port)
    channel = "private-cache-chat"
    await sender.subscribe_ok(channel, channel_auth(sender.socket_id, channel))
    await sender.expect("pusher:cache_miss", channel)
    await sender.send({"event": "client-hi", "channel": channel, "data": {}})
    assert await sender.barrier() == []
    await late.subscribe_ok(channel, channel_auth(late.socket_id, channel))
    await late.expect("pusher:cache_miss", channel)
    await sender.close()
    await late.close()


# --- subscription_count ----------------------------------------------------------------


async def test_subscription_count_is_broadcast_when_the_app_enables_it(port: int) -> None:
    one = await Client.open(port, OTHER_APP.key)
    await one.subscribe_ok("counted")
    first = await one.expect("pusher_internal:subscription_count", "counted")
    assert json.loads(first["data"]) == {"subscription_count": 1}
    two = await Client.open(port, OTHER_APP.key)
    await two.subscribe_ok("counted")
    for client in (one, two):
        frame = await client.expect("pusher_internal:subscription_count", "counted")
        assert json.loads(frame["data"]) == {"subscription_count": 2}
    await two.unsubscribe("counted")
    frame = await one.expect("pusher_internal:subscription_count", "counted")
    assert json.loads(frame["data"]) == {"subscription_count": 1}
    await one.close()
    await two.close()


async def test_subscription_count_is_not_sent_when_the_app_does_not_enable_it(
    port: int,
) -> None:
    one = await Client.open(port)
    await one.subscribe_ok("counted")
    assert await one.barrier() == []
    await one.close()


async def test_subscription_count_is_not_sent_on_presence_channels(port: int) -> None:
    client = await Client.open(port, OTHER_APP.key)
    auth = sdk(port, OTHER_APP).authenticate("presence-x", client.socket_id, {"user_id": "1"})
    await client.subscribe_ok("presence-x", auth["auth"], auth["channel_data"])
    assert await client.barrier() == []
    await client.close()


async def test_above_100_subscribers_subscription_counts_are_coalesced(server: Server) -> None:
    # §11.2: above 100 subscribers the count goes out at most every 5 s. The sweeper's
    # clock is driven by hand instead of waiting 5 s.
    import time

    port = server.port
    clients = []
    for _ in range(102):
        client = await Client.open(port, OTHER_APP.key)
        await client.subscribe_ok("crowd")
        clients.append(client)
    last = clients[-1]
    # The 101st and 102nd subscriptions sent no count: the last frame everyone got says 100.
    frames = await last.barrier()
    assert frames == []
    first = await clients[0].barrier()
    counts = [json.loads(f["data"])["subscription_count"] for f in first]
    assert counts[-1] == 100 and 101 not in counts and 102 not in counts
    server.sweep(time.monotonic() + 5.0, time.time_ns() // 1_000_000 + 5_000)
    for client in (clients[0], last):
        frame = await client.expect("pusher_internal:subscription_count", "crowd")
        assert json.loads(frame["data"]) == {"subscription_count": 102}
    for client in clients:
        await client.close()


async def test_a_terminated_presence_member_is_removed_for_the_others(port: int) -> None:
    backend = sdk(port)
    watcher, user = await Client.open(port), await Client.open(port)
    signed = backend.authenticate_user(user.socket_id, {"id": "42"})
    await user.send({"event": "pusher:signin", "data": signed})
    await user.expect("pusher:signin_success")
    for client, user_id in ((watcher, "w"), (user, "42")):
        auth = backend.authenticate("presence-room", client.socket_id, {"user_id": user_id})
        await client.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])
    await watcher.expect("pusher_internal:member_added", "presence-room")
    await call(backend.terminate_user_connections, "42")
    code, _ = await user.closed()
    assert code == 4009
    removed = await watcher.expect("pusher_internal:member_removed", "presence-room")
    assert json.loads(removed["data"]) == {"user_id": "42"}
    await watcher.close()
