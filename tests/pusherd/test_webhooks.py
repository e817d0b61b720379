"""Webhooks end to end (spec §14): a real pusherd on port 0 posting to a real receiver on
port 0. Signatures are checked with the official Python SDK (``validate_webhook``) and the
official Node SDK (``WebHook.isValid``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pusher
import pytest

from pusherd.server.server import Server
from pusherd.webhooks.events import Delivery
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import APP, Client, channel_auth, signed_request, trigger_raw
from tests.support.webhook_receiver import Request, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "protocol_tests" / "node_modules"


def config(journal: Path, hooks: list[dict[str, Any]], counts: bool = False,
           **webhooks: Any) -> str:
    """pusherd TOML: app 1001 (client events; subscription counts if `counts`) with
    `hooks`, and `webhooks` as the [webhooks] settings (grace 0 unless given)."""
    lines = ['[server]', 'host = "127.0.0.1"', 'port = 0', 'shutdown_timeout = 1', '',
             '[webhooks]', f'journal = "{journal}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in {"grace": 0.0, **webhooks}.items()]
    lines += ['', '[[apps]]', f'id = "{APP.id}"', f'key = "{APP.key}"',
              f'secret = "{APP.secret}"', 'enable_client_events = true',
              f'enable_subscription_count = {str(counts).lower()}']
    for hook in hooks:
        lines.append("[[apps.webhooks]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in hook.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def receiver() -> Any:
    hook = await WebhookReceiver().start()
    yield hook
    await hook.stop()


def names(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["name"], e["channel"]) for e in events]


async def presence_join(port: int, channel: str, user_id: str) -> Client:
    client = await Client.open(port)
    data = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
    await client.subscribe_ok(channel, channel_auth(client.socket_id, channel, data), data)
    return client


def outcomes(server: Server) -> asyncio.Queue[tuple[str, Delivery]]:
    queue: asyncio.Queue[tuple[str, Delivery]] = asyncio.Queue()
    assert server.webhooks is not None
    server.webhooks.add_observer(lambda outcome, d: queue.put_nowait((outcome, d)))
    return queue


# --- format and signatures ---------------------------------------------------------------


def node_is_valid(request: Request) -> bool:
    node = shutil.which("node")
    assert node is not None and NODE_MODULES.is_dir(), "node and protocol_tests/node_modules"
    stdin = json.dumps({"key": APP.key, "secret": APP.secret, "headers": request.headers,
                        "body": request.body.decode()})
    result = subprocess.run([node, str(ROOT / "tests" / "support" / "webhook_is_valid.js")],
                            input=stdin, capture_output=True, text=True, timeout=60,
                            env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout == "true"


async def test_a_webhook_is_the_exact_pusher_request_both_official_sdks_validate(
        start_server: StartServer, receiver: WebhookReceiver, tmp_path: Path) -> None:
    server = await start_server(config(tmp_path / "j", [{"url": receiver.url}]))
    client = await Client.open(server.port)
    await client.subscribe_ok("orders")
    [event] = await receiver.wait_events(1)
    request = receiver.requests[0]
    assert request.path == "/hook"
    assert request.header("Content-Type") == "application/json"
    sent_names = [name for name, _ in request.headers]
    assert "X-Pusher-Key" in sent_names and "X-Pusher-Signature" in sent_names
    assert request.header("X-Pusher-Key") == APP.key
    payload = pusher.Pusher(app_id=APP.id, key=APP.key, secret=APP.secret).validate_webhook(
        request.header("X-Pusher-Key"), request.header("X-Pusher-Signature"), request.body)
    assert payload is not None, "the Python SDK rejected the webhook"
    assert set(payload) == {"time_ms", "events"}
    assert abs(payload["time_ms"] / 1000 - request.received) < 5
    assert event == {"name": "channel_occupied", "channel": "orders", "id": event["id"]}
    assert isinstance(event["id"], str) and event["id"]
    assert await asyncio.to_thread(node_is_valid, request)
    # The validators can fail: a body changed by one byte is refused by both.
    forged = Request(request.path, request.headers, request.body.replace(b"orders", b"orderz"),
                     request.received)
    assert pusher.Pusher(app_id=APP.id, key=APP.key, secret=APP.secret).validate_webhook(
        APP.key, forged.header("X-Pusher-Signature"), forged.body) is None
    assert not await asyncio.to_thread(node_is_valid, forged)


async def test_every_event_type_arrives_with_the_fields_of_its_kind(
        start_server: StartServer, receiver: WebhookReceiver, tmp_path: Path) -> None:
    server = await start_server(config(tmp_path / "j", [{"url": receiver.url}], counts=True))
    port = server.port
    a = await presence_join(port, "presence-room", "alice")
    b = await presence_join(port, "presence-room", "bob")
    await a.expect("pusher_internal:member_added", "presence-room")
    await b.send({"event": "client-typing", "channel": "presence-room", "data": {"on": True}})
    await a.expect("client-typing", "presence-room")
    await b.unsubscribe("presence-room")
    cache = await Client.open(port)
    await cache.subscribe_ok("cache-prices")
    counted = await Client.open(port)
    await counted.subscribe_ok("public-counted")
    await counted.unsubscribe("public-counted")
    events = await receiver.wait_events(10)
    without_ids = [{k: v for k, v in e.items() if k != "id"} for e in events]
    expected: list[dict[str, Any]] = [
        {"name": "channel_occupied", "channel": "presence-room"},
        {"name": "member_added", "channel": "presence-room", "user_id": "alice"},
        {"name": "member_added", "channel": "presence-room", "user_id": "bob"},
        {"name": "client_event", "channel": "presence-room", "event": "client-typing",
         "data": '{"on":true}', "socket_id": b.socket_id, "user_id": "bob"},
        {"name": "member_removed", "channel": "presence-room", "user_id": "bob"},
        {"name": "channel_occupied", "channel": "cache-prices"},
        {"name": "cache_miss", "channel": "cache-prices"},
        {"name": "subscription_count", "channel": "cache-prices", "subscription_count": 1},
        {"name": "channel_occupied", "channel": "public-counted"},
        {"name": "subscription_count", "channel": "public-counted", "subscription_count": 1},
    ]
    # Order is guaranteed per channel; across channels requests run concurrently.
    for channel in ("presence-room", "cache-prices", "public-counted"):
        assert [e for e in without_ids if e["channel"] == channel] == \
            [e for e in expected if e["channel"] == channel]
    await counted.close()
    vacated = await receiver.wait_events(11)
    assert {k: v for k, v in vacated[-1].items() if k != "id"} == \
        {"name": "channel_vacated", "channel": "public-counted"}
    assert len({e["id"] for e in vacated}) == 11  # one id per event


async def test_a_private_client_event_has_no_user_id(
        start_server: StartServer, receiver: WebhookReceiver, tmp_path: Path) -> None:
    server = await start_server(config(tmp_path / "j", [
        {"url": receiver.url, "event_types": ["client_event"]}]))
    a, b = await Client.open(server.port), await Client.open(server.port)
    for client in (a, b):
        await client.subscribe_ok("private-x", channel_auth(client.socket_id, "private-x"))
    await a.send({"event": "client-ping", "channel": "private-x", "data": "plain"})
    [event] = await receiver.wait_events(1)
    assert {k: v for k, v in event.items() if k != "id"} == {
        "name": "client_event", "channel": "private-x", "event": "client-ping",
        "data": "plain", "socket_id": a.socket_id}


# --- flap suppression, batching, filters ------------------------------------------------


async def test_a_page_reload_within_the_grace_sends_no_webhook_and_a_real_leave_does(
        start_server: StartServer, receiver: WebhookReceiver, tmp_path: Path) -> None:
    kinds = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
    server = await start_server(config(tmp_path / "j", [
        {"url": receiver.url, "event_types": kinds}], grace=0.5))
    first = await presence_join(server.port, "presence-desk", "carol")
    await receiver.wait_events(2)
    await first.close()  # the reload: the same user is back within the grace
    again = await presence_join(server.port, "presence-desk", "carol")
    # A marker on another channel, subscribed after the reload and before the grace ends,
    # then the real leave: its removals come after the grace.
    marker = await Client.open(server.port)
    await marker.subscribe_ok("marker")
    await again.close()
    events = await receiver.wait_events(5)
    assert names(events) == [
        ("channel_occupied", "presence-desk"), ("member_added", "presence-desk"),
        ("channel_occupied", "marker"),
        ("member_removed", "presence-desk"), ("channel_vacated", "presence-desk")]
    assert server.webhooks is not None and server.webhooks.counters.suppressed == 2


async def test_events_within_the_batching_window_go_in_one_request_in_order(
        start_server: StartServer, receiver: WebhookReceiver, tmp_path: Path) -> None:
    server = await start_server(config(tmp_path / "j", [{"url": receiver.url}],
                                       batch_window=0.3))
    client = await Client.open(server.port)
    channels = [f"batch-{i}" for i in range(6)]
    for channel in channels:
        await client.subscribe_ok(channel)
    events = await receiver.wait_events(6)
    assert len(receiver.requests) == 1
    assert names(events) == [("channel_occupied", c) for c in channels]


async def test_filters_pick_events_per_webhook_and_an_app_has_several_webhooks(
        start_server: StartServer, tmp_path: Path) -> None:
    everything, presence_only, rooms = [await WebhookReceiver().start() for _ in range(3)]
    try:
        server = await start_server(config(tmp_path / "j", [
            {"url": everything.url},
            {"url": presence_only.url, "event_types": ["member_added"],
             "filter_channel_prefix": "presence-"},
            {"url": rooms.url, "event_types": ["channel_occupied"],
             "filter_channel_suffix": "-room"}]))
        await presence_join(server.port, "presence-a-room", "u1")
        plain = await Client.open(server.port)
        await plain.subscribe_ok("lobby")
        await plain.subscribe_ok("b-room")
        assert names(await everything.wait_events(4)) == [
            ("channel_occupied", "presence-a-room"), ("member_added", "presence-a-room"),
            ("channel_occupied", "lobby"), ("channel_occupied", "b-room")]
        assert names(await presence_only.wait_events(1)) == [
            ("member_added", "presence-a-room")]
        assert names(await rooms.wait_events(2)) == [
            ("channel_occupied", "presence-a-room"), ("channel_occupied", "b-room")]
        # One id per event, the same at every webhook it went to.
        assert everything.accepted_events()[1]["id"] == presence_only.accepted_events()[0]["id"]
        # Nothing else arrived: the barrier is an event all three would have received.
        await presence_join(server.port, "presence-z-room", "u2")
        await rooms.wait_events(3)
        await presence_only.wait_events(2)
        assert len(presence_only.accepted_events()) == 2 and len(rooms.accepted_events()) == 3
    finally:
        for hook in (everything, presence_only, rooms):
            await hook.stop()


# --- reliability --------------------------------------------------------------------------


async def test_a_receiver_failing_the_first_requests_gets_every_event_once_in_order(
        start_server: StartServer, tmp_path: Path) -> None:
    receiver = await WebhookReceiver(answer=lambda n: 500 if n <= 4 else 200).start()
    try:
        server = await start_server(config(tmp_path / "j", [{"url": receiver.url}],
                                           retry_base=0.05, retry_max=0.2))
        users = [f"u{i}" for i in range(5)]
        clients = [await presence_join(server.port, channel, user)
                   for user in users for channel in ("presence-a", "presence-b")]
        for client in reversed(clients):
            await client.close()
        events = await receiver.wait_events(2 * 12, timeout=20)
        assert len(events) == 24
        ids = [e["id"] for e in events]
        assert len(set(ids)) == len(ids), "an event was delivered twice"
        for channel in ("presence-a", "presence-b"):
            assert [(e["name"], e.get("user_id")) for e in events if e["channel"] == channel] \
                == [("channel_occupied", None)] + [("member_added", u) for u in users] + \
                [("member_removed", u) for u in reversed(users)] + [("channel_vacated", None)]
        failed = [r for r in receiver.requests if r.status == 500]
        assert len(failed) == 4
        retried = {e["id"] for r in failed for e in r.events}
        later = [r for r in receiver.requests if r.status == 200
                 and {e["id"] for e in r.events} & retried]
        assert later, "the failed events were sent again"
        sdk = pusher.Pusher(app_id=APP.id, key=APP.key, secret=APP.secret)
        for request in receiver.requests:  # every attempt is signed and freshly stamped
            assert sdk.validate_webhook(APP.key, request.header("X-Pusher-Signature"),
                                        request.body) is not None
        first_try = {e["id"]: r.payload["time_ms"] for r in failed for e in r.events}
        assert any(r.payload["time_ms"] > first_try[e["id"]]
                   for r in later for e in r.events if e["id"] in first_try)
    finally:
        await receiver.stop()


async def test_dead_letters_are_listed_and_replayed_through_the_signed_api(
        start_server: StartServer, tmp_path: Path) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    try:
        server = await start_server(config(tmp_path / "j", [{"url": receiver.url}],
                                           retry_base=0.05, retry_max=0.1, retry_window=0.4))
        seen = outcomes(server)
        client = await Client.open(server.port)
        await client.subscribe_ok("doomed")
        while (outcome := await asyncio.wait_for(seen.get(), 10))[0] != "dead":
            assert outcome[0] == "retry"
        reply = await signed_request(server.port, "GET", f"/apps/{APP.id}/webhooks/failed")
        assert reply.status == 200
        [failed] = reply.json()["events"]
        assert failed["event"]["name"] == "channel_occupied"
        assert failed["event"]["channel"] == "doomed"
        assert failed["url"] == receiver.url and failed["last_error"] == "HTTP 503"
        assert failed["attempts"] >= 2 and failed["failed_at_ms"] > 0
        unsigned = await signed_request(server.port, "GET", f"/apps/{APP.id}/webhooks/failed",
                                        secret="wrong")
        assert unsigned.status == 401

        answer["status"] = 200
        bad = await signed_request(server.port, "POST", f"/apps/{APP.id}/webhooks/replay",
                                   b'{"ids": "x"}')
        assert bad.status == 400
        # A typo ("id" for "ids") must not widen the replay to every dead letter.
        typo = await signed_request(server.port, "POST", f"/apps/{APP.id}/webhooks/replay",
                                    b'{"id": ["does-not-exist"]}')
        assert typo.status == 400 and "'id'" in typo.json()["error"]
        body = json.dumps({"ids": [failed["id"]]}).encode()
        replay = await signed_request(server.port, "POST", f"/apps/{APP.id}/webhooks/replay",
                                      body)
        assert (replay.status, replay.json()) == (200, {"replayed": 1})
        [event] = await receiver.wait_events(1)
        assert event == failed["event"]  # the same event, with the same id
        after = await signed_request(server.port, "GET", f"/apps/{APP.id}/webhooks/failed")
        assert after.json() == {"events": []}
    finally:
        await receiver.stop()


async def test_a_hanging_receiver_never_delays_delivery_and_pending_events_are_bounded(
        start_server: StartServer, tmp_path: Path) -> None:
    receiver = await WebhookReceiver(hold=True).start()
    try:
        server = await start_server(config(tmp_path / "j", [{"url": receiver.url}],
                                           max_pending=5, concurrency=2, timeout=30))
        listener = await Client.open(server.port)
        await listener.subscribe_ok("news")
        await receiver.wait_for(lambda r: len(r.requests) >= 1, "a held request")
        others = []
        for i in range(10):
            other = await Client.open(server.port)
            await other.subscribe_ok(f"room-{i}")
            others.append(other)
        reply = await trigger_raw(server.port, {"name": "e", "channels": ["news"], "data": "x"})
        assert reply.status == 200
        # Delivered while both webhook requests are still unanswered.
        assert (await listener.expect("e", "news"))["data"] == "x"
        sender = server.webhooks
        assert sender is not None
        assert sender.in_flight == 2  # both requests are still unanswered
        assert sender.pending == 5
        assert sender.counters.dropped == 6  # 11 occupied events, 5 kept
    finally:
        await receiver.stop()
