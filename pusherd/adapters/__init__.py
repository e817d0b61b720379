"""Adapters own the channel state and deliver frames to sockets.

``base.Adapter`` is the seam: the in-memory :class:`~pusherd.adapters.local.LocalAdapter`
serves one process; a Redis adapter composes it to span processes and machines.
"""
