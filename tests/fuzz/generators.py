"""Seeded generators of untrusted input for the live fuzzer: client frames, malformed
WebSocket framing, and HTTP API requests.

Each generator draws from one :class:`random.Random`, so a seed reproduces its stream of
cases exactly. Cases carry what the fuzzer may *expect* where the input's meaning is
certain by construction (a correctly signed subscribe must succeed, invalid UTF-8 must
close with 1007, a correctly signed trigger must answer 200); everything else is checked
only for protocol-correctness by :mod:`tests.fuzz.oracle`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.fuzz import wire

APP_ID, APP_KEY, APP_SECRET = "1001", "fuzz-key", "fuzz-secret"
DISABLED_APP_ID, DISABLED_APP_KEY, DISABLED_APP_SECRET = "1002", "disabled-key", "disabled-secret"
MAX_MESSAGE_SIZE = 65_536
MAX_REQUEST_SIZE = 262_144

# The server the fuzzer starts (and the CI test): client events and user authentication
# on, subscription counts on, a disabled app for 403/4003.
SERVER_TOML = f"""
[server]
host = "127.0.0.1"
port = 0
max_message_size = {MAX_MESSAGE_SIZE}
max_request_size = {MAX_REQUEST_SIZE}
shutdown_timeout = 2
# The stop after a run closes what is left (fallback sessions the fuzzer left to expire) at
# once: no load balancer to give notice to, no clients to spread out.
drain_grace = 0
drain_seconds = 0
# A held fallback poll is answered "h" after this long at most: the fuzzer never waits long.
fallback_heartbeat_interval = 2

