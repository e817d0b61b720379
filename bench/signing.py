"""Signed Pusher HTTP API requests (spec §13): the load generator's trigger side."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """The app the benchmark triggers on: the HTTP API id, key and secret."""

    app_id: str
    key: str
    secret: str


def sign_request(
    credentials: AppCredentials, method: str, path: str, body: bytes, timestamp: int
) -> str:
    """Return the full signed query string for `method path` with `body` (spec §13.2).

    ``auth_key``, ``auth_timestamp``, ``auth_version=1.0`` and ``body_md5`` (when the body is
    non-empty) sorted by key, joined unescaped, HMAC-SHA256 with the app secret, lowercase hex.
    """
    params = {
        "auth_key": credentials.key,
        "auth_timestamp": str(timestamp),
        "auth_version": "1.0",
    }
    if body:
        params["body_md5"] = hashlib.md5(body).hexdigest()
    query = "&".join(f"{key}={params[key]}" for key in sorted(params))
    string_to_sign = f"{method.upper()}\n{path}\n{query}"
    signature = hmac.new(
        credentials.secret.encode(), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return f"{query}&auth_signature={signature}"


def build_trigger_request(
    credentials: AppCredentials, host: str, port: int, body: bytes, timestamp: int | None = None
) -> bytes:
    """Return the bytes of one keep-alive ``POST /apps/{id}/events`` request."""
    path = f"/apps/{credentials.app_id}/events"
    stamp = int(time.time()) if timestamp is None else timestamp
    query = sign_request(credentials, "POST", path, body, stamp)
    head = (
        f"POST {path}?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
