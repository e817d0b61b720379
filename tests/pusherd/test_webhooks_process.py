"""Webhook durability across processes: events pending when pusherd dies arrive after it
is started again on the same journal (``kill -9``, and a graceful stop's own removals)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.pusherd.test_webhooks import config, presence_join
from tests.pusherd.wire import Client
from tests.support.pusherd_process import REPO_ROOT, run_pusherd
from tests.support.webhook_receiver import WebhookReceiver


async def test_events_pending_when_pusherd_is_killed_arrive_after_a_restart(
        tmp_path: Path) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    toml = config(tmp_path / "webhooks.journal", [{"url": receiver.url}],
                  retry_base=0.05, retry_max=0.2)
    channels = ["durable-a", "durable-b", "durable-c"]
    try:
        with run_pusherd(toml) as node:
            clients = []
            for channel in channels:
                client = await Client.open(node.port)
                await client.subscribe_ok(channel)
                clients.append(client)
            # Every event was attempted (so accepted and journaled) and refused.
            await receiver.wait_for(
                lambda r: {e["channel"] for q in r.requests for e in q.events} >= set(channels),
                "a refused attempt of each event")
            node.stop(signal.SIGKILL)
        attempted = {e["id"]: e for q in receiver.requests for e in q.events}
        assert all(q.status == 503 for q in receiver.requests)
        answer["status"] = 200
        with run_pusherd(toml):
            # A refused attempt may still be read after the switch: at-least-once, so by id.
            events = await receiver.wait_unique(3)
        assert sorted(e["channel"] for e in events) == channels
        assert {e["id"]: e for e in events} == attempted  # the same events, same ids
    finally:
        await receiver.stop()


async def test_a_graceful_stop_keeps_the_removals_it_causes_for_the_next_start(
        tmp_path: Path) -> None:
    answer = {"status": 503}
    receiver = await WebhookReceiver(answer=lambda n: answer["status"]).start()
    toml = config(tmp_path / "webhooks.journal", [{"url": receiver.url}], grace=0.2,
                  retry_base=0.05, retry_max=0.2)
    try:
        with run_pusherd(toml) as node:
            await presence_join(node.port, "presence-shift", "dana")
            await receiver.wait_for(lambda r: len(r.requests) >= 2, "two refused attempts")
            assert node.stop(signal.SIGTERM) == 0
        answer["status"] = 200
        with run_pusherd(toml):
            events = await receiver.wait_unique(4)
        assert [(e["name"], e.get("user_id")) for e in events[:2]] in (
            [("channel_occupied", None), ("member_added", "dana")],
            [("member_added", "dana"), ("channel_occupied", None)])
        # After the grace, the drain's removals: the receiver's view is left correct.
        assert sorted((e["name"], e.get("user_id")) for e in events[2:]) == [
            ("channel_vacated", None), ("member_removed", "dana")]
        assert json.dumps(events)  # plain JSON all the way
    finally:
        await receiver.stop()


def test_a_second_process_on_the_same_journal_is_refused_with_the_key_named(
        tmp_path: Path) -> None:
    toml = config(tmp_path / "shared.journal", [{"url": "http://127.0.0.1:9/hook"}])
    with run_pusherd(toml):
        second = subprocess.run(
            [sys.executable, "-m", "pusherd", "--config", str(_write(tmp_path, toml)),
             "--port", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "webhooks.journal" in second.stderr and "in use" in second.stderr


def _write(tmp_path: Path, toml: str) -> Path:
    path = tmp_path / "second.toml"
    path.write_text(toml)
    return path


async def test_after_kill_9_the_removals_the_dead_process_owed_are_sent_unless_clients_return(
        tmp_path: Path) -> None:
    receiver = await WebhookReceiver().start()
    # One request at a time: the receiver sees the events in the order they were decided.
    toml = config(tmp_path / "webhooks.journal", [{"url": receiver.url}], grace=1.0,
                  concurrency=1)
    try:
        with run_pusherd(toml) as node:
            await presence_join(node.port, "presence-team", "erin")
            await presence_join(node.port, "presence-team", "finn")
            plain = await Client.open(node.port)
            await plain.subscribe_ok("board")
            await receiver.wait_unique(4)
            node.stop(signal.SIGKILL)
        with run_pusherd(toml) as node:
            # erin's page comes back within the grace; finn's and the board's do not.
            await presence_join(node.port, "presence-team", "erin")
            await receiver.wait_unique(6)
            # A barrier: anything else owed would have been sent before this.
            marker = await Client.open(node.port)
            await marker.subscribe_ok("marker")
            events = await receiver.wait_unique(7)
        assert [(e["name"], e["channel"], e.get("user_id")) for e in events[4:]] == [
            ("member_removed", "presence-team", "finn"), ("channel_vacated", "board", None),
            ("channel_occupied", "marker", None)]
    finally:
        await receiver.stop()