[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"
enable_client_events = true
enable_user_authentication = true
enable_subscription_count = true

[[apps]]
id = "{DISABLED_APP_ID}"
key = "{DISABLED_APP_KEY}"
secret = "{DISABLED_APP_SECRET}"
enabled = false
"""

PREFIXES = ["", "private-", "presence-", "private-encrypted-", "private-encrypted-cache-",
            "private-cache-", "presence-cache-", "cache-", "#server-to-user-"]
# A small pool of names, so that the fuzz sockets share channels: subscriptions collide,
# client events and member events are delivered between them.
NAMES = ["a", "b", "room.1", "orders", "App.Models.User.1", "x=y@z,w;v", "fuzz-shared"]
USER_IDS: list[Any] = ["alice", "bob", "7", 7, 7.5, "ü", "", None, True, ["x"], {"a": 1},
                       "a" * 128, "a" * 129, "has space", "#", "x/y"]
EVENTS = [
    "pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe", "pusher:signin",
    "pusher:connection_established", "pusher:error", "pusher:signin_success",
    "pusher:cache_miss", "pusher:subscription_error", "pusher_internal:subscription_succeeded",
    "pusher_internal:member_added", "pusher_internal:member_removed",
    "pusher_internal:subscription_count", "pusher_internal:watchlist_events", "pusher:",
    "client-", "client-typing", "client-ü", "", "PUSHER:PING", "pusher:ping ", "x",
]
WEIRD_TEXT = ["", " ", "\x00", "\u2028", "\ud7ff", "\U0001f600", "é", "\\", '"', "\n",
              "null", "{}", "[]", "%00", "\u202e", "a" * 300, "\ufeff"]


def sign(text: str, secret: str = APP_SECRET) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: scalars of every type and edge, nested containers."""
    pick = rng.random()
    if depth > 3 or pick < 0.55:
        return rng.choice([
            None, True, False, 0, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, -0.0,
            1e308, 5e-324, rng.randrange(-1000, 1000), rng.choice(WEIRD_TEXT),
            "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 12))),
        ])
    if pick < 0.75:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(["channel", "auth", "data", "event", "user_id", "", "ü", "x"]):
            json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def channel_name(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.75:
        return rng.choice(PREFIXES) + rng.choice(NAMES)
    if pick < 0.85:
        return rng.choice(PREFIXES) + "a" * rng.choice([140, 149, 150, 155, 164, 165, 200, 201])
    return rng.choice(PREFIXES) + rng.choice(WEIRD_TEXT + ["a b", "a/b", "a#b", "a:b", "#"])


# --- client frames ----------------------------------------------------------------------


@dataclass
class FrameCase:
    """One generated client message. `payload` goes out as one text frame."""

    payload: bytes
    kind: str
    expect_event: tuple[str, str] | None = None  # (event, channel) that must be answered
    expect_error: bool = False  # a pusher:error must be among the answers
    expect_close: int | None = None  # the server must close with this code
    binary: bool = False


def _dumps(rng: random.Random, value: Any) -> bytes:
    style = rng.random()
    try:
        if style < 0.6:
            return json.dumps(value, separators=(",", ":")).encode()
        if style < 0.8:
            return json.dumps(value, ensure_ascii=False, indent=rng.choice([None, 1])).encode()
        return (" \t\n"[rng.randrange(3)] + json.dumps(value) + "\r\n ").encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


def _member_json(rng: random.Random) -> str:
    member: dict[str, Any] = {"user_id": rng.choice(USER_IDS)}
    if rng.random() < 0.6:
        member["user_info"] = rng.choice([{"name": "Ada"}, json_value(rng), "x" * 1100])
    if rng.random() < 0.05:
        del member["user_id"]
    return json.dumps(member, separators=rng.choice([(",", ":"), (", ", ": ")]))


def _auth(rng: random.Random, socket_id: str, channel: str, channel_data: str | None) -> Any:
    signed = f"{socket_id}:{channel}" + ("" if channel_data is None else f":{channel_data}")
    pick = rng.random()
    if pick < 0.65:
        return f"{APP_KEY}:{sign(signed)}"
    return rng.choice([
        f"{APP_KEY}:{sign(signed, 'wrong')}", f"other:{sign(signed)}", sign(signed), "",
        f"{APP_KEY}:", f"{APP_KEY}:{sign(signed).upper()}", json_value(rng),
        f"{APP_KEY}:{sign(signed)}\x00",
    ])


def _subscribe(rng: random.Random, socket_id: str) -> FrameCase:
    channel = channel_name(rng)
    data: dict[str, Any] = {"channel": channel}
    channel_data = _member_json(rng) if channel.startswith("presence-") and \
        rng.random() < 0.9 else None
    if channel_data is not None:
        data["channel_data"] = channel_data
    needs_auth = channel.startswith(("private-", "presence-"))
    data["auth"] = _auth(rng, socket_id, channel, channel_data) if needs_auth or \
        rng.random() < 0.3 else ""
    expect = None
    signed = f"{socket_id}:{channel}" + ("" if channel_data is None else f":{channel_data}")
    well_signed = data["auth"] == f"{APP_KEY}:{sign(signed)}"
    # Certain success: a valid public or private name, a string auth, a good signature
    # where one is needed (presence depends on the member too: left unchecked here).
    if wire_valid_channel(channel) and not channel.startswith(("#", "presence-")) \
            and isinstance(data["auth"], str) and (well_signed or not needs_auth):
        expect = ("pusher_internal:subscription_succeeded", channel)
    if rng.random() < 0.1:  # a field of the wrong type
        data[rng.choice(["channel", "auth", "channel_data"])] = json_value(rng)
        expect = None
    body: dict[str, Any] = {"event": "pusher:subscribe",
                            "data": data if rng.random() < 0.8 else json.dumps(data)}
    return FrameCase(_dumps(rng, body), "subscribe", expect_event=expect)


def wire_valid_channel(name: str) -> bool:
    """The channel-name rule of spec §6.2 (164 characters, pusherd's default)."""
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=@,.;")
    body = name[1:] if name.startswith("#") else name
    return 0 < len(name) <= 164 and bool(body) and set(body) <= allowed


def _signin(rng: random.Random, socket_id: str) -> FrameCase:
    user: dict[str, Any] = {"id": rng.choice(USER_IDS)}
    if rng.random() < 0.5:
        user["user_info"] = json_value(rng)
    if rng.random() < 0.3:
        user["watchlist"] = rng.choice([["alice", "bob"], [1, 2], "x", ["a"] * 120])
    user_data = json.dumps(user) if rng.random() < 0.9 else rng.choice(WEIRD_TEXT)
    token = f"{APP_KEY}:{sign(f'{socket_id}::user::{user_data}')}" if rng.random() < 0.7 \
        else _auth(rng, socket_id, "x", None)
    data: Any = {"auth": token, "user_data": user_data}
    if rng.random() < 0.1:
        data = json_value(rng)
    return FrameCase(_dumps(rng, {"event": "pusher:signin", "data": data}), "signin")


def _client_event(rng: random.Random) -> FrameCase:
    frame: dict[str, Any] = {
        "event": rng.choice(["client-typing", "client-" + rng.choice(WEIRD_TEXT),
                             "client-" + "e" * rng.choice([10, 193, 194, 250])]),
        "channel": channel_name(rng),
        "data": rng.choice([{"name": "Ada"}, json_value(rng), "x" * rng.choice([10, 10_300])]),
    }
    if rng.random() < 0.1:
        del frame[rng.choice(["channel", "data"])]
    return FrameCase(_dumps(rng, frame), "client_event")


def _unknown_event(rng: random.Random) -> FrameCase:
    event = rng.choice([e for e in EVENTS if not e.startswith("client-") and e not in (
        "pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe",
        "pusher:signin")])
    frame = {"event": event, "data": json_value(rng), "channel": channel_name(rng)}
    return FrameCase(_dumps(rng, frame), "unknown_event", expect_error=True)


def _mutate(rng: random.Random, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        elif op == 2:
            del data[at:at + rng.randrange(1, 8)]
        elif op == 3:
            data[at:at] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u", b"\\ud800",
                                      b"null", b"NaN", b"1e999", b"\x00", b"\xc3", b"\xed\xa0\x80"])
        elif op == 4:
            del data[at:]
        else:
            data += data[: rng.randrange(0, len(data) + 1)]
    return bytes(data)


def client_frame(rng: random.Random, socket_id: str) -> FrameCase:
    """One client message, as a pusher-protocol client would send it or as an attacker
    would bend it. The expectations set are the ones certain by construction."""
    pick = rng.random()
    if pick < 0.30:
        case = _subscribe(rng, socket_id)
    elif pick < 0.38:
        channel = channel_name(rng)
        data: Any = {"channel": channel} if rng.random() < 0.9 else json_value(rng)
        case = FrameCase(_dumps(rng, {"event": "pusher:unsubscribe", "data": data}),
                         "unsubscribe")
    elif pick < 0.46:
        case = _signin(rng, socket_id)
    elif pick < 0.60:
        case = _client_event(rng)
    elif pick < 0.64:
        event = rng.choice(["pusher:ping", "pusher:pong"])
        frame = {"event": event} if rng.random() < 0.5 else {"event": event,
                                                              "data": json_value(rng)}
        case = FrameCase(_dumps(rng, frame), event,
                         expect_event=("pusher:pong", "") if event == "pusher:ping" else None)
    elif pick < 0.70:
        case = _unknown_event(rng)
    elif pick < 0.78:
        value = json_value(rng) if rng.random() < 0.5 else {
            rng.choice(["event", "data", "channel"]): json_value(rng) for _ in range(3)}
        case = FrameCase(_dumps(rng, value), "json_value")
    elif pick < 0.80:
        size = rng.choice([MAX_MESSAGE_SIZE - 40, MAX_MESSAGE_SIZE + 1, 200_000])
        frame = {"event": "client-big", "channel": "private-a", "data": "x" * size}
        case = FrameCase(_dumps(rng, frame), "large")
    elif pick < 0.81:
        case = FrameCase(_dumps(rng, {"event": "pusher:ping"}), "binary", binary=True,
                         expect_error=True)
    else:
        base = client_frame(rng, socket_id)
        case = FrameCase(_mutate(rng, base.payload), "mutated:" + base.kind)
    return _settle(case)


def _settle(case: FrameCase) -> FrameCase:
    """Expectations every payload implies, whatever generated it (RFC 6455, spec §3.1)."""
    if case.binary:
        return case
    if len(case.payload) > MAX_MESSAGE_SIZE:
        return FrameCase(case.payload, case.kind, expect_close=1009)
    try:
        text = case.payload.decode()
    except UnicodeDecodeError:
        return FrameCase(case.payload, case.kind, expect_close=1007)
    try:
        value = json.loads(text)
    except ValueError:
        return FrameCase(case.payload, case.kind, expect_error=True)
    if not isinstance(value, dict) or not isinstance(value.get("event"), str) \
            or not value["event"]:
        return FrameCase(case.payload, case.kind, expect_error=True)
    if case.kind.startswith("mutated:"):
        # A mutation may still be meaningful: keep only what the raw shape implies.
        return FrameCase(case.payload, case.kind)
    return case


# --- malformed WebSocket framing (RFC 6455 §5) -------------------------------------------

PING_TEXT = b'{"event":"pusher:ping","data":{}}'


@dataclass
class FramingCase:
    """Bytes written on a fresh connection after the handshake, then a half-close.

    `expect_close`: the close codes the server may answer with (empty: it may also stay
    open and answer the trailing ping). `echo`: a ping payload the server must pong.
    """

    kind: str
    chunks: list[bytes]
    expect_close: frozenset[int] = frozenset()
    must_close: bool = False
    echo: bytes | None = None


def framing_case(rng: random.Random) -> FramingCase:
    enc = wire.encode_frame
    ping = wire.text(PING_TEXT)
    pick = rng.randrange(17)
    payload = PING_TEXT
    if pick == 0:
        op = rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
        return FramingCase(f"opcode {op}", [enc(op, b"x")], frozenset({1002}), True)
    if pick == 1:
        return FramingCase("unmasked", [enc(wire.OP_TEXT, payload, mask=False)],
                           frozenset({1002}), True)
    if pick == 2:
        return FramingCase("rsv bits", [enc(wire.OP_TEXT, payload, rsv=rng.randrange(1, 8))],
                           frozenset({1002}), True)
    if pick == 3:
        declared = rng.choice([len(payload) + 1, 1000, 65_535])
        return FramingCase("declared longer than sent", [enc(wire.OP_TEXT, payload,
                                                            length=declared)])
    if pick == 4:
        declared = rng.choice([MAX_MESSAGE_SIZE + 1, 2**32, 2**63, 2**64 - 1])
        return FramingCase(f"declared length {declared}",
                           [enc(wire.OP_TEXT, b"", length=declared, minimal=False)],
                           frozenset({1002, 1009}), True)
    if pick == 5:
        return FramingCase("non-minimal length", [enc(wire.OP_TEXT, payload, minimal=False), ping],
                           frozenset({1002}))
    if pick == 6:
        return FramingCase("continuation without a start", [enc(wire.OP_CONT, payload), ping],
                           frozenset({1002}), True)
    if pick == 7:
        cut = rng.randrange(1, len(payload))
        return FramingCase("fragmented message", [
            enc(wire.OP_TEXT, payload[:cut], fin=False),
            enc(wire.OP_PING, b"mid") if rng.random() < 0.5 else b"",
            enc(wire.OP_CONT, payload[cut:])], echo=None)
    if pick == 8:
        return FramingCase("new message inside a fragmented one", [
            enc(wire.OP_TEXT, payload[:5], fin=False), enc(wire.OP_TEXT, payload)],
            frozenset({1002}), True)
    if pick == 9:
        return FramingCase("fragmented control frame", [enc(wire.OP_PING, b"x", fin=False)],
                           frozenset({1002}), True)
    if pick == 10:
        return FramingCase("control frame over 125 bytes", [enc(wire.OP_PING, b"p" * 126)],
                           frozenset({1002}), True)
    if pick == 11:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
        return FramingCase("ping", [enc(wire.OP_PING, body), ping], echo=body)
    if pick == 12:
        code = rng.choice([1000, 1001, 3000, 4999, 999, 1004, 1005, 1006, 1015, 5000, 65535])
        reason = rng.choice([b"", b"bye", b"\xff\xfe", b"r" * 123])
        valid = code in (1000, 1001, 3000, 4999) and reason != b"\xff\xfe"
        answer = frozenset({code}) if valid else frozenset({1002, 1007})
        return FramingCase(f"close {code}", [enc(wire.OP_CLOSE, code.to_bytes(2, "big") + reason)],
                           answer, True)
    if pick == 13:
        return FramingCase("close with one byte", [enc(wire.OP_CLOSE, b"\x03")],
                           frozenset({1002}), True)
    if pick == 14:
        bad = rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80", b'{"event":"\xe2\x82"}'])
        if rng.random() < 0.5:
            return FramingCase("invalid UTF-8", [wire.text(bad)], frozenset({1007}), True)
        return FramingCase("invalid UTF-8 across fragments", [
            enc(wire.OP_TEXT, bad[:1], fin=False), enc(wire.OP_CONT, bad[1:])],
            frozenset({1007}), True)
    if pick == 15:
        size = MAX_MESSAGE_SIZE // 2 + 1
        return FramingCase("fragments over max_message_size", [
            enc(wire.OP_TEXT, b" " * size, fin=False), enc(wire.OP_CONT, b" " * size)],
            frozenset({1009}), True)
    garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return FramingCase("random bytes", [garbage], frozenset(range(1000, 5000)))


# --- HTTP API requests (§12, §13) --------------------------------------------------------


@dataclass
class HttpRequest:
    """One request's bytes and what its answer must be when that is certain."""

    data: bytes
    method: str
    expect_status: frozenset[int] | None = None
    complete: bool = True  # False: the bytes end mid-request (no answer is owed)
    closes: bool = False  # framing the server cannot continue after (it may close)
    signed: bool = False
    expect_upgrade: bool = False  # a valid handshake: 101 and connection_established
    trailing_ping: bool = False  # a pusher:ping frame follows the handshake at once


@dataclass
class HttpCase:
    kind: str
    requests: list[HttpRequest] = field(default_factory=list)
    split: list[int] = field(default_factory=list)  # write boundaries


def signed_query(rng: random.Random, method: str, path: str, body: bytes,
                  extra: list[tuple[str, str]], key: str = APP_KEY,
                  secret: str = APP_SECRET) -> tuple[str, bool]:
    """The signed query (§13) of a request, bent with some probability; and whether the
    signature is still good."""
    params = [("auth_key", key), ("auth_timestamp", str(int(time.time()))),
              ("auth_version", "1.0"), *extra]
    if body or rng.random() < 0.2:
        params.append(("body_md5", hashlib.md5(body).hexdigest()))
    signed_text = "&".join(f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in params))
    signature = sign(f"{method}\n{path}\n{signed_text}", secret)
    good = True
    pick = rng.random()
    if pick < 0.15:
        signature, good = rng.choice([sign("x"), "", "00", signature.upper()]), False
    elif pick < 0.2:
        dropped = rng.choice(["auth_key", "auth_timestamp"])
        params = [p for p in params if p[0] != dropped]
        good = False
    elif pick < 0.25:
        params = [(k, "1" if k == "auth_timestamp" else v) for k, v in params]
        good = False
    elif pick < 0.28:
        params.append(("auth_key", key))
        good = False
    params.append(("auth_signature", signature))
    rng.shuffle(params)
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in params), good


