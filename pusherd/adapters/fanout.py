"""Local fan-out: this node's sockets per channel and per user, and delivery to them.

The fan-out never decides anything: it is told which of this node's sockets joined or
left which channel, and writes each frame, encoded once by the caller, to the sockets that
must receive it. :meth:`LocalFanout.apply` turns a decided transition into the frames it
implies for local sockets (``member_added``, ``member_removed``,
``subscription_count``), so a transition decided elsewhere (another node) is delivered
here exactly as one decided here.
"""

from __future__ import annotations

from pusherd.adapters.base import Subscriber
from pusherd.core import messages
from pusherd.core.channels import CHANNEL_TYPES, classify_channel
from pusherd.core.outbound import Outbound
from pusherd.core.transitions import (
    MemberAdded,
    MemberRemoved,
    SubscriptionCountChanged,
    Transition,
)


class AppSockets:
    """One app's sockets on this node, indexed the ways delivery needs them."""

    __slots__ = ("connections", "channels", "users", "watchers", "subscriptions")

    def __init__(self) -> None:
        self.connections: dict[str, Subscriber] = {}
        self.channels: dict[str, dict[str, Subscriber]] = {}  # channel -> socket_id -> handle
        # Channel type (core.channels.channel_type) -> subscriptions of these sockets,
        # kept by join and leave so that metrics never walk the channels.
        self.subscriptions: dict[str, int] = dict.fromkeys(CHANNEL_TYPES, 0)
        self.users: dict[str, dict[str, Subscriber]] = {}  # signed-in user id -> sockets
        self.watchers: dict[str, dict[str, Subscriber]] = {}  # watched user id -> watchers


def deliver_to(subscribers: dict[str, Subscriber], frame: Outbound,
               except_socket_id: str | None) -> int:
    """Write `frame` to every handle but `except_socket_id`; return how many got it.

    The hot loop: one non-blocking ``deliver`` per recipient, nothing awaited, nothing
    encoded (the caller built `frame` once).
    """
    if except_socket_id is None or except_socket_id not in subscribers:
        for subscriber in list(subscribers.values()):
            subscriber.deliver(frame)
        return len(subscribers)
    count = 0
    for socket_id, subscriber in list(subscribers.items()):
        if socket_id != except_socket_id:
            subscriber.deliver(frame)
            count += 1
    return count


class DeliveryCount:
    """Channel events delivered by this node for one app, counted once per event."""

    __slots__ = ("messages", "bytes")

    def __init__(self) -> None:
        self.messages = 0  # frames written to sockets (one event to N sockets: N)
        self.bytes = 0  # their WebSocket bytes


