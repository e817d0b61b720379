"""§8: presence channels (roster, member events, several sockets per user, limits)."""

from __future__ import annotations

import json

from ..framework import case, check, check_eq
from ..wire import is_event, sign
from .common import expect_rejected, member_data, presence_of


@case("presence.roster-includes-self", "8",
      "presence subscription_succeeded: string-data {presence:{ids,hash,count}} including self")
async def roster_self(ctx):
    a = await ctx.raw()
    ch = ctx.chan("presence-", "roster")
    await a.subscribe(ch, user=("7", {"name": "Ada"}))
    b = await ctx.raw()
    frame = await b.subscribe(ch, user=("9", {"name": "Linus"}))
    p = presence_of(frame)
    check_eq(sorted(p["ids"]), ["7", "9"], "ids")
    check_eq(p["hash"], {"7": {"name": "Ada"}, "9": {"name": "Linus"}}, "hash")
    check_eq(p["count"], 2, "count")


@case("presence.member-added-removed", "8",
      "others get member_added (string-data {user_id,user_info}) and member_removed {user_id}; "
      "the joiner gets no member_added for itself")
async def member_events(ctx):
    a = await ctx.raw()
    ch = ctx.chan("presence-", "members")
    await a.subscribe(ch, user=("1", {"name": "Ada"}))
    b = await ctx.raw()
    await b.subscribe(ch, user=("2", {"name": "Linus"}))
    frame = await a.expect(is_event("pusher_internal:member_added", ch), "member_added")
    check_eq(member_data(frame), {"user_id": "2", "user_info": {"name": "Linus"}},
             "member_added data")
    check_eq(await b.sync(), [], "frames to the joiner after its success")
    await b.unsubscribe(ch)
    frame = await a.expect(is_event("pusher_internal:member_removed", ch), "member_removed")
    check_eq(member_data(frame), {"user_id": "2"}, "member_removed data")


@case("presence.exact-channel-data-bytes", "7.1",
      "the signature covers channel_data exactly as sent (Python spacing, PHP \\/ escapes, "
      "unicode)")
async def exact_bytes(ctx):
    ch = ctx.chan("presence-", "bytes")
    variants = [
        '{"user_id": "11", "user_info": {"name": "A/B"}}',
        '{"user_id":"12","user_info":{"name":"A\\/B","url":"http:\\/\\/x"}}',
        '{"user_id":"13","user_info":{"name":"Zoë \\u00e9 日本"}}',
        '{"user_id":"14","user_info":{"name":"Zoë é 日本"}}',
    ]
    expected = {"11": {"name": "A/B"}, "12": {"name": "A/B", "url": "http://x"},
                "13": {"name": "Zoë é 日本"}, "14": {"name": "Zoë é 日本"}}
    last = None
    for cd in variants:
        c = await ctx.raw()
        last = await c.subscribe(ch, channel_data=cd)
    p = presence_of(last)
    check_eq(p["hash"], expected, "hash decoded from the exact channel_data strings")


@case("presence.numeric-user-id", "8", "a numeric user_id is accepted and listed by its string")
async def numeric_id(ctx):
    c = await ctx.raw()
    ch = ctx.chan("presence-", "num")
    frame = await c.subscribe(ch, channel_data='{"user_id":42,"user_info":{"n":1}}')
    p = presence_of(frame)
    check_eq([str(i) for i in p["ids"]], ["42"], "ids")
    check("42" in p["hash"], f"hash keyed by the string id: {p['hash']}")


@case("presence.missing-user-info", "8",
      "channel_data without user_info keeps the member (hash value null), count 1")
async def missing_info(ctx):
    c = await ctx.raw()
    ch = ctx.chan("presence-", "noinfo")
    frame = await c.subscribe(ch, channel_data='{"user_id":"5"}')
    p = presence_of(frame)
    check_eq(p["ids"], ["5"], "ids")
    check("5" in p["hash"], f"member kept in hash: {p['hash']}")
    check(p["hash"]["5"] in (None, {}), f"hash value for a member without info: {p['hash']}")
    check_eq(p["count"], 1, "count")


@case("presence.same-user-two-sockets", "8",
      "one user on two sockets: one member_added, count 1, member_removed only when both left")