def _trigger_body(rng: random.Random) -> tuple[bytes, bool]:
    """A trigger body and whether it is valid by construction."""
    channels = [rng.choice(["", "private-", "presence-", "cache-", "private-cache-",
                            "presence-cache-", "#server-to-user-"]) + rng.choice(NAMES)
                for _ in range(rng.randrange(1, 4))]
    body: dict[str, Any] = {"name": rng.choice(["update", "App\\Events\\X", "ü"]),
                            "data": json.dumps({"n": rng.randrange(1000)})}
    if rng.random() < 0.7:
        body["channels"] = channels
    else:
        body["channel"] = channels[0]
    if rng.random() < 0.2:
        body["socket_id"] = "123.456"
    valid = True
    pick = rng.random()
    if pick < 0.4:
        return json.dumps(body).encode(), valid
    if pick < 0.5:
        body["info"] = rng.choice(["user_count", "subscription_count", "x", ""])
        return json.dumps(body).encode(), False
    if pick < 0.6:
        body["data"] = "x" * rng.choice([10_240, 10_241, 20_000])
        return json.dumps(body).encode(), False
    if pick < 0.7:
        body[rng.choice(["name", "data", "channels", "channel", "socket_id"])] = json_value(rng)
        return json.dumps(body).encode(), False
    if pick < 0.8:
        batch = {"batch": [dict(body, channel=channels[0], channels=None)
                           for _ in range(rng.randrange(0, 13))]}
        for item in batch["batch"]:
            del item["channels"]
        return json.dumps(batch).encode(), False
    if pick < 0.9:
        return _mutate(rng, json.dumps(body).encode()), False
    return json.dumps(json_value(rng)).encode(), False


