"""GET /metrics: every metric the operations guide lists, read back from a real server
after real traffic (Prometheus' own parser reads the exposition)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from pusherd.core.transitions import ChannelVacated, Transition
from pusherd.server.server import NEAR_LIMIT_IDLE_TIMEOUT, Server
from tests.cluster.waiting import wait_until
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import (
    Client,
    RawWebSocket,
    call,
    channel_auth,
    error_code,
    http_request,
    sdk,
    signed_request,
)

TOML = """
[server]
port = 0
shutdown_timeout = 1
max_write_buffer_size = 65536

[[apps]]
id = "1001"
key = "app-key"
secret = "app-secret"
enable_client_events = true
max_client_events_per_second = 2

[[apps]]
id = "1002"
key = "quota-key"
secret = "quota-secret"
max_connections = 1
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int, path: str = "/metrics") -> Samples:
    reply = await http_request(port, "GET", path)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_connections_subscriptions_messages_and_failures(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML)
    port = server.port
    before = await scrape(port)
    assert value(before, "pusherd_connections", app="1001") == 0
    assert value(before, "pusherd_ready") == 1

    subscribers = [await Client.open(port) for _ in range(3)]
    for client in subscribers:
        await client.subscribe_ok("news")
    await subscribers[0].subscribe_ok(
        "private-room", channel_auth(subscribers[0].socket_id, "private-room"))
    await subscribers[1].subscribe_ok(
        "private-room", channel_auth(subscribers[1].socket_id, "private-room"))
    # A forged channel signature and a forged API signature.
    refused = await subscribers[2].subscribe(
        "private-room", channel_auth(subscribers[2].socket_id, "private-room", secret="forged"))
    assert error_code(refused) == 4009
    await subscribers[2].barrier()
    forged = await signed_request(port, "GET", "/apps/1001/channels", secret="forged")
    assert forged.status == 401
    # One trigger to 3 subscribers: 3 messages delivered, counted once for the event.
    await call(sdk(port).trigger, "news", "headline", "hello")
    frames = [await client.expect("headline", "news") for client in subscribers]
    # Client events over the limit of 2 per second: the third is rate-limited.
    for n in range(3):
        await subscribers[0].send({"event": "client-typing", "channel": "private-room",
                                   "data": {"n": n}})
    limited = await subscribers[0].recv()
    assert error_code(limited) == 4301
    for _ in range(2):
        await subscribers[1].expect("client-typing", "private-room")
    # A second connection of the app limited to one: refused with 4004.
    first_quota = await Client.open(port, "quota-key")
    over_quota = await Client.open(port, "quota-key", handshake=False)
    assert error_code(await over_quota.recv()) == 4004
    await over_quota.closed()
    # An unknown key (4001), then a client that closes itself (1000).
    unknown = await Client.open(port, "no-such-key", handshake=False)
    assert error_code(await unknown.recv()) == 4001
    await unknown.closed()
    await first_quota.close()
    await subscribers[2].barrier()

    samples = await scrape(port)
    assert value(samples, "pusherd_connections", app="1001") == 3
    assert value(samples, "pusherd_connections_opened_total", app="1001") == 3
    assert value(samples, "pusherd_connections_opened_total", app="1002") == 1
    assert value(samples, "pusherd_connections_closed_total", app="1002", code="1000") == 1
    assert value(samples, "pusherd_connections_refused_total", app="1002", code="4004") == 1
    assert value(samples, "pusherd_connections_refused_total", app="", code="4001") == 1
    assert value(samples, "pusherd_connection_limit_refusals_total", app="1002",
                 limit="app_max_connections") == 1
    assert value(samples, "pusherd_subscriptions", app="1001", channel_type="public") == 3
    assert value(samples, "pusherd_subscriptions", app="1001", channel_type="private") == 2
    assert value(samples, "pusherd_channels", app="1001", channel_type="public") == 1
    assert value(samples, "pusherd_channels", app="1001", channel_type="private") == 1
    # 3 + 2 subscribes, 1 refused subscribe, 3 client events, 2 barrier pings (client 2)
    assert value(samples, "pusherd_messages_received_total", app="1001") == 3 + 2 + 1 + 3 + 2
    # the trigger reached 3 sockets, the 2 relayed client events 1 socket each
    assert value(samples, "pusherd_messages_delivered_total", app="1001") == 3 + 2
    headline_bytes = 3 * (2 + len(json.dumps(frames[0], separators=(",", ":"))))
    assert value(samples, "pusherd_bytes_sent_total", app="1001") > headline_bytes - 3
    assert value(samples, "pusherd_api_events_total") == 1
    assert value(samples, "pusherd_api_requests_total", endpoint="events", status="200") == 1
    assert value(samples, "pusherd_api_requests_total", endpoint="channels",
                 status="401") == 1
    assert value(samples, "pusherd_api_request_duration_seconds_count", endpoint="events") == 1
    assert value(samples, "pusherd_api_request_duration_seconds_bucket", endpoint="events",
                 le="+Inf") == 1
    assert value(samples, "pusherd_auth_failures_total", reason="channel_auth") == 1
    assert value(samples, "pusherd_auth_failures_total", reason="api_signature") == 1
    assert value(samples, "pusherd_client_events_rate_limited_total", app="1001") == 1
    assert value(samples, "process_open_fds") > 0

    # Leaving empties the channel gauges (they follow the vacated transitions).
    vacated: set[str] = set()
    both_vacated = asyncio.Event()

    def on_transition(transition: Transition) -> None:
        if isinstance(transition, ChannelVacated):
            vacated.add(transition.channel)
            if vacated == {"news", "private-room"}:
                both_vacated.set()

    server.adapter.add_listener(on_transition)
    for client in subscribers:
        await client.close()
    await asyncio.wait_for(both_vacated.wait(), 10)
    samples = await scrape(port)
    assert value(samples, "pusherd_connections", app="1001") == 0
    assert value(samples, "pusherd_channels", app="1001", channel_type="public") == 0
    assert value(samples, "pusherd_channels", app="1001", channel_type="private") == 0
    assert value(samples, "pusherd_connections_closed_total", app="1001", code="1000") == 3


