"""What a protocol-correct answer to untrusted input looks like (spec §2, §3.2, §4, §12.2).

Shared by the in-process property tests and the live fuzzer: each check returns a list
of problems (empty when the answer is correct), so a fuzz run can report every wrong
answer with the input that caused it instead of stopping at the first.
"""

from __future__ import annotations

import json
from typing import Any

# §4.2: the error and close codes of the protocol. A pusher:error may also carry `null`
# (§3.1: pusherd answers malformed frames with code null, never 4200).
PUSHER_ERROR_CODES = frozenset({
    4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008, 4009,
    4100, 4200, 4201, 4202, 4301, 4302,
})
# RFC 6455 §7.4.1 codes a server may close with for a client's bad input or its own
# shutdown: normal, going away, protocol error, unsupported data, invalid payload (bad
# UTF-8), policy violation, message too big. 1011 (internal error) is a crash, never an
# answer.
WEBSOCKET_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009})
CLOSE_CODES = WEBSOCKET_CLOSE_CODES | PUSHER_ERROR_CODES
# The `status` of a pusher:subscription_error (errors.SubscriptionRefused).
SUBSCRIPTION_ERROR_STATUSES = frozenset({400, 401, 4009, 4100, 4301})
# §12.2 and the transport's own refusals: 405 other methods, 426 a WebSocket version
# other than 13, 503 draining or out of descriptors.
HTTP_STATUSES = frozenset({200, 400, 401, 403, 404, 405, 413, 426, 429, 503})

# Events a server sends on a WebSocket (§3.2), with whether they carry a channel.
_CONNECTION_EVENTS = frozenset({
    "pusher:connection_established", "pusher:error", "pusher:pong", "pusher:ping",
    "pusher:signin_success", "pusher_internal:watchlist_events",
})
_CHANNEL_EVENTS = frozenset({
    "pusher_internal:subscription_succeeded", "pusher:subscription_error",
    "pusher_internal:member_added", "pusher_internal:member_removed", "pusher:cache_miss",
    "pusher_internal:subscription_count",
})


def check_pusher_error(data: Any) -> list[str]:
    """`data` of a ``pusher:error``: an object with a §4 code (or null) and a message."""
    if not isinstance(data, dict):
        return [f"pusher:error data is not an object: {data!r:.200}"]
    problems = []
    code = data.get("code")
    if code is not None and code not in PUSHER_ERROR_CODES:
        problems.append(f"pusher:error code {code!r} is not a protocol code")
    if not isinstance(data.get("message"), str) or not data["message"]:
        problems.append(f"pusher:error without a message: {data!r:.200}")
    return problems


def check_server_frame(payload: bytes) -> list[str]:
    """One text frame the server sent: JSON object, known shape, codes from the table."""
    try:
        frame = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return [f"server frame is not JSON: {payload[:200]!r}"]
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        return [f"server frame is not an event object: {payload[:200]!r}"]
    event = frame["event"]
    if event == "pusher:error":
        return check_pusher_error(frame.get("data"))
    if event in _CONNECTION_EVENTS:
        return []
    channel = frame.get("channel")
    if event == "pusher:subscription_error":
        # Names the channel the client asked for, even an empty name.
        data = frame.get("data")
        if not isinstance(data, dict) or data.get("status") not in SUBSCRIPTION_ERROR_STATUSES:
            return [f"subscription_error with a status not in the table: {payload[:200]!r}"]
        return [] if isinstance(channel, str) else [f"{event} without a channel"]
    if not isinstance(channel, str) or not channel:
        return [f"{event} without a channel: {payload[:200]!r}"]
    if event in _CHANNEL_EVENTS or event.startswith("client-"):
        return []
    if event.startswith(("pusher:", "pusher_internal:")):
        return [f"unknown internal event {event!r}"]
    # A channel event from the HTTP API: data is the string that was triggered.
    if not isinstance(frame.get("data"), str):
        return [f"channel event data is not a string: {payload[:200]!r}"]
    return []


def check_close_code(code: int | None) -> list[str]:
    """A close frame's code (None: the frame had no code, which RFC 6455 allows)."""
    if code is None or code in CLOSE_CODES:
        return []
    return [f"close code {code} is not in the protocol's table"]