def _target(rng: random.Random) -> tuple[str, str, str]:
    """(method, path, kind) of an API request."""
    channel = quote(channel_name(rng), safe=",;@=")
    pick = rng.random()
    if pick < 0.45:
        return "POST", f"/apps/{APP_ID}/events", "events"
    if pick < 0.52:
        return "POST", f"/apps/{APP_ID}/batch_events", "batch"
    if pick < 0.6:
        return "GET", f"/apps/{APP_ID}/channels", "channels"
    if pick < 0.68:
        return "GET", f"/apps/{APP_ID}/channels/{channel}", "channel"
    if pick < 0.73:
        return "GET", f"/apps/{APP_ID}/channels/{channel}/users", "users"
    if pick < 0.76:
        uid = quote(str(rng.choice(USER_IDS)), safe="")
        return "POST", rng.choice([f"/apps/{APP_ID}/users/{uid}/terminate_connections",
                                   f"/users/{uid}/terminate_connections"]), "terminate"
    if pick < 0.78:
        return rng.choice(["GET", "HEAD"]), "/up", "up"
    if pick < 0.79:
        return "POST", f"/apps/{DISABLED_APP_ID}/events", "disabled"
    if pick < 0.82:
        return rng.choice(["POST", "GET"]), rng.choice([
            f"/apps/{DISABLED_APP_ID}/events", "/apps/9999/events", "/apps//events", "/apps/",
            f"/apps/{APP_ID}", f"/apps/{APP_ID}/", f"/apps/{APP_ID}/nope"]), "elsewhere"
    if pick < 0.9:
        return rng.choice(["PUT", "DELETE", "OPTIONS", "PATCH", "HEAD", "TRACE", "get"]), \
            f"/apps/{APP_ID}/events", "method"
    weird = rng.choice([
        "/", "//", "/apps/%zz/events", "/apps/1001/%2e%2e/events", "/%00", "/apps/1001/events#x",
        "*", "http://127.0.0.1/apps/1001/events", "/" + "a" * 9000, "/apps/\xff/events",
        "/app/fuzz-key", "/apps/1001/channels/%ff", "/apps/1001/channels/a%2Fb/users",
        "/apps/1001/channels/" + "a" * 250,
    ])
    return rng.choice(["GET", "POST"]), weird, "weird path"


