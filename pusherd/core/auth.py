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
from functools import lru_cache

from pusherd.errors import HttpApiError

TIMESTAMP_WINDOW_SECONDS = 600
EMPTY_BODY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@lru_cache(maxsize=1024)
def _keyed_hmac(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with `secret`, to :meth:`~hmac.HMAC.copy` per message.

    Keying costs two hash blocks and an OpenSSL digest lookup; a copy costs neither, so a
    signature costs a third less (every API request and subscription verifies one).
    """
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign(secret: str, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of `string_to_sign` keyed with `secret`."""
    keyed = _keyed_hmac(secret).copy()
    keyed.update(string_to_sign.encode())
    return keyed.hexdigest()


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
    """``socket_id:channel`` or ``socket_id:channel:channel_data`` (§7.2)."""
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
    """Whether `token` (``key:signature``) signs the subscription of `socket_id`
    to `channel` (with `channel_data` on presence) for this app (§7.2); constant time.
    """
    signature = _split_token(app_key, auth)
    if signature is None:
        return False
    return _matches(secret, channel_string_to_sign(socket_id, channel, channel_data), signature)


# --- user authentication (§10.1) --------------------------------------------------------


def sign_user_auth(app_key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``key:signature`` a backend returns for ``pusher:signin`` (§10.1)."""
    return f"{app_key}:{sign(secret, f'{socket_id}::user::{user_data}')}"


def verify_user_auth(
    app_key: str, secret: str, socket_id: str, auth: str, user_data: str
) -> bool:
    """Whether `token` signs ``socket_id::user::user_data`` for this app (§10.1);
    constant time.
    """
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
    """The ``auth_signature`` of an HTTP API request (§13.2)."""
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
    seen = dict(params)
    lowered = params
    if len(seen) != len(params) or not "".join(seen).islower():
        # Rare: a repeated or upper-case key. Keys are lower-cased for signing (§13.2), and
        # a repeated authentication parameter would make the signed string ambiguous.
        seen = {}
        lowered = [(key.lower(), value) for key, value in params]
        for key, value in lowered:
            if key.startswith("auth_") or key == "body_md5":
                if key in seen:
                    raise HttpApiError(400, f"Duplicate query parameter: {key}")
                seen[key] = value
    auth_key = seen.get("auth_key")
    timestamp_text = seen.get("auth_timestamp")
    signature_text = seen.get("auth_signature")
    if auth_key is None or timestamp_text is None or signature_text is None:
        missing = next(k for k in ("auth_key", "auth_timestamp", "auth_signature")
                       if k not in seen)
        raise HttpApiError(401, f"Missing authentication parameter: {missing}")
    if not hmac.compare_digest(auth_key.encode(), app_key.encode()):
        raise HttpApiError(401, "auth_key is not this app's key (sign with the key and "
                                "secret of the app named in the path)")
    try:
        timestamp = int(timestamp_text)
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
        if not hmac.compare_digest(body_md5.lower().encode(),
                                   hashlib.md5(body).hexdigest().encode()):
            raise HttpApiError(401, "body_md5 does not match the request body")
    elif body_md5 is not None and body_md5.lower() != EMPTY_BODY_MD5:
        raise HttpApiError(401, "body_md5 does not match the empty request body")
    query = "&".join([f"{k}={v}" for k, v in sorted(lowered) if k != "auth_signature"])
    signature = signature_text.encode()
    method = method.upper()
    for path in paths:
        expected = sign(secret, f"{method}\n{path}\n{query}")
        if hmac.compare_digest(expected.encode(), signature):
            return
    string_to_sign = f"{method}\n{paths[0]}\n{query}"
    raise HttpApiError(401, bad_api_signature_message(string_to_sign, signature_text),
                       bad_api_signature_message(string_to_sign, None))


def bad_api_signature_message(string_to_sign: str, sent: str | None) -> str:
    """The 401 text for a wrong ``auth_signature``: the string that should have been signed
    (method, path, query: nothing secret in it), newlines shown as ``\\n``, so a developer
    can compare it with what their signer hashed. Bounded: the query is the client's.
    With `sent` None, the text for the log: no part of the signature the client sent
    (a signature is never logged, not even a wrong one)."""
    shown = string_to_sign[:2000].replace("\\", "\\\\").replace("\n", "\\n")
    if sent is None:
        return (f'Invalid signature: the auth_signature is not HMAC-SHA256 hex of "{shown}" '
                "keyed with the app secret")
    return (f'Invalid signature: you should have sent HMAC-SHA256 hex of "{shown}" keyed '
            f'with your app secret, but you sent "{sent[:128]}"')


# --- webhooks (§14.1) -------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes) -> str:
    """``X-Pusher-Signature``: HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
