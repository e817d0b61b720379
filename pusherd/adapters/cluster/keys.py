"""The Redis key layout of one deployment. Every name starts with ``<prefix>:``.

=====================================  ======  ==============================================
key                                    type    holds
=====================================  ======  ==============================================
``P:nodes``                            zset    node id -> lease expiry (Redis clock, ms)
``P:bus-channel``                      string  the bus channel name the nodes use (start check)
``P:bus-channel-claim``                string  that name, PX, from a start check to the first lease
``P:node:<node>``                      hash    what that node contributes: field -> sockets
``P:app:<app>:channels``               hash    occupied channel -> subscription count
``P:app:<app>:presence:<channel>``     hash    member key -> sockets of that user (all nodes)
``P:app:<app>:roster:<channel>``       hash    member key -> JSON ``[user_id, user_info]``
``P:app:<app>:users``                  hash    signed-in user id -> sockets (all nodes)
``P:app:<app>:cache:<channel>``        string  JSON ``[event, data]`` of a cache channel, PX
``P:<channel>``                        pubsub  the bus (default channel name ``bus``; ``@db<N>``
                                               after it for a database N > 0)
=====================================  ======  ==============================================

Fields of ``P:node:<node>`` are JSON arrays built by the scripts: ``["s", app, channel]``,
``["m", app, channel, member key]``, ``["u", app, user id]``. Channel names cannot contain
``:``; the scripts build the same names (see :mod:`.scripts`).
"""

from __future__ import annotations


class KeyLayout:
    """Key names for one prefix (``[redis] prefix``), so deployments can share a Redis."""

    __slots__ = ("prefix", "nodes", "bus", "bus_channel", "bus_channel_claim")

    def __init__(self, prefix: str, channel: str = "bus", database: int = 0) -> None:
        self.prefix = prefix
        self.nodes = f"{prefix}:nodes"
        # Pub/sub ignores the database number: a database other than 0 is named in the
        # bus channel, so that deployments told apart by database alone do not share it.
        self.bus = f"{prefix}:{channel}" + (f"@db{database}" if database else "")
        # The channel name recorded at start: nodes of one prefix must share the bus.
        self.bus_channel = f"{prefix}:bus-channel"
        # Set by a start check, deleted by the node's first lease (the SYNC script).
        self.bus_channel_claim = f"{prefix}:bus-channel-claim"

    def node(self, node_id: str) -> str:
        """Hash of what `node_id` contributes (field -> sockets)."""
        return f"{self.prefix}:node:{node_id}"

    def channels(self, app_id: str) -> str:
        """Hash of `app_id`'s occupied channels -> subscription count."""
        return f"{self.prefix}:app:{app_id}:channels"

    def presence(self, app_id: str, channel: str) -> str:
        """Hash of a presence channel's member keys -> sockets on all nodes."""
        return f"{self.prefix}:app:{app_id}:presence:{channel}"

    def roster(self, app_id: str, channel: str) -> str:
        """Hash of a presence channel's member keys -> JSON [user_id, user_info]."""
        return f"{self.prefix}:app:{app_id}:roster:{channel}"

    def users(self, app_id: str) -> str:
        """Hash of `app_id`'s signed-in user ids -> sockets on all nodes."""
        return f"{self.prefix}:app:{app_id}:users"

    def cache(self, app_id: str, channel: str) -> str:
        """String: JSON [event, data] of a cache channel's last event, with a TTL."""
        return f"{self.prefix}:app:{app_id}:cache:{channel}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this deployment (tests and tooling)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:*"
