"""Adapters own the channel state and deliver frames to sockets.

``base.Adapter`` is the seam the server depends on. Each adapter composes a state decision
(which transitions happen) with :mod:`~pusherd.adapters.fanout` (delivery to this node's
sockets): :class:`~pusherd.adapters.memory.MemoryAdapter` keeps the state in this process.
"""