def _headers(rng: random.Random, body: bytes, method: str) -> tuple[list[bytes], bool, bool]:
    """Header lines for `body`, whether the request is complete, whether it is sane."""
    lines = [b"Host: 127.0.0.1"]
    if rng.random() < 0.7:
        lines.append(rng.choice([b"Content-Type: application/json",
                                 b"Content-Type: text/plain; charset=\xff",
                                 b"Content-Type: application/x-www-form-urlencoded"]))
    complete, sane = True, True
    pick = rng.random()
    if pick < 0.8:
        if body or method == "POST":
            lines.append(b"Content-Length: %d" % len(body))
    elif pick < 0.85:
        lines.append(b"Content-Length: %d" % (len(body) + rng.randrange(1, 50)))
        complete, sane = False, False
    elif pick < 0.9:
        lines.append(rng.choice([b"Content-Length: -1", b"Content-Length: abc",
                                 b"Content-Length: 99999999999999999999",
                                 b"Content-Length: 1\r\nContent-Length: 2",
                                 b"Content-Length: %d\r\nTransfer-Encoding: chunked" % len(body)]))
        sane = False
    else:
        lines.append(b"Transfer-Encoding: chunked")
    if rng.random() < 0.1:
        lines.append(rng.choice([b"Connection: close", b"Connection: keep-alive",
                                 b"Expect: 100-continue", b"X-Pusher-Library: fuzz",
                                 b"X-Empty:", b"X-Long: " + b"v" * 8000,
                                 b"X-Fold: a\r\n b", b"X-Bad\x01Name: v", b"X-Utf8: \xc3\xa9",
                                 b"Upgrade: h2c\r\nConnection: Upgrade"]))
        sane = sane and lines[-1] not in (b"X-Fold: a\r\n b", b"X-Bad\x01Name: v")
    return lines, complete, sane