async def same_user(ctx):
    ch = ctx.chan("presence-", "multi")
    observer = await ctx.raw()
    await observer.subscribe(ch, user=("obs", None))
    a1 = await ctx.raw()
    await a1.subscribe(ch, user=("ada", {"name": "Ada"}))
    await observer.expect(is_event("pusher_internal:member_added", ch), "member_added for ada")
    a2 = await ctx.raw()
    frame = await a2.subscribe(ch, user=("ada", {"name": "Ada"}))
    p = presence_of(frame)
    check_eq(p["count"], 2, "count (distinct users: obs, ada)")
    check_eq(sorted(p["ids"]), ["ada", "obs"], "ids are distinct")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}/users")
    check_eq(r.status, 200, f"users ({r.describe()})")
    check_eq(sorted(u.get("id") for u in r.json().get("users", [])), ["ada", "obs"], "users")
    await a1.close()
    extra = await observer.sync()
    check_eq([f for f in extra if f.get("channel") == ch], [],
             "frames to the observer after the first of two sockets left")
    await a2.unsubscribe(ch)
    frame = await observer.expect(is_event("pusher_internal:member_removed", ch), "member_removed")
    check_eq(member_data(frame), {"user_id": "ada"}, "member_removed data")


@case("presence.disconnect-removes", "8",
      "closing the socket without unsubscribing sends member_removed to the others")
async def disconnect_removes(ctx):
    ch = ctx.chan("presence-", "gone")
    observer = await ctx.raw()
    await observer.subscribe(ch, user=("obs", None))
    c = await ctx.raw()
    await c.subscribe(ch, user=("leaver", {"x": 1}))
    await observer.expect(is_event("pusher_internal:member_added", ch), "member_added")
    await c.close()
    frame = await observer.expect(is_event("pusher_internal:member_removed", ch), "member_removed",
                                  timeout=10)
    check_eq(member_data(frame), {"user_id": "leaver"}, "member_removed data")


@case("presence.auth-failures", "7.4",
      "presence: missing channel_data (not signed in), bad signature, channel_data that differs "
      "from the signed bytes, channel_data without user_id are refused")
async def presence_failures(ctx):
    c = await ctx.raw()
    ch = ctx.chan("presence-", "bad")
    await c.subscribe(ch, auth=ctx.auth_for(c.socket_id, ch), expect_ok=False)
    await expect_rejected(c, ch, "no channel_data")
    cd = '{"user_id":"1"}'
    await c.subscribe(ch, channel_data=cd, auth=f"{ctx.app_key}:{sign('x', ch)}", expect_ok=False)
    await expect_rejected(c, ch, "bad signature")
    signed = ctx.auth_for(c.socket_id, ch, '{"user_id": "1"}')
    await c.subscribe(ch, channel_data=cd, auth=signed, expect_ok=False)
    await expect_rejected(c, ch, "channel_data re-serialized differently from the signed bytes")
    cd = '{"user_info":{"a":1}}'
    await c.subscribe(ch, channel_data=cd, expect_ok=False)
    await expect_rejected(c, ch, "channel_data without user_id")


@case("presence.user-info-unicode-roundtrip", "8",
      "user_info is echoed verbatim to other members (unicode, nesting, numbers)")
async def info_roundtrip(ctx):
    ch = ctx.chan("presence-", "info")
    a = await ctx.raw()
    await a.subscribe(ch, user=("a", None))
    info = {"name": "Zoë 日本 🚀", "roles": ["x", {"y": 1.5}], "ok": True, "n": None}
    b = await ctx.raw()
    await b.subscribe(ch, channel_data=json.dumps({"user_id": "b", "user_info": info},
                                                  ensure_ascii=False))
    frame = await a.expect(is_event("pusher_internal:member_added", ch), "member_added")
    check_eq(member_data(frame), {"user_id": "b", "user_info": info}, "member_added data")


@case("presence.member-limit", "8",
      "the 101st distinct member of a presence channel is refused (error 4009 or null); "
      "another socket of a present user is still accepted")
async def member_limit(ctx):
    limit = ctx.args.max_presence_members
    ch = ctx.chan("presence-", "cap")
    for i in range(limit):
        c = await ctx.raw()
        await c.subscribe(ch, user=(f"m{i}", None), timeout=10)
    extra = await ctx.raw()
    await extra.subscribe(ch, user=(f"m{limit}", None), expect_ok=False)
    await expect_rejected(extra, ch, f"member {limit + 1}")
    again = await ctx.raw()
    await again.subscribe(ch, user=("m0", None))


