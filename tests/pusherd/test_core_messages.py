"""pusherd.core.messages: client frames in, server frames out (spec §2, §3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pusherd.core import messages
from pusherd.core.messages import (
    ClientEvent,
    Ping,
    Pong,
    Signin,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)
from pusherd.errors import MessageFormatError


def _frame(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "pusher:ping", "data": {}},
        {"event": "pusher:ping"},
        {"event": "pusher:ping", "data": "anything"},
    ],
)
def test_ping_is_parsed_whatever_its_data(frame: dict[str, Any]) -> None:
    assert parse_client_message(_frame(frame)) == Ping()


def test_pong_is_parsed() -> None:
    assert parse_client_message(b'{"event":"pusher:pong","data":{}}') == Pong()


def test_public_subscribe_with_an_empty_auth_is_parsed() -> None:
    message = parse_client_message(
        _frame({"event": "pusher:subscribe", "data": {"auth": "", "channel": "orders"}}))
    assert message == Subscribe("orders", "", None)


def test_subscribe_data_may_be_a_json_string() -> None:
    data = json.dumps({"auth": "k:s", "channel": "private-x"})
    message = parse_client_message(_frame({"event": "pusher:subscribe", "data": data}))
    assert message == Subscribe("private-x", "k:s", None)


def test_presence_subscribe_keeps_channel_data_byte_for_byte() -> None:
    channel_data = '{"user_id": "7",  "user_info": {"name": "Ada\\/L"}}'
    message = parse_client_message(_frame({
        "event": "pusher:subscribe",
        "data": {"auth": "k:s", "channel_data": channel_data, "channel": "presence-r"},
    }))
    assert message == Subscribe("presence-r", "k:s", channel_data)


def test_subscribe_without_auth_parses_with_auth_none() -> None:
    message = parse_client_message(
        _frame({"event": "pusher:subscribe", "data": {"channel": "private-x"}}))
    assert message == Subscribe("private-x", None, None)


def test_unsubscribe_is_parsed_from_an_object_and_from_a_string() -> None:
    as_object = parse_client_message(
        _frame({"event": "pusher:unsubscribe", "data": {"channel": "orders"}}))
    as_string = parse_client_message(
        _frame({"event": "pusher:unsubscribe", "data": '{"channel":"orders"}'}))
    assert as_object == as_string == Unsubscribe("orders")


def test_signin_is_parsed_from_an_object_and_from_a_string() -> None:
    data = {"auth": "k:s", "user_data": '{"id":"7"}'}
    as_object = parse_client_message(_frame({"event": "pusher:signin", "data": data}))
    as_string = parse_client_message(
        _frame({"event": "pusher:signin", "data": json.dumps(data)}))
    assert as_object == as_string == Signin("k:s", '{"id":"7"}')


@pytest.mark.parametrize("data", [{"name": "Ada"}, "text", 5, None, [1, 2]])
def test_client_events_keep_their_data_value_unchanged(data: Any) -> None:
    message = parse_client_message(
        _frame({"event": "client-typing", "channel": "private-chat", "data": data}))
    assert message == ClientEvent("client-typing", "private-chat", data)


def test_a_frame_may_be_given_as_str() -> None:
    assert parse_client_message('{"event":"pusher:ping"}') == Ping()


MALFORMED: list[bytes] = [
    b"",
    b"not json",
    b"{",
    b"[]",
    b'"pusher:ping"',
    b"42",
    b"null",
    b"{}",
    b'{"event":5}',
    b'{"event":""}',
    b'{"event":null}',
    b'{"event":"pusher:unknown"}',
    b'{"event":"something-else","channel":"x"}',
    b'{"event":"pusher:subscribe"}',
    b'{"event":"pusher:subscribe","data":5}',
    b'{"event":"pusher:subscribe","data":[]}',
    b'{"event":"pusher:subscribe","data":"not json"}',
    b'{"event":"pusher:subscribe","data":"[1]"}',
    b'{"event":"pusher:subscribe","data":{}}',
    b'{"event":"pusher:subscribe","data":{"channel":5}}',
    b'{"event":"pusher:subscribe","data":{"channel":"p","auth":5}}',
    b'{"event":"pusher:subscribe","data":{"channel":"p","auth":"","channel_data":{"a":1}}}',
    b'{"event":"pusher:unsubscribe","data":{}}',
    b'{"event":"pusher:unsubscribe","data":{"channel":["x"]}}',
    b'{"event":"pusher:signin","data":{"auth":"k:s"}}',
    b'{"event":"pusher:signin","data":{"auth":"k:s","user_data":{"id":"7"}}}',
    b'{"event":"pusher:signin","data":"nope"}',
    b'{"event":"client-x"}',
    b'{"event":"client-x","channel":""}',
    b'{"event":"client-x","channel":5}',
]


@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_frames_raise_message_format_error_with_code_null(payload: bytes) -> None:
    with pytest.raises(MessageFormatError) as caught:
        parse_client_message(payload)
    assert caught.value.code is None
    frame = json.loads(caught.value.to_frame())
    assert frame["event"] == "pusher:error"
    assert frame["data"]["code"] is None
    assert isinstance(frame["data"]["message"], str) and frame["data"]["message"]


def test_invalid_utf8_raises_message_format_error() -> None:
    with pytest.raises(MessageFormatError):
        parse_client_message(b'{"event":"pusher:ping","data":"\xff\xfe"}')


# --- encoding (§2 table) --------------------------------------------------------------


def _decode(frame: bytes) -> dict[str, Any]:
    decoded = json.loads(frame)
    assert isinstance(decoded, dict)
    return decoded


def test_connection_established_has_string_data_with_socket_id_and_timeout() -> None:
    frame = _decode(messages.encode_connection_established("123.456", 120))
    assert frame["event"] == "pusher:connection_established"
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {"socket_id": "123.456", "activity_timeout": 120}


def test_public_subscription_succeeded_data_is_the_string_of_an_empty_object() -> None:
    frame = _decode(messages.encode_subscription_succeeded("orders"))
    assert frame == {"event": "pusher_internal:subscription_succeeded", "channel": "orders",
                     "data": "{}"}


def test_presence_subscription_succeeded_carries_the_roster_as_string_data() -> None:
    roster = {"ids": ["7", "9"], "hash": {"7": {"name": "Ada"}, "9": None}, "count": 2}
    frame = _decode(messages.encode_subscription_succeeded("presence-r", roster))
    assert frame["event"] == "pusher_internal:subscription_succeeded"
    assert frame["channel"] == "presence-r"
    assert isinstance(frame["data"], str)
    assert json.loads(frame["data"]) == {"presence": roster}


def test_member_added_and_removed_have_string_data() -> None:
    added = _decode(messages.encode_member_added("presence-r", "9", {"name": "Linus"}))
    assert added["event"] == "pusher_internal:member_added"
    assert added["channel"] == "presence-r"
    assert json.loads(added["data"]) == {"user_id": "9", "user_info": {"name": "Linus"}}
    removed = _decode(messages.encode_member_removed("presence-r", "9"))
    assert removed["event"] == "pusher_internal:member_removed"
    assert json.loads(removed["data"]) == {"user_id": "9"}


def test_member_added_keeps_a_numeric_user_id_as_a_number() -> None:
    added = _decode(messages.encode_member_added("presence-r", 42, None))
    assert json.loads(added["data"]) == {"user_id": 42, "user_info": None}


def test_an_http_api_event_relays_its_data_string_verbatim() -> None:
    data = '{"id":7,  "status":"shipped"}'
    frame = _decode(messages.encode_channel_event("App\\Events\\OrderShipped", "private-o", data))
    assert frame == {"event": "App\\Events\\OrderShipped", "channel": "private-o", "data": data}
    assert "user_id" not in frame


def test_a_client_event_relays_object_data_as_an_object_with_user_id() -> None:
    frame = _decode(messages.encode_channel_event("client-typing", "presence-r", {"a": 1}, "7"))
    assert frame == {"event": "client-typing", "channel": "presence-r", "data": {"a": 1},
                     "user_id": "7"}


def test_error_frames_have_object_data_with_code_and_message() -> None:
    assert _decode(messages.encode_error(4301, "slow down")) == {
        "event": "pusher:error", "data": {"code": 4301, "message": "slow down"}}
    assert _decode(messages.encode_error(None, "bad"))["data"]["code"] is None


def test_ping_and_pong_frames_have_empty_object_data() -> None:
    assert _decode(messages.PING_FRAME) == {"event": "pusher:ping", "data": {}}
    assert _decode(messages.PONG_FRAME) == {"event": "pusher:pong", "data": {}}


def test_cache_miss_has_no_data() -> None:
    assert _decode(messages.encode_cache_miss("cache-prices")) == {
        "event": "pusher:cache_miss", "channel": "cache-prices"}


def test_subscription_count_has_string_data() -> None:
    frame = _decode(messages.encode_subscription_count("orders", 3))
    assert frame["event"] == "pusher_internal:subscription_count"
    assert frame["channel"] == "orders"
    assert json.loads(frame["data"]) == {"subscription_count": 3}


def test_signin_success_echoes_the_user_data_string_in_object_data() -> None:
    user_data = '{"id":"7", "user_info":{"name":"Ada"}}'
    assert _decode(messages.encode_signin_success(user_data)) == {
        "event": "pusher:signin_success", "data": {"user_data": user_data}}


def test_watchlist_events_have_object_data() -> None:
    events = [{"name": "online", "user_ids": ["9"]}]
    assert _decode(messages.encode_watchlist_events(events)) == {
        "event": "pusher_internal:watchlist_events", "data": {"events": events}}


def test_non_ascii_text_round_trips_through_encoding() -> None:
    frame = _decode(messages.encode_channel_event("e", "c", "héllo ✓"))
    assert frame["data"] == "héllo ✓"
