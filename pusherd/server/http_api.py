"""The HTTP API route table and handlers (spec §12, §13), all in one place.

Handlers are synchronous: signature check, parse, adapter call, JSON response. A trigger
never awaits, so it is answered in the same event-loop turn that received it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from pusherd.apps import App
from pusherd.core import api
from pusherd.core.auth import verify_api_request
from pusherd.core.channels import channel_name_problem, classify_channel
from pusherd.errors import HttpApiError

if TYPE_CHECKING:
    from pusherd.server.server import Server

log = logging.getLogger("pusherd.http")


@dataclass(slots=True)  # not frozen: built once per request, frozen init costs 1 us
class HttpRequest:
    method: str
    raw_path: str  # as sent, percent-escapes kept (it may be what the client signed)
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(status: int, value: Any) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(value))


def error_response(status: int, message: str) -> HttpResponse:
    return _json(status, {"error": message, "status": status})


_APP_ROUTE = re.compile(r"\A/apps/([^/]+)(/.*)?\Z")
_CHANNEL = re.compile(r"\A/channels/([^/]+)\Z")
_CHANNEL_USERS = re.compile(r"\A/channels/([^/]+)/users\Z")
_TERMINATE = re.compile(r"\A/users/([^/]+)/terminate_connections\Z")


class HttpApi:
    """Routes requests under ``/apps/{app_id}`` (and the Python SDK's terminate path)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.adapter = server.adapter

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._route(request)
        except HttpApiError as exc:
            if exc.status >= 500:
                log.error("HTTP %s %s failed: %s", request.method, request.raw_path, exc.message)
            return error_response(exc.status, exc.message)

    def _route(self, request: HttpRequest) -> HttpResponse:
        path = unquote(request.raw_path)
        method = request.method
        if path == "/up" and method in ("GET", "HEAD"):
            if self.server.draining:
                return _json(503, {"status": "draining"})
            return _json(200, {"status": "ok"})
        params = api.parse_query(request.query)

        match = _APP_ROUTE.match(path)
        if match is not None:
            app = self.server.apps.by_id(match.group(1))
            if app is None:
                raise HttpApiError(404, f"Unknown app id {match.group(1)[:64]!r}")
            rest = match.group(2) or ""
        else:
            terminate = _TERMINATE.match(path)
            if terminate is None:
                raise HttpApiError(404, "Not found")
            # The Python SDK signs and sends /users/{id}/terminate_connections without the
            # /apps/{id} part (spec §13.4): the app is the one whose key signed it.
            auth_key = next((v for k, v in params if k == "auth_key"), "")
            found = self.server.apps.by_key(auth_key)
            if found is None:
                raise HttpApiError(401, "Unknown auth_key")
            app, rest = found, path

        self._authenticate(app, request, params)
        if not app.enabled:
            raise HttpApiError(403, "Application is disabled")
        query = dict(params)

        if rest == "/events" and method == "POST":
            return self._trigger(app, request.body)
        if rest == "/batch_events" and method == "POST":
            return self._batch(app, request.body)
        if rest == "/channels" and method == "GET":
            return self._channels(app, query)
        if (found_ch := _CHANNEL.match(rest)) and method == "GET":
            return self._channel(app, unquote(found_ch.group(1)), query)
        if (found_users := _CHANNEL_USERS.match(rest)) and method == "GET":
            return self._users(app, unquote(found_users.group(1)))
        if (found_term := _TERMINATE.match(rest)) and method == "POST":
            return self._terminate(app, unquote(found_term.group(1)))
        raise HttpApiError(404 if method in ("GET", "POST") else 405, "Not found")

    def _authenticate(self, app: App, request: HttpRequest, params: list[tuple[str, str]]) -> None:
        decoded = unquote(request.raw_path)
        paths: tuple[str, ...] = (
            (request.raw_path,) if decoded == request.raw_path else (request.raw_path, decoded)
        )
        # raw_path has the mount prefix removed already: clients sign /apps/{id}/... (§13.2).
        verify_api_request(
            app_key=app.key, secret=app.secret, method=request.method, paths=paths,
            params=params, body=request.body, now=time.time(),
        )

    # --- handlers -----------------------------------------------------------------------

    def _trigger(self, app: App, body: bytes) -> HttpResponse:
        trigger = api.parse_trigger(app, body)
        self.adapter.trigger(app, trigger, time.monotonic())
        self.server.stats_api_events += 1
        if not trigger.info:
            return HttpResponse(200, b"{}")
        return _json(200, {"channels": {c: self._trigger_info(app, c, trigger.info)
                                        for c in trigger.channels}})

    def _batch(self, app: App, body: bytes) -> HttpResponse:
        triggers = api.parse_batch(app, body)
        now = time.monotonic()
        for trigger in triggers:
            self.adapter.trigger(app, trigger, now)
        self.server.stats_api_events += len(triggers)
        if not any(t.info for t in triggers):
            return HttpResponse(200, b"{}")
        return _json(200, {"batch": [
            self._trigger_info(app, t.channels[0], t.info) if t.info else {} for t in triggers
        ]})

    def _trigger_info(self, app: App, channel: str, info: frozenset[str]) -> dict[str, int]:
        """Counts after delivery; attributes that do not apply to the channel are left out."""
        snapshot = self.adapter.channel_snapshot(app, channel)
        result: dict[str, int] = {}
        if "user_count" in info and snapshot.user_count is not None:
            result["user_count"] = snapshot.user_count
        if "subscription_count" in info and not classify_channel(channel).presence:
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
            if "subscription_count" in info and snapshot.user_count is None:
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
            cached = self.adapter.cached_event(app, channel, time.monotonic())
            result["cache"] = None if cached is None else {
                "event": cached[0], "data": cached[1], "ttl": max(0, int(cached[2]))}
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
        return HttpResponse(200, b"{}")

    @staticmethod
    def _check_channel(app: App, channel: str) -> None:
        problem = channel_name_problem(channel, max(app.max_channel_name_length, 200))
        if problem is not None or channel.startswith("#"):
            raise HttpApiError(400, f"Invalid channel name: {problem or 'reserved'}")
