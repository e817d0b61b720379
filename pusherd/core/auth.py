"""Every HMAC of the protocol (spec §7, §10.1, §13, §14.1).

All signatures are HMAC-SHA256 in lowercase hex, keyed with the app secret. Verification
recomputes over the exact strings received (never a re-serialisation) and compares in
constant time with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from pusherd.errors import HttpApiError

TIMESTAMP_WINDOW_SECONDS = 600
EMPTY_BODY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def sign(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def _matches(secret: str, string_to_sign: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, string_to_sign).encode(), signature.encode())


def _split_token(app_key: str, token: str | None) -> str | None:
    """The signature part of ``"{app_key}:{hex}"``, or ``None`` when the key is not ours."""
    if not token:
        return None
    key, sep, signature = token.partition(":")
    if not sep or not hmac.compare_digest(key.encode(), app_key.encode()):
        return None
    return signature


# --- channel authorization (§7.1) -------------------------------------------------------


def channel_string_to_sign(socket_id: str, channel: str, channel_data: str | None) -> str:
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def sign_channel_auth(
    app_key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` token a backend returns for a private or presence channel."""
    return f"{app_key}:{sign(secret, channel_string_to_sign(socket_id, channel, channel_data))}"


def verify_channel_auth(
    app_key: str,
    secret: str,
    socket_id: str,
    channel: str,
    auth: str | None,
    channel_data: str | None,
) -> bool:
    signature = _split_token(app_key, auth)
    if signature is None:
        return False
    return _matches(secret, channel_string_to_sign(socket_id, channel, channel_data), signature)


# --- user authentication (§10.1) --------------------------------------------------------


def sign_user_auth(app_key: str, secret: str, socket_id: str, user_data: str) -> str:
    return f"{app_key}:{sign(secret, f'{socket_id}::user::{user_data}')}"


def verify_user_auth(
    app_key: str, secret: str, socket_id: str, auth: str, user_data: str
) -> bool:
    signature = _split_token(app_key, auth)
    if signature is None:
        return False
    return _matches(secret, f"{socket_id}::user::{user_data}", signature)


# --- encrypted channels (§7.2) ----------------------------------------------------------


def encryption_shared_secret(channel: str, master_key: bytes) -> str:
    """base64(SHA-256(channel ‖ master key)): the ``shared_secret`` of an encrypted channel."""
    return base64.b64encode(hashlib.sha256(channel.encode() + master_key).digest()).decode()


# --- HTTP API requests (§13) ------------------------------------------------------------


def api_string_to_sign(method: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """``METHOD\\nPATH\\nk=v&…``: keys lower-cased and sorted, values unescaped,
    ``auth_signature`` left out (§13.2)."""
    pairs = sorted((k.lower(), v) for k, v in params if k.lower() != "auth_signature")
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{method.upper()}\n{path}\n{query}"


def sign_api_request(
    secret: str, method: str, path: str, params: Iterable[tuple[str, str]]
) -> str:
    return sign(secret, api_string_to_sign(method, path, params))


def verify_api_request(
    *,
    app_key: str,
    secret: str,
    method: str,
    paths: tuple[str, ...],
    params: list[tuple[str, str]],
    body: bytes,
    now: float,
) -> None:
    """Check a signed HTTP API request (§13.3); raise :class:`HttpApiError` 401 if it fails.

    `params` are the percent-decoded query pairs. `paths` are the path spellings to try
    (the raw path first, then the decoded one for clients that escape ``;,@``).
    """
    # Keys are lower-cased once; the same pairs check duplicates and build the string.
    lowered = [(key.lower(), value) for key, value in params]
    seen: dict[str, str] = {}
    for key, value in lowered:
        if key.startswith("auth_") or key == "body_md5":
            if key in seen:
                raise HttpApiError(400, f"Duplicate query parameter: {key}")
            seen[key] = value
    for required in ("auth_key", "auth_timestamp", "auth_signature"):
        if required not in seen:
            raise HttpApiError(401, f"Missing authentication parameter: {required}")
    if not hmac.compare_digest(seen["auth_key"].encode(), app_key.encode()):
        raise HttpApiError(401, "Unknown auth_key")
    try:
        timestamp = int(seen["auth_timestamp"])
    except ValueError:
        raise HttpApiError(401, "auth_timestamp must be an integer") from None
    if abs(now - timestamp) > TIMESTAMP_WINDOW_SECONDS:
        raise HttpApiError(
            401,
            f"Timestamp expired: {timestamp} is more than {TIMESTAMP_WINDOW_SECONDS} s "
            "from the server time",
        )
    body_md5 = seen.get("body_md5")
    if body:
        if body_md5 is None:
            raise HttpApiError(401, "body_md5 is required when the request has a body")
        if not hmac.compare_digest(body_md5.lower(), hashlib.md5(body).hexdigest()):
            raise HttpApiError(401, "body_md5 does not match the request body")
    elif body_md5 is not None and body_md5.lower() != EMPTY_BODY_MD5:
        raise HttpApiError(401, "body_md5 does not match the empty request body")
    signature = seen["auth_signature"].encode()
    query = "&".join(f"{k}={v}" for k, v in sorted(lowered) if k != "auth_signature")
    secret_bytes = secret.encode()
    for path in paths:
        string_to_sign = f"{method.upper()}\n{path}\n{query}".encode()
        expected = hmac.new(secret_bytes, string_to_sign, hashlib.sha256)
        if hmac.compare_digest(expected.hexdigest().encode(), signature):
            return
    raise HttpApiError(401, "Invalid signature: the auth_signature does not match the request")


# --- webhooks (§14.1) -------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes) -> str:
    """``X-Pusher-Signature``: HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
