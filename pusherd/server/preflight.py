"""One look at Redis before a cluster node starts: a setting that can never work stops
the start; a Redis that is merely not there yet does not.

A wrong password, an unknown ACL user, a database number the server does not have, a user
without the rights pusherd needs, or a TLS certificate that does not verify will not heal
by retrying: :func:`check_redis` raises :class:`~pusherd.errors.ConfigError` for them, and
the CLI exits with status 2 as for any other bad setting (the deploy fails visibly instead
of leaving a node that serves forever without its cluster). Anything else (connection
refused, a timeout, a name that does not resolve yet, Redis still loading its data) is an
outage: the node starts and its link retries with backoff, as documented in
docs/scaling.md.

Nodes of one key prefix share their state in Redis, so they must share the bus channel
too: the check records the channel under ``<prefix>:bus-channel`` and refuses a node whose
channel differs from the one recorded while a node of the prefix is live or starting.
"""

from __future__ import annotations

import logging
import ssl

import redis
from redis import exceptions as redis_errors

from pusherd.adapters.cluster.bus import frame_head
from pusherd.adapters.cluster.keys import KeyLayout
from pusherd.config import RedisConfig
from pusherd.errors import ConfigError

log = logging.getLogger("pusherd.redis")

# The oldest Redis the tests run against (docs/scaling.md, "Redis requirements").
MIN_REDIS_VERSION = (7, 0)


def permanent_reason(exc: BaseException) -> str | None:
    """Why `exc` (raised by a Redis client while connecting or on a first command) can
    never heal by retrying, or None when it may be a passing outage."""
    if isinstance(exc, redis_errors.AuthenticationError):
        return "authentication failed (check the user name and password)"
    if isinstance(exc, redis_errors.NoPermissionError):
        return "the ACL user lacks a permission pusherd needs"
    if isinstance(exc, redis_errors.BusyLoadingError):
        return None  # Redis is loading its data: it will answer soon
    if isinstance(exc, redis_errors.ResponseError):
        # Redis answered and refused: e.g. "DB index is out of range" on SELECT.
        return "Redis refused the connection's set-up (check the database number)"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ("the TLS certificate did not verify (give the CA with "
                    "?ssl_ca_certs=/path/ca.pem in the URL)")
        cause = cause.__cause__ or cause.__context__
    return None


