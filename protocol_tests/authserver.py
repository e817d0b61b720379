"""The web app side of a Laravel frontend, served by the suite itself.

* ``GET /page.html`` — a page that loads the pinned pusher-js web build (with encryption) and
  Laravel Echo's IIFE build from ``node_modules``; ``window.PT`` holds the server settings.
* ``POST /broadcasting/auth`` — Laravel's channel authorization flow: bearer token → user; the
  signature and ``shared_secret`` come from the official Python ``pusher`` SDK. Unknown or missing
  token → 403, as Laravel answers; channels containing ``forbidden`` → 403.
* ``POST /broadcasting/user-auth`` — user authentication (sign-in) for the same users.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pusher

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC = {
    "/static/pusher-with-encryption.js":
        PACKAGE_DIR / "node_modules/pusher-js/dist/web/pusher-with-encryption.js",
    "/static/echo.iife.js": PACKAGE_DIR / "node_modules/laravel-echo/dist/echo.iife.js",
}

USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "token-ada": ("1", {"name": "Ada"}),
    "token-linus": ("2", {"name": "Linus"}),
    "token-grace": ("3", {"name": "Grace"}),
}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="csrf-token" content="csrf-{run}">
<title>protocol_tests</title>
{no_websocket}<script src="/static/pusher-with-encryption.js"></script>
<script src="/static/echo.iife.js"></script>
</head><body>
<script>
window.PT = {settings};
PT.page = new URLSearchParams(location.search).get('name') || 'page';
window.EchoClass = Echo.default;
window.makeEcho = function (broadcaster, extra) {{
  var o = Object.assign({{
    broadcaster: broadcaster, key: PT.key, wsHost: PT.host, wsPort: PT.port, wssPort: PT.port,
    forceTLS: PT.tls, enabledTransports: PT.transports, disableStats: true,
    httpHost: PT.host, httpPort: PT.port, httpsPort: PT.port, httpPath: PT.httpPath
  }}, extra || {{}});
  if (broadcaster === 'pusher' && !o.cluster) o.cluster = 'mt1';
  var e = new window.EchoClass(o);
  e.connector.pusher.connection.bind('state_change', function (s) {{
    window.__emit(PT.page + ':state', s);
  }});
  return e;
}};
window.__ready = true;
</script></body></html>
"""


@dataclass
class AuthServer:
    app_id: str
    key: str
    secret: str
    ws_host: str
    ws_port: int
    tls: bool
    master_key_b64: str
    run_id: str
    transport: str = "ws"  # the run's transport: the pages' Echo uses it (§15)
    http_path: str = "/pusher"
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None

    def __post_init__(self) -> None:
        self.sdk = pusher.Pusher(app_id=self.app_id, key=self.key, secret=self.secret,
                                 encryption_master_key_base64=self.master_key_b64)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = b""
            if int(headers.get("content-length", "0")):
                body = await reader.readexactly(int(headers["content-length"]))
            path, _, query = target.partition("?")
            status, ctype, payload = self._route(method, path, query, headers, body)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}"
                "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n".encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _route(self, method: str, path: str, query: str, headers: dict[str, str],
               body: bytes) -> tuple[int, str, bytes]:
        if method == "GET" and path.startswith("/page.html"):
            settings = {"key": self.key, "host": self.ws_host, "port": self.ws_port,
                        "tls": self.tls, "page": "page", "httpPath": self.http_path,
                        "transports": ["ws", "wss"] if self.transport == "ws"
                        else [self.transport]}
            # ?nows=1: WebSocket is removed before pusher-js loads (a network or browser
            # without it), so pusher-js must fall back to its HTTP transports (§15).
            no_websocket = ("<script>delete window.WebSocket; window.WebSocket = undefined;"
                            "window.MozWebSocket = undefined;</script>\n"
                            if "nows=1" in query else "")
            return 200, "text/html; charset=utf-8", PAGE.format(
                run=self.run_id, settings=json.dumps(settings),
                no_websocket=no_websocket).encode()
        if method == "GET" and path in STATIC:
            return 200, "application/javascript", STATIC[path].read_bytes()
        if method == "POST" and path in ("/broadcasting/auth", "/broadcasting/user-auth"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            self.requests.append({"path": path, "form": form,
                                  "authorization": headers.get("authorization"),
                                  "csrf": headers.get("x-csrf-token")})
            user = USERS.get(token)
            if user is None:
                return 403, "application/json", b'{"message":"Unauthenticated."}'
            socket_id = form.get("socket_id", "")
            if path == "/broadcasting/user-auth":
                result = self.sdk.authenticate_user(
                    socket_id, {"id": user[0], "user_info": user[1]})
                return 200, "application/json", json.dumps(result).encode()
            channel = form.get("channel_name", "")
            if "forbidden" in channel:
                return 403, "application/json", b'{"message":"This action is unauthorized."}'
            custom = {"user_id": user[0], "user_info": user[1]} \
                if channel.startswith("presence-") else None
            result = self.sdk.authenticate(channel, socket_id, custom)
            if isinstance(result.get("shared_secret"), bytes):
                result["shared_secret"] = result["shared_secret"].decode()
            return 200, "application/json", json.dumps(result).encode()
        return 404, "text/plain", b"not found"
