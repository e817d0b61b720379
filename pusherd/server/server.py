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
import random
import resource
import ssl
import time
from collections.abc import Awaitable, Callable

from pusherd.adapters.base import Adapter
from pusherd.adapters.memory import MemoryAdapter
from pusherd.adapters.redis import RedisAdapter
from pusherd.apps import AppRegistry
from pusherd.config import Config
from pusherd.core.ids import SocketId
from pusherd.core.session import SessionSettings
from pusherd.errors import ConfigError
from pusherd.server.actions import wall_ms
from pusherd.server.console import DebugConsole
from pusherd.server.drain import DrainPacer, drain_schedule, largest_window
from pusherd.server.fallback import FallbackSettings, FallbackTransport
from pusherd.server.http_api import HttpApi, HttpResponse, error_response
from pusherd.server.metrics import CONTENT_TYPE, Metrics, MetricsListener
from pusherd.server.protocol import ProtocolContext, ServerProtocol
from pusherd.server.proxies import TrustedProxies, parse_networks
from pusherd.server.state import Connection, ServerState
from pusherd.server.websocket import WebSocketLimits
from pusherd.webhooks.redis_store import RedisStore
from pusherd.webhooks.sender import WebhookSender
from pusherd.webhooks.store import JournalStore, MemoryStore, WebhookStore

log = logging.getLogger("pusherd.server")

