"""The in-memory adapter: one process's state decision and local fan-out, composed.

Every call decides against :class:`pusherd.core.state.AppState` (pure), then has
:class:`pusherd.adapters.fanout.LocalFanout` deliver the frames, then hands the
transitions to the listeners, in the order they happened. Nothing here awaits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pusherd.adapters.base import (
    CachedEventView,
    ChannelSnapshot,
    Occupancy,
    Subscriber,
    notify_listeners,
)
from pusherd.adapters.fanout import LocalFanout, deliver_to
from pusherd.core import messages
from pusherd.core.api import Trigger
from pusherd.core.app import App
from pusherd.core.channels import classify_channel, user_id_of_server_to_user_channel
from pusherd.core.outbound import Outbound
from pusherd.core.session import SignedInUser, SubscriptionGrant
from pusherd.core.state import AppState
from pusherd.core.transitions import ClientEventSent, Transition, TransitionListener

log = logging.getLogger("pusherd.adapter")


class MemoryAdapter:
    """Single-process implementation of :class:`pusherd.adapters.base.Adapter`."""

    def __init__(self) -> None:
        self._states: dict[str, AppState] = {}
        self.fanout = LocalFanout()
        self._listeners: list[TransitionListener] = []

    async def start(self) -> None:
        """Nothing to connect: the state lives in this process."""

    async def close(self) -> None:
        """Nothing to release."""

    @property
    def ready(self) -> bool:
        """Always: nothing outside this process is needed."""
        return True

    # --- bookkeeping --------------------------------------------------------------------

    def add_listener(self, listener: TransitionListener) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.add_listener`."""
        self._listeners.append(listener)

    def _emit(self, transition: Transition) -> None:
        """Tell the listeners (webhooks, metrics) about a transition."""
        notify_listeners(self._listeners, transition)

    def _state(self, app: App) -> AppState:
        state = self._states.get(app.id)
        if state is None:
            state = self._states[app.id] = AppState(app.id)
        return state

    def add_connection(self, app: App, subscriber: Subscriber) -> bool:
        """See :meth:`pusherd.adapters.base.Adapter.add_connection`."""
        connections = self.fanout.sockets(app.id).connections
        if app.max_connections and len(connections) >= app.max_connections:
            return False
        connections[subscriber.socket_id] = subscriber
        return True

    def remove_connection(self, app: App, subscriber: Subscriber) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.remove_connection`."""
        self.fanout.sockets(app.id).connections.pop(subscriber.socket_id, None)

    def connection_count(self, app: App | None = None) -> int:
        """See :meth:`pusherd.adapters.base.Adapter.connection_count`."""
        if app is not None:
            found = self.fanout.apps.get(app.id)
            return len(found.connections) if found else 0
        return sum(len(s.connections) for s in self.fanout.apps.values())

    # --- subscriptions ------------------------------------------------------------------

    def subscribe(
        self, app: App, subscriber: Subscriber, grant: SubscriptionGrant, now_ms: int
    ) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.subscribe`."""
        name = grant.channel
        result = self._state(app).subscribe(app, name, grant.kind, subscriber.socket_id,
                                            grant.member, now_ms, bool(self._listeners))
        self.fanout.join(app.id, name, subscriber)
        transitions = result.transitions
        # Order on the wire (§3.2, §8): member_added to the others, then the subscriber's
        # own subscription_succeeded, then its cached event, then the new count to all.
        if result.member_added is not None:
            self.fanout.apply(result.member_added, subscriber.socket_id)
        subscriber.deliver(Outbound(messages.encode_subscription_succeeded(name, result.roster)))
        if result.cached is not None:
            subscriber.deliver(Outbound(messages.encode_channel_event(
                result.cached.event, name, result.cached.data)))
        elif result.cache_miss:
            subscriber.deliver(Outbound(messages.encode_cache_miss(name)))
        if result.count_changed is not None:
            self.fanout.apply(result.count_changed)
        if self._listeners:
            for transition in transitions:
                self._emit(transition)

    def unsubscribe(self, app: App, subscriber: Subscriber, channel: str, now_ms: int) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.unsubscribe`."""
        transitions = self._state(app).unsubscribe(app, channel, subscriber.socket_id, now_ms,
                                                   bool(self._listeners))
        self.fanout.leave(app.id, channel, subscriber.socket_id)
        if not transitions:
            return
        apply = self.fanout.apply
        for transition in transitions:
            apply(transition)
        if self._listeners:
            for transition in transitions:
                self._emit(transition)

    # --- users (§10) --------------------------------------------------------------------

    def sign_in(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.sign_in`."""
        users = self._state(app).users
        came_online = users.sign_in(user.id, subscriber.socket_id)
        watchlist = user.watchlist if app.enable_watchlist_events else ()
        self.fanout.sign_in(app.id, user.id, subscriber, watchlist)
        subscriber.deliver(Outbound(messages.encode_signin_success(user.user_data)))
        if watchlist:
            users.watch(list(watchlist), subscriber.socket_id)
            online = [u for u in watchlist if users.is_online(u)]
            offline = [u for u in watchlist if not users.is_online(u)]
            events = [{"name": "online", "user_ids": online}] if online else []
            if offline:
                events.append({"name": "offline", "user_ids": offline})
            subscriber.deliver(Outbound(messages.encode_watchlist_events(events)))
            if user.watchlist_truncated:
                subscriber.deliver(Outbound(messages.encode_error(
                    4302, f"Watchlist limit exceeded: only the first {app.max_watchlist_size} "
                    "user ids are watched")))
        if came_online:
            self.fanout.notify_watchers(app.id, user.id, True)

    def sign_out(self, app: App, subscriber: Subscriber, user: SignedInUser) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.sign_out`."""
        users = self._state(app).users
        watchlist = user.watchlist if app.enable_watchlist_events else ()
        if watchlist:
            users.unwatch(list(watchlist), subscriber.socket_id)
        self.fanout.sign_out(app.id, user.id, subscriber.socket_id, watchlist)
        if users.sign_out(user.id, subscriber.socket_id):
            self.fanout.notify_watchers(app.id, user.id, False)

    def terminate_user(self, app: App, user_id: str) -> int:
        """See :meth:`pusherd.adapters.base.Adapter.terminate_user`."""
        sockets = self.fanout.user_sockets(app.id, user_id)
        targets = list(sockets.values()) if sockets else []
        for subscriber in targets:
            subscriber.terminate(4009, "Connection terminated by the app (terminate_connections)")
        return len(targets)

    # --- publishing ---------------------------------------------------------------------

    def trigger(self, app: App, trigger: Trigger, now_ms: int) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.trigger` (stored on return: None)."""
        fanout = self.fanout
        for name in trigger.channels:
            kind = classify_channel(name)
            if kind.server_to_user:
                # Every socket signed in as the user, subscribed or not (§10.2).
                recipients = fanout.user_sockets(app.id, user_id_of_server_to_user_channel(name))
            else:
                if kind.cache:
                    self._state(app).cache.put(name, trigger.name, trigger.data, now_ms,
                                               app.cache_ttl * 1000)
                recipients = fanout.channel_subscribers(app.id, name)
            if recipients:  # the frame is encoded only when someone will receive it
                frame = Outbound(messages.encode_channel_event(trigger.name, name, trigger.data))
                fanout.count_delivery(app.id, deliver_to(recipients, frame, trigger.socket_id),
                                      frame)

    def client_event(
        self, app: App, subscriber: Subscriber, event: str, channel: str, data: Any,
        user_id: str | None, now_ms: int,
    ) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.client_event`."""
        recipients = self.fanout.channel_subscribers(app.id, channel)
        if not recipients:
            return
        frame = Outbound(messages.encode_channel_event(event, channel, data, user_id))
        self.fanout.count_delivery(app.id, deliver_to(recipients, frame, subscriber.socket_id),
                                   frame)
        if self._listeners:
            self._emit(ClientEventSent(app.id, channel, event, data, subscriber.socket_id,
                                       user_id, now_ms))

    # --- queries (§12.1) ----------------------------------------------------------------

    def channel_snapshot(self, app: App, channel: str) -> ChannelSnapshot:
        """See :meth:`pusherd.adapters.base.Adapter.channel_snapshot`."""
        state = self._states.get(app.id)
        current = state.channels.get(channel) if state else None
        presence = classify_channel(channel).presence
        if current is None:
            return ChannelSnapshot(False, 0, 0 if presence else None)
        return ChannelSnapshot(
            True, len(current.socket_ids), len(current.members) if presence else None
        )

    def occupied_channels(self, app: App, prefix: str) -> Iterator[tuple[str, ChannelSnapshot]]:
        """See :meth:`pusherd.adapters.base.Adapter.occupied_channels`."""
        state = self._states.get(app.id)
        if state is None:
            return
        for channel in list(state.channels.occupied(prefix)):
            yield channel.name, ChannelSnapshot(
                True, len(channel.socket_ids),
                len(channel.members) if channel.kind.presence else None,
            )

    def occupancy(self, app: App) -> Occupancy:
        """See :meth:`pusherd.adapters.base.Adapter.occupancy`: this process's channels
        and members (the state's counters), its sockets' subscriptions (the fan-out's)."""
        sockets = self.fanout.apps.get(app.id)
        state = self._states.get(app.id)
        return Occupancy(
            dict(sockets.subscriptions) if sockets is not None else {},
            dict(state.channels.occupied_by_type) if state is not None else {},
            state.channels.presence_members if state is not None else 0)

    def presence_user_ids(self, app: App, channel: str) -> list[str]:
        """See :meth:`pusherd.adapters.base.Adapter.presence_user_ids`."""
        state = self._states.get(app.id)
        current = state.channels.get(channel) if state else None
        return list(current.members) if current is not None else []

    def cached_event(self, app: App, channel: str, now_ms: int) -> CachedEventView | None:
        """See :meth:`pusherd.adapters.base.Adapter.cached_event`."""
        state = self._states.get(app.id)
        cached = state.cache.get(channel, now_ms) if state else None
        if cached is None:
            return None
        return CachedEventView(cached.event, cached.data, cached.expires_at_ms - now_ms)

    # --- housekeeping -------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """See :meth:`pusherd.adapters.base.Adapter.tick`."""
        for state in self._states.values():
            for transition in state.tick(now_ms):
                self.fanout.apply(transition)
                self._emit(transition)
