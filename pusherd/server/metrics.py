"""Prometheus metrics: ``GET /metrics`` in the text exposition format (prometheus_client).

Nothing here runs on the hot path, and a scrape walks no socket and no channel. The
shells count in plain integers where something happens once
(:class:`~pusherd.server.telemetry.Telemetry`, the fan-out's
:class:`~pusherd.adapters.fanout.DeliveryCount`), the adapters keep their gauges
(connections, subscriptions, channels and presence members by channel type:
``Adapter.occupancy``) up to date as they change, and :class:`PusherdCollector` copies
them when Prometheus scrapes: O(apps x channel types + counters). No transition listener
is registered: with none, the adapter does not even build the transitions that carry no
frame, so metrics on cost a subscription nothing but those counts. Every metric is
listed, with a sample query, in ``docs/operations.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pusherd.adapters.base import Adapter
from pusherd.adapters.cluster.bus import ROUND_TRIP_BUCKETS
from pusherd.adapters.fanout import LocalFanout
from pusherd.apps import AppRegistry
from pusherd.server.state import ServerState
from pusherd.server.telemetry import LATENCY_BUCKETS
from pusherd.webhooks.sender import WebhookSender

log = logging.getLogger("pusherd.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PusherdCollector(Collector):
    """Every pusherd metric, read from the counters when scraped."""

    def __init__(self, state: ServerState, apps: AppRegistry, adapter: Adapter,
                 ready: Callable[[], bool]) -> None:
        self.state = state
        self.apps = apps
        self.adapter = adapter
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the current counts."""
        state, telemetry = self.state, self.state.telemetry

        ready = GaugeMetricFamily("pusherd_ready", "1 while /ready answers 200")
        ready.add_metric([], 1.0 if self.ready() else 0.0)
        yield ready
        draining = GaugeMetricFamily("pusherd_draining", "1 while the server drains")
        draining.add_metric([], 1.0 if state.draining else 0.0)
        yield draining

        open_connections = GaugeMetricFamily(
            "pusherd_connections", "Open WebSocket connections on this node", labels=["app"])
        subscriptions: dict[tuple[str, str], int] = {}
        channels: dict[tuple[str, str], int] = {}
        members: dict[tuple[str], int] = {}
        for app in self.apps:
            open_connections.add_metric([app.id], self.adapter.connection_count(app))
            occupancy = self.adapter.occupancy(app)
            for label, count in occupancy.subscriptions.items():
                if count:
                    subscriptions[(app.id, label)] = count
            for label, count in occupancy.channels.items():
                if count:
                    channels[(app.id, label)] = count
            members[(app.id,)] = occupancy.presence_members
        yield open_connections
        yield _counter("pusherd_connections_opened", "Connections admitted",
                       ["app"], {(k,): v for k, v in telemetry.connections_opened.items()})
        yield _counter("pusherd_connections_closed", "Admitted connections that ended, by "
                       "close code (1006: no close frame)", ["app", "code"],
                       {(a, str(c)): v for (a, c), v in telemetry.connections_closed.items()})
        yield _counter("pusherd_connections_refused", "Connections refused at the open, by "
                       "close code (4001 unknown key, 4003 disabled, 4004 over quota, 4009 "
                       "origin...)", ["app", "code"],
                       {(a, str(c)): v for (a, c), v in telemetry.connections_refused.items()})
        yield _counter("pusherd_connection_limit_refusals", "Connections refused at a "
                       "limit (app_max_connections: 4004; open_files: HTTP 503)",
                       ["app", "limit"], dict(telemetry.connection_limit_refusals))
        yield _gauge("pusherd_subscriptions", "Channel subscriptions of this node's sockets",
                     ["app", "channel_type"], subscriptions)
        yield _gauge("pusherd_channels", "Occupied channels", ["app", "channel_type"],
                     channels)
        yield _gauge("pusherd_presence_members", "Distinct presence members, summed over "
                     "presence channels", ["app"], members)
        yield _counter("pusherd_messages_received", "Client messages received",
                       ["app"], {(k,): v.count for k, v in
                                 list(telemetry.messages_received.items()) if k})
        fanout = getattr(self.adapter, "fanout", None)
        delivered = fanout.delivered if isinstance(fanout, LocalFanout) else {}
        yield _counter("pusherd_messages_delivered", "Channel event frames written to "
                       "sockets (API and client events)", ["app"],
                       {(k,): v.messages for k, v in delivered.items()})
        yield _counter("pusherd_bytes_sent", "WebSocket bytes of the delivered channel "
                       "events", ["app"], {(k,): v.bytes for k, v in delivered.items()})
        yield _counter("pusherd_api_events", "Events accepted over the HTTP API", [],
                       {(): state.api_events})
        endpoints = list(telemetry.api.items())
        yield _counter("pusherd_api_requests", "HTTP API requests by endpoint and status",
                       ["endpoint", "status"],
                       {(e, str(status)): n for e, stats in endpoints
                        for status, n in list(stats.statuses.items())})
        latency = HistogramMetricFamily("pusherd_api_request_duration_seconds",
                                        "Time to answer an HTTP API request",
                                        labels=["endpoint"])
        for endpoint, stats in endpoints:
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), list(stats.buckets),
                                    strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            latency.add_metric([endpoint], buckets, stats.total)
        yield latency
        yield _counter("pusherd_auth_failures", "Failed channel auth, sign-in and HTTP API "
                       "signatures, by reason", ["reason"],
                       {(k,): v for k, v in telemetry.auth_failures.items()})
        yield _counter("pusherd_client_events_rate_limited", "Client events dropped over "
                       "max_client_events_per_second", ["app"],
                       {(k,): v for k, v in telemetry.client_events_rate_limited.items()})
        yield _counter("pusherd_slow_consumers", "Sockets cut off for a full outbound buffer",
                       ["app"], {(k,): v for k, v in telemetry.slow_consumers.items()})


