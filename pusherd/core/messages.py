"""Client frames in, server frames out (spec §2, §3).

Every server frame is returned as UTF-8 JSON bytes, ready to become the payload of one
WebSocket text frame. ``data`` is a JSON *string* wherever hosted Pusher sends one
(string-data) and an object where it sends an object (``pusher:error``, ``pusher:pong``,
``pusher:signin_success``), per the table in spec §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pusherd.errors import MessageFormatError


@dataclass(frozen=True, slots=True)
class Ping:
    """``pusher:ping``: answer ``pusher:pong``."""


@dataclass(frozen=True, slots=True)
class Pong:
    """``pusher:pong``: activity only."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``pusher:subscribe`` (§3.1); `auth` and `channel_data` exactly as received."""

    channel: str
    auth: str | None
    channel_data: str | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``pusher:unsubscribe`` (§3.1)."""

    channel: str


@dataclass(frozen=True, slots=True)
class Signin:
    """``pusher:signin`` (§10.1); `user_data` exactly as received (it is signed)."""

    auth: str
    user_data: str


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A ``client-*`` event (§9); `data` is the decoded JSON value, relayed unchanged."""

    event: str
    channel: str
    data: Any


ClientMessage = Ping | Pong | Subscribe | Unsubscribe | Signin | ClientEvent


def _data_object(frame: dict[str, Any], event: str) -> dict[str, Any]:
    """``data`` as an object: pusher-js sends objects, some clients send JSON strings."""
    data = frame.get("data")
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise MessageFormatError(f"{event}: data is not a JSON object") from None
    if not isinstance(data, dict):
        raise MessageFormatError(f"{event}: data must be an object")
    return data


def _optional_str(data: dict[str, Any], key: str, event: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MessageFormatError(f"{event}: {key} must be a string")


def parse_client_message(payload: bytes | str) -> ClientMessage:
    """Parse one client text frame. Raises :class:`MessageFormatError` on bad input."""
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MessageFormatError("Invalid message format: not JSON") from None
    if not isinstance(frame, dict):
        raise MessageFormatError("Invalid message format: expected a JSON object")
    event = frame.get("event")
    if not isinstance(event, str) or not event:
        raise MessageFormatError("Invalid message format: missing event")

    if event == "pusher:ping":
        return Ping()
    if event == "pusher:pong":
        return Pong()
    if event == "pusher:subscribe":
        data = _data_object(frame, event)
        channel = data.get("channel")
        if not isinstance(channel, str):
            raise MessageFormatError("pusher:subscribe: channel must be a string")
        return Subscribe(
            channel, _optional_str(data, "auth", event), _optional_str(data, "channel_data", event)
        )
    if event == "pusher:unsubscribe":
        data = _data_object(frame, event)
        channel = data.get("channel")
        if not isinstance(channel, str):
            raise MessageFormatError("pusher:unsubscribe: channel must be a string")
        return Unsubscribe(channel)
    if event == "pusher:signin":
        data = _data_object(frame, event)
        auth, user_data = data.get("auth"), data.get("user_data")
        if not isinstance(auth, str) or not isinstance(user_data, str):
            raise MessageFormatError("pusher:signin: auth and user_data must be strings")
        return Signin(auth, user_data)
    if event.startswith("client-"):
        channel = frame.get("channel")
        if not isinstance(channel, str) or not channel:
            raise MessageFormatError(f"{event}: channel must be a non-empty string")
        return ClientEvent(event, channel, frame.get("data"))
    raise MessageFormatError(f"Unsupported event: {event[:64]}")


# --- server -> client -------------------------------------------------------------------

PONG_FRAME = b'{"event":"pusher:pong","data":{}}'
PING_FRAME = b'{"event":"pusher:ping","data":{}}'


def encode_connection_established(socket_id: str, activity_timeout: int) -> bytes:
    """``pusher:connection_established`` with `socket_id` and `activity_timeout`
    (seconds), ``data`` a JSON string (§1.3).
    """
    data = orjson.dumps({"socket_id": socket_id, "activity_timeout": activity_timeout})
    return orjson.dumps({"event": "pusher:connection_established", "data": data.decode()})


def encode_subscription_succeeded(channel: str, presence: dict[str, Any] | None = None) -> bytes:
    """Public/private: ``data`` is the string ``"{}"``; presence: the roster (§3.2)."""
    data = "{}" if presence is None else orjson.dumps({"presence": presence}).decode()
    return orjson.dumps(
        {"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": data}
    )


def encode_member_added(channel: str, user_id: Any, user_info: Any) -> bytes:
    """``pusher_internal:member_added``: the user id as given and its user_info (§8)."""
    data = orjson.dumps({"user_id": user_id, "user_info": user_info}).decode()
    return orjson.dumps({"event": "pusher_internal:member_added", "channel": channel, "data": data})


def encode_member_removed(channel: str, user_id: Any) -> bytes:
    """``pusher_internal:member_removed``: the user id as given (§8)."""
    data = orjson.dumps({"user_id": user_id}).decode()
    return orjson.dumps(
        {"event": "pusher_internal:member_removed", "channel": channel, "data": data}
    )


def encode_channel_event(
    event: str, channel: str, data: Any, user_id: str | None = None
) -> bytes:
    """A channel event. HTTP API ``data`` is a string and is relayed verbatim; client
    event ``data`` is relayed as the JSON value the sender sent (§9)."""
    frame: dict[str, Any] = {"event": event, "channel": channel, "data": data}
    if user_id is not None:
        frame["user_id"] = user_id
    return orjson.dumps(frame)


def encode_cache_miss(channel: str) -> bytes:
    """``pusher:cache_miss`` on a cache channel with nothing cached (§11.1)."""
    return orjson.dumps({"event": "pusher:cache_miss", "channel": channel})


def encode_subscription_count(channel: str, count: int) -> bytes:
    """``pusher_internal:subscription_count`` with `count` sockets (§11.2)."""
    data = orjson.dumps({"subscription_count": count}).decode()
    return orjson.dumps(
        {"event": "pusher_internal:subscription_count", "channel": channel, "data": data}
    )


def encode_signin_success(user_data: str) -> bytes:
    """``pusher:signin_success`` echoing the signed `user_data` string (§10.1)."""
    return orjson.dumps({"event": "pusher:signin_success", "data": {"user_data": user_data}})


def encode_watchlist_events(events: list[dict[str, Any]]) -> bytes:
    """``pusher_internal:watchlist_events`` with `events`, each
    ``{"name": "online"|"offline", "user_ids": [...]}`` (§10.3).
    """
    return orjson.dumps({"event": "pusher_internal:watchlist_events", "data": {"events": events}})


def encode_error(code: int | None, message: str) -> bytes:
    """``pusher:error`` with `code` (``None`` sends ``null``) and `message` (§3.2, §4)."""
    return orjson.dumps({"event": "pusher:error", "data": {"code": code, "message": message}})
