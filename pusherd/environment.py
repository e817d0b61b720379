"""The environment variables pusherd reads: its own ``PUSHERD_*`` names and every name
Laravel Reverb's ``config/reverb.php`` reads, each honoured with Reverb's meaning or
refused at start with the reason.

:func:`read_environment` turns a mapping (``os.environ``) into overrides for the config
loader; :data:`ENVIRONMENT` is the table ``pusherd --help`` prints. Nothing here reads
the process environment itself: the caller passes it in.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pusherd.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One environment variable and what pusherd does with it."""

    name: str
    meaning: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("PUSHERD_HOST, REVERB_SERVER_HOST", "address to bind ([server] host)"),
    EnvVar("PUSHERD_PORT, REVERB_SERVER_PORT", "port to bind ([server] port)"),
    EnvVar("REVERB_SERVER_PATH", "mount prefix of every route ([server] path_prefix)"),
    EnvVar("PUSHERD_APP_ID, REVERB_APP_ID", "id of one app defined by the environment"),
    EnvVar("PUSHERD_APP_KEY, REVERB_APP_KEY", "its key"),
    EnvVar("PUSHERD_APP_SECRET, REVERB_APP_SECRET", "its secret (never printed)"),
    EnvVar("REVERB_APP_MAX_CONNECTIONS", "that app's max_connections (empty: unlimited)"),
    EnvVar("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
           "members (default): that app's client events on; none: off; all (and any "
           "other value): refused"),
    EnvVar("REVERB_APP_ACTIVITY_TIMEOUT", "[server] activity_timeout, seconds"),
    EnvVar("REVERB_APP_PING_INTERVAL",
           "seconds of silence before the server pings (never before activity_timeout; "
           "> 0)"),
    EnvVar("REVERB_APP_MAX_MESSAGE_SIZE", "[server] max_message_size, bytes"),
    EnvVar("REVERB_MAX_REQUEST_SIZE", "[server] max_request_size, bytes"),
    EnvVar("REVERB_APP_RATE_LIMITING_ENABLED",
           "true is refused (per-frame rate limiting is not available; apps have "
           "max_client_events_per_second); REVERB_APP_RATE_LIMIT_* apply only with it, "
           "as in Reverb"),
    EnvVar("PUSHERD_REDIS_URL", "[redis] url: scale out over Redis"),
    EnvVar("PUSHERD_REDIS_PREFIX",
           "[redis] prefix: the Redis key prefix (deployments sharing one Redis need "
           "different ones)"),
    EnvVar("REVERB_SCALING_ENABLED",
           "true: scale out over Redis ([redis] url from REDIS_URL, or REDIS_HOST, "
           "REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD, REDIS_DB; REDIS_TIMEOUT is "
           "refused)"),
    EnvVar("REVERB_SCALING_CHANNEL",
           "[redis] channel: the Redis pub/sub channel; without a prefix set, the key "
           "prefix becomes pusherd-<channel> too"),
    EnvVar("REVERB_HOST, REVERB_PORT, REVERB_SCHEME",
           "the public address clients use; shown in the start-up banner"),
    EnvVar("REVERB_SERVER", "must be 'reverb' (the only server kind)"),
    EnvVar("REVERB_PULSE_INGEST_INTERVAL, REVERB_TELESCOPE_INGEST_INTERVAL",
           "refused: no Laravel Pulse/Telescope ingest (use /metrics)"),
    EnvVar("PUSHERD_TLS_CERT_FILE, PUSHERD_TLS_KEY_FILE",
           "[server.tls] cert_file and key_file (PEM): serve wss:// and https://"),
    EnvVar("PUSHERD_METRICS_PORT", "[metrics] port: serve /metrics on its own port"),
    EnvVar("PUSHERD_LOG_LEVEL", "[server] log_level: debug, info, warning or error"),
    EnvVar("PUSHERD_LOG_FORMAT", "[server] log_format: text or json"),
    EnvVar("PUSHERD_CONSOLE_TOKEN", "[console] token; setting it enables the console"),
)

# Names read with the variables above (their group's entry covers them), and names the
# project's own test tools read: none of them is unknown.
OTHER_NAMES = frozenset({
    "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
    "REVERB_APP_RATE_LIMIT_TERMINATE", "PUSHERD_TEST_REDIS_URL", "PUSHERD_TEST_ARTIFACTS",
    "PUSHERD_FUZZ_PROFILE",
})
KNOWN_NAMES = frozenset(
    name.strip() for var in ENVIRONMENT for name in var.name.split(",")) | OTHER_NAMES

