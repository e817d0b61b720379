"""The HTTP API route table and handlers (spec §12, §13), all in one place.

Handlers are synchronous: signature check, parse, adapter call, JSON response. A trigger
never awaits, so it is answered in the same event-loop turn that received it; the one
exception is a trigger to a cache channel on a node of a cluster, whose answer waits
until the adapter has stored the event (a :class:`PendingResponse`, at most
:data:`STORE_TIMEOUT` seconds), so that a client subscribing anywhere after the answer
gets that event.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import unquote

import orjson

from pusherd.adapters.base import Adapter
from pusherd.apps import App, AppRegistry
from pusherd.core import api
from pusherd.core.auth import verify_api_request
from pusherd.core.channels import channel_name_problem, classify_channel
from pusherd.errors import HttpApiError
from pusherd.server.state import ServerState
from pusherd.server.telemetry import EndpointStats
from pusherd.webhooks.sender import WebhookSender

log = logging.getLogger("pusherd.http")


@dataclass(slots=True)
class HttpResponse:
    """A status, a body and its content type, rendered by the connection."""

    status: int
    body: bytes
    content_type: str = "application/json"


# The answer to nearly every trigger: one shared object, its bytes rendered once.
EMPTY_OK = HttpResponse(200, b"{}")

# Seconds a trigger's answer waits for its cache channels' event to be stored (the
# Redis writer's own command timeout is 5 s; the rest is room for a backlog).
STORE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class PendingResponse:
    """`response` once `stored` is done; if it fails or takes more than `timeout`
    seconds, a 503 saying the event was delivered on this node but may not be stored."""

    stored: asyncio.Future[Any]
    response: HttpResponse
    timeout: float = STORE_TIMEOUT

    def failure(self, reason: str) -> HttpResponse:
        """The 503 for `reason` (why the event may not be stored)."""
        return error_response(503, (
            "The event was delivered to this node's subscribers, but storing it as the "
            f"cache channel's last event failed ({reason}): other nodes' subscribers may "
            "not get it, and a new subscriber may get the previous one"))


def _pending(stored: list[asyncio.Future[None]], response: HttpResponse
             ) -> HttpResponse | PendingResponse:
    if not stored:
        return response
    return PendingResponse(stored[0] if len(stored) == 1 else asyncio.gather(*stored),
                           response)


def _json(status: int, value: Any) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(value))


def error_response(status: int, message: str) -> HttpResponse:
    """The JSON error body of spec §12.2: ``{"error": message, "status": status}``."""
    return _json(status, {"error": message, "status": status})


Route = Callable[[str, str], HttpResponse]
"""An operations route (``/up``, ``/ready``, ``/metrics``, ``/console``): (method, raw
query) -> response."""


def api_endpoint(path: str) -> str:
    """The endpoint a request path names, as a metric label (bounded: never the app id,
    channel or user)."""
    if path.startswith("/apps/"):
        rest = path[6:].partition("/")[2]
        if rest in ("events", "batch_events", "channels"):
            return rest
        if rest.startswith("channels/"):
            return "channel_users" if rest.endswith("/users") else "channel"
        if rest.startswith("users/"):
            return "terminate_connections"
        return "other"
    if path.startswith("/users/"):
        return "terminate_connections"
    return "other"


_CACHED_ENDPOINTS = frozenset({"events", "batch_events", "channels"})


def _app_id_of(path: str) -> str:
    return path[6:].partition("/")[0][:64] if path.startswith("/apps/") else ""


_TERMINATE = re.compile(r"\A/users/([^/]+)/terminate_connections\Z")
_CHANNEL = re.compile(r"\A/channels/([^/]+)\Z")
_CHANNEL_USERS = re.compile(r"\A/channels/([^/]+)/users\Z")


def _method_of(rest: str) -> str | None:
    """The one method the API route `rest` (the path after ``/apps/{id}``) answers, or
    None when no route has that path (§12)."""
    if rest in ("/events", "/batch_events", "/webhooks/replay") or _TERMINATE.match(rest):
        return "POST"
    if (rest in ("/channels", "/webhooks/failed") or _CHANNEL.match(rest)
            or _CHANNEL_USERS.match(rest)):
        return "GET"
    return None


class HttpApi:
    """Routes requests under ``/apps/{app_id}`` (and the Python SDK's terminate path).

    :meth:`handle` takes the request's parts as the connection parsed them and returns the
    response; a trigger is one straight path (split the path, verify, parse, publish) with
    no per-request objects beyond the parsed query and the :class:`~pusherd.core.api.Trigger`.
    """

    def __init__(self, apps: AppRegistry, adapter: Adapter, state: ServerState,
                 webhooks: WebhookSender | None = None) -> None:
        self.apps = apps
        self.adapter = adapter
        self.state = state
        self.webhooks = webhooks
        # Exact paths answered before the API (they also answer outside the mount prefix).
        self.routes: dict[str, Route] = {"/up": self._up}
        # Set while metrics are on: the counters of an endpoint label
        # (Telemetry.endpoint_stats); each request's status and seconds go there.
        self.observe: Callable[[str], EndpointStats] | None = None
        # raw path -> its endpoint's counters, for the few paths without a channel or
        # user in them (a trigger's path is the same for every request of an app), so a
        # trigger finds its counters in one lookup; bounded.
        self._endpoints: dict[str, EndpointStats] = {}

    def handle(self, method: str, raw_path: str, query: str, body: bytes
               ) -> HttpResponse | PendingResponse:
        """Answer one request. `raw_path` is as sent (percent-escapes kept: it may be what
        the client signed) with the mount prefix removed; `query` is the raw query string.
        A :class:`PendingResponse` is to be sent when its store is done."""
        route = self.routes.get(raw_path)
        if route is not None:
            return route(method, query)
        if self.state.starting:  # bound, adapter not started yet (/ready: "starting")
            return error_response(503, "Server is starting")
        observe = self.observe
        if observe is None:
            return self._answer(method, raw_path, query, body)
        started = perf_counter()
        response = self._answer(method, raw_path, query, body)
        elapsed = perf_counter() - started
        stats = self._endpoints.get(raw_path)
        if stats is None:
            endpoint = api_endpoint(raw_path)
            stats = observe(endpoint)
            if endpoint in _CACHED_ENDPOINTS and len(self._endpoints) < 1024:
                self._endpoints[raw_path] = stats
        stats.observe(response.status if isinstance(response, HttpResponse)
                      else response.response.status, elapsed)
        return response

    def _answer(self, method: str, raw_path: str, query: str, body: bytes
                ) -> HttpResponse | PendingResponse:
        try:
            return self._route(method, raw_path, query, body)
        except HttpApiError as exc:
            self.state.telemetry.api_error(method, api_endpoint(raw_path),
                                           _app_id_of(raw_path), exc.status, exc.log_message)
            return error_response(exc.status, exc.message)

    def _up(self, method: str, query: str) -> HttpResponse:
        """Liveness: 200 while the process serves; 503 only while it drains (it still
        answers: the listener stays open during a drain).

        Redis being unreachable is not a reason to restart the process (it keeps serving
        its own sockets and reconnects by itself): that is ``/ready``'s 503
        ``adapter_unavailable``, never ``/up``'s."""
        if method not in ("GET", "HEAD"):
            return error_response(405, "Use GET")
        if self.state.draining:
            return _json(503, {"status": "draining"})
        return _json(200, {"status": "ok"})

    def _route(self, method: str, raw_path: str, query: str, body: bytes
               ) -> HttpResponse | PendingResponse:
        path = unquote(raw_path) if "%" in raw_path else raw_path
        params = api.parse_query(query)

        if path.startswith("/apps/"):
            # /apps/{app_id}{rest}: partition, not a regex (this is every trigger's path).
            app_id, slash, rest = path[6:].partition("/")
            if not app_id:
                raise HttpApiError(404, "Not found")
            app = self.apps.by_id(app_id)
            if app is None:
                raise HttpApiError(404, f"Unknown app id {app_id[:64]!r}")
            rest = slash + rest
        else:
            terminate = _TERMINATE.match(path)
            if terminate is None:
                raise HttpApiError(404, "Not found")
            # The Python SDK signs and sends /users/{id}/terminate_connections without the
            # /apps/{id} part (spec §13.4): the app is the one whose key signed it.
            auth_key = next((v for k, v in params if k == "auth_key"), "")
            found = self.apps.by_key(auth_key)
            if found is None:
                raise HttpApiError(401, "Unknown auth_key")
            app, rest = found, path

        # A known path with another method is a 405 and an unknown one a 404, whether or
        # not the request is signed: neither depends on the app's secret.
        allowed = _method_of(rest)
        if allowed is None:
            raise HttpApiError(404, "Not found")
        if method != allowed:
            raise HttpApiError(405, f"{method[:16]} is not allowed here: use {allowed}")
        # raw_path has the mount prefix removed already: clients sign /apps/{id}/... (§13.2).
        # Most clients sign the path as sent; some escape ";,@" and sign it decoded.
        verify_api_request(
            app_key=app.key, secret=app.secret, method=method,
            paths=(raw_path,) if path is raw_path else (raw_path, path),
            params=params, body=body, now=time.time(),
        )
        if not app.enabled:
            raise HttpApiError(403, "Application is disabled")

        if method == "POST":
            if rest == "/events":
                return self._trigger(app, body)
            if rest == "/batch_events":
                return self._batch(app, body)
            if found_term := _TERMINATE.match(rest):
                return self._terminate(app, unquote(found_term.group(1)))
            if rest == "/webhooks/replay":
                return self._replay_webhooks(app, body)
        elif method == "GET":
            options = dict(params)
            if rest == "/channels":
                return self._channels(app, options)
            if found_ch := _CHANNEL.match(rest):
                return self._channel(app, unquote(found_ch.group(1)), options)
            if found_users := _CHANNEL_USERS.match(rest):
                return self._users(app, unquote(found_users.group(1)))
            if rest == "/webhooks/failed":
                return self._failed_webhooks(app)
        raise HttpApiError(404, "Not found")  # unreachable: _method_of knows every route

    # --- handlers -----------------------------------------------------------------------

    def _trigger(self, app: App, body: bytes) -> HttpResponse | PendingResponse:
        trigger = api.parse_trigger(app, body)
        stored = self.adapter.trigger(app, trigger, time.time_ns() // 1_000_000)
        self.state.api_events += 1
        if self.state.telemetry.sinks:
            self._tell_trigger(app, trigger)
        if not trigger.info:
            return EMPTY_OK if stored is None else PendingResponse(stored, EMPTY_OK)
        response = _json(200, {"channels": {c: self._trigger_info(app, c, trigger.info)
                                            for c in trigger.channels}})
        return response if stored is None else PendingResponse(stored, response)

    def _batch(self, app: App, body: bytes) -> HttpResponse | PendingResponse:
        triggers = api.parse_batch(app, body)
        now_ms = time.time_ns() // 1_000_000
        stored: list[asyncio.Future[None]] = []
        for trigger in triggers:
            waiter = self.adapter.trigger(app, trigger, now_ms)
            if waiter is not None:
                stored.append(waiter)
        self.state.api_events += len(triggers)
        if self.state.telemetry.sinks:
            for trigger in triggers:
                self._tell_trigger(app, trigger)
        if not any(t.info for t in triggers):
            return _pending(stored, EMPTY_OK)
        return _pending(stored, _json(200, {"batch": [
            self._trigger_info(app, t.channels[0], t.info) if t.info else {} for t in triggers
        ]}))

    def _tell_trigger(self, app: App, trigger: api.Trigger) -> None:
        self.state.telemetry.tell("api_event", app_id=app.id, event=trigger.name,
                                  channels=list(trigger.channels), data=trigger.data[:200])

    def _trigger_info(self, app: App, channel: str, info: frozenset[str]) -> dict[str, int]:
        """Counts after delivery; attributes that do not apply to the channel are left out."""
        snapshot = self.adapter.channel_snapshot(app, channel)
        result: dict[str, int] = {}
        if "user_count" in info and snapshot.user_count is not None:
            result["user_count"] = snapshot.user_count
        if "subscription_count" in info:  # sockets, on every kind of channel
            result["subscription_count"] = snapshot.subscription_count
        return result

    def _channels(self, app: App, query: dict[str, str]) -> HttpResponse:
        prefix = query.get("filter_by_prefix", "")
        info = api.parse_info(query.get("info"), frozenset({"user_count", "subscription_count"}))
        if "user_count" in info and not prefix.startswith("presence-"):
            raise HttpApiError(400, "info=user_count requires filter_by_prefix=presence-")
        channels: dict[str, dict[str, int]] = {}
        for name, snapshot in self.adapter.occupied_channels(app, prefix):
            attributes: dict[str, int] = {}
            if "user_count" in info and snapshot.user_count is not None:
                attributes["user_count"] = snapshot.user_count
            if "subscription_count" in info:
                attributes["subscription_count"] = snapshot.subscription_count
            channels[name] = attributes
        return _json(200, {"channels": channels})

    def _channel(self, app: App, channel: str, query: dict[str, str]) -> HttpResponse:
        self._check_channel(app, channel)
        info = api.parse_info(query.get("info"), api.CHANNEL_INFO_ATTRIBUTES)
        api.check_channel_info_request(channel, info)
        snapshot = self.adapter.channel_snapshot(app, channel)
        result: dict[str, Any] = {"occupied": snapshot.occupied}
        if "subscription_count" in info:
            result["subscription_count"] = snapshot.subscription_count
        if "user_count" in info:
            result["user_count"] = snapshot.user_count or 0
        if "cache" in info:
            cached = self.adapter.cached_event(app, channel, time.time_ns() // 1_000_000)
            result["cache"] = None if cached is None else {
                "event": cached.event, "data": cached.data, "ttl": max(0, cached.ttl_ms // 1000)}
        return _json(200, result)

    def _users(self, app: App, channel: str) -> HttpResponse:
        self._check_channel(app, channel)
        if not classify_channel(channel).presence:
            raise HttpApiError(400, "Users are only available for presence channels")
        users = self.adapter.presence_user_ids(app, channel)
        return _json(200, {"users": [{"id": user_id} for user_id in users]})

    def _terminate(self, app: App, user_id: str) -> HttpResponse:
        if not user_id or len(user_id) > app.max_user_id_length:
            raise HttpApiError(400, "Invalid user id")
        count = self.adapter.terminate_user(app, user_id)
        log.info("terminated %d connection(s) of one user of app %s", count, app.id)
        return EMPTY_OK

    def _failed_webhooks(self, app: App) -> HttpResponse:
        """``{"events": [...]}``: the app's dead letters, oldest first (docs/webhooks.md)."""
        events = self.webhooks.failed_events(app.id) if self.webhooks is not None else []
        return _json(200, {"events": events})

    def _replay_webhooks(self, app: App, body: bytes) -> HttpResponse:
        """Body ``{"ids": [...]}`` (or ``{}``/empty: every dead letter of the app); answers
        ``{"replayed": n}``."""
        ids: list[str] | None = None
        if body.strip():
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise HttpApiError(400, "The body must be a JSON object") from None
            if not isinstance(parsed, dict):
                raise HttpApiError(400, "The body must be a JSON object")
            unknown = sorted(set(parsed) - {"ids"})
            if unknown:  # a typo must never widen a replay to every dead letter
                raise HttpApiError(400, f"Unknown key {unknown[0][:64]!r}: the body is "
                                        '{"ids": [...]}, or {} for every dead letter')
            raw_ids = parsed.get("ids")
            if raw_ids is not None:
                if not isinstance(raw_ids, list) or not all(isinstance(i, str) for i in raw_ids):
                    raise HttpApiError(400, "ids must be a list of event id strings")
                ids = raw_ids
        if self.webhooks is None:
            return _json(200, {"replayed": 0})
        return _json(200, {"replayed": self.webhooks.replay(app.id, ids)})

    @staticmethod
    def _check_channel(app: App, channel: str) -> None:
        problem = channel_name_problem(channel, max(app.max_channel_name_length, 200))
        if problem is not None or channel.startswith("#"):
            raise HttpApiError(400, f"Invalid channel name: {problem or 'reserved'}")
