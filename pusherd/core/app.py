"""Apps as values: id, key, secret, feature flags, limits and webhook targets.

Pure data (no I/O): the core's rules read an app's limits, so the type lives in the core;
:mod:`pusherd.apps` finds apps by id and key. An app is frozen once loaded; a running
server never mutates one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pusherd.core.ids import AppId, AppKey
from pusherd.core.origins import origin_allowed


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook target (spec §14); delivered by :mod:`pusherd.webhooks`.

    An event goes to this target when its name is in `event_types` (empty: every name)
    and its channel starts with `filter_channel_prefix` and ends with
    `filter_channel_suffix` (empty: any channel).
    """

    url: str
    event_types: tuple[str, ...] = ()
    filter_channel_prefix: str = ""
    filter_channel_suffix: str = ""

    def accepts(self, name: str, channel: str) -> bool:
        """Whether an event `name` of `channel` passes this target's filters."""
        return ((not self.event_types or name in self.event_types)
                and channel.startswith(self.filter_channel_prefix)
                and channel.endswith(self.filter_channel_suffix))


@dataclass(frozen=True, slots=True)
class App:
    """One Pusher app and its limits. Defaults follow hosted Pusher (spec §8, §9, §12.2)."""

    id: AppId
    key: AppKey
    # repr=False: the secret must never reach a log line through a repr.
    secret: str = field(repr=False)
    name: str = ""
    enabled: bool = True
    # On by default everywhere (config file, environment, development app): see
    # config.example.toml for why.
    enable_client_events: bool = True
    enable_user_authentication: bool = True
    enable_subscription_count: bool = False
    enable_watchlist_events: bool = True
    max_connections: int = 0  # 0: unlimited
    allowed_origins: tuple[str, ...] = ("*",)
    max_channel_name_length: int = 164
    max_event_name_length: int = 200
    max_event_data_size: int = 10_240
    max_channels_per_event: int = 100
    max_batch_size: int = 10
    max_presence_members: int = 100
    max_presence_user_info_size: int = 1_024
    max_user_id_length: int = 128
    max_client_events_per_second: int = 10
    max_watchlist_size: int = 100
    cache_ttl: int = 1_800
    # The end-to-end encryption master key of private-encrypted- channels. The server never
    # decrypts; the key lives here only so that an auth backend can share this file.
    encryption_master_key_base64: str = field(default="", repr=False)
    webhooks: tuple[Webhook, ...] = ()

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a WebSocket from `origin` may connect (rule: :mod:`pusherd.core.origins`)."""
        return origin_allowed(origin, self.allowed_origins)
        origin = origin.lower().rstrip("/")
        for allowed in self.allowed_origins:
            allowed = allowed.lower().rstrip("/")
            if allowed == origin:
                return True
            # "*.example.com" allows any subdomain, whatever the scheme.
            if allowed.startswith("*.") and origin.split("://", 1)[-1].endswith(allowed[1:]):
                return True
        return False
