"""Properties of the newest parsers of untrusted input: the HTTP fallback transports' paths
and ``xhr_send`` bodies (spec §15), and the webhook configuration (``[[apps.webhooks]]``,
``[webhooks]``). Every input is either accepted as what it describes or refused with the
project's own error; nothing else escapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pusherd.config import load_config
from pusherd.core.xhr import RequestKind, parse_route, parse_send_body
from pusherd.errors import ConfigError, SendBodyError
from tests.fuzz.profiles import FUZZ_SETTINGS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12,
)
segments = st.text(alphabet="abcz09_-.%/~:@!$&'()*+,;=", min_size=0, max_size=12)
kinds = st.sampled_from(["xhr_streaming", "xhr", "xhr_send", "xhr_polling", "xhr_stream", ""])


# --- fallback paths and bodies -------------------------------------------------------------


@FUZZ_SETTINGS
@given(st.text(max_size=120))
@example("/app/key/123/abcdefgh/xhr_send")
@example("/app/key/123/abcdefgh/xhr_polling")
@example("/app//123/abcdefgh/xhr")
def test_any_path_is_a_fallback_route_or_none(path: str) -> None:
    route = parse_route(path)
    if route is not None:
        assert isinstance(route.kind, RequestKind)
        assert route.key and route.session and "/" in route.session
        assert path.startswith(f"/app/{route.key}/{route.session}/")


@FUZZ_SETTINGS
@given(segments, segments, segments, kinds)
def test_shaped_paths_parse_to_the_parts_they_were_built_from(
        key: str, server: str, session: str, kind: str) -> None:
    route = parse_route(f"/app/{key}/{server}/{session}/{kind}")
    if route is not None:  # when it parses, it parses to exactly what was built
        assert (route.key, route.session) == (key, f"{server}/{session}")
        expected = "xhr" if kind == "xhr_polling" else kind
        assert route.kind.value == expected


@FUZZ_SETTINGS
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
@example(b'["\\ud800"]')  # a lone surrogate escaped in JSON
@example(b"[")
@example(b" ")
def test_any_send_body_is_a_list_of_frames_or_a_send_body_error(body: bytes) -> None:
    try:
        frames = parse_send_body(body)
    except SendBodyError as exc:
        assert str(exc)  # every refusal says why (it is the 400's body)
        return
    assert isinstance(frames, list) and all(isinstance(f, bytes) for f in frames)


@FUZZ_SETTINGS
@given(st.lists(st.text(max_size=40), max_size=8))
def test_an_array_of_strings_is_sent_frame_for_frame(messages: list[str]) -> None:
    body = json.dumps(messages).encode()
    try:
        frames = parse_send_body(body)
    except SendBodyError:  # only a lone surrogate may be refused
        assert any(0xD800 <= ord(c) <= 0xDFFF for m in messages for c in m)
        return
    assert frames == [m.encode("utf-8") for m in messages]


# --- webhook configuration -----------------------------------------------------------------


def _toml_value(value: Any) -> str:
    """A TOML literal for a JSON-like scalar or list of scalars (JSON's string escapes,
    booleans and integers are valid TOML)."""
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=30) | \
    st.floats(allow_nan=False, allow_infinity=False, width=32)
values = scalars | st.lists(st.text(max_size=12) | st.integers(-5, 5), max_size=4)
webhook_keys = st.sampled_from(["url", "event_types", "filter_channel_prefix",
                                "filter_channel_suffix", "unknown_key"])
sender_keys = st.sampled_from(["journal", "grace", "batch_window", "batch_max", "retry_window",
                               "retry_base", "retry_max", "timeout", "concurrency",
                               "max_pending", "max_failed", "no_such_setting"])


def _table(entries: dict[str, Any]) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in entries.items()
                   if value is not None)


@FUZZ_SETTINGS
@given(st.lists(st.dictionaries(webhook_keys, values, max_size=5), max_size=3),
       st.dictionaries(sender_keys, values, max_size=4))
@example([{"url": "http://127.0.0.1:9/hook", "event_types": ["member_added"]}], {})
@example([{"url": "ftp://x"}], {"grace": -1})
def test_any_webhook_configuration_loads_or_is_a_config_error(
        tmp_path_factory: pytest.TempPathFactory, hooks: list[dict[str, Any]],
        sender: dict[str, Any]) -> None:
    directory = tmp_path_factory.mktemp("webhook-config")
    sender = {k: (str(directory / "journal") if k == "journal" else v)
              for k, v in sender.items()}
    text = '[[apps]]\nid = "1001"\nkey = "app-key"\nsecret = "app-secret"\n'
    for hook in hooks:
        text += "[[apps.webhooks]]\n" + _table(hook)
    text += "[webhooks]\n" + _table(sender)
    path = Path(directory) / "pusherd.toml"
    path.write_text(text)
    try:
        config = load_config(path, {})
    except ConfigError as exc:
        assert exc.key and str(exc).startswith("config error: ")
        return
    [app] = config.apps
    assert len(app.webhooks) == len(hooks)
    for webhook, raw in zip(app.webhooks, hooks, strict=True):
        assert webhook.url == raw["url"]