_TRUE = frozenset({"1", "true", "on", "yes", "(true)"})
_FALSE = frozenset({"", "0", "false", "off", "no", "(false)", "null", "(null)"})


@dataclass(slots=True)
class EnvOverrides:
    """What the environment changes, section by section (raw values, validated later
    together with the file's)."""

    server: dict[str, Any] = field(default_factory=dict)
    tls: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    console: dict[str, Any] = field(default_factory=dict)
    app: dict[str, Any] = field(default_factory=dict)  # id, key, secret and options
    ping_interval: int | None = None  # seconds; resolved against activity_timeout
    public_url: str = ""  # REVERB_SCHEME://REVERB_HOST:REVERB_PORT, for the banner
    # Config key ("server.port") -> the variable that set it, so that an error about the
    # value names what the user set.
    sources: dict[str, str] = field(default_factory=dict)


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """Variable `name` of `env` as a boolean, read as Laravel's ``env()`` reads it:
    ``true``/``1``/``on``/``yes``/``(true)`` or ``false``/``0``/``off``/``no``/
    ``(false)``/``null``/``(null)``/empty (case-insensitive; absent is false). Raises
    :class:`ConfigError` naming `name` for anything else."""
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, f"expected true or false, got {env[name]!r}")


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name].replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {env[name]!r}") from None


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        if env.get(name):
            return name, env[name]
    return None


