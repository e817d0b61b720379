"""Building blocks of the Redis scale-out: the shared state, the bus and the link.

None of these modules knows a socket or a session: :mod:`.state` keeps the cluster-wide
counts, presence members and signed-in users in Redis (decided by Lua scripts, so every
transition is decided exactly once); :mod:`.bus` carries triggers, client events and
transitions between nodes over one pub/sub channel; :mod:`.link` owns the connection and
its recovery. The Redis adapter composes them with the local fan-out. See docs/scaling.md.
"""
