"""The protocol conversation of one connection, Sans-I/O (spec §1-§5, §7-§10).

A :class:`Session` owns everything one socket says and is told: the open (the refusal
code or ``pusher:connection_established``), every client message, the activity deadline,
and the mapping of each error to its ``pusher:error`` frame or close code. It is fed
parsed input and the time, and returns *actions* (:data:`Action`): frames to send, a close,
and requests for the adapter (register, join, leave, sign in, publish a client event).
It never calls the adapter or a socket: a transport shell (the WebSocket connection, and
the HTTP fallback transports later) feeds it and carries the actions out, in order.

The session is the one place that holds a socket's subscriptions and signed-in user.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import orjson

from pusherd.core import auth, messages
from pusherd.core.app import App
from pusherd.core.channels import (
    ChannelKind,
    channel_name_problem,
    classify_channel,
    user_id_of_server_to_user_channel,
)
from pusherd.core.ids import AppId, AppKey, SocketId
from pusherd.core.messages import ClientEvent, Ping, Pong, Signin, Subscribe, Unsubscribe
from pusherd.core.outbound import Outbound
from pusherd.core.state import MemberJoin
from pusherd.errors import (
    ClientEventRejected,
    MessageFormatError,
    PusherError,
    SigninRefused,
    SubscriptionRefused,
)

SUPPORTED_PROTOCOLS = frozenset({"5", "6", "7"})
_VERSION_PATTERN = re.compile(r"\A[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z")
_PONG = Outbound(messages.PONG_FRAME)
_PING = Outbound(messages.PING_FRAME)


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
    """What the keepalive rules ask for at a given time (§5)."""

    NOTHING = 0
    PING = 1  # idle past activity_timeout + grace: send pusher:ping
    CLOSE = 2  # no frame since the ping for pong_timeout: close 4201


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Server-wide protocol settings a session needs; one shared object (seconds)."""

    activity_timeout: int = 120  # announced in connection_established (§1.3, §5)
    ping_grace: float = 5.0  # idle past activity_timeout + grace: the server pings
    pong_timeout: float = 30.0  # no frame this long after the ping: close 4201
    strict_protocol_version: bool = False  # refuse a connection without ?protocol= (4008)


_DEFAULT_SETTINGS = SessionSettings()
_NO_APP = App(id=AppId(""), key=AppKey(""), secret="", enabled=False)


# --- actions: what a session asks its transport shell to do, in order ----------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame to the client."""

    frame: Outbound


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code (the ``pusher:error`` went before, §1.4)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Register:
    """Ask the adapter to admit the connection (``add_connection``); report the answer
    with :meth:`Session.established` or :meth:`Session.refuse` (4004)."""


@dataclass(frozen=True, slots=True)
class Join:
    """Ask the adapter to apply a granted subscription; it sends subscription_succeeded.
    A refusal by the adapter (presence channel full) goes to :meth:`Session.join_refused`."""

    grant: SubscriptionGrant


@dataclass(frozen=True, slots=True)
class Leave:
    """Ask the adapter to remove the socket from `channel`."""

    channel: str


@dataclass(frozen=True, slots=True)
class SignIn:
    """Ask the adapter to record the signed-in user; it sends signin_success (§10.1)."""

    user: SignedInUser


@dataclass(frozen=True, slots=True)
class SignOut:
    """Ask the adapter to forget the socket's signed-in user (the socket is gone)."""

    user: SignedInUser


@dataclass(frozen=True, slots=True)
class PublishClientEvent:
    """Ask the adapter to relay a client event to the channel's other subscribers (§9)."""

    channel: str
    event: str
    data: Any
    user_id: str | None


@dataclass(frozen=True, slots=True)
class Unregister:
    """Ask the adapter to forget the connection (after its Leave and SignOut actions)."""


Action = (
    Send | Close | Register | Join | Leave | SignIn | SignOut | PublishClientEvent | Unregister
)
REGISTER = Register()
UNREGISTER = Unregister()


class Phase(enum.Enum):
    """Where a session is in its life; only an open session handles messages."""

    NEW = 0  # not yet vetted
    OPEN = 1  # registered: client messages are handled
    CLOSING = 2  # a close was asked for: client messages are ignored
    CLOSED = 3  # the transport is gone


def _user_info_size(user_info: Any) -> int:
    return len(orjson.dumps(user_info))


