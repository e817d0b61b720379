"""The HTTP fallback transports' wire format, Sans-I/O (spec §15.2).

pusher-js's ``xhr_streaming`` and ``xhr_polling`` transports carry the same Pusher frames
as a WebSocket, inside HTTP requests under ``{httpPath}/app/{key}/{server}/{session}/``:

* a *receive* request (``…/xhr_streaming``: a response kept open; ``…/xhr``: a poll held
  until there is something to say) reads lines, each ``\\n``-terminated, whose first
  character is the kind: ``o`` (the session is open, optionally ``o{"hostname": …}``),
  ``a[…]`` (messages: a JSON array of strings, each a whole Pusher frame), ``h``
  (heartbeat) and ``c[code,"reason"]`` (the session is closed);
* a *send* request (``…/xhr_send``) posts a JSON array of strings, each a Pusher frame the
  client sends; ``[]`` is the client's ping.

This module turns those into values and bytes: route parsing, line encoding, send-body
parsing. Lines are pure ASCII (non-ASCII escaped as ``\\uXXXX``) so that the bytes the
server counts equal the characters pusher-js counts for its 256 KB stream limit.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass

from pusherd.errors import SendBodyError

HEARTBEAT_LINE = b"h\n"
OPEN_LINE = b"o\n"
# pusher-js (http_request.ts) reopens a stream once it has read more than this many
# characters of one response, all of them as complete lines; anything written after that
# point on the old response is lost.
STREAM_REOPEN_CHARS = 256 * 1024

# A session path segment: pusher-js sends a number 0-999 and 8 characters of [0-9a-v].
_SEGMENT = r"[0-9A-Za-z_-]{1,64}"
_ROUTE = re.compile(
    rf"\A/app/(?P<key>[^/]{{1,200}})/(?P<session>{_SEGMENT}/{_SEGMENT})"
    r"/(?P<kind>xhr_streaming|xhr_send|xhr|xhr_polling)\Z"
)


class RequestKind(enum.Enum):
    """What a fallback request does."""

    STREAM = "xhr_streaming"  # receive: a response held open, frames written as they come
    POLL = "xhr"  # receive: held until there are frames (or a heartbeat), then ended
    SEND = "xhr_send"  # the client's messages


@dataclass(frozen=True, slots=True)
class FallbackRoute:
    """A parsed fallback URL path (relative to ``httpPath``)."""

    key: str  # the app key, as in /app/{key}
    session: str  # "{server}/{session}" as the client chose it
    kind: RequestKind


def parse_route(path: str) -> FallbackRoute | None:
    """``/app/{key}/{server}/{session}/{xhr_streaming|xhr|xhr_send}`` -> a route, or None
    for any other path. ``xhr_polling`` is accepted as another name for ``xhr``."""
    match = _ROUTE.match(path)
    if match is None:
        return None
    kind = match.group("kind")
    return FallbackRoute(
        match.group("key"), match.group("session"),
        RequestKind.POLL if kind == "xhr_polling" else RequestKind(kind),
    )


def encode_messages_line(payload: bytes) -> bytes:
    """One Pusher frame (its JSON `payload`, UTF-8) as an ``a["…"]`` line, pure ASCII."""
    return b"a[" + json.dumps(payload.decode("utf-8")).encode("ascii") + b"]\n"


def encode_open_line(hostname: str = "") -> bytes:
    """The ``o`` line that opens a session; with `hostname`, pusher-js sends the
    session's later requests to that host (same scheme and port)."""
    if not hostname:
        return OPEN_LINE
    return b"o" + json.dumps({"hostname": hostname}).encode("ascii") + b"\n"


def encode_close_line(code: int, reason: str) -> bytes:
    """``c[code,"reason"]``: pusher-js closes the socket with `code` (spec §4)."""
    return b"c" + json.dumps([code, reason]).encode("ascii") + b"\n"


def parse_send_body(body: bytes) -> list[bytes]:
    """An ``xhr_send`` body -> the client's messages, each a UTF-8 Pusher frame.

    Raises :class:`SendBodyError` unless the body is a JSON array of strings.
    """
    if not body.strip():
        raise SendBodyError("Payload expected: a JSON array of strings")
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SendBodyError("Broken JSON encoding: the body must be a JSON array of strings") \
            from None
    if not isinstance(decoded, list) or not all(isinstance(m, str) for m in decoded):
        raise SendBodyError("The body must be a JSON array of strings (one Pusher frame each)")
    try:
        return [message.encode("utf-8") for message in decoded]
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
        raise SendBodyError("A message is not valid UTF-8") from None
