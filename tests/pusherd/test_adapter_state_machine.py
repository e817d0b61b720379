"""Per-socket state and channel state never disagree, after any sequence of operations.

A hypothesis state machine drives random sequences of connect / subscribe (including a
repeated subscribe as another user) / unsubscribe / close over several sockets, users and
channel kinds, through real sessions and the real action interpreter, and checks after
every step against a plain model: rosters and counts the adapter reports, the users list,
the member view each subscriber has built from its frames, the transitions emitted, and
the gauges the adapter keeps for the metrics (``Adapter.occupancy``) against a recount.
It runs on the in-memory adapter and on the Redis adapter (whose steps finish in the
background: each step waits for them, bounded, before the invariants are checked).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any, Protocol

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pusherd.adapters.base import Adapter
from pusherd.adapters.cluster.bus import BusMessage, ChangesMessage, encode_bus_message
from pusherd.adapters.memory import MemoryAdapter
from pusherd.adapters.redis import RedisAdapter
from pusherd.config import RedisConfig
from pusherd.core.channels import channel_type
from pusherd.core.transitions import MemberAdded, MemberRemoved, Transition
from tests.pusherd.adapter_harness import Peer
from tests.pusherd.test_adapter_contract import APP
from tests.support.redis_server import SHARED_REDIS_URL, delete_prefix, unique_prefix

SOCKETS = range(4)
USERS = ("alice", "bob", "carol")
CHANNELS = ("presence-lobby.7", "presence-b", "private-x", "orders")
PRESENCE = tuple(c for c in CHANNELS if c.startswith("presence-"))


class Engine(Protocol):
    """How a machine runs its adapter: build it, let it finish what a step started (an
    adapter deciding in the background), release it."""

    def build(self) -> Adapter: ...

    def settle(self, adapter: Adapter) -> None: ...

    def release(self, adapter: Adapter) -> None: ...


class InProcess:
    """An adapter that decides synchronously: nothing to wait for, nothing to release."""

    def __init__(self, make_adapter: Callable[[], Adapter]) -> None:
        self.make_adapter = make_adapter

    def build(self) -> Adapter:
        """A new adapter."""
        return self.make_adapter()

    def settle(self, adapter: Adapter) -> None:
        """Nothing runs in the background."""

    def release(self, adapter: Adapter) -> None:
        """Nothing to release."""


def _machine(engine: Engine) -> type[RuleBasedStateMachine]:
    class AdapterStateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.adapter = engine.build()
            self.transitions: list[Transition] = []
            self.adapter.add_listener(self.transitions.append)
            self.peers: dict[int, Peer] = {}
            # The model: per connected socket, channel -> the user it first joined as.
            self.model: dict[int, dict[str, str | None]] = {}

        def _members(self, channel: str) -> set[str]:
            return {user for subs in self.model.values() for ch, user in subs.items()
                    if ch == channel and user is not None}

        @rule(socket=st.sampled_from(SOCKETS))
        def connect(self, socket: int) -> None:
            if socket in self.peers:
                return
            self.peers[socket] = Peer(self.adapter, APP)
            self.model[socket] = {}
            engine.settle(self.adapter)

        @rule(socket=st.sampled_from(SOCKETS), channel=st.sampled_from(CHANNELS),
              user=st.sampled_from(USERS))
        def subscribe(self, socket: int, channel: str, user: str) -> None:
            if socket not in self.peers:
                return
            self.peers[socket].subscribe(channel, user)
            subs = self.model[socket]
            if channel not in subs:  # a repeated subscribe changes nothing
                subs[channel] = user if channel in PRESENCE else None
            engine.settle(self.adapter)

        @rule(socket=st.sampled_from(SOCKETS), channel=st.sampled_from(CHANNELS))
        def unsubscribe(self, socket: int, channel: str) -> None:
            if socket not in self.peers:
                return
            self.peers[socket].unsubscribe(channel)
            self.model[socket].pop(channel, None)
            engine.settle(self.adapter)

        @rule(socket=st.sampled_from(SOCKETS))
        def close(self, socket: int) -> None:
            peer = self.peers.pop(socket, None)
            if peer is not None:
                peer.disconnect()
                del self.model[socket]
                engine.settle(self.adapter)

        def teardown(self) -> None:
            engine.release(self.adapter)

        @invariant()
        def counts_and_rosters_match_the_model(self) -> None:
            for channel in CHANNELS:
                subscribed = sum(channel in subs for subs in self.model.values())
                snapshot = self.adapter.channel_snapshot(APP, channel)
                assert snapshot.occupied == (subscribed > 0)
                assert snapshot.subscription_count == subscribed
                if channel in PRESENCE:
                    members = self._members(channel)
                    assert snapshot.user_count == len(members)
                    assert set(self.adapter.presence_user_ids(APP, channel)) == members

        @invariant()
        def occupancy_equals_a_recount(self) -> None:
            # The metrics' gauges, kept as the state changed, against a full recount:
            # the sessions' subscriptions, and the channels the adapter lists.
            subscriptions: dict[str, int] = {}
            for peer in self.peers.values():
                for channel in peer.session.subscriptions:
                    label = channel_type(channel)
                    subscriptions[label] = subscriptions.get(label, 0) + 1
            channels: dict[str, int] = {}
            members = 0
            for name, snapshot in self.adapter.occupied_channels(APP, ""):
                channels[channel_type(name)] = channels.get(channel_type(name), 0) + 1
                members += snapshot.user_count or 0
            occupancy = self.adapter.occupancy(APP)
            assert _nonzero(occupancy.subscriptions) == subscriptions
            assert _nonzero(occupancy.channels) == channels
            assert occupancy.presence_members == members
            assert self.adapter.connection_count(APP) == len(self.peers)

        @invariant()
        def every_subscriber_sees_the_true_members(self) -> None:
            for socket, peer in self.peers.items():
                for channel in PRESENCE:
                    if channel not in self.model[socket]:
                        continue
                    view: set[str] = set()
                    for frame in peer.frames:
                        if frame.get("channel") != channel:
                            continue
                        event = frame["event"]
                        if event == "pusher_internal:subscription_succeeded":
                            view = set(_data(frame)["presence"]["ids"])
                        elif event == "pusher_internal:member_added":
                            view.add(_data(frame)["user_id"])
                        elif event == "pusher_internal:member_removed":
                            view.discard(_data(frame)["user_id"])
                    assert view == self._members(channel), (socket, channel)

        @invariant()
        def member_transitions_pair_up(self) -> None:
            for channel in PRESENCE:
                for user in USERS:
                    added = sum(isinstance(t, MemberAdded) and t.channel == channel
                                and t.user_id == user for t in self.transitions)
                    removed = sum(isinstance(t, MemberRemoved) and t.channel == channel
                                  and t.user_id == user for t in self.transitions)
                    present = user in self._members(channel)
                    assert added - removed == (1 if present else 0), (channel, user)

    return AdapterStateMachine


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {label: count for label, count in counts.items() if count}


def _data(frame: dict[str, Any]) -> Any:
    data = frame["data"]
    return json.loads(data) if isinstance(data, str) else data


MemoryAdapterStateMachine = _machine(InProcess(MemoryAdapter))
MemoryAdapterStateMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True)
TestMemoryAdapterStateMachine = MemoryAdapterStateMachine.TestCase


class OnRedis:
    """The Redis adapter (a one-node cluster on the shared Redis, a key prefix per
    example) driven on an event loop of its own: a step's background work (the scripts,
    the announcements coming back on the bus) runs to completion in :meth:`settle`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fences = itertools.count()

    def build(self) -> Adapter:
        config = RedisConfig(url=SHARED_REDIS_URL, prefix=unique_prefix())
        adapter = RedisAdapter(config, [APP])
        self.loop.run_until_complete(adapter.start())
        return adapter

    def settle(self, adapter: Adapter) -> None:
        assert isinstance(adapter, RedisAdapter)
        self.loop.run_until_complete(asyncio.wait_for(self._settle(adapter), 10))

    async def _settle(self, adapter: RedisAdapter) -> None:
        # Every write sent and answered...
        while adapter._ops or adapter._writing.locked() or adapter.bus.buffered_bytes:
            await asyncio.sleep(0.001)
        # ...then a marker through Redis: what the scripts published came before it.
        marker = f"fence-{next(self.fences)}"
        seen: list[str] = []
        handler = adapter.bus.handler

        def spy(message: BusMessage) -> None:
            if isinstance(message, ChangesMessage):
                seen.append(message.socket_id)
            handler(message)

        adapter.bus.handler = spy
        try:
            await adapter.link.client.publish(adapter.keys.bus, encode_bus_message(
                ChangesMessage("test", (), marker)))
            while marker not in seen:
                await asyncio.sleep(0.001)
        finally:
            adapter.bus.handler = handler
        assert not adapter._awaiting and not adapter._echo_wait

    def release(self, adapter: Adapter) -> None:
        assert isinstance(adapter, RedisAdapter)
        self.loop.run_until_complete(adapter.close())
        delete_prefix(SHARED_REDIS_URL, adapter.config.prefix)


_ON_REDIS = OnRedis()
RedisAdapterStateMachine = _machine(_ON_REDIS)
RedisAdapterStateMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, derandomize=True)
TestRedisAdapterStateMachine = RedisAdapterStateMachine.TestCase