def check_http_answer(status: int, content_type: str, body: bytes,
                      head: bool = False) -> list[str]:
    """An HTTP API answer: a §12.2 status; every body is JSON, an error's names itself."""
    if status not in HTTP_STATUSES:
        return [f"HTTP status {status} is not one the API may return"]
    if head:
        return []
    if not content_type.startswith("application/json"):
        return [f"HTTP {status} with Content-Type {content_type!r}"]
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [f"HTTP {status} body is not JSON: {body[:200]!r}"]
    if not isinstance(value, dict):
        return [f"HTTP {status} body is not an object: {body[:200]!r}"]
    if status != 200 and not (status == 503 and "status" in value) and (
        not isinstance(value.get("error"), str) or not value["error"]
    ):
        return [f"HTTP {status} body names no error: {body[:200]!r}"]
    return []


# §15: the statuses of the HTTP fallback transports' answers: 200 a receive request,
# 204 a send or a preflight, 400 a body that is not a JSON array of strings, 404 an unknown
# URL or session, 405 a method other than POST/OPTIONS, 413 too large, 503 at the limit.
FALLBACK_STATUSES = frozenset({200, 204, 400, 404, 405, 413, 503})


def check_fallback_answer(status: int, headers: dict[str, str], body: bytes,
                          head: bool = False) -> list[str]:
    """A fallback answer (§15.2, §15.4): a status from the table, text/JavaScript with CORS
    headers; 204 empty; a refusal's plain-text body names its problem."""
    if status not in FALLBACK_STATUSES:
        return [f"fallback status {status} is not one the transports may return"]
    problems = []
    if not headers.get("content-type", "").startswith("application/javascript"):
        problems.append(f"fallback {status} with Content-Type {headers.get('content-type')!r}")
    if not headers.get("access-control-allow-origin"):
        problems.append(f"fallback {status} without Access-Control-Allow-Origin")
    if head:
        return problems
    if status == 204 and body:
        problems.append(f"fallback 204 with a body: {body[:200]!r}")
    if status not in (200, 204):
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return [*problems, f"fallback {status} body is not UTF-8: {body[:200]!r}"]
        if not text.endswith("\n") or not text.strip() or text.lstrip().startswith("{"):
            problems.append(f"fallback {status} body names no problem: {body[:200]!r}")
    return problems


def parse_receive_body(body: bytes) -> tuple[list[str], list[bytes], list[int | None]]:
    """A receive answer's lines (§15.2) -> (problems, the Pusher frames of its ``a``
    lines, the codes of its ``c`` lines). Every line ends in ``\\n`` and is ``o``,
    ``o{…}``, ``h``, ``a[…]`` (a JSON array of strings, each a server frame in pure ASCII)
    or ``c[code, "reason"]``."""
    problems: list[str] = []
    frames: list[bytes] = []
    closes: list[int | None] = []
    if body and not body.endswith(b"\n"):
        problems.append(f"receive body does not end in a newline: {body[-80:]!r}")
    for line in body.split(b"\n")[:-1] if body.endswith(b"\n") else body.split(b"\n"):
        if line == b"h" or line == b"o":
            continue
        if not line.isascii():
            problems.append(f"receive line is not ASCII: {line[:200]!r}")
            continue
        try:
            value = json.loads(line[1:]) if line[:1] in (b"a", b"c", b"o") else None
        except ValueError:
            value = None
        if line.startswith(b"o") and isinstance(value, dict):
            continue
        if line.startswith(b"a") and isinstance(value, list) \
                and value and all(isinstance(v, str) for v in value):
            frames += [v.encode() for v in value]
            continue
        if line.startswith(b"c") and isinstance(value, list) and len(value) == 2 \
                and isinstance(value[1], str) and isinstance(value[0], int):
            closes.append(value[0])
            problems += check_close_code(value[0])
            continue
        problems.append(f"receive line is not o, h, a[…] or c[…]: {line[:200]!r}")
    for frame in frames:
        problems += check_server_frame(frame)
    return problems, frames, closes