async def test_presence_members_follow_member_added_and_removed(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML)
    alice = await Client.open(server.port)
    data = json.dumps({"user_id": "alice"})
    await alice.subscribe_ok("presence-lobby",
                             channel_auth(alice.socket_id, "presence-lobby", data), data)
    samples = await scrape(server.port)
    assert value(samples, "pusherd_presence_members", app="1001") == 1
    assert value(samples, "pusherd_channels", app="1001", channel_type="presence") == 1
    await alice.unsubscribe("presence-lobby")
    await alice.barrier()
    samples = await scrape(server.port)
    assert value(samples, "pusherd_presence_members", app="1001") == 0


async def test_a_slow_consumer_cut_off_is_counted(start_server: StartServer) -> None:
    server = await start_server(TOML)
    port = server.port
    slow, _ = await RawWebSocket.open(port, receive_buffer=4096, stream_limit=1024)
    slow.send_text(json.dumps({"event": "pusher:subscribe",
                               "data": {"auth": "", "channel": "firehose"}}))
    assert (await slow.read_json())["event"] == "pusher_internal:subscription_succeeded"
    batch = json.dumps({"batch": [{"channel": "firehose", "name": "bulk", "data": "x" * 10_000}
                                  for _ in range(10)]}).encode()
    for _ in range(400):
        assert (await signed_request(port, "POST", "/apps/1001/batch_events", batch)).status \
            == 200
        if value(await scrape(port), "pusherd_slow_consumers_total", app="1001") == 1:
            break
    else:
        pytest.fail("the slow consumer was never cut off")
    samples = await scrape(port)
    assert value(samples, "pusherd_connections_closed_total", app="1001", code="1006") == 1
    slow.close()