def read_environment(env: Mapping[str, str]) -> EnvOverrides:
    """Read every variable of :data:`ENVIRONMENT` from `env`.

    Raises :class:`~pusherd.errors.ConfigError` naming the variable for a bad value or for
    a Reverb setting pusherd cannot honour (so that nothing is silently ignored).
    """
    out = EnvOverrides()
    if (found := _first(env, "PUSHERD_HOST", "REVERB_SERVER_HOST")) is not None:
        out.server["host"] = found[1]
        out.sources["server.host"] = found[0]
    if (found := _first(env, "PUSHERD_PORT", "REVERB_SERVER_PORT")) is not None:
        out.server["port"] = _integer(env, found[0])
        out.sources["server.port"] = found[0]
    if env.get("REVERB_SERVER_PATH", "").strip("/"):
        out.server["path_prefix"] = "/" + env["REVERB_SERVER_PATH"].strip("/")
        out.sources["server.path_prefix"] = "REVERB_SERVER_PATH"
    if env.get("PUSHERD_LOG_LEVEL"):
        level = env["PUSHERD_LOG_LEVEL"].strip().lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError("PUSHERD_LOG_LEVEL", "expected debug, info, warning or error, "
                              f"got {env['PUSHERD_LOG_LEVEL']!r}")
        out.server["log_level"] = level
        out.sources["server.log_level"] = "PUSHERD_LOG_LEVEL"
    if env.get("PUSHERD_LOG_FORMAT"):
        log_format = env["PUSHERD_LOG_FORMAT"].strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError("PUSHERD_LOG_FORMAT",
                              f"expected text or json, got {env['PUSHERD_LOG_FORMAT']!r}")
        out.server["log_format"] = log_format
        out.sources["server.log_format"] = "PUSHERD_LOG_FORMAT"
    server_kind = env.get("REVERB_SERVER", "reverb")
    if server_kind not in ("", "reverb"):
        raise ConfigError("REVERB_SERVER", f"only 'reverb' is supported, got {server_kind!r}")
    for name in ("REVERB_PULSE_INGEST_INTERVAL", "REVERB_TELESCOPE_INGEST_INTERVAL"):
        if env.get(name):
            raise ConfigError(name, "pusherd has no Laravel Pulse/Telescope ingest; its "
                              "figures are on /metrics (Prometheus): unset this variable")

    for key, names in (("id", ("PUSHERD_APP_ID", "REVERB_APP_ID")),
                       ("key", ("PUSHERD_APP_KEY", "REVERB_APP_KEY")),
                       ("secret", ("PUSHERD_APP_SECRET", "REVERB_APP_SECRET"))):
        if (found := _first(env, *names)) is not None:
            out.app[key] = found[1]
            out.sources[f"app.{key}"] = found[0]
    # Only what is set: an app of the config file keeps its own value of the rest.
    app_options: dict[str, Any] = {}
    if env.get("REVERB_APP_MAX_CONNECTIONS"):
        app_options["max_connections"] = _integer(env, "REVERB_APP_MAX_CONNECTIONS")
        out.sources["app.max_connections"] = "REVERB_APP_MAX_CONNECTIONS"
    accept_from = env.get("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "").strip().lower()
    if accept_from == "all":
        raise ConfigError("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
                          "'all' (client events from sockets not subscribed to the channel) "
                          "is not supported: pusherd relays client events of subscribers "
                          "only; use 'members'")
    if accept_from:
        if accept_from not in ("members", "none"):
            raise ConfigError("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
                              "expected members (client events on, from subscribers) or "
                              "none (off), got "
                              f"{env['REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM']!r}")
        app_options["enable_client_events"] = accept_from == "members"
        out.sources["app.enable_client_events"] = "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM"
    if app_options and not out.app:
        raise ConfigError("REVERB_APP_ID",
                          "REVERB_APP_* options apply to the app the environment defines: "
                          "set REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET too")
    if out.app:
        out.app.update(app_options)

    for key, name in (("activity_timeout", "REVERB_APP_ACTIVITY_TIMEOUT"),
                      ("max_message_size", "REVERB_APP_MAX_MESSAGE_SIZE"),
                      ("max_request_size", "REVERB_MAX_REQUEST_SIZE")):
        if env.get(name):
            out.server[key] = _integer(env, name)
            out.sources[f"server.{key}"] = name
    if env.get("REVERB_APP_PING_INTERVAL"):
        out.ping_interval = _integer(env, "REVERB_APP_PING_INTERVAL")
        if out.ping_interval <= 0:
            raise ConfigError("REVERB_APP_PING_INTERVAL",
                              f"must be > 0 seconds, got {env['REVERB_APP_PING_INTERVAL']!r}")
        out.sources["server.ping_grace"] = "REVERB_APP_PING_INTERVAL"
    if env_flag(env, "REVERB_APP_RATE_LIMITING_ENABLED"):
        raise ConfigError("REVERB_APP_RATE_LIMITING_ENABLED",
                          "rate limiting of every client frame is not available; pusherd "
                          "limits client events per socket per second (apps "
                          "max_client_events_per_second): unset it or set it to false")

    # REVERB_SCALING_ENABLED, REVERB_SCALING_CHANNEL and Laravel's REDIS_* are read with
    # the [redis] table (pusherd.config.load_redis_config), but for REDIS_TIMEOUT.
    if env.get("REDIS_TIMEOUT") and env_flag(env, "REVERB_SCALING_ENABLED"):
        raise ConfigError("REDIS_TIMEOUT", "pusherd's Redis link has no connection timeout "
                          "setting (it reconnects on its own, and /ready reports an outage): "
                          "unset REDIS_TIMEOUT")

    host = env.get("REVERB_HOST", "")
    if host:
        scheme = env.get("REVERB_SCHEME") or "https"
        port = env.get("REVERB_PORT") or ("443" if scheme == "https" else "80")
        out.public_url = f"{scheme}://{host}:{port}"

    for key, name in (("cert_file", "PUSHERD_TLS_CERT_FILE"),
                      ("key_file", "PUSHERD_TLS_KEY_FILE")):
        if env.get(name):
            out.tls[key] = env[name]
            out.sources[f"server.tls.{key}"] = name
    if env.get("PUSHERD_METRICS_PORT"):
        out.metrics["port"] = _integer(env, "PUSHERD_METRICS_PORT")
        out.sources["metrics.port"] = "PUSHERD_METRICS_PORT"
    if env.get("PUSHERD_CONSOLE_TOKEN"):
        out.console.update(enabled=True, token=env["PUSHERD_CONSOLE_TOKEN"])
        out.sources["console.token"] = "PUSHERD_CONSOLE_TOKEN"
    return out


def unknown_names(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``PUSHERD_*`` or ``REVERB_*`` name in `env` that pusherd does not
    read (a misspelt variable would otherwise be ignored without a word), with the
    closest known name when one is close."""
    warnings = []
    for name in sorted(env):
        if not name.startswith(("PUSHERD_", "REVERB_")) or name in KNOWN_NAMES:
            continue
        close = difflib.get_close_matches(name, sorted(KNOWN_NAMES), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"environment variable {name} is not one pusherd reads: it is "
                        f"ignored{hint}; `pusherd --help` lists them")
    return warnings


def format_environment_help() -> str:
    """The environment table for ``pusherd --help``."""
    width = max(len(v.name) for v in ENVIRONMENT if len(v.name) <= 40)
    lines = ["environment variables (override the config file; --host/--port win):"]
    for var in ENVIRONMENT:
        meaning = textwrap.wrap(var.meaning, 96 - width)
        if len(var.name) > width:
            lines.append(f"  {var.name}")
        else:
            lines.append(f"  {var.name:{width}}  {meaning.pop(0)}")
        lines.extend(f"  {'':{width}}  {rest}" for rest in meaning)
    return "\n".join(lines)
