"""One webhook request: an HTTP/1.1 POST on a fresh connection, with one deadline.

Only the status line matters (2xx is delivered, anything else is retried), so the answer's
headers are read and its body is not: the connection is closed after the status. Plain
``http://`` and ``https://`` (the system's trust store) are supported.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

MAX_RESPONSE_HEAD = 16 * 1024


class WebhookRequestError(Exception):
    """The request failed before a status arrived (refused, reset, bad answer)."""


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


async def post_webhook(url: str, headers: list[tuple[str, str]], body: bytes,
                       timeout: float) -> int:
    """POST `body` to `url` with `headers` (sent in this order and casing); return the
    status code. Raises :class:`TimeoutError` past `timeout` seconds and
    :class:`WebhookRequestError` (or :class:`OSError`) when no status arrived."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    head = [f"POST {target} HTTP/1.1", f"Host: {host_header}",
            f"Content-Length: {len(body)}", "Connection: close", "User-Agent: pusherd"]
    head += [f"{name}: {value}" for name, value in headers]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=_tls_context() if secure else None,
            server_hostname=host if secure else None, limit=MAX_RESPONSE_HEAD)
        try:
            writer.write(request)
            await writer.drain()
            try:
                status_line = await reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise WebhookRequestError("the receiver closed without an answer") from exc
            fields = status_line.split(b" ", 2)
            if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
                raise WebhookRequestError(f"not an HTTP answer: {status_line[:60]!r}")
            return int(fields[1])
        finally:
            writer.transport.abort()
