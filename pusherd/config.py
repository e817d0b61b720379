"""Configuration: one TOML file plus environment overrides, validated once, then frozen.

Precedence: command-line ``--host``/``--port`` > environment > file > defaults. Every
error names the key and the bad value, and pusherd refuses to start (exit code 2).
``config.example.toml`` documents every key.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from redis.connection import parse_url as parse_redis_url

from pusherd.apps import App, Webhook
from pusherd.core.ids import AppId, AppKey
from pusherd.core.origins import origin_entry_problem
from pusherd.environment import EnvOverrides, env_flag, read_environment, unknown_names
from pusherd.errors import ConfigError

WEBHOOK_EVENT_TYPES = frozenset(
    {"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event",
     "cache_miss", "subscription_count"}
)

# The development app used when neither the file nor the environment defines one. Its
# credentials are printed at start; they are for a developer's machine only.
DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET = "1001", "app-key", "app-secret"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where to listen and the protocol's timings and limits (seconds, bytes)."""

    host: str = "127.0.0.1"
    port: int = 8080
    path_prefix: str = ""  # mount prefix in front of /app/{key} and /apps/{id}
    activity_timeout: int = 120  # seconds, advertised in connection_established (§5)
    ping_grace: float = 30.0  # idle this long past activity_timeout: the server pings
    pong_timeout: float = 30.0  # no frame this long after the ping: close 4201
    max_message_size: int = 65_536  # largest inbound WebSocket message; larger: close 1009
    max_request_size: int = 262_144  # largest HTTP request body; larger: 413 unread
    max_write_buffer_size: int = 1_048_576  # outbound bytes queued per socket before cut-off
    http_idle_timeout: float = 75.0  # an HTTP connection idle this long (or sending a
    # request this slowly) is closed
    shutdown_timeout: float = 10.0  # seconds clients get to close after the last 4200
    shutdown_batch_size: int = 500  # a drain of at most this many sockets closes at once
    drain_grace: float = 3.0  # seconds not-ready before the first 4200 (load balancers)
    drain_seconds: float = 10.0  # the 4200 closes are spread over this many seconds
    workers: int = 1  # processes sharing the port (SO_REUSEPORT); more than 1 needs Redis
    strict_protocol_version: bool = False  # absent ?protocol= closes 4008 when true
    http_fallback: bool = True  # serve pusher-js's xhr_streaming / xhr_polling (§15)
    http_path: str = "/pusher"  # pusher-js httpPath: fallback URLs live under it
    fallback_session_timeout: float = 5.0  # a fallback session with no receive request
    # this long ends like a closed socket
    fallback_heartbeat_interval: float = 25.0  # an idle fallback receive request gets "h"
    fallback_hostname: str = ""  # announced to fallback clients: their later requests go
    # to this host (pins a session to this node behind a load balancer)
    log_level: str = "info"
    log_format: str = "text"  # text or json
    # Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For names the client
    # in logs and the console; none by default (the TCP peer is the client).
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[server.tls]``: serve ``wss://`` and ``https://`` on the port directly (PEM files)."""

    cert_file: str = ""
    key_file: str = ""

    @property
    def enabled(self) -> bool:
        """Whether a certificate is configured."""
        return bool(self.cert_file)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: Prometheus ``/metrics``; on its own listener when `port` is >= 0."""

    enabled: bool = True
    port: int = -1  # -1: served on the main port; 0 picks a free port
    host: str = ""  # its own listener's address; empty: [server] host


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """``[console]``: the live debug console at ``/console`` (off unless enabled)."""

    enabled: bool = False
    token: str = field(default="", repr=False)  # required when enabled; a secret


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Scaling out over Redis (docs/scaling.md). ``url`` empty: the in-memory adapter.

    ``url`` may carry a password, so it is kept out of ``repr``; log :meth:`redacted_url`.
    """

    url: str = field(default="", repr=False)
    # Every key and the bus channel start with "<prefix>:". Not set: "pusherd", or
    # "pusherd-<channel>" when the channel is not "bus" (see load_redis_config).
    prefix: str = "pusherd"
    channel: str = "bus"  # the pub/sub channel is "<prefix>:<channel>" (see .bus)
    lease_ttl: float = 10.0  # seconds a node's entries outlive its last lease renewal
    reap_interval: float = 2.0  # seconds between two looks for lapsed nodes
    max_buffered_bytes: int = 4_194_304  # bus messages kept while Redis is unreachable
    # Seconds at least between two bus frames (PUBLISHes) of a node: under load a frame
    # carries everything queued meanwhile; a trigger after a quiet spell goes at once.
    frame_interval: float = 0.005

    @property
    def enabled(self) -> bool:
        """Whether a Redis URL is set (this process is one node of a cluster)."""
        return bool(self.url)

    def redacted_url(self) -> str:
        """The URL with any password replaced by ``***`` (safe to log)."""
        return redact_redis_url(self.url)

    @property
    def database(self) -> int:
        """The database number the URL selects (``/N`` or ``?db=N``; 0 when none)."""
        if not self.url:
            return 0
        try:
            return int(parse_redis_url(self.url).get("db") or 0)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError):
            return 0  # an invalid URL is refused by the config check before any use

    @property
    def bus(self) -> str:
        """The bus's pub/sub channel: ``<prefix>:<channel>``, and ``@db<N>`` after it
        when the URL selects database N > 0. Pub/sub ignores the database number, so
        without it deployments told apart by database alone would share one bus."""
        database = self.database
        return f"{self.prefix}:{self.channel}" + (f"@db{database}" if database else "")


