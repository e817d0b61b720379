"""The Lua scripts that change the shared state. Each runs atomically inside Redis.

Why scripts: a transition (the first socket of a user anywhere joined, a channel's last
subscriber anywhere left, a dead node's members removed) must be decided exactly once in
the whole cluster. A script reads and writes the counters in one step, and its return
value is the decision: only the node that ran it announces the transition.

Every script takes ``ARGV[1]`` = key prefix, ``ARGV[2]`` = the node whose entries it
changes, ``ARGV[3]`` = the node running it (the origin of what it publishes),
``ARGV[4]`` = the bus channel ("" publishes nothing), ``ARGV[5]`` = the socket that caused
the change ("" for none), then its own arguments; it builds the key names of
:mod:`.keys`. Times come from the Redis clock (``TIME``), so the nodes' clocks never need
to agree. Transitions come back as arrays of six, ``{kind, app, channel, user_key,
member_json, count}`` ("" where a field does not apply), kind one of ``occupied``,
``count``, ``vacated``, ``member_added``, ``member_removed``, ``online``, ``offline``.

A script that decided transitions also PUBLISHes them on the bus (a frame holding one
``changes`` message, see :mod:`.bus`) inside the same atomic step: every node, the
origin included, applies transitions in the one order Redis decided them, and no
decision can be lost between the script and a separate publish.

A node's every contribution is also counted in its own hash ``P:node:<node>``, which is
what the reaper subtracts when the node's lease lapses. Mutating scripts refuse to run
for a node absent from ``P:nodes`` (reply ``{"unregistered"}``): an entry written by a
node the cluster has already reaped would be a ghost no lease covers.

The scripts touch keys they compute, so they need a standalone Redis (or one primary of
Sentinel), not Redis Cluster; docs/scaling.md says so.
"""

from __future__ import annotations

_PRELUDE = r"""
local P = ARGV[1]
local NODE = ARGV[2]
local ORIGIN = ARGV[3]
local BUS = ARGV[4]
local SOCKET = ARGV[5]
local NODES = P .. ':nodes'
local NODE_KEY = P .. ':node:' .. NODE
local out = {}

local function note(kind, app, channel, user_key, member, count)
  out[#out + 1] = {kind, app, channel, user_key, member, count}
end

-- Tell every node (this one included) what was decided, in the order it was decided.
local function announce()
  if BUS ~= '' and #out > 0 then
    -- A bus frame of kind "c" holding one changes message (see .bus).
    redis.call('PUBLISH', BUS, 'v2 c ' .. ORIGIN .. '\n' ..
               cjson.encode({{t = 'changes', x = SOCKET, s = out}}))
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function app_key(app, what)
  return P .. ':app:' .. app .. ':' .. what
end

local function registered()
  return redis.call('ZSCORE', NODES, NODE) ~= false
end

local function node_add(field, delta)
  local left = redis.call('HINCRBY', NODE_KEY, field, delta)
  if left <= 0 then
    redis.call('HDEL', NODE_KEY, field)
  end
end

local function change_subscriptions(app, channel, delta)
  node_add(cjson.encode({'s', app, channel}), delta)
  local key = app_key(app, 'channels')
  local total = redis.call('HINCRBY', key, channel, delta)
  local before = total - delta
  if total <= 0 then
    redis.call('HDEL', key, channel)
    if before > 0 then note('vacated', app, channel, '', '', 0) end
  elseif before <= 0 then
    note('occupied', app, channel, '', '', total)
  else
    note('count', app, channel, '', '', total)
  end
end

local function change_member(app, channel, member_key, member_json, delta)
  node_add(cjson.encode({'m', app, channel, member_key}), delta)
  local refs = app_key(app, 'presence:' .. channel)
  local roster = app_key(app, 'roster:' .. channel)
  local total = redis.call('HINCRBY', refs, member_key, delta)
  local before = total - delta
  if total <= 0 then
    local kept = redis.call('HGET', roster, member_key)
    redis.call('HDEL', refs, member_key)
    redis.call('HDEL', roster, member_key)
    if before > 0 then
      note('member_removed', app, channel, member_key, kept or '', 0)
    end
  elseif before <= 0 then
    redis.call('HSET', roster, member_key, member_json)
    note('member_added', app, channel, member_key, member_json, 0)
  end
end

local function change_user(app, user_id, delta)
  node_add(cjson.encode({'u', app, user_id}), delta)
  local key = app_key(app, 'users')
  local total = redis.call('HINCRBY', key, user_id, delta)
  local before = total - delta
  if total <= 0 then
    redis.call('HDEL', key, user_id)
    if before > 0 then note('offline', app, '', user_id, '', 0) end
  elseif before <= 0 then
    note('online', app, '', user_id, '', 0)
  end
end

-- The node's contributions, split by kind: {fields = ..., parts = ...} per kind.
local function node_entries()
  local entries = {s = {}, m = {}, u = {}}
  local flat = redis.call('HGETALL', NODE_KEY)
  for i = 1, #flat, 2 do
    local parts = cjson.decode(flat[i])
    local kind = parts[1]
    if entries[kind] then
      entries[kind][flat[i]] = {parts = parts, count = tonumber(flat[i + 1])}
    end
  end
  return entries
end

-- Subtract every contribution of NODE (members first, so member_removed precedes
-- channel_vacated), then forget the node.
local function drop_node()
  local entries = node_entries()
  for _, e in pairs(entries.m) do
    change_member(e.parts[2], e.parts[3], e.parts[4], '', -e.count)
  end
  for _, e in pairs(entries.s) do
    change_subscriptions(e.parts[2], e.parts[3], -e.count)
  end
  for _, e in pairs(entries.u) do
    change_user(e.parts[2], e.parts[3], -e.count)
  end
  redis.call('DEL', NODE_KEY)
  redis.call('ZREM', NODES, NODE)
end
"""

