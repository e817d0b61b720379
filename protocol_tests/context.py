"""The run context handed to every case: server address, credentials, lazily started helpers."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import itertools
import json
import os
import secrets
import ssl
from contextvars import ContextVar
from typing import Any

import pusher

from .authserver import AuthServer
from .framework import NotApplicable
from .nodedriver import NodeDriver
from .webhooks import WebhookReceiver
from .wire import HttpResponse, RawClient, SilentSocket, api, sign

_TRACKED: ContextVar[list[Any]] = ContextVar("tracked")


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host: str = args.host
        self.port: int = args.port  # the first node (HTTP API, browser pages)
        # Cluster mode: every new client takes the next node's port, round robin.
        self.ports: list[int] = list(getattr(args, "ports", None) or [args.port])
        self._next_port = itertools.cycle(self.ports)
        self.api_host: str = args.api_host or args.host
        self.api_port: int = args.api_port or args.port
        self.tls: bool = args.tls
        self.app_id: str = args.app_id
        self.app_key: str = args.app_key
        self.app_secret: str = args.app_secret
        self.run_id = secrets.token_hex(3)
        self.master_key_b64 = base64.b64encode(os.urandom(32)).decode()
        self.ssl_context: ssl.SSLContext | None = None
        if self.tls:
            self.ssl_context = ssl.create_default_context(cafile=args.tls_ca)
            if args.tls_no_verify:
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE
        self.ws_scheme = "wss" if self.tls else "ws"
        # The transport every client of the run uses: "ws", or a fallback transport (§15).
        self.transport: str = getattr(args, "transport", "ws")
        self.activity_timeout: int | None = None
        self._counter = itertools.count(1)
        self._tracked: list[Any] = []  # objects opened outside any case
        self._node: NodeDriver | None = None
        self._auth: AuthServer | None = None
        self._lock = asyncio.Lock()
        self.webhook_receiver: WebhookReceiver | None = None
        self._auth_lock = asyncio.Lock()
        self.sdk = pusher.Pusher(
            app_id=self.app_id, key=self.app_key, secret=self.app_secret, ssl=self.tls,
            host=self.api_host, port=self.api_port, timeout=10,
            encryption_master_key_base64=self.master_key_b64)
        if self.tls:
            # the SDK pins its own CA bundle; point it at the one the run was given
            http = getattr(self.sdk._pusher_client, "http", None)
            if http is not None and hasattr(http, "options"):
                http.options["verify"] = False if args.tls_no_verify else (
                    args.tls_ca or http.options.get("verify", True))

    def client_port(self) -> int:
        """The port the next client connects to (the next node, in cluster mode)."""
        return next(self._next_port)

    @property
    def ws_base(self) -> str:
        """``ws(s)://host:port`` of the node the next client connects to."""
        return f"{self.ws_scheme}://{self.host}:{self.client_port()}"

    @property
    def ws_servers(self) -> str:
        """Every node's ``ws(s)://host:port``, for messages and reports."""
        return ", ".join(f"{self.ws_scheme}://{self.host}:{port}" for port in self.ports)

    # -- naming ------------------------------------------------------------------------------
    def chan(self, prefix: str, label: str) -> str:
        """A channel name unique to this run and call, e.g. ``private-pt1a2b3c-orders-7``."""
        return f"{prefix}pt{self.run_id}-{label}-{next(self._counter)}"

    def uid(self, label: str) -> str:
        return f"u{self.run_id}-{label}-{next(self._counter)}"

    def for_app(self, app_id: str, key: str, secret: str) -> Context:
        """The same context, speaking as another app of the server."""
        other = copy.copy(self)
        other.app_id, other.app_key, other.app_secret = app_id, key, secret
        return other

    # -- signatures --------------------------------------------------------------------------
    def auth_for(self, socket_id: str, channel: str, channel_data: str | None = None) -> str:
        if channel.startswith("presence-"):
            msg = f"{socket_id}:{channel}"
            if channel_data is not None:
                msg += f":{channel_data}"
            return f"{self.app_key}:{sign(self.app_secret, msg)}"
        if channel.startswith("private-"):
            return f"{self.app_key}:{sign(self.app_secret, f'{socket_id}:{channel}')}"
        return ""

    # -- clients -----------------------------------------------------------------------------
    def track(self, obj: Any) -> None:
        """Close ``obj`` when the current case ends."""
        _TRACKED.get(self._tracked).append(obj)

    async def raw(self, **kw: Any) -> RawClient:
        return await RawClient.open(self, **kw)

    async def silent(self) -> SilentSocket:
        if self.transport != "ws":
            raise NotApplicable("reads raw WebSocket control frames (ping/close opcodes); "
                                f"{self.transport} has none")
        return await SilentSocket.open(self)

    async def api(self, method: str, path: str, **kw: Any) -> HttpResponse:
        return await api(self, method, path, **kw)

    async def trigger(self, channels: str | list[str], event: str, data: str,
                      **extra: Any) -> HttpResponse:
        body: dict[str, Any] = {"name": event, "data": data,
                                "channels": [channels] if isinstance(channels, str) else channels}
        body.update(extra)
        return await api(self, "POST", f"/apps/{self.app_id}/events", body=body)

    async def py(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Call the (blocking) Python SDK in a thread."""
        return await asyncio.to_thread(fn, *args, **kw)

    async def node(self) -> NodeDriver:
        """The shared Node driver (its clients are disconnected after each case)."""
        async with self._lock:
            if self._node is None:
                self._node = await self.new_node()
        return self._node

    async def new_node(self) -> NodeDriver:
        """A private Node driver, for background cases; stop it yourself."""
        auth = await self.auth_server()
        driver = NodeDriver({
            "appId": self.app_id, "appKey": self.app_key, "appSecret": self.app_secret,
            "host": self.host, "port": self.port, "ports": self.ports, "tls": self.tls,
            "apiHost": self.api_host, "apiPort": self.api_port,
            "masterKey": self.master_key_b64, "authBase": auth.base,
            "chromium": self.args.chromium,
            "transport": self.transport, "httpPath": self.args.http_path,
            "tlsInsecure": bool(self.tls and (self.args.tls_no_verify or self.args.tls_ca)),
        }, tls_ca=self.args.tls_ca, tls_no_verify=bool(self.tls and self.args.tls_no_verify))
        await driver.start()
        return driver

    async def auth_server(self) -> AuthServer:
        async with self._auth_lock:
            if self._auth is None:
                server = AuthServer(self.app_id, self.app_key, self.app_secret, self.host,
                                    self.port, self.tls, self.master_key_b64, self.run_id,
                                    self.transport, self.args.http_path)
                await server.start()
                self._auth = server
        return self._auth

    async def js(self, code: str, timeout: float = 20.0) -> Any:
        return await (await self.node()).run(code, timeout)

    async def page(self, name: str, timeout: float = 30.0, query: str = "") -> None:
        """Open the suite's page as `name`; `query` adds parameters (``&nows=1``: a page
        without WebSocket)."""
        if self.args.no_browser:
            raise NotApplicable("browser cases disabled by --no-browser")
        auth = await self.auth_server()
        await self.js(f"return await openPage({json.dumps(name)}, "
                      f"{json.dumps(auth.base + '/page.html?name=' + name + query)});", timeout)

    async def in_page(self, name: str, body: str, timeout: float = 20.0) -> Any:
        return await self.js(f"return await inPage({json.dumps(name)}, {json.dumps(body)});",
                             timeout)

    # -- lifecycle ---------------------------------------------------------------------------
    def begin_case(self) -> list[Any]:
        tracked: list[Any] = []
        _TRACKED.set(tracked)
        return tracked

    async def end_case(self, tracked: list[Any], *, node_cleanup: bool = True) -> None:
        for obj in tracked:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(obj.close(), 5)
        tracked.clear()
        if node_cleanup and self._node is not None:
            with contextlib.suppress(Exception):
                await self._node.run("await cleanup();", 20)
            self._node.clear_events()

    async def close(self) -> None:
        for obj in self._tracked:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(obj.close(), 5)
        if self._node is not None:
            await self._node.stop()
        if self._auth is not None:
            await self._auth.stop()
        if self.webhook_receiver is not None:
            await self.webhook_receiver.stop()