async def test_metrics_on_their_own_port_leave_the_main_port_without_them(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML + "\n[metrics]\nport = 0\n")
    assert server.metrics_port and server.metrics_port != server.port
    samples = await scrape(server.metrics_port)
    assert value(samples, "pusherd_ready") == 1
    assert (await http_request(server.port, "GET", "/metrics")).status == 404
    assert (await http_request(server.metrics_port, "GET", "/apps/1001/channels")).status \
        == 404


async def test_metrics_can_be_turned_off(start_server: StartServer) -> None:
    server = await start_server(TOML + "\n[metrics]\nenabled = false\n")
    assert (await http_request(server.port, "GET", "/metrics")).status == 404
    assert server.http_api.observe is None  # no per-request timing either


async def test_ready_says_why_not_while_at_the_connection_limit(
    start_server: StartServer,
) -> None:
    """A really full node: no room for one more client connection, and every descriptor
    of the HTTP reserve held by TCP connections that never send a request. It keeps
    serving the clients it has, its HTTP API (triggers to them), /up, /ready (with the
    reason) and /metrics; only new WebSocket upgrades are refused."""
    server = await start_server(TOML)
    state = server.state
    reply = await http_request(server.port, "GET", "/ready")
    assert (reply.status, reply.json()) == (200, {"status": "ready"})
    clients = [await Client.open(server.port) for _ in range(2)]
    for client in clients:
        await client.subscribe_ok("news")
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
    await wait_until(lambda: len(state.transports) == len(clients) + len(idle),
                     what="the idle connections to be accepted")
    # The limits come from the open-file limit; lower them to what is open now.
    state.max_open_connections = len(state.connections)
    state.max_transports = len(state.transports)

    reply = await http_request(server.port, "GET", "/ready")
    assert (reply.status, reply.json()) == (503, {"status": "at_connection_limit"})
    reply = await http_request(server.port, "GET", "/up")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})
    await call(sdk(server.port).trigger, "news", "full", {"n": 1})
    for client in clients:
        frame = await client.expect("full", "news")
        assert json.loads(frame["data"]) == {"n": 1}
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.open(server.port)
    assert refused.value.response.status_code == 503
    samples = await scrape(server.port)
    assert value(samples, "pusherd_ready") == 0
    assert value(samples, "pusherd_connection_limit_refusals_total", app="",
                 limit="open_files") == 1
    # Room was made by closing the connections that sat idle longest.
    assert await asyncio.wait_for(idle[0][0].read(), 5) == b""
    for _, writer in idle:
        writer.close()

    state.max_open_connections = state.max_transports = 10_000
    assert (await http_request(server.port, "GET", "/ready")).status == 200
    for client in clients:
        await client.close()


async def test_near_the_limit_idle_http_connections_are_closed_after_a_few_seconds(
    start_server: StartServer,
) -> None:
    """Connections that never send a request cannot hold the HTTP reserve for the whole
    http_idle_timeout (75 s): near the limit the sweep closes them after 5 s."""
    server = await start_server(TOML)
    state = server.state
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await wait_until(lambda: len(state.http_connections) == 1,
                     what="the connection to be accepted")
    now = time.monotonic()
    server.sweep_housekeeping(now + NEAR_LIMIT_IDLE_TIMEOUT + 1, 0)
    assert len(state.http_connections) == 1  # not near the limit: http_idle_timeout holds
    state.max_open_connections = 0  # every transport now uses the HTTP reserve
    server.sweep_housekeeping(now + NEAR_LIMIT_IDLE_TIMEOUT + 1, 0)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    state.max_open_connections = 10_000