# ARGV: prefix, node, origin, bus, socket_id, app, channel, member_key ("" if not
# presence), member_json, max_members, want_cache ("1"/"0").
# -> {"ok", transitions, roster (flat key/json pairs, presence only), {cached, pttl} or {}}
#    | {"full"} | {"unregistered"}
SUBSCRIBE = _PRELUDE + r"""
if not registered() then return {'unregistered'} end
local app, channel, member_key = ARGV[6], ARGV[7], ARGV[8]
if member_key ~= '' then
  local refs = app_key(app, 'presence:' .. channel)
  if redis.call('HEXISTS', refs, member_key) == 0
      and redis.call('HLEN', refs) >= tonumber(ARGV[10]) then
    return {'full'}
  end
end
change_subscriptions(app, channel, 1)
local roster = {}
if member_key ~= '' then
  change_member(app, channel, member_key, ARGV[9], 1)
  roster = redis.call('HGETALL', app_key(app, 'roster:' .. channel))
end
local cached = {}
if ARGV[11] == '1' then
  local key = app_key(app, 'cache:' .. channel)
  local value = redis.call('GET', key)
  if value then cached = {value, redis.call('PTTL', key)} end
end
announce()
return {'ok', out, roster, cached}
"""

# ARGV: prefix, node, origin, bus, socket_id, app, channel, member_key ("" if not presence)
# -> {"ok", transitions} | {"unregistered"}
UNSUBSCRIBE = _PRELUDE + r"""
if not registered() then return {'unregistered'} end
local app, channel, member_key = ARGV[6], ARGV[7], ARGV[8]
if member_key ~= '' then change_member(app, channel, member_key, '', -1) end
change_subscriptions(app, channel, -1)
announce()
return {'ok', out}
"""

# ARGV: prefix, node, origin, bus, socket_id, app, user_id, watched user ids...
# -> {"ok", transitions, {1|0 per watched id: online anywhere}} | {"unregistered"}
SIGN_IN = _PRELUDE + r"""
if not registered() then return {'unregistered'} end
local app = ARGV[6]
change_user(app, ARGV[7], 1)
local users = app_key(app, 'users')
local online = {}
for i = 8, #ARGV do
  online[#online + 1] = redis.call('HEXISTS', users, ARGV[i])
end
announce()
return {'ok', out, online}
"""

