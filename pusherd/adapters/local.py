"""The in-memory adapter: all channel state of every app, in this process.

Each app has its own :class:`AppState`, so the same channel name in two apps never mixes.
Fan-out builds each frame once and calls :meth:`Subscriber.deliver` per recipient; nothing
here awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pusherd.adapters.base import ChannelSnapshot, StateEvent, StateListener, Subscriber
from pusherd.apps import App
from pusherd.core import messages
from pusherd.core.api import Trigger
from pusherd.core.channels import classify_channel, user_id_of_server_to_user_channel
from pusherd.core.outbound import Outbound
from pusherd.core.session import SignedInUser, SubscriptionGrant
from pusherd.core.state import ChannelRegistry, EventCache, UserRegistry

log = logging.getLogger("pusherd.adapter")

# Above this many subscribers, subscription_count is sent at most every 5 s (§11.2).
SUBSCRIPTION_COUNT_THROTTLE_ABOVE = 100
SUBSCRIPTION_COUNT_INTERVAL = 5.0


class AppState:
    __slots__ = ("app_id", "channels", "cache", "users", "connections", "pending_counts",
                 "count_sent_at")

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.channels: ChannelRegistry[Subscriber] = ChannelRegistry()
        self.cache = EventCache()
        self.users: UserRegistry[Subscriber] = UserRegistry()
        self.connections: dict[str, Subscriber] = {}
        # Busy channels whose subscription_count changed since it was last sent, and when
        # it was last sent: sent at most every SUBSCRIPTION_COUNT_INTERVAL (§11.2).
        self.pending_counts: set[str] = set()
        self.count_sent_at: dict[str, float] = {}


class LocalAdapter:
    """Single-process implementation of :class:`pusherd.adapters.base.Adapter`."""

    def __init__(self) -> None:
        self._apps: dict[str, AppState] = {}
        self._listeners: list[StateListener] = []

    # --- bookkeeping --------------------------------------------------------------------

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _emit(self, app_id: str, name: str, channel: str, **fields: Any) -> None:
        """Tell the listeners (webhooks, metrics) about a transition; free when none."""
        if not self._listeners:
            return
        event = StateEvent(app_id, name, channel, **fields)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener must never break delivery
                log.exception("state listener failed on %s", event.name)

    def _state(self, app: App) -> AppState:
        state = self._apps.get(app.id)
        if state is None:
            state = self._apps[app.id] = AppState(app.id)
        return state

    def add_connection(self, app: App, subscriber: Subscriber) -> bool:
        state = self._state(app)
        if app.max_connections and len(state.connections) >= app.max_connections:
            return False
        state.connections[subscriber.socket_id] = subscriber
        return True

    def remove_connection(self, app: App, subscriber: Subscriber) -> None:
        state = self._state(app)
        if state.connections.pop(subscriber.socket_id, None) is None:
            return
        session = subscriber.session
        for channel in list(session.subscriptions):
            self.unsubscribe(app, subscriber, channel)
        user = session.user
        if user is not None:
            self._sign_out(app, state, subscriber, user)

    def connection_count(self, app: App | None = None) -> int:
        if app is not None:
            state = self._apps.get(app.id)
            return len(state.connections) if state else 0
        return sum(len(s.connections) for s in self._apps.values())

    def subscribers(self) -> Iterator[Subscriber]:
        for state in list(self._apps.values()):
            yield from list(state.connections.values())

    # --- subscriptions ------------------------------------------------------------------

    def subscribe(
        self, app: App, subscriber: Subscriber, grant: SubscriptionGrant, now: float
    ) -> None:
        state = self._state(app)
        name, kind = grant.channel, grant.kind
        transition = state.channels.subscribe(
            name, kind, subscriber.socket_id, subscriber, grant.member, app.max_presence_members
        )
        subscriber.session.note_subscribed(grant)
        channel = state.channels.get(name)
        assert channel is not None
        if transition.occupied and not kind.server_to_user:
            self._emit(app.id, "channel_occupied", name)
        if transition.member_added is not None:
            member = transition.member_added
            frame = Outbound(messages.encode_member_added(name, member.user_id, member.user_info))
            self._fanout(channel.subscribers, frame, subscriber.socket_id)
            member_key = grant.member.key if grant.member is not None else None
            self._emit(app.id, "member_added", name, user_id=member_key)
        roster = channel.roster() if kind.presence else None
        subscriber.deliver(Outbound(messages.encode_subscription_succeeded(name, roster)))
        if kind.cache and not transition.already_subscribed:
            cached = state.cache.get(name, now)
            if cached is not None:
                subscriber.deliver(
                    Outbound(messages.encode_channel_event(cached.event, name, cached.data))
                )
            else:
                subscriber.deliver(Outbound(messages.encode_cache_miss(name)))
                self._emit(app.id, "cache_miss", name)
        if not transition.already_subscribed:
            self._subscription_count_changed(app, state, name, transition.subscription_count, now)

    def unsubscribe(self, app: App, subscriber: Subscriber, channel: str) -> None:
        state = self._state(app)
        was_subscribed, member_key = subscriber.session.note_unsubscribed(channel)
        if not was_subscribed:
            return
        transition = state.channels.unsubscribe(channel, subscriber.socket_id, member_key)
        if transition is None:
            return
        if transition.member_removed is not None:
            remaining = state.channels.get(channel)
            if remaining is not None:
                frame = Outbound(
                    messages.encode_member_removed(channel, transition.member_removed.user_id)
                )
                self._fanout(remaining.subscribers, frame, None)
            self._emit(app.id, "member_removed", channel, user_id=member_key)
        if transition.vacated:
            state.pending_counts.discard(channel)
            state.count_sent_at.pop(channel, None)
            if not classify_channel(channel).server_to_user:
                self._emit(app.id, "channel_vacated", channel)
        else:
            self._subscription_count_changed(
                app, state, channel, transition.subscription_count, None
            )

    def _subscription_count_changed(
        self, app: App, state: AppState, channel: str, count: int, now: float | None
    ) -> None:
        if not app.enable_subscription_count:
            return
        kind = classify_channel(channel)
        if kind.presence or kind.server_to_user:
            return
        if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE and (
            now is None or now - state.count_sent_at.get(channel, 0.0) < SUBSCRIPTION_COUNT_INTERVAL
        ):
            state.pending_counts.add(channel)
            return
        self._send_subscription_count(app, state, channel)
        if now is not None:
            state.count_sent_at[channel] = now

    def _send_subscription_count(self, app: App, state: AppState, channel: str) -> None:
        self._send_subscription_count_for(state, channel)

    def _send_subscription_count_for(self, state: AppState, channel: str) -> None:
        current = state.channels.get(channel)
        if current is None:
            return
        count = len(current.subscribers)
        self._fanout(current.subscribers,
                     Outbound(messages.encode_subscription_count(channel, count)), None)
        self._emit(state.app_id, "subscription_count", channel, subscription_count=count)

    # --- users (§10) --------------------------------------------------------------------

    def sign_in(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        state = self._state(app)
        session = subscriber.session
        if session.user is not None:  # the same user again: confirm, change nothing
            subscriber.deliver(Outbound(messages.encode_signin_success(user.user_data)))
            return
        session.user = user
        came_online = state.users.sign_in(user.id, subscriber.socket_id, subscriber)
        subscriber.deliver(Outbound(messages.encode_signin_success(user.user_data)))
        if app.enable_watchlist_events and user.watchlist:
            state.users.watch(list(user.watchlist), subscriber.socket_id, subscriber)
            online = [u for u in user.watchlist if state.users.is_online(u)]
            offline = [u for u in user.watchlist if not state.users.is_online(u)]
            events = [{"name": "online", "user_ids": online}] if online else []
            if offline:
                events.append({"name": "offline", "user_ids": offline})
            subscriber.deliver(Outbound(messages.encode_watchlist_events(events)))
            if user.watchlist_truncated:
                subscriber.deliver(Outbound(messages.encode_error(
                    4302, f"Watchlist limit exceeded: only the first {app.max_watchlist_size} "
                    "user ids are watched")))
        if came_online:
            self._notify_watchers(state, user.id, "online")

    def _sign_out(self, app: App, state: AppState, subscriber: Subscriber,
                  user: SignedInUser) -> None:
        if user.watchlist:
            state.users.unwatch(list(user.watchlist), subscriber.socket_id)
        if state.users.sign_out(user.id, subscriber.socket_id):
            self._notify_watchers(state, user.id, "offline")

    def _notify_watchers(self, state: AppState, user_id: str, name: str) -> None:
        watchers = state.users.watchers.get(user_id)
        if watchers:
            frame = Outbound(messages.encode_watchlist_events(
                [{"name": name, "user_ids": [user_id]}]))
            self._fanout(watchers, frame, None)

    def terminate_user(self, app: App, user_id: str) -> int:
        sockets = self._state(app).users.sockets.get(user_id, {})
        targets = list(sockets.values())
        for subscriber in targets:
            subscriber.terminate(4009, "Connection terminated by the app (terminate_connections)")
        return len(targets)

    # --- publishing ---------------------------------------------------------------------

    @staticmethod
    def _fanout(subscribers: dict[str, Subscriber], frame: Outbound,
                except_socket_id: str | None) -> int:
        # The hot loop: one deliver() per recipient, the frame encoded once by the caller.
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

    def trigger(self, app: App, trigger: Trigger, now: float) -> None:
        state = self._state(app)
        for name in trigger.channels:
            kind = classify_channel(name)
            if kind.server_to_user:
                # Every socket signed in as the user, subscribed or not (§10.2).
                recipients = state.users.sockets.get(user_id_of_server_to_user_channel(name))
            else:
                if kind.cache:
                    state.cache.put(name, trigger.name, trigger.data, now, app.cache_ttl)
                channel = state.channels.get(name)
                recipients = channel.subscribers if channel is not None else None
            if recipients:  # the frame is encoded only when someone will receive it
                frame = Outbound(messages.encode_channel_event(trigger.name, name, trigger.data))
                self._fanout(recipients, frame, trigger.socket_id)

    def client_event(
        self, app: App, subscriber: Subscriber, event: str, channel: str, data: Any,
        user_id: str | None,
    ) -> None:
        state = self._state(app)
        current = state.channels.get(channel)
        if current is None:
            return
        frame = Outbound(messages.encode_channel_event(event, channel, data, user_id))
        self._fanout(current.subscribers, frame, subscriber.socket_id)
        self._emit(app.id, "client_event", channel, user_id=user_id, event=event, data=data,
                   socket_id=subscriber.socket_id)

    # --- queries (§12.1) ----------------------------------------------------------------

    def channel_snapshot(self, app: App, channel: str) -> ChannelSnapshot:
        state = self._apps.get(app.id)
        current = state.channels.get(channel) if state else None
        presence = classify_channel(channel).presence
        if current is None:
            return ChannelSnapshot(False, 0, 0 if presence else None)
        return ChannelSnapshot(
            True, len(current.subscribers), len(current.members) if presence else None
        )

    def occupied_channels(
        self, app: App, prefix: str
    ) -> Iterator[tuple[str, ChannelSnapshot]]:
        state = self._apps.get(app.id)
        if state is None:
            return
        for channel in list(state.channels.occupied(prefix)):
            yield channel.name, ChannelSnapshot(
                True, len(channel.subscribers),
                len(channel.members) if channel.kind.presence else None,
            )

    def presence_user_ids(self, app: App, channel: str) -> list[str]:
        state = self._apps.get(app.id)
        current = state.channels.get(channel) if state else None
        return list(current.members) if current is not None else []

    def cached_event(self, app: App, channel: str, now: float) -> tuple[str, str, float] | None:
        state = self._apps.get(app.id)
        cached = state.cache.get(channel, now) if state else None
        if cached is None:
            return None
        return cached.event, cached.data, cached.expires_at - now

    # --- housekeeping -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for state in self._apps.values():
            state.cache.purge(now)
            for channel in list(state.pending_counts):
                if now - state.count_sent_at.get(channel, 0.0) >= SUBSCRIPTION_COUNT_INTERVAL:
                    state.pending_counts.discard(channel)
                    state.count_sent_at[channel] = now
                    self._send_subscription_count_for(state, channel)
