"""The server: binds the one port, sweeps keepalives, and shuts down gracefully.

Build, bind and shut down are separate steps (:meth:`Server.start`,
:meth:`Server.shutdown`) so tests and the CLI drive the same object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import time

from pusherd.adapters.local import LocalAdapter
from pusherd.apps import AppRegistry
from pusherd.config import Config
from pusherd.core.ids import format_socket_id
from pusherd.core.session import KeepaliveAction
from pusherd.server.http_api import HttpApi
from pusherd.server.protocol import ServerProtocol
from pusherd.server.websocket import WebSocketConnection

log = logging.getLogger("pusherd.server")

FD_RESERVE = 64  # descriptors kept free for logs, Redis, webhooks and the listener
SWEEP_SLICE = 1000  # sockets checked per event-loop turn by the keepalive sweep


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.apps = AppRegistry(config.apps)
        self.adapter = LocalAdapter()
        self.http_api = HttpApi(self)
        self.transports: set[asyncio.Transport] = set()
        self.http_protocols: set[ServerProtocol] = set()  # connections not (yet) upgraded
        self.websockets: dict[str, WebSocketConnection] = {}
        self.draining = False
        self.port = 0
        self.open_file_limit = raise_open_file_limit()
        self.max_open_connections = max(16, self.open_file_limit - FD_RESERVE)
        self.stats_api_events = 0
        # Read on every HTTP request: kept here rather than three attribute loads away.
        self.max_request_size = config.server.max_request_size
        self.path_prefix = config.server.path_prefix
        self.stats_slow_consumers = 0
        self._limit_logged_at = 0.0
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # Socket ids need uniqueness, not secrecy (an auth signature binds a socket id to a
        # channel the backend already allowed): a seeded PRNG spares two syscalls per socket.
        self._random = random.Random(os.urandom(32))

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config.server
        self._server = await loop.create_server(
            lambda: ServerProtocol(self), cfg.host, cfg.port, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="pusherd-sweeper")
        log.info("open-file limit %d: at most %d simultaneous connections",
                 self.open_file_limit, self.max_open_connections)

    async def shutdown(self) -> None:
        """Stop accepting, mark not ready, then close every socket with 4200 in paced
        batches (so clients do not all reconnect to the surviving nodes at once)."""
        cfg = self.config.server
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + cfg.shutdown_timeout
        connections = list(self.websockets.values())
        batch = cfg.shutdown_batch_size
        steps = max(1, (len(connections) + batch - 1) // batch)
        pause = min(0.05, cfg.shutdown_timeout / (2 * steps)) if steps > 1 else 0.0
        for start in range(0, len(connections), batch):
            for connection in connections[start:start + batch]:
                connection.terminate(4200, "Server is shutting down: reconnect")
            if pause:
                await asyncio.sleep(pause)
        for transport in list(self.transports):
            if not any(c.transport is transport for c in connections):
                transport.close()
        while self.transports and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for transport in list(self.transports):
            transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # --- connections --------------------------------------------------------------------

    def new_socket_id(self) -> str:
        while True:
            socket_id = format_socket_id(self._random.randrange(1, 10**10),
                                         self._random.randrange(1, 10**10))
            if socket_id not in self.websockets:
                return socket_id

    def websocket_opened(self, connection: WebSocketConnection) -> None:
        self.websockets[connection.socket_id] = connection

    def websocket_closed(self, connection: WebSocketConnection) -> None:
        connection.writable = False
        self.websockets.pop(connection.socket_id, None)
        if connection.registered and connection.app is not None:
            connection.registered = False
            self.adapter.remove_connection(connection.app, connection)

    def note_connection_limit(self) -> None:
        now = time.monotonic()
        if now - self._limit_logged_at > 10:
            self._limit_logged_at = now
            log.warning(
                "connection refused: %d open connections reached the limit of this process "
                "(open-file limit %d); raise `ulimit -n` or add processes",
                len(self.transports), self.open_file_limit,
            )

    # --- keepalive sweep (§5) -----------------------------------------------------------

    def sweep(self, now: float) -> None:
        """One pass over every socket: ping the idle, close the silent (4201), abort
        unanswered closing handshakes, and let the adapter expire its caches."""
        self.sweep_connections(now, list(self.websockets.values()))
        self.sweep_http(now)
        self.adapter.tick(now)

    def sweep_connections(self, now: float, connections: list[WebSocketConnection]) -> None:
        cfg = self.config.server
        timeout = float(cfg.activity_timeout)
        for connection in connections:
            if connection.close_deadline is not None:
                if now >= connection.close_deadline:
                    connection.transport.abort()
                continue
            session = connection.session
            if not connection.registered:
                continue
            action = session.keepalive_action(now, timeout, cfg.ping_grace, cfg.pong_timeout)
            if action is KeepaliveAction.PING:
                connection.ping()
            elif action is KeepaliveAction.CLOSE:
                connection.terminate(4201, "Pong reply not received: reconnect")

    def sweep_http(self, now: float) -> None:
        idle_limit = self.config.server.http_idle_timeout
        for http in list(self.http_protocols):
            if now - http.last_activity >= idle_limit and http.transport is not None:
                http.transport.close()

    def sweep_interval(self) -> float:
        cfg = self.config.server
        return max(0.05, min(1.0, (cfg.activity_timeout + cfg.ping_grace) / 4,
                             cfg.pong_timeout / 4 if cfg.pong_timeout else 1.0))

    async def _sweep_forever(self) -> None:
        # The pass is cut into slices with a yield between them, so that 20,000 sockets
        # never hold the event loop for more than a slice's worth (about 1 ms).
        interval = self.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                connections = list(self.websockets.values())
                for start in range(0, len(connections), SWEEP_SLICE):
                    if start:
                        await asyncio.sleep(0)
                    self.sweep_connections(time.monotonic(),
                                           connections[start:start + SWEEP_SLICE])
                now = time.monotonic()
                self.sweep_http(now)
                self.adapter.tick(now)
            except Exception:
                log.exception("keepalive sweep failed")
