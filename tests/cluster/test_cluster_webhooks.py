"""Webhooks of a two-node cluster (real pusherd processes, the shared Redis under a test
prefix, a real receiver on port 0): each transition arrives once, a killed node's
removals once (decided by the node that reaps it), and a killed node's pending webhooks
are delivered by the survivor."""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

from tests.cluster.nodes import join_presence
from tests.pusherd.wire import APP, Client
from tests.support.pusherd_process import run_pusherd
from tests.support.redis_server import SHARED_REDIS_URL
from tests.support.webhook_receiver import WebhookReceiver


def webhook_cluster_toml(prefix: str, url: str, **webhooks: Any) -> str:
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in
                         {"grace": 0.0, "retry_base": 0.05, "retry_max": 0.2,
                          **webhooks}.items())
    return f"""
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout = 2

[redis]
url = "{SHARED_REDIS_URL}"
prefix = "{prefix}"
lease_ttl = 2.0
reap_interval = 0.25

[webhooks]
journal = ""
{settings}

[[apps]]
id = "{APP.id}"
key = "{APP.key}"
secret = "{APP.secret}"
enable_client_events = true

[[apps.webhooks]]
url = "{url}"
"""


def kinds(events: list[dict[str, Any]]) -> Counter[tuple[str, str, str | None]]:
    return Counter((e["name"], e["channel"], e.get("user_id")) for e in events)


async def test_each_transition_arrives_once_even_the_removals_of_a_killed_node(
        redis_prefix: str) -> None:
    receiver = await WebhookReceiver().start()
    toml = webhook_cluster_toml(redis_prefix, receiver.url)
    try:
        with run_pusherd(toml) as node_a, run_pusherd(toml) as node_b:
            alice_a, _ = await join_presence(node_a, "presence-room", "alice")
            await join_presence(node_b, "presence-room", "alice")  # her second socket
            await join_presence(node_b, "presence-room", "bob")
            await receiver.wait_unique(3)
            await alice_a.close()  # not her last socket: nothing to announce
            node_b.process.send_signal(signal.SIGKILL)  # alice's and bob's last sockets
            await receiver.wait_unique(6, timeout=20)
            marker = await Client.open(node_a.port)  # a barrier: nothing else was owed
            await marker.subscribe_ok("marker")
            events = await receiver.wait_unique(7)
            node_b.process.wait()
        # One event per transition: seven distinct ids, one per kind. (A request that
        # node B had answered but not recorded when it died is sent again by node A with
        # the same id: at-least-once, which a receiver drops by id.)
        unique = receiver.unique_events()
        assert len(unique) == 7, unique
        assert kinds(unique) == Counter({
            ("channel_occupied", "presence-room", None): 1,
            ("member_added", "presence-room", "alice"): 1,
            ("member_added", "presence-room", "bob"): 1,
            ("member_removed", "presence-room", "alice"): 1,
            ("member_removed", "presence-room", "bob"): 1,
            ("channel_vacated", "presence-room", None): 1,
            ("channel_occupied", "marker", None): 1})
        assert events[-1]["channel"] == "marker"
    finally:
        await receiver.stop()


async def test_the_pending_webhooks_of_a_killed_node_are_delivered_by_the_survivor(
        redis_prefix: str) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    toml = webhook_cluster_toml(redis_prefix, receiver.url)
    try:
        with run_pusherd(toml) as survivor, run_pusherd(toml) as victim:
            clients = []
            for channel in ("owed-a", "owed-b"):
                client = await Client.open(victim.port)
                await client.subscribe_ok(channel)
                clients.append(client)
            await receiver.wait_for(
                lambda r: {e["channel"] for q in r.requests for e in q.events}
                >= {"owed-a", "owed-b"}, "a refused attempt of each event")
            attempted = {e["id"] for q in receiver.requests for e in q.events}
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            answer["status"] = 200
            # The survivor takes the victim's deliveries over after its lease (2 s), and
            # its reaper vacates the victim's channels.
            await receiver.wait_for(
                lambda r: attempted <= {e["id"] for e in r.accepted_events()}
                and sum(e["name"] == "channel_vacated" for e in r.unique_events()) == 2,
                "the owed events and the vacated channels", timeout=20)
            assert survivor.process.poll() is None
        events = receiver.unique_events()
        assert kinds(events) == Counter({
            ("channel_occupied", "owed-a", None): 1, ("channel_occupied", "owed-b", None): 1,
            ("channel_vacated", "owed-a", None): 1, ("channel_vacated", "owed-b", None): 1})
    finally:
        await receiver.stop()


async def test_a_reload_onto_the_other_node_within_the_grace_never_leaves_the_member_gone(
        redis_prefix: str) -> None:
    receiver = await WebhookReceiver().start()
    # One request at a time per node: what a node sends arrives in its order.
    toml = webhook_cluster_toml(redis_prefix, receiver.url, grace=1.0, concurrency=1)
    try:
        with run_pusherd(toml) as node_a, run_pusherd(toml) as node_b:
            page, _ = await join_presence(node_a, "presence-desk", "gwen")
            marker = await Client.open(node_a.port)
            await marker.subscribe_ok("marker")
            await receiver.wait_unique(3)
            await page.close()  # the reload: gone from node A ...
            await join_presence(node_b, "presence-desk", "gwen")  # ... back on node B
            await marker.close()  # held after gwen's removals: released after them
            events = await receiver.wait_unique(6)
        names = [(e["name"], e["channel"], e.get("user_id")) for e in events]
        # Node B announces the return at once; node A, asking the cluster when the grace
        # ends, finds her back and sends neither removal. The marker's vacated, released
        # after them on node A, proves they were decided.
        assert ("member_removed", "presence-desk", "gwen") not in names
        assert ("channel_vacated", "presence-desk", None) not in names
        assert names[-1] == ("channel_vacated", "marker", None)
        assert names.count(("member_added", "presence-desk", "gwen")) == 2
    finally:
        await receiver.stop()