DEFAULT_JOURNAL = "<state dir>/pusherd/webhooks.journal"


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """``[webhooks]``: how webhooks are delivered (seconds, counts); see docs/webhooks.md.

    `journal` is the file that keeps accepted events until they are delivered (without
    Redis); its default is ``$XDG_STATE_HOME/pusherd/webhooks.journal`` (or
    ``~/.local/state/...``), and ``""`` keeps them in memory only (lost on a restart).
    """

    journal: str = DEFAULT_JOURNAL
    grace: float = 3.0  # channel_vacated / member_removed held this long (flap suppression)
    batch_window: float = 0.0  # 0: one event per request; else events of this window batch
    batch_max: int = 50  # events per request when batching
    retry_window: float = 300.0  # an event is retried this long, then dead-lettered
    retry_base: float = 1.0  # first backoff; doubles per attempt, with jitter
    retry_max: float = 60.0  # longest backoff between two attempts
    timeout: float = 10.0  # one request's deadline (connect, send, answer)
    concurrency: int = 4  # requests in flight per webhook target
    max_pending: int = 100_000  # events awaiting delivery; more are dropped and counted
    max_failed: int = 10_000  # dead letters kept; the oldest are forgotten beyond
    fsync_interval: float = 1.0  # the journal is fsync'ed this often while it changes


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration, frozen; built by :func:`load_config`."""

    server: ServerConfig
    apps: tuple[App, ...]
    redis: RedisConfig
    dev_app: bool = False  # True when the built-in development app is in use
    # Things that work but may surprise (printed at start), e.g. a non-numeric app id.
    warnings: tuple[str, ...] = ()
    # What the configuration did that is worth a line at start (logged at info), e.g. a
    # file app taking its secret from the environment.
    notices: tuple[str, ...] = ()
    webhooks: WebhooksConfig = WebhooksConfig()
    tls: TlsConfig = TlsConfig()
    metrics: MetricsConfig = MetricsConfig()
    console: ConsoleConfig = ConsoleConfig()
    public_url: str = ""  # where clients reach this server (REVERB_HOST...), for the banner
    # Where the Redis URL came from (PUSHERD_REDIS_URL, REDIS_URL, REDIS_HOST, redis.url),
    # for messages about it (see redis_url_source).
    redis_source: str = "redis.url"


def _check_type(key: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    # bool is an int subclass: refuse `port = true` and similar.
    if isinstance(value, bool) and expected in (int, float, (int, float)):
        raise ConfigError(key, f"expected a number, got {value!r}")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        name = expected.__name__ if isinstance(expected, type) else "number"
        raise ConfigError(key, f"expected {name}, got {value!r}")
    return value


def _build(cls: type, section: Mapping[str, Any], where: str, skip: tuple[str, ...] = ()) -> Any:
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key in skip:
            continue
        if key not in known:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        default = known[key].default
        if default is MISSING:  # the required string fields: id, key, secret, url
            values[key] = _check_type(f"{where}.{key}", value, str)
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{key}", f"expected a list of strings, got {value!r}")
            values[key] = tuple(value)
        else:
            values[key] = _check_type(f"{where}.{key}", value, type(default))
    return cls(**values)


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    # TOML has nan and inf: neither is a usable duration or size (nan compares false
    # with everything, so it would pass the test below and silently disable a timer).
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _validate_server(server: ServerConfig) -> None:
    if not 0 <= server.port <= 65535:
        raise ConfigError("server.port", f"must be 0..65535, got {server.port!r}")
    for name in ("activity_timeout", "max_message_size", "max_request_size",
                 "max_write_buffer_size", "shutdown_batch_size", "workers"):
        _positive(f"server.{name}", getattr(server, name))
    _positive("server.http_idle_timeout", server.http_idle_timeout)
    for name in ("fallback_session_timeout", "fallback_heartbeat_interval"):
        _positive(f"server.{name}", getattr(server, name))
    if server.http_path and (
        not server.http_path.startswith("/") or server.http_path.endswith("/")
    ):
        raise ConfigError("server.http_path",
                          f"must start with / and not end with /, got {server.http_path!r}")
    if server.fallback_hostname and not all(
        c.isalnum() or c in ".-" for c in server.fallback_hostname
    ):
        raise ConfigError("server.fallback_hostname",
                          f"must be a bare host name, got {server.fallback_hostname!r}")
    for name in ("ping_grace", "pong_timeout", "shutdown_timeout"):
        _positive(f"server.{name}", getattr(server, name), allow_zero=True)
    if server.path_prefix and (
        not server.path_prefix.startswith("/") or server.path_prefix.endswith("/")
    ):
        raise ConfigError("server.path_prefix",
                          f"must start with / and not end with /, got {server.path_prefix!r}")
    if server.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", f"unknown level {server.log_level!r}")
    if server.log_format not in ("text", "json"):
        raise ConfigError("server.log_format", f"must be text or json, got {server.log_format!r}")
    for name in ("drain_grace", "drain_seconds"):
        _positive(f"server.{name}", getattr(server, name), allow_zero=True)
    for entry in server.trusted_proxies:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ConfigError("server.trusted_proxies",
                              f"not an IP address or CIDR block: {entry!r}") from None


def _validate_tls(tls: TlsConfig, sources: Mapping[str, str]) -> None:
    if bool(tls.cert_file) != bool(tls.key_file):
        missing, given = (("key_file", "cert_file") if tls.cert_file
                          else ("cert_file", "key_file"))
        if f"server.tls.{given}" in sources:  # set by PUSHERD_TLS_*: say it in its terms
            raise ConfigError(f"PUSHERD_TLS_{missing.upper()}",
                              f"{sources[f'server.tls.{given}']} is set: set "
                              "PUSHERD_TLS_CERT_FILE and PUSHERD_TLS_KEY_FILE together "
                              "(or [server.tls] cert_file and key_file)")
        raise ConfigError(f"server.tls.{missing}", "set cert_file and key_file together")
    for name in ("cert_file", "key_file"):
        value = getattr(tls, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"server.tls.{name}", f"file not found: {value}")


def _replace(server: ServerConfig, **changes: Any) -> ServerConfig:
    values = {f.name: getattr(server, f.name) for f in fields(ServerConfig)}
    values.update(changes)
    return ServerConfig(**values)


def _build_app(raw: Any, index: int, where: str = "") -> App:
    where = where or f"apps[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, "each [[apps]] entry must be a table")
    for required in ("id", "key", "secret"):
        value = raw.get(required)
        if isinstance(value, int) and not isinstance(value, bool) and required == "id":
            raw = {**raw, "id": str(value)}
        elif not isinstance(value, str) or not value:
            shown = "<hidden>" if required == "secret" and value else repr(value)
            raise ConfigError(f"{where}.{required}", f"required non-empty string, got {shown}")
    webhooks = []
    for windex, hook in enumerate(raw.get("webhooks", [])):
        hwhere = f"{where}.webhooks[{windex}]"
        if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
            raise ConfigError(f"{hwhere}.url", "each webhook needs a url string")
        built = _build(Webhook, hook, hwhere)
        if not built.url.startswith(("http://", "https://")):
            raise ConfigError(f"{hwhere}.url", f"must be an http(s) URL, got {built.url!r}")
        unknown = set(built.event_types) - WEBHOOK_EVENT_TYPES
        if unknown:
            raise ConfigError(f"{hwhere}.event_types", f"unknown event types {sorted(unknown)}")
        webhooks.append(built)
    app: App = _build(App, raw, where, skip=("webhooks",))
    app = _replace_app(app, webhooks=tuple(webhooks), id=AppId(str(app.id)))
    for name in ("max_connections", "max_client_events_per_second"):
        _positive(f"{where}.{name}", getattr(app, name), allow_zero=True)
    for name in ("max_channel_name_length", "max_event_name_length", "max_event_data_size",
                 "max_channels_per_event", "max_batch_size", "max_presence_members",
                 "max_presence_user_info_size", "max_user_id_length", "max_watchlist_size",
                 "cache_ttl"):
        _positive(f"{where}.{name}", getattr(app, name))
    if app.encryption_master_key_base64:
        try:
            master_key = base64.b64decode(app.encryption_master_key_base64, validate=True)
        except ValueError:
            master_key = b""
        if len(master_key) != 32:
            raise ConfigError(f"{where}.encryption_master_key_base64",
                              "must be 32 bytes encoded in base64 (value hidden)")
    if ":" in app.key:
        raise ConfigError(f"{where}.key", f"must not contain ':', got {app.key!r}")
    for entry in app.allowed_origins:
        origin_problem = origin_entry_problem(entry)
        if origin_problem is not None:
            raise ConfigError(f"{where}.allowed_origins", f"{entry!r}: {origin_problem}")
    return app


def _is_numeric_id(app_id: str) -> bool:
    return app_id.isascii() and app_id.isdigit()


def _non_numeric_id_warning(where: str, app_id: str) -> str:
    return (f"{where}={app_id!r} is not numeric: pusher-js and the node and PHP SDKs accept "
            "it, but the official Python SDK refuses non-numeric app ids (use digits if a "
            "backend uses Python)")


def _replace_app(app: App, **changes: Any) -> App:
    values = {f.name: getattr(app, f.name) for f in fields(App)}
    values.update(changes)
    return App(**values)


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Config:
    """Read `path` (TOML), apply `env` overrides and the command-line host/port; validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("--config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    sections = ("server", "apps", "redis", "webhooks", "metrics", "console")
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown section (known: {', '.join(sections)})")
    env = env or {}
    overrides = read_environment(env)
    sources = dict(overrides.sources)
    # The command line wins over the environment: an error about it names the key.
    if host is not None:
        sources.pop("server.host", None)
    if port is not None:
        sources.pop("server.port", None)
    try:
        return _load(raw, env, overrides, sources, host, port)
    except ConfigError as exc:
        name = sources.get(exc.key)
        if name is None:
            raise
        raise ConfigError(name, f"{exc.detail} ({exc.key})") from None


def _load(raw: dict[str, Any], env: Mapping[str, str], overrides: EnvOverrides,
          sources: Mapping[str, str], host: str | None, port: int | None) -> Config:

    file_server = dict(raw.get("server", {}))
    tls_table = file_server.pop("tls", {})
    if not isinstance(tls_table, dict):
        raise ConfigError("server.tls", "use a [server.tls] table")
    tls_raw = dict(tls_table)
    # The file is validated on its own first: an override (--port 0) must not hide a bad
    # value in it (port = "8082") that would stop the next start without the override.
    _validate_server(_build(ServerConfig, file_server, "server"))
    server_raw = {**file_server, **overrides.server}
    if host is not None:
        server_raw["host"] = host
    if port is not None:
        server_raw["port"] = port
    server: ServerConfig = _build(ServerConfig, server_raw, "server")
    if overrides.ping_interval is not None:
        # Reverb pings a socket silent for ping_interval seconds; pusherd's ping comes
        # activity_timeout + ping_grace after the last frame, and never before the
        # activity_timeout the clients were told.
        server = _replace(server, ping_grace=float(
            max(0, overrides.ping_interval - server.activity_timeout)))
    _validate_server(server)
    if "passphrase" in tls_raw:  # Reverb's stream-context option of that name
        raise ConfigError("server.tls.passphrase", "not supported: pusherd never asks for "
                          "a key's passphrase; store the key unencrypted, readable by "
                          "pusherd's user only")
    # Reverb's names for the same two files (its servers.reverb.options.tls stream context
    # keys), accepted so that its TLS settings carry over as they are.
    for reverb_name, name in (("local_cert", "cert_file"), ("local_pk", "key_file")):
        if reverb_name in tls_raw:
            if name in tls_raw:
                raise ConfigError(f"server.tls.{reverb_name}", f"set {name} or {reverb_name}, "
                                  "not both")
            tls_raw[name] = tls_raw.pop(reverb_name)
    tls: TlsConfig = _build(TlsConfig, {**tls_raw, **overrides.tls}, "server.tls")
    _validate_tls(tls, sources)
    metrics: MetricsConfig = _build(MetricsConfig, {**raw.get("metrics", {}),
                                                    **overrides.metrics}, "metrics")
    if not -1 <= metrics.port <= 65535:
        raise ConfigError("metrics.port", f"must be 0..65535 (or -1), got {metrics.port!r}")
    warnings: list[str] = unknown_names(env)
    if not metrics.enabled and metrics.port >= 0:
        warnings.append(f"metrics.port = {metrics.port} is ignored: [metrics] enabled is "
                        "false (no /metrics anywhere)")
    if metrics.enabled and metrics.port == server.port != 0 and (
        metrics.host in ("", server.host) or "" in (metrics.host, server.host)
        or {metrics.host, server.host} & {"0.0.0.0", "::"}
    ):
        raise ConfigError("metrics.port", f"{metrics.port} is also the server's port "
                          "([server] port): choose another port for /metrics, or -1 to "
                          "serve it on the main port")
    console: ConsoleConfig = _build(ConsoleConfig, {**raw.get("console", {}),
                                                    **overrides.console}, "console")
    if console.enabled and len(console.token) < 16:
        raise ConfigError("console.token", "the console shows every app's traffic: set a "
                          "token of at least 16 characters (value hidden)")
    if console.token and not console.enabled:
        warnings.append("console.token is set but [console] enabled is false: the console "
                        "is off")

    apps_raw = raw.get("apps", [])
    if not isinstance(apps_raw, list):
        raise ConfigError("apps", "use [[apps]] tables")
    apps = [_build_app(entry, i) for i, entry in enumerate(apps_raw)]
    warnings += [_non_numeric_id_warning(f"apps[{i}].id", app.id)
                 for i, app in enumerate(apps) if not _is_numeric_id(app.id)]
    notices: list[str] = []

    env_app = {k: v for k, v in overrides.app.items() if k in ("id", "key", "secret")}
    if "id" in env_app and not _is_numeric_id(env_app["id"]):
        name = "PUSHERD_APP_ID" if env.get("PUSHERD_APP_ID") else "REVERB_APP_ID"
        warnings.append(_non_numeric_id_warning(name, env_app["id"]))
    if env_app:
        if set(env_app) != {"id", "key", "secret"}:
            missing = sorted({"id", "key", "secret"} - set(env_app))
            raise ConfigError(f"PUSHERD_APP_{missing[0].upper()}",
                              "set id, key and secret together (PUSHERD_APP_* or REVERB_APP_*)")
        options = {k: v for k, v in overrides.app.items() if k not in env_app}
        apps, notice = _with_env_app(apps, env_app, options, sources)
        if notice:
            notices.append(notice)

    dev_app = False
    if not apps:
        dev_app = True
        apps = [App(id=AppId(DEV_APP_ID), key=AppKey(DEV_APP_KEY), secret=DEV_APP_SECRET,
                    name="development")]
    seen_ids: set[str] = set()
    seen_keys: set[str] = set()
    for index, app in enumerate(apps):
        if app.id in seen_ids:
            raise ConfigError(f"apps[{index}].id", f"duplicate app id {app.id!r}")
        if app.key in seen_keys:
            raise ConfigError(f"apps[{index}].key", f"duplicate app key {app.key!r}")
        seen_ids.add(app.id)
        seen_keys.add(app.key)

    redis = load_redis_config(raw.get("redis", {}), env)
    warnings += redis_warnings(redis)
    notices += redis_notices(raw.get("redis", {}), env, redis)
    redis_source = redis_url_source(env, raw.get("redis", {}).get("url"))
    webhooks = _build_webhooks(raw.get("webhooks", {}), env)
    return Config(server=server, apps=tuple(apps), redis=redis, dev_app=dev_app,
                  warnings=tuple(warnings), webhooks=webhooks, tls=tls, metrics=metrics,
                  console=console, public_url=overrides.public_url, notices=tuple(notices),
                  redis_source=redis_source)


def _with_env_app(apps: list[App], env_app: Mapping[str, str], options: Mapping[str, Any],
                  sources: Mapping[str, str]) -> tuple[list[App], str]:
    """The apps with the environment's app in them, and a line to log (or "").

    "App settings in the file, credentials in the environment": an app of the file with
    the same id and key takes what the environment sets (its secret, and
    ``REVERB_APP_MAX_CONNECTIONS`` / ``_ACCEPT_CLIENT_EVENTS_FROM`` when set) and keeps
    the rest (origins, limits, webhooks). The same id with another key, or the same key
    with another id, is refused: two sources disagree about one app.
    """
    id_name, key_name = sources["app.id"], sources["app.key"]
    same_id = next((i for i, a in enumerate(apps) if a.id == env_app["id"]), None)
    same_key = next((i for i, a in enumerate(apps) if a.key == env_app["key"]), None)
    if same_id is None and same_key is None:
        return apps + [_build_app({**env_app, **options}, 0, where="app")], ""
    if same_id != same_key:
        if same_id is not None:
            clash = (f"{id_name}={env_app['id']!r} is the id of apps[{same_id}] in the config "
                     f"file, whose key is {apps[same_id].key!r}, not {key_name}="
                     f"{env_app['key']!r}")
        else:
            assert same_key is not None
            clash = (f"{key_name}={env_app['key']!r} is the key of apps[{same_key}] in the "
                     f"config file, whose id is {apps[same_key].id!r}, not {id_name}="
                     f"{env_app['id']!r}")
        raise ConfigError(id_name if same_id is not None else key_name,
                          f"{clash}: give the environment's app the file app's id and key "
                          "(to set its secret), or an id and key of its own")
    index = same_id
    assert index is not None
    file_app = apps[index]
    merged = _build_app({**_app_table(file_app), "secret": env_app["secret"], **options},
                        index, where="app")
    merged = _replace_app(merged, webhooks=file_app.webhooks)
    taken = ["secret"] + sorted(options)
    names = ", ".join(sources.get(f"app.{k}", k) for k in taken)
    notice = (f"apps[{index}] (id {file_app.id}, key {file_app.key}) of the config file takes "
              f"{', '.join(taken)} from the environment ({names}); its other settings "
              "(origins, limits, webhooks) are the file's")
    return apps[:index] + [merged] + apps[index + 1:], notice


def _app_table(app: App) -> dict[str, Any]:
    """`app` as an ``[[apps]]`` table (lists for tuples), webhooks left out."""
    return {f.name: list(v) if isinstance(v := getattr(app, f.name), tuple) else v
            for f in fields(App) if f.name != "webhooks"}


# --- [redis] -------------------------------------------------------------------------------

REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "pusherd"
DEFAULT_CHANNEL = "bus"


def redact_redis_url(url: str) -> str:
    """`url` with its password (if any) replaced by ``***``: the one after the user name,
    and a ``password=`` query parameter (redis-py authenticates with either)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    query = parts.query
    if query:
        pairs = query.split("&")
        hidden = [pair.split("=", 1)[0] + "=***"
                  if unquote(pair.split("=", 1)[0]).lower() == "password" else pair
                  for pair in pairs]
        query = "&".join(hidden)
    if parts.password is None:
        if query == parts.query:
            return url
        # Not urlunsplit: it would drop the empty host of unix:///path.
        return url.partition("?")[0] + "?" + query + (
            "#" + parts.fragment if parts.fragment else "")
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if _port_or_none(parts) else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _port_or_none(parts: SplitResult) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return None
    return port


def _laravel_value(env: Mapping[str, str], name: str) -> str:
    """`name` as Laravel's ``env()`` reads it: ``null``/``(null)`` and ``empty``/
    ``(empty)`` are the empty string."""
    value = env.get(name) or ""
    return "" if value.strip().lower() in ("null", "(null)", "empty", "(empty)") else value


def _laravel_redis_url(env: Mapping[str, str]) -> str:
    """The URL Laravel's ``REDIS_*`` variables describe: ``REDIS_URL`` when set, its
    missing parts (user, password, database) filled from the separate variables, as
    Laravel merges them; otherwise built from ``REDIS_HOST`` / ``REDIS_PORT`` / ... ."""
    # Laravel's .env spells "none" as null (REDIS_PASSWORD=null, REDIS_USERNAME=null).
    username = _laravel_value(env, "REDIS_USERNAME")
    password = _laravel_value(env, "REDIS_PASSWORD")
    database = _laravel_value(env, "REDIS_DB").strip()
    if database and not database.isdigit():
        raise ConfigError("REDIS_DB", f"expected a database number, got {database!r}")
    url = _laravel_value(env, "REDIS_URL")
    if url.lower().startswith("tls://"):  # Laravel's (phpredis) spelling of rediss://
        url = "rediss://" + url[len("tls://"):]
    if url:
        parts = _split_redis_url("REDIS_URL", url)
        if parts.scheme == "unix":
            return url
        # The URL's own user and password (already percent-encoded) win over the
        # separate variables, which only fill what the URL leaves out.
        userinfo, _, netloc = parts.netloc.rpartition("@")
        user, has_secret, secret = userinfo.partition(":")
        if not user and username:
            user = quote(username, safe="")
        if not has_secret and password:
            secret, has_secret = quote(password, safe=""), ":"
        if user or has_secret:
            netloc = f"{user}{has_secret}{secret}@{netloc}"
        path = parts.path if parts.path.strip("/") else (f"/{database}" if database else "")
        return urlunsplit((parts.scheme, netloc, path, parts.query, ""))
    host = env.get("REDIS_HOST") or "127.0.0.1"
    port = env.get("REDIS_PORT") or "6379"
    if not port.isdigit():
        raise ConfigError("REDIS_PORT", f"expected an integer, got {port!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    auth = ""
    if password:
        auth = f"{quote(username, safe='')}:{quote(password, safe='')}@"
    elif username:
        auth = f"{quote(username, safe='')}@"
    return f"redis://{auth}{host}:{port}/{database or 0}"


def _split_redis_url(key: str, url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(key, f"not a valid URL: {redact_redis_url(url)!r}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(key, "must be a redis://, rediss:// (TLS) or unix:// URL, got "
                          f"{redact_redis_url(url)!r}")
    return parts


def _validate_redis_url(key: str, url: str) -> None:
    parts = _split_redis_url(key, url)
    shown = redact_redis_url(url)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(key, f"a unix:// URL needs a socket path, got {shown!r}")
        return
    if not parts.hostname:
        raise ConfigError(key, f"has no host, got {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, f"port must be 0..65535, got {shown!r}") from None
    if port == 0:
        raise ConfigError(key, f"port must be 1..65535, got {shown!r}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigError(key, f"the database (the path) must be a number, got {shown!r}")


LARAVEL_REDIS_VARIABLES = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME",
                           "REDIS_PASSWORD", "REDIS_DB")


def redis_url_source(env: Mapping[str, str], file_url: object = "") -> str:
    """Where the Redis URL comes from, for messages: ``PUSHERD_REDIS_URL``; ``REDIS_URL``
    or ``REDIS_HOST`` (a Laravel ``.env`` with ``REVERB_SCALING_ENABLED``); or
    ``redis.url`` (the file).

    With ``REVERB_SCALING_ENABLED`` but none of :data:`LARAVEL_REDIS_VARIABLES` set, the
    file's `file_url` (when set) is kept: the variables only fill a URL the file leaves
    out; without either, Laravel's defaults (``REDIS_HOST``) make the URL.
    """
    if env.get("PUSHERD_REDIS_URL"):
        return "PUSHERD_REDIS_URL"
    if env_flag(env, "REVERB_SCALING_ENABLED"):
        if _laravel_value(env, "REDIS_URL"):
            return "REDIS_URL"
        if file_url and not any(_laravel_value(env, name) for name in LARAVEL_REDIS_VARIABLES):
            return "redis.url"
        return "REDIS_HOST"
    return "redis.url"


def redis_notices(section: Any, env: Mapping[str, str], redis: RedisConfig) -> list[str]:
    """Lines to log at start about where the Redis URL of `redis` came from, when the
    config file's ``[redis] url`` is ignored for the environment's, or kept although
    ``REVERB_SCALING_ENABLED`` is set (URLs shown with the password redacted)."""
    file_url = section.get("url") if isinstance(section, dict) else None
    if not isinstance(file_url, str) or not file_url:
        return []
    source = redis_url_source(env, file_url)
    if source != "redis.url":
        return [f"[redis] url of the config file ({redact_redis_url(file_url)}) is ignored: "
                f"{source} gives Redis {redis.redacted_url()}"
                + (" (REVERB_SCALING_ENABLED)" if source != "PUSHERD_REDIS_URL" else "")]
    if env_flag(env, "REVERB_SCALING_ENABLED"):
        return [f"Redis is the config file's [redis] url ({redis.redacted_url()}): "
                "REVERB_SCALING_ENABLED is set without REDIS_URL, REDIS_HOST or another "
                "REDIS_* variable, so they do not replace it"]
    return []


def load_redis_config(section: Any, env: Mapping[str, str]) -> RedisConfig:
    """The ``[redis]`` table plus the environment, validated.

    The URL comes from, first to last: ``PUSHERD_REDIS_URL``; Laravel Reverb's
    ``REVERB_SCALING_ENABLED=true`` with Laravel's ``REDIS_URL`` or ``REDIS_HOST`` /
    ``REDIS_PORT`` / ``REDIS_USERNAME`` / ``REDIS_PASSWORD`` / ``REDIS_DB``; the file's
    ``url``; ``REVERB_SCALING_ENABLED=true`` alone (Laravel's defaults,
    ``redis://127.0.0.1:6379/0``). ``REVERB_SCALING_CHANNEL`` names the bus channel. The
    key prefix comes from ``PUSHERD_REDIS_PREFIX``, else the file's ``prefix``, else
    ``pusherd`` (or ``pusherd-<channel>`` when the channel is not the default ``bus``:
    deployments told apart by their channel alone must not share keys either). Raises
    :class:`ConfigError` naming the key; a password is never part of a message.
    """
    if not isinstance(section, dict):
        raise ConfigError("redis", "must be a table")
    redis_raw = dict(section)
    url_key = redis_url_source(env, redis_raw.get("url"))
    if url_key == "PUSHERD_REDIS_URL":
        redis_raw["url"] = env["PUSHERD_REDIS_URL"]
    elif url_key != "redis.url":
        redis_raw["url"] = _laravel_redis_url(env)
    if env.get("REVERB_SCALING_CHANNEL"):
        redis_raw["channel"] = env["REVERB_SCALING_CHANNEL"]
    if env.get("PUSHERD_REDIS_PREFIX"):
        redis_raw["prefix"] = env["PUSHERD_REDIS_PREFIX"]
    elif "prefix" not in redis_raw and isinstance(redis_raw.get("channel"), str) and \
            redis_raw["channel"] not in ("", DEFAULT_CHANNEL):
        # The bus alone would be separate; presence, counts and cache would be shared.
        redis_raw["prefix"] = f"{DEFAULT_PREFIX}-{redis_raw['channel']}"
    if "url" in redis_raw and not isinstance(redis_raw["url"], str):
        raise ConfigError("redis.url", "expected a string")
    redis: RedisConfig = _build(RedisConfig, redis_raw, "redis")
    if redis.url:
        _validate_redis_url(url_key, redis.url)
    channel_key = "REVERB_SCALING_CHANNEL" if env.get("REVERB_SCALING_CHANNEL") else \
        "redis.channel"
    prefix_key = "PUSHERD_REDIS_PREFIX" if env.get("PUSHERD_REDIS_PREFIX") else "redis.prefix"
    for key, value in ((channel_key, redis.channel), (prefix_key, redis.prefix)):
        if not value or any(c.isspace() or c in "*?[]" for c in value):
            raise ConfigError(key, "must be non-empty, without spaces or "
                              f"* ? [ ], got {value!r}")
    if ":" in redis.channel or "@" in redis.channel:
        # The bus is "<prefix>:<channel>[@db<N>]": with ":" in the channel, prefix "a" and
        # channel "b:bus" would share the bus of prefix "a:b" (the keys would differ).
        raise ConfigError(channel_key, "must not contain ':' or '@' (the bus channel is "
                          f"<prefix>:<channel>; put a namespace in the prefix), got "
                          f"{redis.channel!r}")
    if redis.lease_ttl > 3600:
        raise ConfigError("redis.lease_ttl", f"must be at most 3600 seconds, got "
                          f"{redis.lease_ttl!r} (a dead node's members stay that long)")
    _positive("redis.lease_ttl", redis.lease_ttl)
    _positive("redis.reap_interval", redis.reap_interval)
    _positive("redis.max_buffered_bytes", redis.max_buffered_bytes, allow_zero=True)
    _positive("redis.frame_interval", redis.frame_interval, allow_zero=True)
    if redis.frame_interval > 1.0:
        raise ConfigError("redis.frame_interval",
                          f"must be at most 1 second, got {redis.frame_interval!r} (it delays "
                          "other nodes' subscribers under load by up to this much)")
    if redis.lease_ttl < 1.0:
        raise ConfigError("redis.lease_ttl", f"must be at least 1 second, got {redis.lease_ttl!r}")
    return redis


def redis_warnings(redis: RedisConfig) -> list[str]:
    """What in a valid ``[redis]`` table is probably a mistake (printed at start)."""
    if redis.enabled and redis.reap_interval > redis.lease_ttl:
        return [f"[redis] reap_interval ({redis.reap_interval:g} s) is longer than lease_ttl "
                f"({redis.lease_ttl:g} s): a dead node's members and subscriptions are removed "
                f"up to lease_ttl + reap_interval = {redis.lease_ttl + redis.reap_interval:g} s "
                "after its last lease renewal (12 s with the defaults 10 and 2); set "
                "reap_interval at most lease_ttl"]
    return []


# --- [webhooks] ----------------------------------------------------------------------------

def _build_webhooks(raw: Any, env: Mapping[str, str]) -> WebhooksConfig:
    if not isinstance(raw, dict):
        raise ConfigError("webhooks", "use a [webhooks] table")
    built: WebhooksConfig = _build(WebhooksConfig, raw, "webhooks")
    for name in ("grace", "batch_window"):
        _positive(f"webhooks.{name}", getattr(built, name), allow_zero=True)
    for name in ("batch_max", "retry_window", "retry_base", "retry_max", "timeout",
                 "concurrency", "max_pending", "max_failed", "fsync_interval"):
        _positive(f"webhooks.{name}", getattr(built, name))
    if built.journal == DEFAULT_JOURNAL:
        state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        built = WebhooksConfig(**{f.name: getattr(built, f.name) for f in fields(built)
                                  if f.name != "journal"},
                               journal=str(Path(state) / "pusherd" / "webhooks.journal"))
    return built