class LocalFanout:
    """Every app's sockets on this node (by app id)."""

    def __init__(self) -> None:
        self.apps: dict[str, AppSockets] = {}
        self.delivered: dict[str, DeliveryCount] = {}  # app id -> counts (for /metrics)

    def count_delivery(self, app_id: str, recipients: int, frame: Outbound) -> None:
        """Count one event delivered to `recipients` sockets: one call per event, never
        per recipient (the metrics' ``messages delivered`` and ``bytes sent``)."""
        count = self.delivered.get(app_id)
        if count is None:
            count = self.delivered[app_id] = DeliveryCount()
        count.messages += recipients
        count.bytes += recipients * len(frame.websocket)

    def sockets(self, app_id: str) -> AppSockets:
        """The app's index, created on first use."""
        found = self.apps.get(app_id)
        if found is None:
            found = self.apps[app_id] = AppSockets()
        return found

    # --- membership ---------------------------------------------------------------------

    def join(self, app_id: str, channel: str, subscriber: Subscriber) -> None:
        """Index a local socket under `channel` (again: its handle is replaced)."""
        sockets = self.sockets(app_id)
        subscribers = sockets.channels.setdefault(channel, {})
        socket_id = subscriber.socket_id
        if socket_id not in subscribers:
            sockets.subscriptions[classify_channel(channel).label] += 1  # (cached)
        subscribers[socket_id] = subscriber

    def leave(self, app_id: str, channel: str, socket_id: str) -> None:
        """Remove a local socket from `channel` (an empty channel is dropped)."""
        sockets = self.sockets(app_id)
        subscribers = sockets.channels.get(channel)
        if subscribers is not None and subscribers.pop(socket_id, None) is not None:
            sockets.subscriptions[classify_channel(channel).label] -= 1
            if not subscribers:
                del sockets.channels[channel]

    def sign_in(self, app_id: str, user_id: str, subscriber: Subscriber,
                watchlist: tuple[str, ...]) -> None:
        """Index a local socket under its user id and as a watcher of `watchlist`."""
        sockets = self.sockets(app_id)
        sockets.users.setdefault(user_id, {})[subscriber.socket_id] = subscriber
        for watched in watchlist:
            sockets.watchers.setdefault(watched, {})[subscriber.socket_id] = subscriber

    def sign_out(self, app_id: str, user_id: str, socket_id: str,
                 watchlist: tuple[str, ...]) -> None:
        """Undo :meth:`sign_in` for one socket."""
        sockets = self.sockets(app_id)
        for index, key in ((sockets.users, user_id),
                           *((sockets.watchers, w) for w in watchlist)):
            handles = index.get(key)
            if handles is not None:
                handles.pop(socket_id, None)
                if not handles:
                    del index[key]

    # --- delivery -----------------------------------------------------------------------

    def publish(self, app_id: str, channel: str, frame: Outbound,
                except_socket_id: str | None = None) -> int:
        """Deliver to the channel's local subscribers; return how many got it."""
        app = self.apps.get(app_id)
        subscribers = app.channels.get(channel) if app is not None else None
        return deliver_to(subscribers, frame, except_socket_id) if subscribers else 0

    def channel_subscribers(self, app_id: str, channel: str) -> dict[str, Subscriber] | None:
        """The channel's local subscribers (to skip encoding when there are none)."""
        app = self.apps.get(app_id)
        return app.channels.get(channel) if app is not None else None

    def user_sockets(self, app_id: str, user_id: str) -> dict[str, Subscriber] | None:
        """The local sockets signed in as `user_id` (``#server-to-user-`` delivery, §10.2)."""
        app = self.apps.get(app_id)
        return app.users.get(user_id) if app is not None else None

    def notify_watchers(self, app_id: str, user_id: str, online: bool) -> None:
        """``online``/``offline`` watchlist event to the local watchers of `user_id`."""
        app = self.apps.get(app_id)
        watchers = app.watchers.get(user_id) if app is not None else None
        if watchers:
            name = "online" if online else "offline"
            frame = Outbound(messages.encode_watchlist_events(
                [{"name": name, "user_ids": [user_id]}]))
            deliver_to(watchers, frame, None)

    def apply(self, transition: Transition, except_socket_id: str | None = None) -> None:
        """Deliver the frames a transition implies to local sockets (§8, §11.2).

        ``member_added`` goes to every subscriber but the joining socket
        (`except_socket_id`), which gets the roster instead; the others carry no frame.
        """
        kind = type(transition)
        if kind is MemberAdded:
            assert isinstance(transition, MemberAdded)
            subscribers = self.channel_subscribers(transition.app_id, transition.channel)
            if subscribers:
                deliver_to(subscribers, Outbound(messages.encode_member_added(
                    transition.channel, transition.user_id_value, transition.user_info)),
                    except_socket_id)
        elif kind is MemberRemoved:
            assert isinstance(transition, MemberRemoved)
            subscribers = self.channel_subscribers(transition.app_id, transition.channel)
            if subscribers:
                deliver_to(subscribers, Outbound(messages.encode_member_removed(
                    transition.channel, transition.user_id_value)), None)
        elif kind is SubscriptionCountChanged:
            assert isinstance(transition, SubscriptionCountChanged)
            subscribers = self.channel_subscribers(transition.app_id, transition.channel)
            if subscribers:
                deliver_to(subscribers, Outbound(messages.encode_subscription_count(
                    transition.channel, transition.subscription_count)), None)
