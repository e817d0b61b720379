"""Per-connection protocol rules: subscription auth, sign-in, client events, keepalive.

A :class:`Session` knows what one socket has subscribed to and who it signed in as; it
decides whether a client message is allowed and raises the Pusher error otherwise. It does
not touch shared channel state: the I/O shell applies a granted subscription to the
adapter and then records it here with :meth:`Session.note_subscribed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson

from pusherd.core.app import App
from pusherd.core import auth
from pusherd.core.channels import (
    ChannelKind,
    channel_name_problem,
    classify_channel,
    user_id_of_server_to_user_channel,
)
from pusherd.core.messages import ClientEvent, Signin, Subscribe
from pusherd.core.state import MemberJoin
from pusherd.errors import ClientEventRejected, SigninRefused, SubscriptionRefused


@dataclass(frozen=True, slots=True)
class SubscriptionGrant:
    """A subscription the rules allow; `member` is set for presence channels."""

    channel: str
    kind: ChannelKind
    member: MemberJoin | None


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """The user a socket signed in as (§10.1)."""

    id: str
    user_data: str
    user_info: Any
    watchlist: tuple[str, ...]
    watchlist_truncated: bool


class KeepaliveAction(enum.Enum):
    NOTHING = 0
    PING = 1  # idle past activity_timeout + grace: send pusher:ping
    CLOSE = 2  # no frame since the ping for pong_timeout: close 4201


def _user_info_size(user_info: Any) -> int:
    return len(orjson.dumps(user_info))


class Session:
    """Protocol state of one connection (one ``socket_id`` of one app)."""

    __slots__ = (
        "socket_id", "app", "subscriptions", "user", "last_activity", "ping_sent_at",
        "_window_start", "_window_count",
    )

    def __init__(self, socket_id: str, app: App, now: float) -> None:
        self.socket_id = socket_id
        self.app = app
        # channel -> presence member key (None for other kinds), in subscription order.
        self.subscriptions: dict[str, str | None] = {}
        self.user: SignedInUser | None = None
        self.last_activity = now
        self.ping_sent_at: float | None = None
        self._window_start = now
        self._window_count = 0

    # --- activity (§5) ------------------------------------------------------------------

    def note_activity(self, now: float) -> None:
        """Any inbound frame (text, ping, pong) proves the client is alive."""
        self.last_activity = now
        self.ping_sent_at = None

    def keepalive_action(
        self, now: float, activity_timeout: float, grace: float, pong_timeout: float
    ) -> KeepaliveAction:
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at >= pong_timeout:
                return KeepaliveAction.CLOSE
            return KeepaliveAction.NOTHING
        if now - self.last_activity >= activity_timeout + grace:
            self.ping_sent_at = now
            return KeepaliveAction.PING
        return KeepaliveAction.NOTHING

    # --- subscriptions (§7.4, §8) -------------------------------------------------------

    def authorize_subscribe(self, message: Subscribe) -> SubscriptionGrant:
        """Check a ``pusher:subscribe``; raise :class:`SubscriptionRefused` if not allowed."""
        app, channel = self.app, message.channel
        problem = channel_name_problem(channel, app.max_channel_name_length)
        if problem is not None:
            raise SubscriptionRefused(f"Invalid channel name: {problem}", channel, status=4009)
        kind = classify_channel(channel)
        if kind.server_to_user:
            user_id = user_id_of_server_to_user_channel(channel)
            if self.user is None or self.user.id != user_id:
                raise SubscriptionRefused(
                    f"{channel} is only for a socket signed in as user {user_id}", channel
                )
            return SubscriptionGrant(channel, kind, None)
        if not kind.requires_auth:
            return SubscriptionGrant(channel, kind, None)
        if not message.auth:
            raise SubscriptionRefused(f"Missing auth for {channel}", channel)

        if not kind.presence:
            if not auth.verify_channel_auth(
                app.key, app.secret, self.socket_id, channel, message.auth, None
            ):
                raise SubscriptionRefused(self._bad_signature(channel, None), channel)
            return SubscriptionGrant(channel, kind, None)

        if message.channel_data is None:
            # A signed-in socket may join with the short signature (§7.4 step 3).
            if self.user is None:
                raise SubscriptionRefused(
                    f"Missing channel_data for presence channel {channel}", channel
                )
            if not auth.verify_channel_auth(
                app.key, app.secret, self.socket_id, channel, message.auth, None
            ):
                raise SubscriptionRefused(self._bad_signature(channel, None), channel)
            return SubscriptionGrant(
                channel, kind, MemberJoin(self.user.id, self.user.id, self.user.user_info)
            )

        if not auth.verify_channel_auth(
            app.key, app.secret, self.socket_id, channel, message.auth, message.channel_data
        ):
            raise SubscriptionRefused(self._bad_signature(channel, message.channel_data), channel)
        member = self._presence_member(channel, message.channel_data)
        return SubscriptionGrant(channel, kind, member)

    def _presence_member(self, channel: str, channel_data: str) -> MemberJoin:
        try:
            parsed = orjson.loads(channel_data)
        except orjson.JSONDecodeError:
            raise SubscriptionRefused("channel_data is not valid JSON", channel, 400) from None
        if not isinstance(parsed, dict) or "user_id" not in parsed:
            raise SubscriptionRefused("channel_data must be an object with a user_id",
                                      channel, 400)
        user_id = parsed["user_id"]
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int, float)) \
                or user_id == "":
            raise SubscriptionRefused("user_id must be a non-empty string or a number",
                                      channel, 400)
        key = user_id if isinstance(user_id, str) else orjson.dumps(user_id).decode()
        if len(key) > self.app.max_user_id_length:
            raise SubscriptionRefused(
                f"user_id is longer than {self.app.max_user_id_length} characters", channel, 400
            )
        user_info = parsed.get("user_info")
        if _user_info_size(user_info) > self.app.max_presence_user_info_size:
            raise SubscriptionRefused(
                f"user_info is larger than {self.app.max_presence_user_info_size} bytes",
                channel, status=4301,
            )
        return MemberJoin(key, user_id, user_info)

    def _bad_signature(self, channel: str, channel_data: str | None) -> str:
        # Name what was expected to be signed (as hosted Pusher does), never the secret
        # or the expected digest.
        signed = auth.channel_string_to_sign(self.socket_id, channel, channel_data)
        return f"Invalid signature: expected HMAC SHA256 hex digest of {signed[:300]}"

    def note_subscribed(self, grant: SubscriptionGrant) -> None:
        self.subscriptions[grant.channel] = grant.member.key if grant.member else None

    def note_unsubscribed(self, channel: str) -> tuple[bool, str | None]:
        """Forget `channel`: (was subscribed, presence member key)."""
        if channel not in self.subscriptions:
            return False, None
        return True, self.subscriptions.pop(channel)

    # --- sign-in (§10.1) ----------------------------------------------------------------

    def authorize_signin(self, message: Signin) -> SignedInUser:
        app = self.app
        if not app.enable_user_authentication:
            raise SigninRefused("User authentication is disabled for this app")
        if not auth.verify_user_auth(
            app.key, app.secret, self.socket_id, message.auth, message.user_data
        ):
            raise SigninRefused("Invalid signature for pusher:signin")
        try:
            user_data = orjson.loads(message.user_data)
        except orjson.JSONDecodeError:
            raise SigninRefused("user_data is not valid JSON") from None
        if not isinstance(user_data, dict):
            raise SigninRefused("user_data must be a JSON object")
        user_id = user_data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise SigninRefused("user_data.id must be a non-empty string")
        if len(user_id) > app.max_user_id_length:
            raise SigninRefused(f"user id is longer than {app.max_user_id_length} characters")
        if channel_name_problem("#server-to-user-" + user_id, 10_000) is not None:
            raise SigninRefused("user id may only contain A-Z a-z 0-9 _ - = @ , . ;")
        if self.user is not None and self.user.id != user_id:
            raise SigninRefused("This connection is already signed in as another user")
        watchlist_raw = user_data.get("watchlist") or []
        if not isinstance(watchlist_raw, list) or not all(
            isinstance(w, str) for w in watchlist_raw
        ):
            raise SigninRefused("user_data.watchlist must be a list of user id strings")
        limit = app.max_watchlist_size
        return SignedInUser(
            user_id, message.user_data, user_data.get("user_info"),
            tuple(dict.fromkeys(watchlist_raw[:limit])), len(watchlist_raw) > limit,
        )

    # --- client events (§9) -------------------------------------------------------------

    def authorize_client_event(self, message: ClientEvent, now: float) -> str | None:
        """Check a ``client-*`` event; return the presence ``user_id`` to attach (or None)."""
        app, channel = self.app, message.channel
        if not app.enable_client_events:
            raise ClientEventRejected("Client events are disabled for this app", channel=channel)
        kind = classify_channel(channel)
        if not kind.allows_client_events:
            raise ClientEventRejected(
                "Client events are only allowed on private and presence channels "
                "(not public or encrypted ones)", channel=channel,
            )
        if channel not in self.subscriptions:
            raise ClientEventRejected(
                f"Client event on {channel} rejected: the socket is not subscribed to it",
                channel=channel,
            )
        if len(message.event) > app.max_event_name_length:
            raise ClientEventRejected(
                f"Event name is longer than {app.max_event_name_length} characters",
                channel=channel,
            )
        if len(orjson.dumps(message.data)) > app.max_event_data_size:
            raise ClientEventRejected(
                f"Client event data is larger than {app.max_event_data_size} bytes",
                channel=channel,
            )
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > app.max_client_events_per_second:
            raise ClientEventRejected(
                "Client event rejected: rate limit exceeded "
                f"({app.max_client_events_per_second} per second)", channel=channel,
            )
        member_key = self.subscriptions[channel]
        return member_key if kind.presence else None