def test_ready_is_false_before_the_server_started_and_after_the_adapter_fails() -> None:
    from pusherd.adapters.memory import MemoryAdapter
    from pusherd.config import load_config

    class UnreachableAdapter(MemoryAdapter):
        """An adapter whose shared state is unreachable (as Redis down would be)."""

        reachable = True

        @property
        def ready(self) -> bool:
            return self.reachable

    adapter = UnreachableAdapter()
    server = Server(load_config(None, {}), adapter)
    assert server.readiness() == "starting"
    server.state.started = True
    assert server.readiness() == "ready"
    adapter.reachable = False
    assert server.readiness() == "adapter_unavailable"
    assert not server.ready()


async def test_ready_and_up_answer_under_a_mount_prefix_and_at_the_root(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML.replace("port = 0\n", 'port = 0\npath_prefix = "/ws"\n', 1))
    for path in ("/ready", "/ws/ready", "/up", "/ws/up", "/metrics", "/ws/metrics"):
        assert (await http_request(server.port, "GET", path)).status == 200, path


async def test_webhook_queue_and_outcomes_are_metrics_when_webhooks_are_configured(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML.replace(
        'max_client_events_per_second = 2\n',
        'max_client_events_per_second = 2\n[[apps.webhooks]]\n'
        'url = "http://127.0.0.1:9/hook"\nevent_types = ["channel_occupied"]\n', 1))
    before = await scrape(server.port)
    assert value(before, "pusherd_webhook_accepted_total") == 0
    client = await Client.open(server.port)
    await client.subscribe_ok("watched")
    samples = await scrape(server.port)
    assert value(samples, "pusherd_webhook_accepted_total") == 1
    queued = value(samples, "pusherd_webhook_pending")
    assert queued + value(samples, "pusherd_webhook_delivered_total") >= 1
    await client.close()


async def test_close_codes_a_client_chooses_cannot_grow_the_label_set(
    start_server: StartServer,
) -> None:
    """pusherd's own close codes keep their label; of the codes a client closes with,
    only 1000, 1001 and 1005 do, every other one is counted as client_other."""
    server = await start_server(TOML)
    codes = [*range(3000, 3005), 4000, 4200, 4999, 1000, 1001]
    for code in codes:
        client = await Client.open(server.port)
        await client.ws.close(code=code)
    too_big = await Client.open(server.port)  # pusherd closes it: 1009
    await too_big.send("x" * 70_000)
    assert (await too_big.closed())[0] == 1009
    await wait_until(lambda: sum(server.state.telemetry.connections_closed.values())
                     == len(codes) + 1, what="every close to be counted")
    samples = await scrape(server.port)
    closed = {dict(labels)["code"]: count for (name, labels), count in samples.items()
              if name == "pusherd_connections_closed_total"}
    assert closed == {"client_other": 8.0, "1000": 1.0, "1001": 1.0, "1009": 1.0}


async def test_refusals_that_used_to_leave_no_trace_are_logged_and_counted(
    start_server: StartServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """An upgrade refused during a drain, an upgrade to a wrong path and a wrong console
    token each leave a log line and a counter."""
    caplog.set_level(logging.INFO)
    token = "console-token-long-enough"
    server = await start_server(TOML + f'\n[console]\nenabled = true\ntoken = "{token}"\n')
    reply = await http_request(server.port, "GET", "/ws/app-key", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert reply.status == 404
    assert "WebSocket upgrade to an unknown path refused (404): /ws/app-key" in caplog.text
    assert (await http_request(server.port, "GET", "/console?token=guess")).status == 401
    assert "debug console /console: wrong or missing token" in caplog.text
    assert "guess" not in caplog.text

    server.state.draining = True  # as SIGTERM sets it; the listener stays open
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.open(server.port)
    assert refused.value.response.status_code == 503
    assert "connection refused (503) while draining app=1001" in caplog.text
    samples = await scrape(server.port)
    server.state.draining = False
    assert value(samples, "pusherd_connections_refused_total", app="1001", code="503") == 1
    assert value(samples, "pusherd_auth_failures_total", reason="console_token") == 1