class WebhookCollector(Collector):
    """The webhook sender's queue and outcomes (its own counters, read when scraped)."""

    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender

    def collect(self) -> Iterator[Metric]:
        """Gauges of the queue, counters of the outcomes since start."""
        sender, counters = self.sender, self.sender.counters
        yield _gauge("pusherd_webhook_pending", "Webhook deliveries accepted and not yet "
                     "delivered or dead (the queue)", [], {(): sender.pending})
        yield _gauge("pusherd_webhook_in_flight", "Webhook requests in flight", [],
                     {(): sender.in_flight})
        yield _gauge("pusherd_webhook_dead_letters", "Dead-lettered webhook deliveries kept "
                     "(GET /apps/{id}/webhooks/failed)", [], {(): sender.failed_count})
        for name, documentation, value in (
            ("accepted", "Webhook deliveries accepted (per event and target)",
             counters.accepted),
            ("delivered", "Webhook deliveries acknowledged by their target",
             counters.delivered),
            ("failed_requests", "Webhook requests that failed (each retry counts)",
             counters.failed_requests),
            ("dead_lettered", "Webhook deliveries given up after their retries",
             counters.dead_lettered),
            ("dropped", "Webhook deliveries dropped over max_pending", counters.dropped),
            ("suppressed", "Webhook flap pairs suppressed", counters.suppressed),
            ("replayed", "Webhook deliveries replayed from the dead letters",
             counters.replayed),
        ):
            yield _counter(f"pusherd_webhook_{name}", documentation, [], {(): value})


class RedisCollector(Collector):
    """A cluster node's Redis link (``RedisAdapter.redis_stats``, read when scraped)."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Up, outages, the writer's round trips, and the bus's message counters."""
        stats = self.stats()
        yield _gauge("pusherd_redis_up", "1 while this node is connected to Redis", [],
                     {(): int(stats.up)})
        yield _counter("pusherd_redis_outages", "Redis outages since start (each one is a "
                       "reconnect once Redis is back)", [], {(): stats.outages})
        trips = stats.round_trips
        histogram = HistogramMetricFamily(
            "pusherd_redis_round_trip_seconds",
            "Round trips of the bus writer to Redis (one frame of triggers and client events each)")
        buckets, running = [], 0
        for bound, count in zip((*ROUND_TRIP_BUCKETS, float("inf")), trips.counts,
                                strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        histogram.add_metric([], buckets, trips.total)
        yield histogram
        for name, documentation, value in (
            ("bus_published", "Messages this node published to the bus", stats.published),
            ("bus_dropped", "Bus messages dropped from a full buffer while Redis was "
             "unreachable", stats.dropped),
            ("bus_maybe_lost", "Bus messages in flight when a Redis connection broke",
             stats.maybe_lost),
        ):
            yield _counter(f"pusherd_redis_{name}", documentation, [], {(): value})


def _counter(name: str, documentation: str, labels: list[str],
             values: Mapping[Any, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def _gauge(name: str, documentation: str, labels: list[str],
           values: Mapping[Any, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


class Metrics:
    """The metrics of one server: a registry of its own (several servers can share a
    process, as tests do) and the collector. Other
    subsystems (webhooks, Redis) register their own collectors in :attr:`registry`."""

    def __init__(self, state: ServerState, apps: AppRegistry, adapter: Adapter,
                 ready: Callable[[], bool], webhooks: WebhookSender | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PusherdCollector(state, apps, adapter, ready))
        if webhooks is not None:
            self.registry.register(WebhookCollector(webhooks))
        if hasattr(adapter, "redis_stats"):  # a cluster node: its Redis link too
            self.registry.register(RedisCollector(lambda: adapter.redis_stats))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The current metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsListener:
    """``[metrics] port``: a small listener of its own that answers ``GET /metrics``
    (and nothing else), as scrapers expect on a private port."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Bind `host`:`port` (0 picks a free port: see :attr:`port`); with `reuse_port`,
        several worker processes share it (each scrape then reads one worker)."""
        self._server = await asyncio.start_server(self._serve, host, port,
                                                  reuse_port=reuse_port or None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method in (b"GET", b"HEAD") and path == b"/metrics":
                body, status, kind = self.metrics.render(), "200 OK", CONTENT_TYPE
            else:
                body, status, kind = b"Not found: use /metrics\n", "404 Not Found", "text/plain"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