def _chunked(rng: random.Random, body: bytes) -> tuple[bytes, bool, bool]:
    out = b""
    rest = body
    while rest:
        size = rng.randrange(1, max(2, len(rest) + 1))
        extension = b";ext=1" if rng.random() < 0.1 else b""
        out += b"%x%s\r\n%s\r\n" % (size, extension, rest[:size])
        rest = rest[size:]
    pick = rng.random()
    if pick < 0.85:
        return out + b"0\r\n\r\n", True, True
    if pick < 0.9:
        return out + b"0\r\nX-Trailer: 1\r\n\r\n", True, True
    if pick < 0.95:
        return out + b"zz\r\nxx\r\n0\r\n\r\n", True, False
    return out, False, False


def http_request(rng: random.Random) -> HttpRequest:
    method, path, kind = _target(rng)
    if method == "POST" and kind in ("events", "batch", "method", "disabled") \
            or kind == "weird path":
        body, valid_body = _trigger_body(rng)
        if kind == "batch" and valid_body and rng.random() < 0.7:
            item = json.loads(body)
            channel = item.pop("channels", [None])[0] or item["channel"]
            items = [dict(item, channel=channel) for _ in range(rng.randrange(1, 11))]
            body = json.dumps({"batch": items}).encode()  # 1-10 valid items: a valid batch
        elif kind == "batch":
            body, valid_body = json.dumps({"batch": [json.loads(body)] if valid_body
                                           else []}).encode(), False
    elif kind == "terminate":
        body, valid_body = (b"{}" if rng.random() < 0.8 else b""), True
    else:
        body, valid_body = (b"" if rng.random() < 0.9 else b'{"x":1}'), True
    if rng.random() < 0.02:
        body, valid_body = b"x" * (MAX_REQUEST_SIZE + rng.randrange(1, 1000)), False
    extra: list[tuple[str, str]] = []
    if kind in ("channels", "channel") and rng.random() < 0.5:
        extra.append(("info", rng.choice(["user_count", "subscription_count", "cache",
                                          "user_count,subscription_count", "x", ""])))
    if kind == "channels" and rng.random() < 0.5:
        extra.append(("filter_by_prefix", rng.choice(["presence-", "private-", "", "ü"])))
    if rng.random() < 0.05:
        extra.append((rng.choice(["x", "INFO", "%", "a+b", "ü"]), rng.choice(WEIRD_TEXT[:8])))
    credentials = (DISABLED_APP_KEY, DISABLED_APP_SECRET) if kind == "disabled" \
        else (APP_KEY, APP_SECRET)
    query, good_signature = signed_query(rng, method.upper(), path.split("#")[0], body, extra,
                                          *credentials)
    if rng.random() < 0.05:
        query = rng.choice(["", "a=%zz&b", "&&&", "=", "auth_key=" + APP_KEY])
        good_signature = False
    lines, complete, sane = _headers(rng, body, method)
    huge_head = rng.random() < 0.01  # over the server's 64 KB bound on a request head
    if huge_head:
        lines.append(b"Cookie: " + b"c" * 70_000)
    chunked = b"Transfer-Encoding: chunked" in lines
    raw_body = body
    if chunked:
        raw_body, complete, chunk_sane = _chunked(rng, body)
        sane = sane and chunk_sane
    version = b"HTTP/1.1" if rng.random() < 0.97 else rng.choice([b"HTTP/1.0", b"HTTP/2.0",
                                                                  b"HTTP/1.1x"])
    sane = sane and version == b"HTTP/1.1"
    target = path + ("?" + query if query else "")
    head = method.encode() + b" " + target.encode("utf-8", "surrogateescape") + b" " + version
    data = head + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + raw_body
    if rng.random() < 0.01:
        data = data.replace(b"\r\n", b"\n")
        sane = False
    if method not in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD", "TRACE") \
            or any(line.startswith(b"Upgrade:") for line in lines) or not target.isascii():
        sane = False  # the request line or the upgrade may be refused before anything else
    expect = None
    too_big = len(body) > MAX_REQUEST_SIZE
    if sane and huge_head:
        expect = frozenset({400})
    elif sane and complete:
        if too_big:
            expect = frozenset({413})
        elif kind in ("events", "batch") and good_signature and valid_body:
            expect = frozenset({200})
        elif kind in ("events", "batch") and not good_signature:
            expect = frozenset({401, 400})
        elif kind == "up" and method == "GET":
            expect = frozenset({200})
        elif kind == "disabled" and good_signature:
            expect = frozenset({403})
        elif kind == "channels" and good_signature and not extra and not body:
            expect = frozenset({200})
    return HttpRequest(data, method.upper(), expect, complete,
                       closes=not (sane and complete) or too_big or huge_head,
                       signed=good_signature)


