"""HTTP API request bodies: parse and validate triggers and queries (spec §12).

Pure: bytes and query pairs in, typed requests out, or an :class:`HttpApiError` with the
status of spec §12.2 (400 malformed, 413 data too large).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson

from pusherd.core.app import App
from pusherd.core.channels import channel_name_problem, classify_channel, event_name_problem
from pusherd.core.ids import is_valid_socket_id
from pusherd.errors import HttpApiError

TRIGGER_INFO_ATTRIBUTES = frozenset({"user_count", "subscription_count"})
CHANNEL_INFO_ATTRIBUTES = frozenset({"user_count", "subscription_count", "cache"})


class Trigger(NamedTuple):
    """One event to publish to one or more channels (``POST /events`` or a batch item).

    A named tuple rather than a frozen dataclass: one is built per HTTP trigger, and a
    tuple is built in a fraction of a frozen dataclass's time (the API hot path).
    """

    name: str
    data: str
    channels: tuple[str, ...]
    socket_id: str | None
    info: frozenset[str]


_NO_INFO: frozenset[str] = frozenset()


def parse_query(query: str) -> list[tuple[str, str]]:
    """Percent-decode a query string into pairs, blank values kept (as ``parse_qsl`` with
    ``keep_blank_values``), without its cost on the common all-plain parameters."""
    pairs = []
    if "%" not in query and "+" not in query:  # what every SDK sends: nothing to decode
        for part in query.split("&"):
            if part:
                key, _, value = part.partition("=")
                pairs.append((key, value))
        return pairs
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote(key.replace("+", " "))
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "))
        pairs.append((key, value))
    return pairs


def parse_info(value: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """``info=a,b``: the requested attributes; an unknown one is a 400."""
    if not value:
        return frozenset()
    attributes = frozenset(a.strip() for a in value.split(",") if a.strip())
    unknown = attributes - allowed
    if unknown:
        raise HttpApiError(400, f"Unknown info attribute: {sorted(unknown)[0]}")
    return attributes


def _load_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise HttpApiError(400, "Request body must be a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpApiError(400, "Request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise HttpApiError(400, "Request body must be a JSON object")
    return parsed


def _parse_trigger(app: App, item: dict[str, Any], *, batch: bool) -> Trigger:
    name = item.get("name")
    problem = event_name_problem(name, app.max_event_name_length)
    if problem is not None:
        raise HttpApiError(400, f"Invalid event name: {problem}")
    assert isinstance(name, str)
    data = item.get("data")
    if not isinstance(data, str):
        raise HttpApiError(400, "data must be a string (JSON-encode objects before sending)")
    # Bytes, not characters, count; an ASCII string's length is its size (no copy).
    if (len(data) if data.isascii() else len(data.encode())) > app.max_event_data_size:
        raise HttpApiError(413, f"Event data is larger than {app.max_event_data_size} bytes")

    channels: list[Any]
    if "channels" in item and not batch:
        if not isinstance(item["channels"], list):
            raise HttpApiError(400, "channels must be an array of channel names")
        channels = item["channels"]
    elif "channel" in item:
        channels = [item["channel"]]
    else:
        raise HttpApiError(400, "Missing channel" if batch else "Missing channels or channel")
    if not channels:
        raise HttpApiError(400, "channels must not be empty")
    if len(channels) > app.max_channels_per_event:
        raise HttpApiError(400, f"At most {app.max_channels_per_event} channels per event")
    max_length = max(app.max_channel_name_length, 200)
    for channel in channels:
        problem = channel_name_problem(channel, max_length)
        if problem is not None:
            raise HttpApiError(400, f"Invalid channel {str(channel)[:210]!r}: {problem}")
    if len(channels) > 1:
        # Several encrypted channels are accepted (the data is relayed as received, never
        # decrypted); a mix is refused: the one `data` cannot be both ciphertext and not.
        encrypted = sum(1 for c in channels if classify_channel(c).encrypted)
        if 0 < encrypted < len(channels):
            raise HttpApiError(
                400, "An event cannot go to encrypted and unencrypted channels at once: "
                     "trigger the private-encrypted- channels separately")

    socket_id = item.get("socket_id")
    if socket_id is not None and not is_valid_socket_id(socket_id):
        raise HttpApiError(400, "socket_id must match ^\\d+\\.\\d+$")
    info_raw = item.get("info")
    if info_raw is None:
        info = _NO_INFO
    elif isinstance(info_raw, str):
        info = parse_info(info_raw, TRIGGER_INFO_ATTRIBUTES)
    else:
        raise HttpApiError(400, "info must be a comma-separated string")
    unique = (channels[0],) if len(channels) == 1 else tuple(dict.fromkeys(channels))
    return Trigger(name, data, unique, socket_id, info)


def parse_trigger(app: App, body: bytes) -> Trigger:
    """``POST /apps/{id}/events`` body (§12.1)."""
    return _parse_trigger(app, _load_object(body), batch=False)


def parse_batch(app: App, body: bytes) -> list[Trigger]:
    """``POST /apps/{id}/batch_events`` body: ``{"batch": [...]}``, at most max_batch_size."""
    batch = _load_object(body).get("batch")
    if not isinstance(batch, list) or not batch:
        raise HttpApiError(400, "batch must be a non-empty array of events")
    if len(batch) > app.max_batch_size:
        raise HttpApiError(400, f"At most {app.max_batch_size} events per batch")
    triggers = []
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise HttpApiError(400, f"batch[{index}] must be an object")
        try:
            triggers.append(_parse_trigger(app, item, batch=True))
        except HttpApiError as exc:
            raise HttpApiError(exc.status, f"batch[{index}]: {exc.message}") from None
    return triggers


def check_channel_info_request(channel: str, info: frozenset[str]) -> None:
    """Which ``info`` attributes apply to `channel` (§12.1); inapplicable ones are 400.

    ``subscription_count`` (sockets) applies to every channel, presence included;
    ``user_count`` (distinct users) to presence channels; ``cache`` to cache channels.
    """
    kind = classify_channel(channel)
    if "user_count" in info and not kind.presence:
        raise HttpApiError(400, "user_count is only available for presence channels")
    if "cache" in info and not kind.cache:
        raise HttpApiError(400, "cache is only available for cache channels")