@case("presence.user-info-too-large", "8",
      "a member whose user_info exceeds 1 KB is refused")
async def info_too_large(ctx):
    c = await ctx.raw()
    ch = ctx.chan("presence-", "bigmember")
    cd = json.dumps({"user_id": "big", "user_info": {"blob": "x" * 1100}})
    await c.subscribe(ch, channel_data=cd, expect_ok=False)
    await expect_rejected(c, ch, "user_info over 1 KB")


@case("presence.user-id-too-long", "8", "a user_id longer than 128 characters is refused")
async def id_too_long(ctx):
    c = await ctx.raw()
    ch = ctx.chan("presence-", "longid")
    await c.subscribe(ch, channel_data=json.dumps({"user_id": "u" * 129}), expect_ok=False)
    await expect_rejected(c, ch, "129-character user_id")


@case("presence.resubscribe-idempotent", "3.1",
      "subscribing the same presence channel twice on one socket: no second member_added, "
      "count unchanged")
async def presence_resubscribe(ctx):
    ch = ctx.chan("presence-", "again")
    observer = await ctx.raw()
    await observer.subscribe(ch, user=("obs", None))
    c = await ctx.raw()
    await c.subscribe(ch, user=("twice", None))
    await observer.expect(is_event("pusher_internal:member_added", ch), "member_added")
    frame = await c.subscribe(ch, user=("twice", None))
    check_eq(presence_of(frame)["count"], 2, "count after the second subscribe")
    extra = await observer.sync()
    check_eq([f for f in extra if f.get("channel") == ch], [], "frames to the observer")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}", params={"info": "user_count"})
    check_eq(r.json(), {"occupied": True, "user_count": 2}, "channel info")


@case("presence.pusher-js-members", "8",
      "pusher-js presence channel: members.count, members.me and member_added/removed with "
      "one user on two sockets")
async def pjs_members(ctx):
    node = await ctx.node()
    ch = ctx.chan("presence-", "pjs")
    await ctx.js(f"""
      const o = pjs('o', {{user: {{user_id: 'obs', user_info: {{n: 'O'}}}}}}); state.o = o;
      await connected(o);
      const ch = o.subscribe({json.dumps(ch)});
      ch.bind('pusher:member_added', (m) => emit('o:added', m));
      ch.bind('pusher:member_removed', (m) => emit('o:removed', m));
      await new Promise((res) => ch.bind('pusher:subscription_succeeded', res));
      return {{count: ch.members.count, me: ch.members.me}};""")
    for name in ("a1", "a2"):
        got = await ctx.js(f"""
          const c = pjs({json.dumps(name)}, {{user: {{user_id: 'ada', user_info: {{n: 'A'}}}}}});
          state[{json.dumps(name)}] = c; await connected(c);
          const ch = c.subscribe({json.dumps(ch)});
          await new Promise((res) => ch.bind('pusher:subscription_succeeded', res));
          return {{count: ch.members.count, me: ch.members.me}};""")
        check_eq(got, {"count": 2, "me": {"id": "ada", "info": {"n": "A"}}}, f"{name} members")
    check_eq(await node.event("o:added"), {"id": "ada", "info": {"n": "A"}}, "member_added")
    await ctx.js(f"""
      state.o.channel({json.dumps(ch)}).bind('marker', (d) => emit('o:marker', d));
      await new Promise((res) => {{ state.a1.connection.bind('disconnected', res);
                                   state.a1.disconnect(); }});""")
    # a later subscriber and event: by then a (wrong) member_removed for ada would be there
    probe = await ctx.raw()
    await probe.subscribe(ch, user=("probe", None))
    await ctx.trigger(ch, "marker", "{}")
    await node.event("o:marker")
    check_eq(node.seen("o:removed"), [], "member_removed while ada still has a socket")
    count = await ctx.js(f"return state.o.channel({json.dumps(ch)}).members.count;")
    check_eq(count, 3, "count (obs, ada, probe) while ada still has a socket")
    await ctx.js("state.a2.disconnect();")
    check_eq(await node.event("o:removed"), {"id": "ada", "info": {"n": "A"}}, "member_removed")
    check_eq(len([m for m in node.seen("o:added") if m["id"] == "ada"]), 1,
             "member_added events for ada")
