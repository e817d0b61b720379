"""What happens in a server, told once: counters for ``/metrics``, one log line per event
that matters, and the live feed of the debug console.

The shells call :class:`Telemetry` at the places where something happens once per
connection, per request or per event (never per recipient): a connection opened, refused
or closed, an HTTP API request answered, a client error, a slow consumer cut off. Counters
are plain integers in dicts (no locks, no label lookups on the hot path); the Prometheus
collector (:mod:`pusherd.server.metrics`) reads them when scraped.

Secrets never pass through here: log lines carry app ids, keys, socket ids, channel and
event names, codes and reasons, never a secret, an auth signature or a query string.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from typing import Any

from pusherd.core.channels import channel_type as channel_type  # a metric label (re-exported)
from pusherd.core.session import Tally
from pusherd.errors import ClientEventRejected, PusherError, SigninRefused, SubscriptionRefused

ws_log = logging.getLogger("pusherd.ws")
http_log = logging.getLogger("pusherd.http")

# Upper bounds (seconds) of the HTTP API latency histogram's buckets; the API answers in
# tens of microseconds, so the buckets start well below a millisecond.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)

# The close codes a client commonly closes with, kept as labels when the client closed
# first: normal closure, going away (a page left), no status. Any other code a client
# chooses is counted as CLIENT_OTHER_CODE, so that clients cannot grow the label set.
CLIENT_CLOSE_CODES = frozenset({1000, 1001, 1005})
CLIENT_OTHER_CODE = "client_other"
RATE_LIMIT_LOG_INTERVAL = 10  # seconds between two "rate-limited" lines of one app
CLIENT_ERROR_LOG_BURST = 50  # client-error lines of one app per interval, then silence
ConsoleSink = Callable[[dict[str, Any]], None]


def remote_address(peer: Any) -> str:
    """``host:port`` of a transport's ``peername``, the address itself when given as a
    string (an HTTP fallback session's), ``-`` when unknown."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    if isinstance(peer, str) and peer:
        return peer
    return "-"


def auth_failure_reason(exc: PusherError) -> str | None:
    """The auth/signature failure `exc` stands for (a metric label), or None."""
    if isinstance(exc, SubscriptionRefused):
        if exc.status == 401:
            return "channel_auth"
        return None
    if isinstance(exc, SigninRefused) and "signature" in exc.message:
        return "signin"
    return None


def api_failure_reason(message: str) -> str:
    """The HTTP API's 401 reasons, as metric labels."""
    if message.startswith("Invalid signature"):
        return "api_signature"
    if "auth_timestamp" in message or "timestamp" in message:
        return "api_timestamp"
    if "body_md5" in message:
        return "api_body_md5"
    if "auth_key" in message:
        return "api_unknown_key"
    return "api_missing_parameter"


class EndpointStats:
    """One HTTP API endpoint's requests by status and its latency histogram (bucket
    counts per :data:`LATENCY_BUCKETS`, made cumulative at export; seconds)."""

    __slots__ = ("statuses", "buckets", "total")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0  # seconds, summed

    @property
    def count(self) -> int:
        """Requests observed."""
        return sum(self.buckets)

    def observe(self, status: int, seconds: float) -> None:
        """One request answered with HTTP `status` in `seconds`. Runs once per API
        request while metrics are on: a few dict and list operations, no label lookup
        (the caller keeps this object per path)."""
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


class Telemetry:
    """The counters and the event log of one server process."""

    def __init__(self) -> None:
        self.connections_opened: dict[str, int] = {}  # app id -> count
        # (app id, close code label): the code pusherd sent, or the client's (bounded)
        self.connections_closed: dict[tuple[str, int | str], int] = {}
        self.connections_refused: dict[tuple[str, int], int] = {}  # (app id or "", code)
        self.connection_limit_refusals: dict[tuple[str, str], int] = {}  # (app id, limit)
        # Client messages received, app id -> the tally the app's sessions add to (see
        # received), so that a scrape never walks the sessions.
        self.messages_received: dict[str, Tally] = {}
        self.messages_received_closed: dict[str, int] = {}  # of connections that closed
        self.auth_failures: dict[str, int] = {}  # reason -> count
        self.client_events_rate_limited: dict[str, int] = {}  # app id -> count
        self.slow_consumers: dict[str, int] = {}  # app id -> count
        self.api: dict[str, EndpointStats] = {}  # endpoint -> requests and latency
        self.sinks: list[ConsoleSink] = []  # the debug console's feed, when enabled
        self._rate_limit_logged_at: dict[str, float] = {}  # app id -> monotonic seconds
        self._client_error_window: dict[str, list[float]] = {}  # app id -> [start, count]
        self._log_windows: dict[str, list[float]] = {}  # line kind -> [start, count]

    # --- the console feed ---------------------------------------------------------------

    def tell(self, kind: str, **fields: Any) -> None:
        """Hand an event to the console feed (nothing to do when no console listens)."""
        if self.sinks:
            entry = {"type": kind, "time_ms": time.time_ns() // 1_000_000, **fields}
            for sink in self.sinks:
                sink(entry)

    # --- connections --------------------------------------------------------------------

    def connection_opened(self, app_id: str, socket_id: str, peer: Any, origin: str | None,
                          protocol: str | None) -> None:
        """A connection was admitted (``pusher:connection_established`` sent); `peer` is
        the transport's ``peername``."""
        self.connections_opened[app_id] = self.connections_opened.get(app_id, 0) + 1
        if not (self.sinks or ws_log.isEnabledFor(logging.INFO)):
            return
        remote = remote_address(peer)
        ws_log.info("connection opened app=%s socket_id=%s remote=%s origin=%s protocol=%s",
                    app_id, socket_id, remote, origin or "-", protocol or "-",
                    extra={"event": "connection_opened", "app_id": app_id,
                           "socket_id": socket_id, "remote": remote, "origin": origin,
                           "protocol": protocol})
        if self.sinks:
            self.tell("connection_opened", app_id=app_id, socket_id=socket_id, remote=remote,
                      origin=origin)

    def connection_refused(self, app_id: str, app_key: str, code: int, reason: str,
                           peer: Any, origin: str | None) -> None:
        """A new connection was refused with `code` (4001, 4003, 4004, 4006-4009...)."""
        key = (app_id, code)
        self.connections_refused[key] = self.connections_refused.get(key, 0) + 1
        if code == 4004:
            limit = (app_id, "app_max_connections")
            self.connection_limit_refusals[limit] = self.connection_limit_refusals.get(
                limit, 0) + 1
        # The key is public (pusher-js sends it in the URL); naming it is what makes a
        # 4001 debuggable.
        remote = remote_address(peer)
        ws_log.warning("connection refused code=%d app=%s key=%s remote=%s origin=%s: %s",
                       code, app_id or "-", app_key[:64], remote, origin or "-", reason,
                       extra={"event": "connection_refused", "code": code, "app_id": app_id,
                              "app_key": app_key[:64], "remote": remote, "origin": origin})
        if self.sinks:
            self.tell("connection_refused", app_id=app_id, code=code, reason=reason)

    def connection_closed(self, app_id: str, socket_id: str, code: int, reason: str,
                          seconds: float, messages: int, by_client: bool = False) -> None:
        """An admitted connection ended (`code` as sent or received; 1006: no close).
        `by_client`: the client closed first, so `code` is the client's choice: its
        metric label is the code only for :data:`CLIENT_CLOSE_CODES`, else
        :data:`CLIENT_OTHER_CODE` (the log line keeps the code)."""
        label: int | str = code
        if by_client and code not in CLIENT_CLOSE_CODES:
            label = CLIENT_OTHER_CODE
        key = (app_id, label)
        self.connections_closed[key] = self.connections_closed.get(key, 0) + 1
        self.messages_received_closed[app_id] = (
            self.messages_received_closed.get(app_id, 0) + messages)
        if not (self.sinks or ws_log.isEnabledFor(logging.INFO)):
            return
        ws_log.info("connection closed app=%s socket_id=%s code=%d reason=%s duration=%.1fs "
                    "messages=%d", app_id, socket_id, code, reason or "-", seconds, messages,
                    extra={"event": "connection_closed", "app_id": app_id,
                           "socket_id": socket_id, "code": code, "reason": reason,
                           "duration_s": round(seconds, 3), "messages": messages})
        if self.sinks:
            self.tell("connection_closed", app_id=app_id, socket_id=socket_id, code=code,
                      reason=reason)

    def received(self, app_id: str) -> Tally:
        """The tally of `app_id`'s client messages, for a new session of the app."""
        tally = self.messages_received.get(app_id)
        if tally is None:
            tally = self.messages_received[app_id] = Tally()
        return tally

    def upgrade_refused_draining(self, app_id: str, peer: Any) -> None:
        """A WebSocket upgrade or a new fallback session was refused (503): the process
        is draining. Counted as ``connections_refused{code="503"}``; logged at most every
        RATE_LIMIT_LOG_INTERVAL seconds (clients retry in a loop)."""
        key = (app_id, 503)
        count = self.connections_refused[key] = self.connections_refused.get(key, 0) + 1
        if self._throttled("draining"):
            return
        ws_log.info("connection refused (503) while draining app=%s remote=%s (%d so far "
                    "for this app; logged at most every %d s)", app_id or "-",
                    remote_address(peer), count, RATE_LIMIT_LOG_INTERVAL,
                    extra={"event": "connection_refused_draining", "app_id": app_id,
                           "code": 503, "remote": remote_address(peer)})

    def unknown_websocket_path(self, path: str, peer: Any) -> None:
        """A WebSocket upgrade to a path that is no ``/app/{key}`` (404)."""
        if self._throttled("unknown_path", burst=CLIENT_ERROR_LOG_BURST):
            return
        ws_log.info("WebSocket upgrade to an unknown path refused (404): %s remote=%s "
                    "(the WebSocket path is {path_prefix}/app/{key})", path[:200],
                    remote_address(peer),
                    extra={"event": "unknown_websocket_path", "path": path[:200],
                           "remote": remote_address(peer)})

    def console_unauthorized(self, path: str) -> None:
        """A request to the debug console without the right token (401)."""
        self.auth_failures["console_token"] = self.auth_failures.get("console_token", 0) + 1
        if self._throttled("console", burst=CLIENT_ERROR_LOG_BURST):
            return
        http_log.warning("debug console %s: wrong or missing token (401; %d so far)",
                         path[:64], self.auth_failures["console_token"],
                         extra={"event": "console_unauthorized", "path": path[:64]})

    def _throttled(self, kind: str, burst: int = 1) -> bool:
        """Whether a line of `kind` is over its budget: `burst` lines per
        RATE_LIMIT_LOG_INTERVAL seconds (the counters still count every event)."""
        now = time.monotonic()
        window = self._log_windows.get(kind)
        if window is None or now - window[0] >= RATE_LIMIT_LOG_INTERVAL:
            self._log_windows[kind] = [now, 1]
            return False
        window[1] += 1
        return window[1] > burst

    def open_file_limit_hit(self) -> None:
        """A TCP connection was refused (503) at the process's open-file limit."""
        key = ("", "open_files")
        self.connection_limit_refusals[key] = self.connection_limit_refusals.get(key, 0) + 1

    def slow_consumer(self, app_id: str, socket_id: str, limit: int) -> None:
        """A socket was cut off: its outbound buffer crossed `limit` bytes."""
        self.slow_consumers[app_id] = self.slow_consumers.get(app_id, 0) + 1
        ws_log.warning("slow consumer cut off app=%s socket_id=%s buffer_limit=%d",
                       app_id, socket_id, limit,
                       extra={"event": "slow_consumer", "app_id": app_id,
                              "socket_id": socket_id})

    # --- client messages ----------------------------------------------------------------

    def client_error(self, app_id: str, socket_id: str, exc: PusherError) -> None:
        """A client message was refused with a ``pusher:error`` (the socket stays open)."""
        reason = auth_failure_reason(exc)
        if reason is not None:
            self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1
        channel = exc.channel or "-"
        if isinstance(exc, ClientEventRejected) and "rate limit" in exc.message:
            count = self.client_events_rate_limited[app_id] = (
                self.client_events_rate_limited.get(app_id, 0) + 1)
            # A flooding client must not flood the log: one line per app per interval.
            now = time.monotonic()
            if now - self._rate_limit_logged_at.get(app_id, -RATE_LIMIT_LOG_INTERVAL) < \
                    RATE_LIMIT_LOG_INTERVAL:
                return
            self._rate_limit_logged_at[app_id] = now
            ws_log.warning("client events rate-limited app=%s socket_id=%s channel=%s (%d so "
                        "far; logged at most every %d s)", app_id, socket_id, channel, count,
                        RATE_LIMIT_LOG_INTERVAL,
                        extra={"event": "client_events_rate_limited", "app_id": app_id,
                               "socket_id": socket_id, "channel": channel, "total": count})
            return
        if not self._may_log_client_error(app_id):
            return
        # The messages name what was signed, never a signature or a secret. A refusal is
        # a warning (kept at --log-level warning); the burst limit above keeps a flood of
        # them from flooding the log.
        ws_log.warning("client error app=%s socket_id=%s code=%s channel=%s: %s", app_id,
                    socket_id, exc.code, channel, exc.message[:200],
                    extra={"event": "client_error", "app_id": app_id, "socket_id": socket_id,
                           "code": exc.code, "channel": channel, "reason": reason})
        if self.sinks:
            self.tell("client_error", app_id=app_id, socket_id=socket_id, code=exc.code,
                      channel=channel, message=exc.message[:200])

    def _may_log_client_error(self, app_id: str) -> bool:
        """At most CLIENT_ERROR_LOG_BURST client-error lines per app per interval, so that
        a client sending garbage in a loop cannot flood the log (the metrics count all)."""
        now = time.monotonic()
        window = self._client_error_window.get(app_id)
        if window is None or now - window[0] >= RATE_LIMIT_LOG_INTERVAL:
            if window is not None and window[1] > CLIENT_ERROR_LOG_BURST:
                ws_log.warning("client errors app=%s: %d more not logged in the last %d s",
                               app_id, window[1] - CLIENT_ERROR_LOG_BURST,
                               RATE_LIMIT_LOG_INTERVAL,
                               extra={"event": "client_errors_suppressed", "app_id": app_id})
            self._client_error_window[app_id] = [now, 1]
            return True
        window[1] += 1
        return window[1] <= CLIENT_ERROR_LOG_BURST

    # --- the HTTP API -------------------------------------------------------------------

    def endpoint_stats(self, endpoint: str) -> EndpointStats:
        """The counters of one HTTP API endpoint label (created on first use), for the
        caller to keep and :meth:`EndpointStats.observe` each request on (metrics on)."""
        stats = self.api.get(endpoint)
        if stats is None:
            stats = self.api[endpoint] = EndpointStats()
        return stats

    def api_error(self, method: str, endpoint: str, app_id: str, status: int,
                  message: str) -> None:
        """An HTTP API request was refused (4xx/5xx); 401s count as auth failures."""
        if status == 401:
            reason = api_failure_reason(message)
            self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1
        level = logging.ERROR if status >= 500 else logging.WARNING
        if endpoint == "other" and status in (404, 405):
            # A path that is no API endpoint (a scanner, a favicon): no story to tell.
            http_log.debug("HTTP %s to an unknown path: %d", method, status)
            return
        http_log.log(level, "HTTP API %s %s app=%s status=%d: %s", method, endpoint,
                     app_id or "-", status, message[:200],
                     extra={"event": "api_error", "method": method, "endpoint": endpoint,
                            "app_id": app_id, "status": status})
        if self.sinks:
            self.tell("api_error", app_id=app_id, endpoint=endpoint, status=status,
                      message=message[:200])
