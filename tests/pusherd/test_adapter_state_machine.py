"""Per-socket state and channel state never disagree, after any sequence of operations.

A hypothesis state machine drives random sequences of connect / subscribe (including a
repeated subscribe as another user) / unsubscribe / close over several sockets, users and
channel kinds, through real sessions and the real action interpreter, and checks after
every step against a plain model: rosters and counts the adapter reports, the users list,
the member view each subscriber has built from its frames, and the transitions emitted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pusherd.adapters.base import Adapter
from pusherd.adapters.memory import MemoryAdapter
from pusherd.core.transitions import MemberAdded, MemberRemoved, Transition
from tests.pusherd.adapter_harness import Peer
from tests.pusherd.test_adapter_contract import APP

SOCKETS = range(4)
USERS = ("alice", "bob", "carol")
CHANNELS = ("presence-lobby.7", "presence-b", "private-x", "orders")
PRESENCE = tuple(c for c in CHANNELS if c.startswith("presence-"))


def _machine(make_adapter: Callable[[], Adapter]) -> type[RuleBasedStateMachine]:
    class AdapterStateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.adapter = make_adapter()
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

        @rule(socket=st.sampled_from(SOCKETS), channel=st.sampled_from(CHANNELS),
              user=st.sampled_from(USERS))
        def subscribe(self, socket: int, channel: str, user: str) -> None:
            if socket not in self.peers:
                return
            self.peers[socket].subscribe(channel, user)
            subs = self.model[socket]
            if channel not in subs:  # a repeated subscribe changes nothing
                subs[channel] = user if channel in PRESENCE else None

        @rule(socket=st.sampled_from(SOCKETS), channel=st.sampled_from(CHANNELS))
        def unsubscribe(self, socket: int, channel: str) -> None:
            if socket not in self.peers:
                return
            self.peers[socket].unsubscribe(channel)
            self.model[socket].pop(channel, None)

        @rule(socket=st.sampled_from(SOCKETS))
        def close(self, socket: int) -> None:
            peer = self.peers.pop(socket, None)
            if peer is not None:
                peer.disconnect()
                del self.model[socket]

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


def _data(frame: dict[str, Any]) -> Any:
    data = frame["data"]
    return json.loads(data) if isinstance(data, str) else data


MemoryAdapterStateMachine = _machine(MemoryAdapter)
MemoryAdapterStateMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True)
TestMemoryAdapterStateMachine = MemoryAdapterStateMachine.TestCase
