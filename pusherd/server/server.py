"""The server: builds the pieces, binds the one port, sweeps keepalives, shuts down.

Build, bind and shut down are separate steps (:class:`Server`, :meth:`Server.start`,
:meth:`Server.shutdown`) so tests and the CLI drive the same object. The server wires
explicit dependencies into each handler (:class:`~pusherd.server.protocol.ProtocolContext`);
no handler receives the server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Awaitable, Callable

from pusherd.adapters.base import Adapter
from pusherd.adapters.memory import MemoryAdapter
from pusherd.adapters.redis import RedisAdapter
from pusherd.apps import AppRegistry
from pusherd.config import Config
from pusherd.core.ids import SocketId
from pusherd.core.session import SessionSettings
from pusherd.server.actions import wall_ms
from pusherd.server.fallback import FallbackSettings, FallbackTransport
from pusherd.server.http_api import HttpApi
from pusherd.server.protocol import ProtocolContext, ServerProtocol
from pusherd.server.state import Connection, ServerState
from pusherd.server.websocket import WebSocketLimits
from pusherd.webhooks.redis_store import RedisStore
from pusherd.webhooks.sender import WebhookSender
from pusherd.webhooks.store import JournalStore, MemoryStore, WebhookStore

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
    """One pusherd process: the listener, its handlers, the sweeper and the adapter."""

    def __init__(self, config: Config, adapter: Adapter | None = None) -> None:
        self.config = config
        cfg = config.server
        self.apps = AppRegistry(config.apps)
        if adapter is None:
            # Redis configured: this process is one node of a cluster (docs/scaling.md).
            adapter = (RedisAdapter(config.redis, config.apps) if config.redis.enabled
                       else MemoryAdapter())
        self.adapter: Adapter = adapter
        open_file_limit = raise_open_file_limit()
        self.state = ServerState(max(16, open_file_limit - FD_RESERVE), open_file_limit)
        self.webhooks: WebhookSender | None = None
        if any(app.webhooks for app in config.apps):
            hooks = config.webhooks
            store: WebhookStore
            if config.redis.enabled:  # a cluster: any node delivers what a dead node accepted
                node_id = getattr(self.adapter, "node_id", None)
                store = RedisStore(config.redis.url, config.redis.prefix, node_id,
                                   config.redis.lease_ttl, config.redis.reap_interval)
            elif hooks.journal:
                store = JournalStore(hooks.journal, hooks.fsync_interval)
            else:
                store = MemoryStore()
            self.webhooks = WebhookSender(config.apps, hooks, store)
            self.adapter.add_listener(self.webhooks.on_transition)
            if isinstance(self.adapter, RedisAdapter):
                self.webhooks.still_open = self._cluster_still_open(self.adapter)
        self.http_api = HttpApi(self.apps, self.adapter, self.state, self.webhooks)
        session_settings = SessionSettings(
            activity_timeout=cfg.activity_timeout,
            ping_grace=cfg.ping_grace,
            pong_timeout=cfg.pong_timeout,
            strict_protocol_version=cfg.strict_protocol_version,
        )
        self.fallback = FallbackTransport(
            self.state, self.apps, self.adapter, session_settings, FallbackSettings(
                http_path=cfg.http_path,
                session_timeout=cfg.fallback_session_timeout,
                heartbeat_interval=cfg.fallback_heartbeat_interval,
                max_queue_size=cfg.max_write_buffer_size,
                max_message_size=cfg.max_message_size,
                hostname=cfg.fallback_hostname,
            )) if cfg.http_fallback else None
        self.context = ProtocolContext(
            state=self.state,
            apps=self.apps,
            adapter=self.adapter,
            http_api=self.http_api,
            session_settings=session_settings,
            websocket_limits=WebSocketLimits(cfg.max_message_size, cfg.max_write_buffer_size),
            max_request_size=cfg.max_request_size,
            path_prefix=cfg.path_prefix,
            fallback=self.fallback,
        )
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def _cluster_still_open(adapter: RedisAdapter
                            ) -> Callable[[str, str, str | None], Awaitable[bool]]:
        """Whether a channel is occupied (user None) or a member present, on any node:
        what the webhook sender asks before sending a held removal (flap suppression
        across nodes)."""
        keys, client = adapter.keys, adapter.link.client

        async def still_open(app_id: str, channel: str, user_id: str | None) -> bool:
            if user_id is None:
                return bool(await client.hexists(keys.channels(app_id), channel))
            return bool(await client.hexists(keys.presence(app_id, channel), user_id))

        return still_open

    @property
    def websockets(self) -> dict[SocketId, Connection]:
        """Open client connections by socket id (read-only view for tests and the CLI)."""
        return self.state.connections

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the adapter, bind ``[server] host:port`` (port 0 picks one: see
        :attr:`port`), and start the keepalive sweeper. Raises :class:`OSError` when the
        address cannot be bound."""
        loop = asyncio.get_running_loop()
        cfg = self.config.server
        await self.adapter.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        context = self.context
        self._server = await loop.create_server(
            lambda: ServerProtocol(context), cfg.host, cfg.port, backlog=4096,
            reuse_address=True, reuse_port=cfg.workers > 1,  # workers share the port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="pusherd-sweeper")
        log.info("open-file limit %d: at most %d simultaneous connections",
                 self.state.open_file_limit, self.state.max_open_connections)

    async def shutdown(self) -> None:
        """Stop accepting, mark not ready, then close every socket with 4200 in paced
        batches (so clients do not all reconnect to the surviving nodes at once); wait up
        to ``shutdown_timeout`` seconds for the clients to close, then abort the rest."""
        cfg = self.config.server
        state = self.state
        state.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + cfg.shutdown_timeout
        connections = list(state.connections.values())
        batch = cfg.shutdown_batch_size
        steps = max(1, (len(connections) + batch - 1) // batch)
        pause = min(0.05, cfg.shutdown_timeout / (2 * steps)) if steps > 1 else 0.0
        for start in range(0, len(connections), batch):
            for connection in connections[start:start + batch]:
                connection.terminate(4200, "Server is shutting down: reconnect")
            if pause:
                await asyncio.sleep(pause)
        # Idle keep-alive HTTP connections have nothing to finish.
        for http in list(state.http_connections):
            http.close_idle()
        if state.transports:
            state.drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.drained.wait(),
                                       max(0.0, deadline - time.monotonic()))
        for transport in list(state.transports):
            transport.abort()  # type: ignore[attr-defined]
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self.webhooks is not None:
            # After the drain: the removals it caused are in the store for the next start.
            await self.webhooks.close()
        await self.adapter.close()

    # --- keepalive sweep (§5) -----------------------------------------------------------

    def sweep(self, now: float, now_ms: int | None = None) -> None:
        """One whole sweep pass at monotonic `now` (seconds), adapter housekeeping at
        wall-clock `now_ms` (default: the current time). The background sweeper runs the
        same two steps, the first in slices."""
        self.sweep_connections(now, list(self.state.connections.values()))
        self.sweep_housekeeping(now, wall_ms() if now_ms is None else now_ms)

    @staticmethod
    def sweep_connections(now: float, connections: list[Connection]) -> None:
        """Each connection's keepalive rules (§5): ping the idle, close the silent."""
        for connection in connections:
            connection.sweep(now)

    def sweep_housekeeping(self, now: float, now_ms: int) -> None:
        """Close idle keep-alive HTTP connections; let the adapter expire its caches and
        announce throttled subscription counts."""
        idle_limit = self.config.server.http_idle_timeout
        for http in list(self.state.http_connections):
            if now - http.last_activity >= idle_limit:
                http.close_idle()
        self.adapter.tick(now_ms)

    def sweep_interval(self) -> float:
        """Seconds between sweep passes: a quarter of the shortest keepalive deadline."""
        cfg = self.config.server
        return max(0.05, min(1.0, (cfg.activity_timeout + cfg.ping_grace) / 4,
                             cfg.fallback_session_timeout / 4,
                             cfg.pong_timeout / 4 if cfg.pong_timeout else 1.0))

    async def _sweep_forever(self) -> None:
        # The connections are swept in slices with a yield between them, so that 20,000
        # sockets never hold the event loop for more than a slice's worth (about 1 ms).
        interval = self.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                connections = list(self.state.connections.values())
                for start in range(0, len(connections), SWEEP_SLICE):
                    if start:
                        await asyncio.sleep(0)
                    self.sweep_connections(time.monotonic(),
                                           connections[start:start + SWEEP_SLICE])
                self.sweep_housekeeping(time.monotonic(), wall_ms())
            except Exception:
                log.exception("keepalive sweep failed")
