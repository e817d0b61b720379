"""Channel kinds by name prefix, and channel/event name validation (spec §6, §10.2).

Prefixes are checked longest first, so ``private-encrypted-cache-x`` is encrypted *and*
cached, and ``private-cache-x`` is private and cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

SERVER_TO_USER_PREFIX = "#server-to-user-"
_NAME_PATTERN = re.compile(r"\A#?[-A-Za-z0-9_=@,.;]+\Z")


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """What a channel name implies about authorization and features."""

    requires_auth: bool  # private-*, presence-*: an HMAC signature on subscribe (§7)
    presence: bool
    encrypted: bool
    cache: bool
    server_to_user: bool
    # The channel type as a metric label (one of CHANNEL_TYPES; see channel_type).
    label: str = "public"

    @property
    def allows_client_events(self) -> bool:
        """Client events go on private and presence channels, never encrypted ones (§9)."""
        return self.requires_auth and not self.encrypted and not self.server_to_user


# The channel types of the metrics' labels: any cache- kind is "cache".
CHANNEL_TYPES = ("public", "private", "private-encrypted", "presence", "cache",
                 "server-to-user")
_PUBLIC = ChannelKind(False, False, False, False, False, "public")
_KINDS: tuple[tuple[str, ChannelKind], ...] = (
    ("private-encrypted-cache-", ChannelKind(True, False, True, True, False, "cache")),
    ("private-encrypted-", ChannelKind(True, False, True, False, False, "private-encrypted")),
    ("private-cache-", ChannelKind(True, False, False, True, False, "cache")),
    ("private-", ChannelKind(True, False, False, False, False, "private")),
    ("presence-cache-", ChannelKind(True, True, False, True, False, "cache")),
    ("presence-", ChannelKind(True, True, False, False, False, "presence")),
    ("cache-", ChannelKind(False, False, False, True, False, "cache")),
    (SERVER_TO_USER_PREFIX, ChannelKind(False, False, False, False, True, "server-to-user")),
)


@lru_cache(maxsize=65536)
def classify_channel(name: str) -> ChannelKind:
    """The kind of channel `name` denotes (spec §6.1)."""
    for prefix, kind in _KINDS:
        if name.startswith(prefix):
            return kind
    return _PUBLIC


def channel_type(name: str) -> str:
    """The channel type of `name` as a metric label: ``public``, ``private``,
    ``private-encrypted``, ``presence``, ``cache`` (any ``cache-`` kind) or
    ``server-to-user`` (:data:`CHANNEL_TYPES`). Cheap: the kinds are cached."""
    return classify_channel(name).label


def channel_name_problem(name: object, max_length: int) -> str | None:
    """Why `name` is not a valid channel name, or ``None`` when it is (spec §6.2).

    ``#`` is reserved: the only ``#`` channels are ``#server-to-user-{user_id}``.
    """
    if not isinstance(name, str) or not name:
        return "channel name must be a non-empty string"
    if len(name) > max_length:
        return f"channel name is longer than {max_length} characters"
    if _NAME_PATTERN.match(name) is None:
        return "channel name may only contain A-Z a-z 0-9 _ - = @ , . ;"
    if name.startswith("#") and (
        not name.startswith(SERVER_TO_USER_PREFIX) or len(name) == len(SERVER_TO_USER_PREFIX)
    ):
        return "channel names starting with # are reserved"
    return None


def user_id_of_server_to_user_channel(name: str) -> str:
    """The user id in ``#server-to-user-{user_id}``."""
    return name[len(SERVER_TO_USER_PREFIX):]


def event_name_problem(name: object, max_length: int) -> str | None:
    """Why `name` is not an acceptable event name for the HTTP API (spec §12.1)."""
    if not isinstance(name, str) or not name:
        return "event name must be a non-empty string"
    if len(name) > max_length:
        return f"event name is longer than {max_length} characters"
    if name.startswith(("pusher:", "pusher_internal:")):
        return "event names starting with pusher: or pusher_internal: are reserved"
    return None