FD_RESERVE = 64  # descriptors kept free for logs, Redis, webhooks and the listener
# Descriptors kept for HTTP requests (API triggers, health checks, scrapes) beyond the
# client connections: a node full of WebSockets still serves its HTTP API.
HTTP_RESERVE = 64
# Near the limit (the HTTP reserve in use), an HTTP connection idle this long is closed
# (not after http_idle_timeout): idle connections cannot hold the reserve.
NEAR_LIMIT_IDLE_TIMEOUT = 5.0
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

    def __init__(self, config: Config, adapter: Adapter | None = None,
                 debug: bool = False) -> None:
        self.config = config
        cfg = config.server
        self.apps = AppRegistry(config.apps)
        if adapter is None:
            # Redis configured: this process is one node of a cluster (docs/scaling.md).
            adapter = (RedisAdapter(config.redis, config.apps) if config.redis.enabled
                       else MemoryAdapter())
        self.adapter: Adapter = adapter
        open_file_limit = raise_open_file_limit()
        max_transports = max(32, open_file_limit - FD_RESERVE)
        http_reserve = min(HTTP_RESERVE, max_transports // 4)
        self.state = ServerState(max_transports - http_reserve, open_file_limit,
                                 max_transports)
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
                debug_frames=debug,
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
            debug_frames=debug,
            trusted_proxies=(TrustedProxies(parse_networks(cfg.trusted_proxies))
                             if cfg.trusted_proxies else None),
        )
        self.port = 0
        self.metrics_port: int | None = None  # the metrics listener's, when it has its own
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._force = asyncio.Event()  # a second SIGTERM/SIGINT: end the drain at once
        self.http_api.routes["/ready"] = self._ready_route
        # /health: the liveness path other Pusher-compatible servers' users probe.
        self.http_api.routes["/health"] = self.http_api.routes["/up"]
        self.metrics: Metrics | None = None
        self._metrics_listener: MetricsListener | None = None
        if config.metrics.enabled:
            self.metrics = Metrics(self.state, self.apps, self.adapter, self.ready,
                                   self.webhooks)
            self.http_api.observe = self.state.telemetry.endpoint_stats
            if config.metrics.port < 0:
                self.http_api.routes["/metrics"] = self._metrics_route
            else:
                self._metrics_listener = MetricsListener(self.metrics)
        self.console: DebugConsole | None = None
        if config.console.enabled:
            self.console = DebugConsole(config.console.token, self.apps, self.adapter,
                                        self.state)
            self.http_api.routes.update(self.console.routes())

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

    # --- health ------------------------------------------------------------------------

    def readiness(self) -> str:
        """``ready``, or why not: ``starting``, ``draining``, ``at_connection_limit``,
        ``adapter_unavailable`` (e.g. Redis unreachable)."""
        state = self.state
        if not state.started:
            return "starting"
        if state.draining:
            return "draining"
        if state.at_connection_limit():
            return "at_connection_limit"
        if not self.adapter.ready:
            return "adapter_unavailable"
        return "ready"

    def ready(self) -> bool:
        """Whether a load balancer should send new clients here (``/ready`` is 200)."""
        return self.readiness() == "ready"

    def _ready_route(self, method: str, query: str) -> HttpResponse:
        if method not in ("GET", "HEAD"):
            return error_response(405, "Use GET")
        status = self.readiness()
        return HttpResponse(200 if status == "ready" else 503,
                            b'{"status":"' + status.encode() + b'"}')

    def _metrics_route(self, method: str, query: str) -> HttpResponse:
        assert self.metrics is not None
        if method not in ("GET", "HEAD"):
            return error_response(405, "Use GET")
        return HttpResponse(200, self.metrics.render(), CONTENT_TYPE)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``[server.tls]``, or None (plain TCP). Raises
        :class:`ConfigError` naming the key for a key with a passphrase (never a prompt
        on the terminal), a key that is not the certificate's, or unreadable PEM."""
        tls = self.config.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2

        def no_passphrase() -> bytes:
            # Without this callback OpenSSL would ask on the terminal and block the start.
            raise ConfigError("server.tls.key_file", f"{tls.key_file} is encrypted with a "
                              "passphrase: pusherd does not ask for one; store the key "
                              "unencrypted (e.g. openssl pkey -in KEY -out KEY.plain), "
                              "readable by pusherd's user only")

        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError("server.tls.key_file", f"{tls.key_file} is not the key of "
                                  f"the certificate in server.tls.cert_file "
                                  f"({tls.cert_file})") from None
            raise ConfigError("server.tls.cert_file", f"cannot load the certificate "
                              f"{tls.cert_file} with the key in server.tls.key_file "
                              f"({tls.key_file}): {exc.reason or exc}") from None
        return context

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``[server] host:port`` (port 0 picks one: see :attr:`port`), then start
        the adapter, the webhook sender and the keepalive sweeper. The port answers from
        the moment it is bound: while the adapter starts (Redis may take up to
        ``[redis] lease_ttl`` to answer), ``/up`` is served, ``/ready`` says ``starting``
        and new clients and HTTP API requests get 503. Raises :class:`OSError` when the
        address cannot be bound, :class:`~pusherd.errors.ConfigError` for a webhook
        journal that cannot be opened (the listener is closed again) or a TLS key it
        cannot use (:meth:`tls_context`, before anything is bound). Cancelled (a stop
        signal during start-up), it closes the listener and the adapter and re-raises."""
        loop = asyncio.get_running_loop()
        cfg = self.config.server
        tls_context = self.tls_context()  # a bad key stops the start before anything runs
        context = self.context
        self.state.starting = True
        self._server = await loop.create_server(
            lambda: ServerProtocol(context), cfg.host, cfg.port, backlog=4096,
            reuse_address=True, reuse_port=cfg.workers > 1,  # workers share the port
            ssl=tls_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            if self._metrics_listener is not None:
                metrics_cfg = self.config.metrics
                await self._metrics_listener.start(metrics_cfg.host or cfg.host,
                                                   metrics_cfg.port,
                                                   reuse_port=cfg.workers > 1)
                self.metrics_port = self._metrics_listener.port
            await self.adapter.start()
            if self.webhooks is not None:
                await self.webhooks.start()
        except BaseException:
            # A failed start, or a cancelled one (a stop signal while the adapter waited
            # for Redis): nothing started here outlives it.
            self._server.close()
            if self._metrics_listener is not None:
                await self._metrics_listener.close()
            await self.adapter.close()
            raise
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="pusherd-sweeper")
        self.state.started = True
        self.state.starting = False

    def force_stop(self) -> None:
        """End a drain in progress at once (a second SIGTERM or SIGINT)."""
        self._force.set()

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` unless :meth:`force_stop` is called; True if forced."""
        if self._force.is_set():
            return True
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._force.wait(), seconds)
        return self._force.is_set()

    def drain_schedule(self, count: int, rng: random.Random | None = None) -> list[float]:
        """Seconds after the grace at which each of `count` sockets is due its 4200
        (:func:`pusherd.server.drain.drain_schedule` with this server's settings)."""
        cfg = self.config.server
        return drain_schedule(count, cfg.drain_seconds, cfg.shutdown_batch_size,
                              rng or random.Random())

    def drain_pacer(self, count: int, rng: random.Random | None = None) -> DrainPacer:
        """The pacer of a drain of `count` sockets with this server's settings
        (:class:`pusherd.server.drain.DrainPacer`: the schedule held to a token bucket)."""
        cfg = self.config.server
        return DrainPacer.plan(count, cfg.drain_seconds, cfg.shutdown_batch_size,
                               rng or random.Random())

    async def drain(self) -> None:
        """The paced drain of SIGTERM (then :meth:`shutdown`).

        ``/ready`` turns 503 and new WebSocket upgrades are refused (503) at once, while
        the listener stays open for health checks; after ``drain_grace`` seconds (time for
        load balancers to notice) the sockets are told to reconnect (4200) in batches
        spread over ``drain_seconds`` (:meth:`drain_pacer`); then :meth:`shutdown`
        waits for them to close. :meth:`force_stop` cuts every wait short.
        """
        cfg = self.config.server
        state = self.state
        state.draining = True
        if state.connections:
            log.info("draining: not ready; %d connection(s) will be told to reconnect after "
                     "%.1f s, spread over %.1f s", len(state.connections), cfg.drain_grace,
                     cfg.drain_seconds, extra={"event": "drain_started"})
            if not await self._pause(cfg.drain_grace):
                connections = list(state.connections.values())
                random.shuffle(connections)
                # The token bucket, not the loop, bounds the closes of any one second: a
                # loop that woke late (a busy machine) closes what is overdue only as fast
                # as the bucket refills, so a stall never turns into a burst of reconnects.
                pacer = self.drain_pacer(len(connections))
                started = time.monotonic()
                told = 0
                steps: list[tuple[float, int]] = []  # (seconds since started, closes)
                while (wake := pacer.next_wake()) is not None:
                    delay = started + wake - time.monotonic()
                    if delay > 0:
                        if await self._pause(delay):
                            break
                    else:
                        await asyncio.sleep(0)  # behind: let the writes of the last step go
                        if self._force.is_set():
                            break
                    moment = time.monotonic() - started
                    count = pacer.step(moment)
                    if count:
                        steps.append((moment, count))
                    for _ in range(count):
                        connections[told].terminate(4200, "Server is shutting down: reconnect")
                        told += 1
                if steps:
                    largest = largest_window(steps)
                    log.info("drained: told %d connection(s) to reconnect in %.2f s; largest "
                             "1 s window %d (limit %d)", told, steps[-1][0] - steps[0][0],
                             largest, pacer.window_limit,
                             extra={"event": "drain_told", "told": told,
                                    "largest_window": largest,
                                    "window_limit": pacer.window_limit})
        await self.shutdown()

    async def _wait_drained(self, timeout: float) -> None:
        """Wait until the last transport closed, :meth:`force_stop`, or `timeout` s."""
        self.state.drained.clear()
        waiters = {asyncio.ensure_future(self.state.drained.wait()),
                   asyncio.ensure_future(self._force.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def shutdown(self) -> None:
        """Close now: every remaining socket is told 4200 and gets up to
        ``shutdown_timeout`` seconds to close (none after :meth:`force_stop`), then the
        rest is aborted and the listener closed."""
        cfg = self.config.server
        state = self.state
        state.draining = True
        for connection in list(state.connections.values()):
            connection.terminate(4200, "Server is shutting down: reconnect")
        # Idle keep-alive HTTP connections have nothing to finish.
        for http in list(state.http_connections):
            http.close_idle()
        if self._server is not None:
            self._server.close()
        if state.transports and not self._force.is_set():
            await self._wait_drained(cfg.shutdown_timeout if state.connections
                                     else min(1.0, cfg.shutdown_timeout))
        for transport in list(state.transports):
            transport.abort()  # type: ignore[attr-defined]
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._metrics_listener is not None:
            await self._metrics_listener.close()
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
        if self.state.near_connection_limit():
            idle_limit = min(idle_limit, NEAR_LIMIT_IDLE_TIMEOUT)
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
