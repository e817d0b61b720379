"""pusherd.core.api: HTTP API bodies and their limits (spec §12)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pusherd.apps import App
from pusherd.core import api
from pusherd.core.ids import AppId, AppKey
from pusherd.errors import HttpApiError

APP = App(id=AppId("1001"), key=AppKey("app-key"), secret="app-secret")


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _status(call: Any, *args: Any) -> int:
    with pytest.raises(HttpApiError) as caught:
        call(*args)
    assert caught.value.message
    return caught.value.status


# --- POST /events ----------------------------------------------------------------------


def test_a_trigger_with_channels_is_parsed() -> None:
    trigger = api.parse_trigger(APP, _body(
        {"name": "update", "channels": ["a", "private-b"], "data": '{"x":1}',
         "socket_id": "1.2", "info": "subscription_count,user_count"}))
    assert trigger.name == "update" and trigger.data == '{"x":1}'
    assert trigger.channels == ("a", "private-b")
    assert trigger.socket_id == "1.2"
    assert trigger.info == frozenset({"subscription_count", "user_count"})


def test_a_trigger_with_a_single_channel_field_is_parsed_as_php_sends_it() -> None:
    trigger = api.parse_trigger(APP, _body({"name": "e", "channel": "a", "data": "x"}))
    assert trigger.channels == ("a",) and trigger.socket_id is None and not trigger.info


def test_an_empty_data_string_is_accepted() -> None:
    assert api.parse_trigger(APP, _body({"name": "e", "channels": ["a"], "data": ""})).data == ""


def test_duplicate_channels_are_delivered_once() -> None:
    trigger = api.parse_trigger(APP, _body({"name": "e", "channels": ["a", "a"], "data": ""}))
    assert trigger.channels == ("a",)


def test_one_hundred_channels_are_accepted_and_one_hundred_and_one_refused() -> None:
    ok = [f"c{n}" for n in range(100)]
    assert len(api.parse_trigger(APP, _body({"name": "e", "channels": ok, "data": ""}))
               .channels) == 100
    too_many = ok + ["c100"]
    assert _status(api.parse_trigger, APP,
                   _body({"name": "e", "channels": too_many, "data": ""})) == 400


def test_data_of_10_kb_is_accepted_and_one_byte_more_is_413() -> None:
    assert api.parse_trigger(APP, _body({"name": "e", "channels": ["a"], "data": "x" * 10240}))
    assert _status(api.parse_trigger, APP,
                   _body({"name": "e", "channels": ["a"], "data": "x" * 10241})) == 413


def test_the_data_limit_counts_utf8_bytes() -> None:
    data = "é" * 5121  # 10 242 bytes, 5 121 characters
    assert _status(api.parse_trigger, APP,
                   _body({"name": "e", "channels": ["a"], "data": data})) == 413


def test_the_data_limit_follows_the_app_setting() -> None:
    app = dataclasses.replace(APP, max_event_data_size=10)
    assert _status(api.parse_trigger, app,
                   _body({"name": "e", "channels": ["a"], "data": "x" * 11})) == 413


@pytest.mark.parametrize("name", ["pusher:subscribe", "pusher_internal:member_added"])
def test_reserved_event_names_are_400(name: str) -> None:
    assert _status(api.parse_trigger, APP,
                   _body({"name": name, "channels": ["a"], "data": ""})) == 400


@pytest.mark.parametrize("data", [{"x": 1}, 5, None, ["a"], True])
def test_data_that_is_not_a_string_is_400(data: Any) -> None:
    assert _status(api.parse_trigger, APP,
                   _body({"name": "e", "channels": ["a"], "data": data})) == 400


@pytest.mark.parametrize("socket_id", ["abc", "1", "1.", ".1", "1.2.3", "1.2 ", 12, ""])
def test_an_invalid_socket_id_is_400(socket_id: Any) -> None:
    assert _status(api.parse_trigger, APP, _body(
        {"name": "e", "channels": ["a"], "data": "", "socket_id": socket_id})) == 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        _body({"channels": ["a"], "data": ""}),
        _body({"name": "", "channels": ["a"], "data": ""}),
        _body({"name": "e", "channels": ["a"]}),
        _body({"name": "e", "data": ""}),
        _body({"name": "e", "channels": [], "data": ""}),
        _body({"name": "e", "channels": "a", "data": ""}),
        _body({"name": "e", "channels": ["bad name"], "data": ""}),
        _body({"name": "e", "channels": [5], "data": ""}),
        _body({"name": "e", "channels": ["#not-a-user-channel"], "data": ""}),
        _body({"name": "e", "channels": ["a"], "data": "", "info": ["user_count"]}),
        _body({"name": "e", "channels": ["a"], "data": "", "info": "bogus"}),
        _body({"name": "e" * 201, "channels": ["a"], "data": ""}),
        _body({"name": "e", "channels": ["private-encrypted-x", "a"], "data": ""}),
    ],
)
def test_malformed_trigger_bodies_are_400(body: bytes) -> None:
    assert _status(api.parse_trigger, APP, body) == 400


def test_one_trigger_may_name_several_encrypted_channels() -> None:
    channels = ["private-encrypted-order.1", "private-encrypted-order.2"]
    trigger = api.parse_trigger(APP, _body({"name": "e", "channels": channels, "data": "{}"}))
    assert trigger.channels == tuple(channels)


def test_a_mix_of_encrypted_and_unencrypted_channels_is_refused_with_its_reason() -> None:
    with pytest.raises(HttpApiError) as refused:
        api.parse_trigger(APP, _body(
            {"name": "e", "channels": ["private-encrypted-x", "private-x"], "data": ""}))
    assert refused.value.status == 400
    assert "encrypted and unencrypted" in refused.value.message


def test_server_to_user_channels_are_accepted_as_trigger_targets() -> None:
    trigger = api.parse_trigger(APP, _body(
        {"name": "e", "channels": ["#server-to-user-42"], "data": ""}))
    assert trigger.channels == ("#server-to-user-42",)


def test_channel_names_up_to_200_characters_are_accepted_as_the_sdks_allow() -> None:
    name = "c" * 200
    assert api.parse_trigger(APP, _body({"name": "e", "channels": [name], "data": ""}))
    assert _status(api.parse_trigger, APP,
                   _body({"name": "e", "channels": [name + "c"], "data": ""})) == 400


# --- POST /batch_events ----------------------------------------------------------------


def _item(n: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"e{n}", "channel": f"c{n}", "data": str(n), **extra}


def test_a_batch_of_ten_is_parsed_in_order() -> None:
    triggers = api.parse_batch(APP, _body({"batch": [_item(n) for n in range(10)]}))
    assert [t.channels for t in triggers] == [(f"c{n}",) for n in range(10)]


def test_a_batch_of_eleven_is_400() -> None:
    assert _status(api.parse_batch, APP, _body({"batch": [_item(n) for n in range(11)]})) == 400


def test_a_batch_item_over_10_kb_is_413() -> None:
    items = [_item(0), {"name": "e", "channel": "c", "data": "x" * 10241}]
    assert _status(api.parse_batch, APP, _body({"batch": items})) == 413


@pytest.mark.parametrize(
    "body",
    [
        _body({}),
        _body({"batch": []}),
        _body({"batch": "x"}),
        _body({"batch": [5]}),
        _body({"batch": [{"name": "e", "data": ""}]}),
        _body({"batch": [{"name": "e", "channels": ["a"], "data": ""}]}),
        _body({"batch": [{"name": "pusher:x", "channel": "a", "data": ""}]}),
        _body({"batch": [{"name": "e", "channel": "a", "data": {"x": 1}}]}),
        _body({"batch": [{"name": "e", "channel": "a", "data": "", "socket_id": "x"}]}),
    ],
)
def test_malformed_batches_are_400(body: bytes) -> None:
    assert _status(api.parse_batch, APP, body) == 400


def test_batch_items_keep_their_socket_id_and_info() -> None:
    triggers = api.parse_batch(APP, _body({"batch": [
        _item(0, socket_id="1.2", info="subscription_count"), _item(1)]}))
    assert triggers[0].socket_id == "1.2"
    assert triggers[0].info == frozenset({"subscription_count"})
    assert triggers[1].info == frozenset()


# --- info attributes -------------------------------------------------------------------


def test_info_lists_are_split_on_commas() -> None:
    assert api.parse_info("user_count, subscription_count", api.TRIGGER_INFO_ATTRIBUTES) == \
        frozenset({"user_count", "subscription_count"})
    assert api.parse_info("", api.TRIGGER_INFO_ATTRIBUTES) == frozenset()
    assert api.parse_info(None, api.TRIGGER_INFO_ATTRIBUTES) == frozenset()


def test_an_unknown_info_attribute_is_400() -> None:
    assert _status(api.parse_info, "bogus", api.CHANNEL_INFO_ATTRIBUTES) == 400


@pytest.mark.parametrize(
    ("channel", "info"),
    [
        ("orders", "user_count"),
        ("private-x", "user_count"),
        ("orders", "cache"),
    ],
)
def test_inapplicable_channel_info_is_400(channel: str, info: str) -> None:
    assert _status(api.check_channel_info_request, channel, frozenset({info})) == 400


@pytest.mark.parametrize("channel", ["orders", "private-x", "presence-x", "presence-cache-x"])
def test_subscription_count_applies_to_every_channel_kind(channel: str) -> None:
    api.check_channel_info_request(channel, frozenset({"subscription_count"}))


@pytest.mark.parametrize(
    ("channel", "info"),
    [
        ("orders", "subscription_count"),
        ("presence-x", "user_count"),
        ("cache-x", "cache"),
        ("presence-cache-x", "cache"),
        ("private-cache-x", "subscription_count"),
    ],
)
def test_applicable_channel_info_is_accepted(channel: str, info: str) -> None:
    api.check_channel_info_request(channel, frozenset({info}))


@pytest.mark.parametrize("query", [
    "", "a=1&b=&c", "info=user_count%2Csubscription_count&x=a+b", "k%20e=v%2Bw", "&&a=1",
    "a==b", "filter_by_prefix=presence-&info=user_count", "auth_key=k&auth_signature=%7Ezz",
    "v=%E2%9C%93",
])
def test_query_strings_decode_as_the_standard_form_decoder_does(query: str) -> None:
    from urllib.parse import parse_qsl

    from pusherd.core.api import parse_query

    assert parse_query(query) == parse_qsl(query, keep_blank_values=True)