def _refusal_frames(exc: SubscriptionRefused) -> list[Action]:
    # pusher:error for pusher-js, pusher:subscription_error for Echo's .error() (§7.5).
    return [Send(Outbound(exc.to_frame())), Send(Outbound(exc.to_subscription_error_frame()))]


class Tally:
    """A count several sessions add to: an app's client messages, for the metrics (its
    shell hands the app's tally to each session, so that nothing sums the sessions)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Session:
    """Protocol state of one connection (one ``socket_id`` of one app)."""

    __slots__ = (
        "socket_id", "app", "settings", "phase", "registered", "subscriptions", "user",
        "last_activity", "ping_sent_at", "_window_start", "_window_count",
        "messages_received", "received", "error", "refusal",
    )

    def __init__(self, socket_id: SocketId, app: App | None, now: float,
                 settings: SessionSettings | None = None, received: Tally | None = None,
                 ) -> None:
        self.socket_id = socket_id
        # None: the key named no app; the open refuses it (4001) before anything else.
        self.app = app or _NO_APP
        self.settings = settings or _DEFAULT_SETTINGS
        self.phase = Phase.NEW
        self.registered = False
        # channel -> presence member key (None for other kinds), in subscription order.
        self.subscriptions: dict[str, str | None] = {}
        self.user: SignedInUser | None = None
        self.last_activity = now
        self.ping_sent_at: float | None = None
        self._window_start = now
        self._window_count = 0
        self.messages_received = 0  # client messages, for the close log line and metrics
        self.received = received or Tally()  # the same messages, counted for the whole app
        # The last client message's refusal, for the shell to count and log (it clears it).
        self.error: PusherError | None = None
        # (code, message) once the session ended the connection itself (refuse()).
        self.refusal: tuple[int, str] | None = None

    # --- the open (§1.2, §1.4, §4) -----------------------------------------------------

    def open(self, query: dict[str, str], origin: str | None, draining: bool) -> list[Action]:
        """Vet a new connection from its query (``protocol``, ``version``) and ``Origin``:
        the refusal (``pusher:error`` + close with its code) or ``[Register]``."""
        refusal = self._refusal(query, origin, draining)
        if refusal is not None:
            return self.refuse(*refusal)
        return [REGISTER]

    def _refusal(self, query: dict[str, str], origin: str | None, draining: bool
                 ) -> tuple[int, str] | None:
        app = self.app
        if app is _NO_APP:
            return 4001, "Application does not exist"
        if not app.enabled:
            return 4003, "Application is disabled"
        version = query.get("version")
        if version is not None and _VERSION_PATTERN.match(version) is None:
            return 4006, "Invalid version string format"
        protocol = query.get("protocol")
        if protocol is None:
            if self.settings.strict_protocol_version:
                return 4008, "No protocol version supplied (add ?protocol=7)"
        elif protocol not in SUPPORTED_PROTOCOLS:
            return 4007, f"Unsupported protocol version {protocol[:16]!r} (supported: 5, 6, 7)"
        if not app.allows_origin(origin):
            return 4009, "Origin not allowed for this application"
        if draining:
            return 4200, "Server is shutting down: reconnect"
        return None

    def established(self) -> list[Action]:
        """The adapter admitted the connection: ``pusher:connection_established`` (§1.3)."""
        self.phase = Phase.OPEN
        self.registered = True
        return [Send(Outbound(messages.encode_connection_established(
            self.socket_id, self.settings.activity_timeout)))]

    def refuse(self, code: int, message: str) -> list[Action]:
        """End the connection: ``pusher:error`` with `code`, then close with it (§1.4).
        Used for refusals at the open, 4004 over quota, 4201 and terminations."""
        if self.phase is Phase.CLOSED or self.phase is Phase.CLOSING:
            return []
        self.phase = Phase.CLOSING
        self.refusal = (code, message)
        return [Send(Outbound(messages.encode_error(code, message))), Close(code, message)]

    # --- client messages (§3, §7-§10) --------------------------------------------------

    def receive(self, payload: bytes, now: float) -> list[Action]:
        """One complete text message from the client (valid UTF-8). Each error becomes its
        frame here: ``pusher:error`` (plus ``pusher:subscription_error`` for a refused
        subscribe, §7.5); the connection stays open."""
        if self.phase is not Phase.OPEN:
            return []  # refused or closing: ignore what the client still sends
        self.messages_received += 1
        self.received.count += 1
        try:
            return self._dispatch(messages.parse_client_message(payload), now)
        except SubscriptionRefused as exc:
            self.error = exc
            return _refusal_frames(exc)
        except PusherError as exc:
            self.error = exc
            return [Send(Outbound(exc.to_frame()))]

    def receive_binary(self) -> list[Action]:
        """A binary message: the protocol is text only (§3.1)."""
        if self.phase is not Phase.OPEN:
            return []
        self.messages_received += 1
        self.received.count += 1
        self.error = MessageFormatError("Binary frames are not supported")
        return [Send(Outbound(self.error.to_frame()))]

    def _dispatch(self, message: messages.ClientMessage, now: float) -> list[Action]:
        if isinstance(message, Ping):
            return [Send(_PONG)]
        if isinstance(message, Pong):
            return []
        if isinstance(message, Subscribe):
            grant = self.authorize_subscribe(message)
            # A repeated subscribe is answered again but changes nothing: the socket keeps
            # the member it first joined as, and leaving releases exactly that one.
            if grant.channel not in self.subscriptions:
                self.note_subscribed(grant)
            return [Join(grant)]
        if isinstance(message, Unsubscribe):
            subscribed, _ = self.note_unsubscribed(message.channel)
            return [Leave(message.channel)] if subscribed else []
        if isinstance(message, Signin):
            user = self.authorize_signin(message)
            if self.user is not None:  # the same user again: confirm, change nothing
                return [Send(Outbound(messages.encode_signin_success(user.user_data)))]
            self.user = user
            return [SignIn(user)]
        user_id = self.authorize_client_event(message, now)
        return [PublishClientEvent(message.channel, message.event, message.data, user_id)]

    def join_refused(self, exc: SubscriptionRefused) -> list[Action]:
        """The adapter refused a :class:`Join` (a full presence channel, §8): forget the
        subscription and answer with the refusal frames."""
        self.subscriptions.pop(exc.channel or "", None)
        self.error = exc
        return _refusal_frames(exc)

    # --- the end ----------------------------------------------------------------------

    def close(self) -> list[Action]:
        """The transport is gone: leave every channel, sign out, unregister (in that order)."""
        self.phase = Phase.CLOSED
        if not self.registered:
            return []
        self.registered = False
        actions: list[Action] = [Leave(channel) for channel in self.subscriptions]
        self.subscriptions = {}
        if self.user is not None:
            actions.append(SignOut(self.user))
        actions.append(UNREGISTER)
        return actions

    def keepalive(self, now: float) -> list[Action]:
        """The sweeper's check (§5): ``pusher:ping`` when idle past activity_timeout +
        grace, close 4201 when the ping went unanswered for pong_timeout."""
        if self.phase is not Phase.OPEN:
            return []
        settings = self.settings
        action = self.keepalive_action(now, float(settings.activity_timeout),
                                       settings.ping_grace, settings.pong_timeout)
        if action is KeepaliveAction.PING:
            return [Send(_PING)]
        if action is KeepaliveAction.CLOSE:
            return self.refuse(4201, "Pong reply not received: reconnect")
        return []

    # --- activity (§5) ------------------------------------------------------------------

    def note_activity(self, now: float) -> None:
        """Any inbound frame (text, ping, pong) proves the client is alive."""
        self.last_activity = now
        self.ping_sent_at = None

    def keepalive_action(
        self, now: float, activity_timeout: float, grace: float, pong_timeout: float
    ) -> KeepaliveAction:
        """The keepalive rule at monotonic `now` (seconds): ping when idle past
        `activity_timeout` + `grace`, close once a ping went unanswered for `pong_timeout`.
        """
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
        """Record a granted subscription (channel -> presence member key)."""
        self.subscriptions[grant.channel] = grant.member.key if grant.member else None

    def note_unsubscribed(self, channel: str) -> tuple[bool, str | None]:
        """Forget `channel`: (was subscribed, presence member key)."""
        if channel not in self.subscriptions:
            return False, None
        return True, self.subscriptions.pop(channel)

    # --- sign-in (§10.1) ----------------------------------------------------------------

    def authorize_signin(self, message: Signin) -> SignedInUser:
        """Check a ``pusher:signin`` (§10.1) and return the user it signs in.

        Raises :class:`SigninRefused` (4009) for a disabled feature, a bad signature,
        malformed ``user_data``, or another user than the one already signed in.
        """
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
            raise ClientEventRejected(
                "Client events are disabled for this app (enable_client_events = false)",
                channel=channel)
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
