"""The metrics' gauges are kept up to date as state changes (a scrape walks no socket and
no channel): after random sequences of connect / subscribe / unsubscribe / client
messages / close over real sockets, every gauge equals a full recount of the server's
sessions and channels, made at the same instant on the server's own event loop."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from pusherd.core.channels import channel_type
from pusherd.server.metrics import PusherdCollector
from pusherd.server.server import Server
from tests.cluster.waiting import wait_until
from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import APP, OTHER_APP, AppCredentials, Client, channel_auth

CHANNELS = ("news", "sport", "private-room", "private-desk", "presence-lobby",
            "presence-cache-hall", "cache-ticker")
USERS = ("alice", "bob", "carol")
Gauges = dict[tuple[str, tuple[str, ...]], float]


def scraped(server: Server) -> Gauges:
    """The connection, subscription, channel, member and message figures as the
    collector reports them (zeros left out)."""
    collector = PusherdCollector(server.state, server.apps, server.adapter, lambda: True)
    wanted = {"pusherd_connections", "pusherd_subscriptions", "pusherd_channels",
              "pusherd_presence_members", "pusherd_messages_received"}
    gauges: Gauges = {}
    for family in collector.collect():
        if family.name in wanted:
            for sample in family.samples:
                if sample.value:
                    gauges[(family.name, tuple(sample.labels.values()))] = sample.value
    return gauges


def recount(server: Server) -> Gauges:
    """The same figures counted the long way: every session, every occupied channel."""
    gauges: Gauges = {}

    def add(name: str, labels: tuple[str, ...], amount: float) -> None:
        if amount:
            gauges[(name, labels)] = gauges.get((name, labels), 0) + amount

    telemetry = server.state.telemetry
    for app_id, count in telemetry.messages_received_closed.items():
        add("pusherd_messages_received", (app_id,), count)
    for connection in server.state.connections.values():
        session = connection.session
        if not session.registered:
            continue
        app_id = session.app.id
        add("pusherd_connections", (app_id,), 1)
        add("pusherd_messages_received", (app_id,), session.messages_received)
        for channel in session.subscriptions:
            add("pusherd_subscriptions", (app_id, channel_type(channel)), 1)
    for app in server.apps:
        for name, snapshot in server.adapter.occupied_channels(app, ""):
            add("pusherd_channels", (app.id, channel_type(name)), 1)
            add("pusherd_presence_members", (app.id,), snapshot.user_count or 0)
    return gauges


def closed(server: Server, socket_id: str) -> Callable[[], bool]:
    return lambda: socket_id not in server.state.connections


class Socket:
    def __init__(self, client: Client, app: AppCredentials) -> None:
        self.client = client
        self.app = app
        self.channels: set[str] = set()


async def subscribe(socket: Socket, channel: str, rng: random.Random) -> None:
    client, app = socket.client, socket.app
    data: dict[str, str] = {"channel": channel}
    if channel.startswith("presence-"):
        data["channel_data"] = json.dumps({"user_id": rng.choice(USERS)})
        data["auth"] = channel_auth(client.socket_id, channel, data["channel_data"], app)
    elif channel.startswith("private-"):
        # now and then a forged signature: the refused join leaves nothing behind
        secret = "forged" if rng.random() < 0.2 else None
        data["auth"] = channel_auth(client.socket_id, channel, None, app, secret)
    await client.send({"event": "pusher:subscribe", "data": data})
    socket.channels.add(channel)


async def test_the_gauges_equal_a_recount_after_random_traffic(
    start_server: StartServer,
) -> None:
    server = await start_server()
    rng = random.Random(20261130)
    sockets: list[Socket] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for step in range(400):
        roll = rng.random()
        if roll < 0.15 or not sockets:
            app = rng.choice((APP, APP, OTHER_APP))
            sockets.append(Socket(await Client.open(server.port, app.key), app))
        elif roll < 0.55:
            await subscribe(rng.choice(sockets), rng.choice(CHANNELS), rng)
        elif roll < 0.75:
            socket = rng.choice(sockets)
            if socket.channels:
                channel = rng.choice(sorted(socket.channels))
                await socket.client.unsubscribe(channel)
                socket.channels.discard(channel)
        elif roll < 0.85:
            socket = rng.choice(sockets)
            await socket.client.send({"event": "client-typing", "channel": "private-room",
                                      "data": {}})  # relayed, or refused: counted either way
        else:
            socket = sockets.pop(rng.randrange(len(sockets)))
            await socket.client.close()
            await wait_until(closed(server, socket.client.socket_id),
                             what="the server to see the close")
        if step % 5 == 0 and sockets:
            # Every socket's messages handled: a ping each, answered in order.
            for socket in sockets:
                await socket.client.barrier()
        gauges = scraped(server)
        assert gauges == recount(server), f"step {step}"
        seen.update(label for label in gauges)
    # The run went through every gauge and channel type (the seed is fixed).
    assert {name for name, _ in seen} == {
        "pusherd_connections", "pusherd_subscriptions", "pusherd_channels",
        "pusherd_presence_members", "pusherd_messages_received"}
    assert {labels[1] for name, labels in seen if name == "pusherd_channels"} == {
        "public", "private", "presence", "cache"}
    for socket in sockets:
        await socket.client.close()
    await wait_until(lambda: not server.state.connections, what="every close")
    assert scraped(server) == recount(server)
    assert not any(name != "pusherd_messages_received" for name, _ in scraped(server))
