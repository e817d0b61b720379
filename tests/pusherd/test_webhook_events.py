"""The pure rules of webhooks: event objects (§14.2), flap suppression, body, backoff,
and replaying a journal (including a damaged last line)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from pusherd.core.app import Webhook
from pusherd.core.ids import AppId, SocketId
from pusherd.core.transitions import (
    CacheMiss,
    ChannelOccupied,
    ChannelVacated,
    ClientEventSent,
    MemberAdded,
    MemberRemoved,
    SubscriptionCountChanged,
)
from pusherd.webhooks.events import (
    Delivery,
    FlapGuard,
    encode_webhook_body,
    retry_delay_ms,
    webhook_event,
    webhook_key,
)
from pusherd.webhooks.store import read_journal

A = AppId("1")


@pytest.mark.parametrize(("transition", "expected"), [
    (ChannelOccupied(A, "c", 1), {"name": "channel_occupied", "channel": "c"}),
    (ChannelVacated(A, "c", 1), {"name": "channel_vacated", "channel": "c"}),
    (MemberAdded(A, "presence-c", "7", 1, 7, {"n": 1}),
     {"name": "member_added", "channel": "presence-c", "user_id": "7"}),
    (MemberRemoved(A, "presence-c", "7", 1, 7),
     {"name": "member_removed", "channel": "presence-c", "user_id": "7"}),
    (CacheMiss(A, "cache-c", 1), {"name": "cache_miss", "channel": "cache-c"}),
    (SubscriptionCountChanged(A, "c", 3, 1),
     {"name": "subscription_count", "channel": "c", "subscription_count": 3}),
    (ClientEventSent(A, "private-c", "client-x", {"k": [1]}, SocketId("1.2"), None, 1),
     {"name": "client_event", "channel": "private-c", "event": "client-x",
      "data": '{"k":[1]}', "socket_id": "1.2"}),
    (ClientEventSent(A, "presence-c", "client-x", "as sent", SocketId("1.2"), "u", 1),
     {"name": "client_event", "channel": "presence-c", "event": "client-x",
      "data": "as sent", "socket_id": "1.2", "user_id": "u"}),
])
def test_each_transition_becomes_the_event_object_the_spec_names(transition, expected) -> None:
    assert webhook_event(transition) == expected


def test_a_vacated_channel_reoccupied_within_the_grace_sends_neither_event() -> None:
    guard = FlapGuard(grace_ms=3000)
    vacated = {"name": "channel_vacated", "channel": "c"}
    occupied = {"name": "channel_occupied", "channel": "c"}
    assert guard.offer("v1", vacated, 1000) == ("hold", None)
    assert guard.offer("o1", occupied, 2500) == ("cancel", "v1")
    assert guard.due(10_000) == []  # nothing left held


def test_a_held_removal_goes_out_when_its_grace_ends_and_then_an_addition_is_sent() -> None:
    guard = FlapGuard(grace_ms=3000)
    removed = {"name": "member_removed", "channel": "presence-c", "user_id": "u"}
    added = {"name": "member_added", "channel": "presence-c", "user_id": "u"}
    assert guard.offer("r1", removed, 1000)[0] == "hold"
    assert guard.next_due() == 4000
    assert guard.due(3999) == []
    assert guard.due(4000) == ["r1"]
    assert guard.offer("a2", added, 4100) == ("send", None)


def test_flap_keys_are_per_user_and_per_channel() -> None:
    guard = FlapGuard(grace_ms=3000)
    guard.offer("r1", {"name": "member_removed", "channel": "presence-c", "user_id": "u"}, 0)
    other_user = {"name": "member_added", "channel": "presence-c", "user_id": "v"}
    other_channel = {"name": "channel_occupied", "channel": "presence-c"}
    assert guard.offer("a1", other_user, 10) == ("send", None)
    assert guard.offer("o1", other_channel, 10) == ("send", None)
    assert guard.due(3000) == ["r1"]


def test_a_zero_grace_sends_every_event_at_once() -> None:
    guard = FlapGuard(grace_ms=0)
    assert guard.offer("v", {"name": "channel_vacated", "channel": "c"}, 0) == ("send", None)


def test_the_body_is_time_ms_and_events_as_compact_json() -> None:
    body = encode_webhook_body(1700000000000, [{"name": "channel_occupied", "channel": "c"}])
    assert body == b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied",' \
                   b'"channel":"c"}]}'


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_within_half_to_full() -> None:
    assert [retry_delay_ms(n, 1000, 60_000, 1.0 - 1e-9) for n in (1, 2, 3, 4)] == \
        [999, 1999, 3999, 7999]
    assert retry_delay_ms(20, 1000, 60_000, 0.0) == 30_000
    assert retry_delay_ms(1, 1000, 60_000, 0.0) == 500


def test_filters_match_event_types_prefix_and_suffix() -> None:
    hook = Webhook("http://x", ("member_added",), "presence-", "-room")
    assert hook.accepts("member_added", "presence-a-room")
    assert not hook.accepts("member_removed", "presence-a-room")
    assert not hook.accepts("member_added", "presence-a-hall")
    assert not hook.accepts("member_added", "private-a-room")
    assert Webhook("http://x").accepts("anything", "any")


def test_webhook_keys_tell_apart_two_tables_with_one_url() -> None:
    assert webhook_key("http://x/h", 0) == "http://x/h"
    assert webhook_key("http://x/h", 1) == "http://x/h#1"


def _line(op: str, delivery: Delivery) -> bytes:
    return orjson.dumps({"op": op, **delivery.to_json()}) + b"\n"


def test_a_journal_replays_to_the_live_deliveries_and_skips_a_torn_last_line(
        tmp_path: Path) -> None:
    one = Delivery("e1", "1", "k", {"name": "channel_occupied", "channel": "a", "id": "e1"},
                   10, 10)
    two = Delivery("e2", "1", "k", {"name": "channel_occupied", "channel": "b", "id": "e2"},
                   11, 11)
    three = Delivery("e3", "1", "k", {"name": "channel_occupied", "channel": "c", "id": "e3"},
                     12, 12)
    path = tmp_path / "journal"
    path.write_bytes(
        _line("add", one) + _line("add", two) + _line("add", three)
        + json.dumps({"op": "done", "id": "e1", "key": "k"}).encode() + b"\n"
        + _line("fail", two) + _line("replay", two)
        + _line("fail", three)
        + b'{"op": "add", "id": "e4", "app"'  # killed mid-write
    )
    recovered, damaged = read_journal(path)
    assert [d.event_id for d in recovered.pending] == ["e2"]
    assert [d.event_id for d in recovered.failed] == ["e3"]
    assert recovered.pending[0].event == two.event
    assert damaged == 1


def test_a_journal_remembers_what_was_left_open(tmp_path: Path) -> None:
    def line(op: str, channel: str, user: str | None) -> bytes:
        return orjson.dumps({"op": op, "app": "1", "channel": channel, "user": user}) + b"\n"

    path = tmp_path / "journal"
    path.write_bytes(line("open", "presence-a", None) + line("open", "presence-a", "u1")
                     + line("open", "presence-a", "u2") + line("close", "presence-a", "u1")
                     + line("open", "b", None) + line("close", "b", None))
    recovered, damaged = read_journal(path)
    assert recovered.open == [("1", "presence-a", None), ("1", "presence-a", "u2")]
    assert damaged == 0