def check_redis(config: RedisConfig, url_key: str, timeout: float = 3.0) -> None:
    """Connect to ``config.url`` once and PING (each step bounded by `timeout` seconds).

    Returns when Redis answered, or when it could not be reached for a reason that may
    pass (the node then starts and keeps retrying). Raises
    :class:`~pusherd.errors.ConfigError` naming `url_key` (where the URL came from) for a
    setting that cannot work; the message carries the URL with its password redacted.
    Also raises it when a live node of the same prefix uses another bus channel (see
    :func:`check_bus_channel`), and when the user may not run a script with EVALSHA,
    PUBLISH on the bus channel or SUBSCRIBE to it (:func:`check_bus_rights`; every other
    command a node runs is one of these or runs inside its scripts). Logs a warning when
    the server is older than
    :data:`MIN_REDIS_VERSION`.
    """
    client = redis.Redis.from_url(config.url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        try:
            client.ping()
            check_bus_channel(client, config)
            check_bus_rights(client, config)
        except (redis_errors.RedisError, OSError) as exc:
            reason = permanent_reason(exc)
            if reason is None:
                return
            raise ConfigError(url_key, f"Redis at {config.redacted_url()}: {reason}: "
                              f"{exc}") from None
        _warn_if_old(client, config)
    finally:
        client.close()


# One atomic step (a script): count the live nodes of the prefix, read the recorded
# channel and its claim, then refuse or record. A claim (PX) covers a node between this
# check and its first lease, when it is not live yet: without it two nodes of one prefix
# starting together on different channels could both pass. A node's first lease (the
# SYNC script) deletes the claim, so that a prefix whose nodes all stopped may change
# channel at once. KEYS: nodes, bus-channel, bus-channel-claim. ARGV: channel, claim ms.
# -> {live nodes, the other channel or ""}
CHECK_BUS_CHANNEL = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local claimed = redis.call('EXISTS', KEYS[3])
local theirs = redis.call('GET', KEYS[2])
if theirs and theirs ~= ARGV[1] and (live > 0 or claimed == 1) then
  return {live, theirs}
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return {live, ''}
"""


def check_bus_channel(client: redis.Redis, config: RedisConfig) -> None:
    """Refuse ``config.channel`` when a node of ``config.prefix`` that is live, or that
    passed this check within the last ``lease_ttl`` seconds and has not taken its lease
    yet, uses another bus channel; else record ours under ``<prefix>:bus-channel`` (and
    claim it under ``<prefix>:bus-channel-claim`` until this node's first lease).

    Nodes with the same prefix share presence members, counts and cached events, but a
    node on another bus channel never hears their triggers and transitions: the cluster
    would split silently. A node is live while its lease in ``<prefix>:nodes`` is later
    than Redis' ``TIME``; with no live node and no claim the channel may change (it is
    rewritten). The check and the record are one script, so two nodes starting at once on
    different channels cannot both pass. Raises :class:`~pusherd.errors.ConfigError` (key
    ``redis.channel``) naming both channels; Redis errors propagate to the caller.
    """
    keys = KeyLayout(config.prefix, config.channel, config.database)
    # EVALSHA, as the node's own scripts run (redis-py loads the script when Redis does
    # not have it yet): an ACL user without it is refused here, not left retrying.
    live, theirs = client.register_script(CHECK_BUS_CHANNEL)(
        keys=[keys.nodes, keys.bus_channel, keys.bus_channel_claim],
        args=[config.channel, max(1, int(config.lease_ttl * 1000))])
    if isinstance(theirs, bytes):
        theirs = theirs.decode()
    if theirs:
        who = (f"{live} live node(s)" if live else
               "a node starting now (it passed this check and has no lease yet)")
        raise ConfigError("redis.channel", (
            f"bus channel {config.channel!r}, but {who} with key prefix "
            f"{config.prefix!r} use bus channel {theirs!r}: nodes sharing a prefix share "
            "their state and must share the bus, or they split silently. Give every node "
            f"of prefix {config.prefix!r} the same channel ([redis] channel or "
            "REVERB_SCALING_CHANNEL), or give this deployment another prefix ([redis] "
            "prefix or PUSHERD_REDIS_PREFIX)"))


def check_bus_rights(client: redis.Redis, config: RedisConfig) -> None:
    """PUBLISH an empty frame on the bus and SUBSCRIBE to it once: an ACL user without
    the command or the channel (``&pattern``) gets NOPERM here, which
    :func:`check_redis` turns into an exit-2 setting error. (At run time the same refusal
    would be an outage retried forever.) The empty frame holds no message: nodes read it
    and apply nothing."""
    keys = KeyLayout(config.prefix, config.channel, config.database)
    client.publish(keys.bus, frame_head("start-check") + b"[]")
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # unannotated upstream
    try:
        pubsub.subscribe(keys.bus)
        # The confirmation, or the refusal raised as NoPermissionError (the client's
        # socket timeout bounds the wait).
        pubsub.parse_response(block=True)
    finally:
        pubsub.close()


def _warn_if_old(client: redis.Redis, config: RedisConfig) -> None:
    try:
        info = client.info("server")
    except (redis_errors.RedisError, OSError):
        return  # INFO may be denied to an ACL user: the version is then unknown
    version = str(info.get("redis_version", ""))
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return
    if found < MIN_REDIS_VERSION:
        log.warning("Redis at %s is version %s; pusherd needs Redis %d.%d or later "
                    "(docs/scaling.md)", config.redacted_url(), version, *MIN_REDIS_VERSION)