def upgrade_request(rng: random.Random) -> HttpRequest:
    """A WebSocket handshake with one part bent (path, key, version, query, method), or a
    valid one as browsers spell it, sometimes with the first frame in the same write."""
    if rng.random() < 0.3:
        lines = [b"Host: 127.0.0.1",
                 rng.choice([b"Upgrade: websocket", b"Upgrade: WebSocket", b"upgrade: websocket"]),
                 rng.choice([b"Connection: Upgrade", b"Connection: keep-alive, Upgrade",
                             b"connection: upgrade"]),
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"]
        if rng.random() < 0.5:
            lines.append(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        if rng.random() < 0.3:
            lines.append(b"Origin: http://localhost:5173")
        ping = rng.random() < 0.5
        data = f"GET /app/{APP_KEY}?protocol=7&client=js&version=8.6.0&flash=false HTTP/1.1" \
            "\r\n".encode() + b"\r\n".join(lines) + b"\r\n\r\n"
        if ping:
            data += wire.text(PING_TEXT)
        return HttpRequest(data, "UPGRADE", closes=True, expect_upgrade=True,
                           trailing_ping=ping)
    path = rng.choice([f"/app/{APP_KEY}", f"/app/{DISABLED_APP_KEY}", "/app/unknown", "/app/",
                       "/apps/1001/events", "/", f"/app/{APP_KEY}/"])
    query = rng.choice(["protocol=7&client=js&version=8.6.0&flash=false", "", "protocol=4",
                        "protocol=x", "version=%00", "version=" + "1" * 100,
                        "protocol=7&protocol=8"])
    lines = [b"Host: 127.0.0.1", b"Upgrade: websocket", b"Connection: Upgrade"]
    if rng.random() < 0.9:
        lines.append(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
    lines.append(b"Sec-WebSocket-Version: " + rng.choice([b"13", b"13", b"8", b"", b"x"]))
    if rng.random() < 0.2:
        lines.append(b"Origin: " + rng.choice([b"http://a.example.com:5173", b"null", b"\xff"]))
    method = rng.choice(["GET"] * 5 + ["POST", "PUT"])
    target = path + ("?" + query if query else "")
    data = method.encode() + b" " + target.encode() + b" HTTP/1.1\r\n" + b"\r\n".join(lines) \
        + b"\r\n\r\n"
    return HttpRequest(data, "UPGRADE", closes=True)


def http_case(rng: random.Random) -> HttpCase:
    """One connection's worth of requests: single, pipelined, or split across writes."""
    if rng.random() < 0.06:
        case = HttpCase("upgrade", [upgrade_request(rng)])
    else:
        count = 1 if rng.random() < 0.6 else rng.randrange(2, 5)
        requests = [http_request(rng) for _ in range(count)]
        # A request whose framing breaks the connection can only be the last one.
        for index, request in enumerate(requests):
            if request.closes or request.method == "HEAD":
                requests = requests[: index + 1]
                break
        case = HttpCase("pipelined" if len(requests) > 1 else "single", requests)
    total = sum(len(r.data) for r in case.requests)
    if rng.random() < 0.3 and total > 1:
        case.split = sorted(rng.sample(range(1, total), min(total - 1, rng.randrange(1, 5))))
    return case


# --- HTTP fallback transports (§15) -------------------------------------------------------

HTTP_PATH = "/pusher"
FALLBACK_ORIGIN = "http://fuzz.test"
_SESSION_ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def session_path(rng: random.Random) -> str:
    """A session path as pusher-js makes one: a number below 1000, 8 chars of [0-9a-v]."""
    return f"{rng.randrange(1000)}/" + "".join(rng.choice(_SESSION_ALPHABET) for _ in range(8))


def fallback_url(session: str, kind: str, key: str = APP_KEY) -> str:
    return f"{HTTP_PATH}/app/{key}/{session}/{kind}?protocol=7&client=js&version=8.6.0&t=1"


def fallback_request(method: str, target: str, body: bytes = b"",
                     origin: str = FALLBACK_ORIGIN, extra: bytes = b"") -> bytes:
    """A fallback request as a browser sends it (JSON content type, an Origin)."""
    return (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nOrigin: {origin}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


@dataclass
class FallbackCase:
    """One fallback request. ``to_session``: it goes to the fuzzer's own open session
    (the engine fills in the path); ``frames``: the messages of a valid ``xhr_send`` body,
    whose answers the next poll carries."""

    kind: str
    method: str
    target: str  # with "{session}" where the engine's own session path goes
    body: bytes = b""
    origin: str = FALLBACK_ORIGIN
    extra: bytes = b""
    expect_status: frozenset[int] | None = None
    frames: list[str] | None = None
    closes: bool = False  # the server may close the connection after its answer


def _send_body(rng: random.Random, socket_id: str) -> tuple[bytes, list[str] | None, str,
                                                             frozenset[int] | None]:
    """An ``xhr_send`` body: (bytes, its frames when valid, kind, expected status)."""
    pick = rng.random()
    if pick < 0.55:  # a valid array of (possibly invalid) Pusher frames
        frames = [client_frame(rng, socket_id).payload.decode("utf-8", "replace")
                  for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
        if any(len(f.encode()) > MAX_MESSAGE_SIZE for f in frames):
            return json.dumps(frames).encode(), None, "message too large", frozenset({413})
        ascii_only = rng.random() < 0.5
        return (json.dumps(frames, ensure_ascii=ascii_only).encode(), frames, "frames",
                frozenset({204}))
    if pick < 0.65:
        return _mutate(rng, json.dumps(["{}"]).encode()), None, "mutated", None
    if pick < 0.72:
        value = json_value(rng)
        valid = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return json.dumps(value).encode(), None, "json value", None if valid \
            else frozenset({400})
    if pick < 0.78:
        return rng.choice([b"", b"  ", b"[", b"[\"a\"", b"{\"event\":\"pusher:ping\"}",
                           b"[1]", b"[null]", b"[[]]", b"[\"\\ud800\"]", b"NaN"]), None, \
            "malformed", frozenset({400})
    if pick < 0.84:
        return b"[\"" + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x80b"]) + b"\"]", \
            None, "bad utf-8", frozenset({400})
    if pick < 0.88:
        return b"[\"" + b"x" * (MAX_MESSAGE_SIZE + 1) + b"\"]", None, "large message", \
            frozenset({413})
    if pick < 0.9:
        return b"x" * (MAX_REQUEST_SIZE + rng.randrange(1, 1000)), None, "huge body", \
            frozenset({413})
    pings = ['{"event":"pusher:ping"}'] * rng.randrange(1, 40)
    return json.dumps(pings).encode(), pings, "pings", frozenset({204})


def fallback_case(rng: random.Random, socket_id: str) -> FallbackCase:
    """One request to the fallback transports: preflights, sends to the fuzzer's own session
    and to unknown ones, wrong methods, other app keys, odd paths."""
    pick = rng.random()
    own = "{session}"
    if pick < 0.5:
        body, frames, kind, expect = _send_body(rng, socket_id)
        return FallbackCase("send " + kind, "POST", fallback_url(own, "xhr_send"), body,
                            expect_status=expect, frames=frames,
                            closes=len(body) > MAX_REQUEST_SIZE)
    if pick < 0.6:
        kind = rng.choice(["xhr_send", "xhr", "xhr_streaming", "xhr_polling"])
        session = rng.choice([own, session_path(rng)])
        headers = rng.choice([b"", b"Access-Control-Request-Method: POST\r\n",
                              b"Access-Control-Request-Headers: content-type\r\n",
                              b"Access-Control-Request-Headers: x\xff\r\n"])
        return FallbackCase("preflight", "OPTIONS", fallback_url(session, kind),
                            origin=rng.choice([FALLBACK_ORIGIN, "null", "http://x:1"]),
                            extra=headers, expect_status=frozenset({204}))
    if pick < 0.72:
        body, _, kind, _ = _send_body(rng, socket_id)
        return FallbackCase("send unknown session", "POST",
                            fallback_url(session_path(rng), "xhr_send"), body,
                            expect_status=frozenset({404, 413}),
                            closes=len(body) > MAX_REQUEST_SIZE)
    if pick < 0.8:
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "HEAD"])
        kind = rng.choice(["xhr_send", "xhr", "xhr_streaming"])
        return FallbackCase("method " + method, method, fallback_url(own, kind), b"[]",
                            expect_status=frozenset({405}))
    if pick < 0.86:
        key = rng.choice([DISABLED_APP_KEY, "unknown-key", "", APP_KEY.upper()])
        return FallbackCase("other key", "POST", fallback_url(own, "xhr_send", key), b"[]",
                            expect_status=frozenset({404}))
    if pick < 0.9:
        return FallbackCase("other origin", "POST", fallback_url(own, "xhr_send"), b"[]",
                            origin="http://elsewhere.test", expect_status=frozenset({404}))
    odd = rng.choice([
        f"{HTTP_PATH}/app/{APP_KEY}/xhr_send", f"{HTTP_PATH}/app/{APP_KEY}//x/xhr_send",
        f"{HTTP_PATH}/app/{APP_KEY}/1/2/3/xhr_send", f"{HTTP_PATH}/app/{APP_KEY}/1/a/xhr_nope",
        f"{HTTP_PATH}/app/", f"{HTTP_PATH}/app/{APP_KEY}/%00/%ff/xhr_send",
        f"{HTTP_PATH}/app/{APP_KEY}/../../xhr_send", f"{HTTP_PATH}/app/{APP_KEY}/1/"
        + "a" * 3000 + "/xhr_send", f"{HTTP_PATH}/app/{APP_KEY}/1/%C3%BC/xhr_send",
        f"{HTTP_PATH}/app/{APP_KEY}/1/abc/xhr_send/extra",
    ])
    return FallbackCase("odd path", rng.choice(["POST", "OPTIONS"]), odd, b"[]")