# ARGV: prefix, node, origin, bus, socket_id, app, user_id
# -> {"ok", transitions} | {"unregistered"}
SIGN_OUT = _PRELUDE + r"""
if not registered() then return {'unregistered'} end
change_user(ARGV[6], ARGV[7], -1)
announce()
return {'ok', out}
"""

# ARGV: prefix, node, origin, bus, socket_id, lease ms
# -> 1 renewed | 0 not registered (reaped: re-register)
RENEW = _PRELUDE + r"""
if not registered() then return 0 end
redis.call('ZADD', NODES, now_ms() + tonumber(ARGV[6]), NODE)
return 1
"""

# Make the node's contributions equal to a snapshot of its live state, and (re)take the
# lease. Used at start, after a reconnect, and by a node that finds it was reaped.
# ARGV: prefix, node, origin, bus, socket_id, lease ms, snapshot JSON
#   {"s": [[app, channel, sockets]...], "m": [[app, channel, key, member_json, sockets]...],
#    "u": [[app, user_id, sockets]...]}
# -> {was_registered (1|0), transitions}
SYNC = _PRELUDE + r"""
local was = registered() and 1 or 0
redis.call('ZADD', NODES, now_ms() + tonumber(ARGV[6]), NODE)
-- Live now: the start check's claim (pusherd.server.preflight) is no longer needed.
redis.call('DEL', P .. ':bus-channel-claim')
local have = node_entries()
local snapshot = cjson.decode(ARGV[7])
local want = {s = {}, m = {}, u = {}}
for _, e in ipairs(snapshot.s or {}) do
  want.s[cjson.encode({'s', e[1], e[2]})] = {parts = {'s', e[1], e[2]}, count = e[3]}
end
for _, e in ipairs(snapshot.m or {}) do
  want.m[cjson.encode({'m', e[1], e[2], e[3]})] =
    {parts = {'m', e[1], e[2], e[3]}, json = e[4], count = e[5]}
end
for _, e in ipairs(snapshot.u or {}) do
  want.u[cjson.encode({'u', e[1], e[2]})] = {parts = {'u', e[1], e[2]}, count = e[3]}
end
local function delta(kind, field)
  local w, h = want[kind][field], have[kind][field]
  return (w and w.count or 0) - (h and h.count or 0)
end
local function each(kind, sign, apply)
  local seen = {}
  for field, e in pairs(want[kind]) do
    seen[field] = true
    local d = delta(kind, field)
    if d * sign > 0 then apply(e, d) end
  end
  for field, e in pairs(have[kind]) do
    if not seen[field] then
      local d = delta(kind, field)
      if d * sign > 0 then apply(e, d) end
    end
  end
end
local function subs(e, d) change_subscriptions(e.parts[2], e.parts[3], d) end
local function members(e, d) change_member(e.parts[2], e.parts[3], e.parts[4], e.json or '', d) end
local function users(e, d) change_user(e.parts[2], e.parts[3], d) end
each('s', 1, subs)
each('m', 1, members)
each('u', 1, users)
each('m', -1, members)
each('s', -1, subs)
each('u', -1, users)
announce()
return {was, out}
"""

# ARGV: prefix, lapsed node, origin (the reaper), bus, "", "force" to drop even a live
# lease (a node leaving).
# -> transitions ({} when the node was not there or its lease has not lapsed: another
#    node reaped it first, or it renewed in time)
REAP = _PRELUDE + r"""
local score = redis.call('ZSCORE', NODES, NODE)
if not score then return {} end
if ARGV[6] ~= 'force' and tonumber(score) > now_ms() then return {} end
drop_node()
announce()
return out
"""

# ARGV: prefix, "", "", "", "" -> node ids whose lease has lapsed (Redis clock)
LAPSED = _PRELUDE + r"""
return redis.call('ZRANGEBYSCORE', NODES, '-inf', '(' .. now_ms())
"""
