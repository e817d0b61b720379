"""§3, §6, §7, §11: channel kinds, names, authorization failures, encrypted and cache channels."""

from __future__ import annotations

import base64
import json
import os

from ..framework import NotApplicable, case, check, check_eq
from ..wire import is_event, sign
from .common import (
    assert_not_delivered,
    expect_rejected,
    marker_channel,
    trigger_and_receive,
)


@case("public.subscribe", "3.2",
      "public subscribe with auth \"\" → subscription_succeeded, data \"{}\" (string), "
      "channel set; an HTTP event follows verbatim")
async def public_subscribe(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "public")
    frame = await c.subscribe(ch)
    check_eq(frame.get("data"), "{}", "subscription_succeeded data")
    await trigger_and_receive(ctx, c, ch)


@case("public.subscribe-string-data", "2",
      "pusher:subscribe whose data is a JSON string is accepted")
async def public_string_data(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "strdata")
    await c.send({"event": "pusher:subscribe", "data": json.dumps({"auth": "", "channel": ch})})
    await c.wait_for(is_event("pusher_internal:subscription_succeeded", ch),
                     "subscription_succeeded")
    await c.send({"event": "pusher:unsubscribe", "data": json.dumps({"channel": ch})})
    marker = await marker_channel(ctx, c)
    await assert_not_delivered(ctx, c, ch, marker)


@case("public.resubscribe-idempotent", "3.1",
      "subscribing twice answers success again and events are delivered once")
async def resubscribe(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "twice")
    await c.subscribe(ch)
    await c.subscribe(ch)
    for n in (1, 2):
        r = await ctx.trigger(ch, f"ev{n}", "{}")
        check_eq(r.status, 200, "trigger")
    got = [await c.next(), await c.next()]
    check_eq([(f.get("event"), f.get("channel")) for f in got], [("ev1", ch), ("ev2", ch)],
             "frames after two triggers")
    check_eq(await c.sync(), [], "no duplicate deliveries")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}",
                      params={"info": "subscription_count"})
    check_eq(r.json(), {"occupied": True, "subscription_count": 1},
             "channel info (one socket counted once)")


@case("public.unsubscribe", "3.1",
      "pusher:unsubscribe: no reply frame, no further events; unknown channel ignored")
async def unsubscribe(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "unsub")
    await c.subscribe(ch)
    await c.unsubscribe(ch)
    await c.unsubscribe(ctx.chan("", "never-subscribed"))
    check_eq(await c.sync(), [], "frames in reply to unsubscribe")
    marker = await marker_channel(ctx, c)
    await assert_not_delivered(ctx, c, ch, marker)


@case("channel.name-invalid", "6.2",
      "names with characters outside [-A-Za-z0-9_=@,.;] are refused; connection stays open")
async def name_invalid(ctx):
    c = await ctx.raw()
    for bad in ("bad name", "bad/name", "bad*name", "bad\u00e9name"):
        await c.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": bad}})
        await expect_rejected(c, bad, f"channel {bad!r}")


@case("channel.name-too-long", "6.2", "a 201-character channel name is refused")
async def name_too_long(ctx):
    c = await ctx.raw()
    name = "a" * 201
    await c.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": name}})
    await expect_rejected(c, name, "201-character name")


@case("channel.name-laravel", "6.2", "Laravel names such as private-App.Models.User.1 and "
      "names with = @ , ; are valid")
async def name_laravel(ctx):
    c = await ctx.raw()
    await c.subscribe(f"private-App.Models.User.{ctx.run_id}")
    await c.subscribe(f"x-{ctx.run_id}=a@b,c;d_e-f")


@case("channel.hash-reserved", "6.1", "clients cannot subscribe to arbitrary #-channels")
async def hash_reserved(ctx):
    c = await ctx.raw()
    ch = f"#internal-{ctx.run_id}"
    await c.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": ch}})
    await expect_rejected(c, ch, "#-channel")


@case("private.valid", "7.1", "private channel with a valid signature → success, events flow")
async def private_valid(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-", "ok")
    frame = await c.subscribe(ch)
    check_eq(frame.get("data"), "{}", "subscription_succeeded data")
    await trigger_and_receive(ctx, c, ch)


@case("private.wrong-secret", "7.5",
      "signature made with another secret → error frame, no success, connection open")
async def private_wrong_secret(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-", "badsig")
    auth = f"{ctx.app_key}:{sign('not-the-secret', f'{c.socket_id}:{ch}')}"
    await c.subscribe(ch, auth=auth, expect_ok=False)
    await expect_rejected(c, ch, "wrong secret")
    marker = await marker_channel(ctx, c)
    await assert_not_delivered(ctx, c, ch, marker)


@case("private.other-socket", "7.5", "a signature for another socket id is refused")
async def private_other_socket(ctx):
    a = await ctx.raw()
    b = await ctx.raw()
    ch = ctx.chan("private-", "steal")
    await b.subscribe(ch, auth=ctx.auth_for(a.socket_id, ch), expect_ok=False)
    await expect_rejected(b, ch, "signature of another socket")


@case("private.missing-auth", "7.4", "private subscribe with auth missing or empty is refused")
async def private_missing_auth(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-", "noauth")
    await c.send({"event": "pusher:subscribe", "data": {"channel": ch}})
    await expect_rejected(c, ch, "auth missing")
    await c.subscribe(ch, auth="", expect_ok=False)
    await expect_rejected(c, ch, "auth empty")


@case("private.wrong-key-prefix", "7.4",
      "a correct HMAC behind another key prefix, or without a prefix, is refused")
async def private_wrong_key(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-", "key")
    digest = sign(ctx.app_secret, f"{c.socket_id}:{ch}")
    await c.subscribe(ch, auth=f"other-key:{digest}", expect_ok=False)
    await expect_rejected(c, ch, "wrong key prefix")
    await c.subscribe(ch, auth=digest, expect_ok=False)
    await expect_rejected(c, ch, "no key prefix")


@case("private.tampered-channel", "7.5",
      "the signature of private-a does not open private-b")
async def private_tampered(ctx):
    c = await ctx.raw()
    a, b = ctx.chan("private-", "a"), ctx.chan("private-", "b")
    await c.subscribe(b, auth=ctx.auth_for(c.socket_id, a), expect_ok=False)
    await expect_rejected(c, b, "signature of another channel")


@case("encrypted.relay-verbatim", "7.2",
      "private-encrypted-: authorized like private; triggered data relayed byte-identically")
async def encrypted_verbatim(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-encrypted-", "enc")
    await c.subscribe(ch)
    payload = json.dumps({"nonce": base64.b64encode(os.urandom(24)).decode(),
                          "ciphertext": base64.b64encode(os.urandom(48)).decode()})
    await trigger_and_receive(ctx, c, ch, "secret", payload)


@case("encrypted.bad-signature", "7.2", "private-encrypted- with a bad signature is refused")
async def encrypted_bad_sig(ctx):
    c = await ctx.raw()
    ch = ctx.chan("private-encrypted-", "bad")
    await c.subscribe(ch, auth=f"{ctx.app_key}:{'0' * 64}", expect_ok=False)
    await expect_rejected(c, ch, "bad signature")


@case("encrypted.python-sdk-pusher-js", "7.2",
      "Python SDK encrypts a trigger, pusher-js (node) decrypts it with the shared secret "
      "from the node SDK")
async def encrypted_pjs(ctx):
    ch = ctx.chan("private-encrypted-", "e2e")
    await ctx.js(f"""
      const c = pjs('enc');
      await connected(c);
      const ch = c.subscribe({json.dumps(ch)});
      ch.bind('secret', (d) => emit('enc:secret', d));
      await new Promise((res, rej) => {{ ch.bind('pusher:subscription_succeeded', res);
        ch.bind('pusher:subscription_error', rej); }});
    """)
    await ctx.py(ctx.sdk.trigger, ch, "secret", {"msg": "héllo", "n": 7})
    got = await (await ctx.node()).event("enc:secret")
    check_eq(got, {"msg": "héllo", "n": 7}, "decrypted payload")


@case("cache.miss", "11.1",
      "subscribe to an empty cache- channel → subscription_succeeded then pusher:cache_miss")
async def cache_miss(ctx):
    c = await ctx.raw()
    ch = ctx.chan("cache-", "miss")
    await c.subscribe(ch)
    frame = await c.next()
    check_eq((frame.get("event"), frame.get("channel")), ("pusher:cache_miss", ch),
             "frame after subscription_succeeded")
    check(frame.get("data") in (None, "{}", {}), f"cache_miss data must be absent or {{}}: {frame}")


@case("cache.hit", "11.1",
      "a new cache- subscriber gets the last HTTP event right after subscription_succeeded")
async def cache_hit(ctx):
    for prefix in ("cache-", "private-cache-", "presence-cache-"):
        first = await ctx.raw()
        ch = ctx.chan(prefix, "hit")
        user = ("1", {"n": 1}) if prefix.startswith("presence") else None
        await first.subscribe(ch, user=user)
        await ctx.trigger(ch, "old", '{"v":1}')
        await ctx.trigger(ch, "price", '{"v":2}')
        second = await ctx.raw()
        await second.subscribe(ch, user=("2", {"n": 2}) if user else None)
        frame = await second.next()
        got = (frame.get("event"), frame.get("channel"), frame.get("data"))
        # In a cluster too: the trigger is answered once the event is stored, so a
        # subscriber on another node after the answer gets it, not the previous one.
        check_eq(got, ("price", ch, '{"v":2}'), f"{prefix}: first frame after success")


@case("cache.private-miss", "11.1", "private-cache- and private-encrypted-cache- miss too")
async def cache_private_miss(ctx):
    for prefix in ("private-cache-", "private-encrypted-cache-"):
        c = await ctx.raw()
        ch = ctx.chan(prefix, "miss")
        await c.subscribe(ch)
        frame = await c.next()
        check_eq((frame.get("event"), frame.get("channel")), ("pusher:cache_miss", ch),
                 f"{prefix}: frame after success")


@case("cache.info", "11.1", "GET /channels/{cache-ch}?info=cache returns data and ttl")
async def cache_info(ctx):
    c = await ctx.raw()
    ch = ctx.chan("cache-", "info")
    await c.subscribe(ch)
    await ctx.trigger(ch, "price", '{"v":3}')
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}", params={"info": "cache"})
    check_eq(r.status, 200, f"status ({r.describe()})")
    body = r.json()
    cache = body.get("cache")
    check(isinstance(cache, dict), f"cache must be an object: {body}")
    check_eq(cache.get("data"), '{"v":3}', "cache.data")
    check(isinstance(cache.get("ttl"), int | float) and cache["ttl"] > 0, f"cache.ttl: {cache}")


@case("cache.client-events-not-cached", "11.1",
      "client events on private-cache- are relayed but not cached")
async def cache_client_events(ctx):
    a = await ctx.raw()
    b = await ctx.raw()
    ch = ctx.chan("private-cache-", "cev")
    await a.subscribe(ch)
    await b.subscribe(ch)
    await ctx.trigger(ch, "api-event", '{"v":1}')
    await b.wait_for(is_event("api-event", ch), "api-event on b")
    await a.send({"event": "client-typing", "channel": ch, "data": {"t": 1}})
    await b.wait_for(is_event("client-typing", ch), "client event on b")
    c = await ctx.raw()
    await c.subscribe(ch)
    frame = await c.next()
    check_eq((frame.get("event"), frame.get("data")), ("api-event", '{"v":1}'),
             "cached event for a new subscriber")


@case("subscription-count.broadcast", "11.2",
      "with subscription_count enabled, subscribers get pusher_internal:subscription_count "
      "(string-data) on each change; never on presence channels")
async def subscription_count(ctx):
    if not ctx.args.subscription_count:
        raise NotApplicable("optional feature; pass --subscription-count if the app enables it")
    a = await ctx.raw()
    ch = ctx.chan("", "count")
    await a.subscribe(ch)
    b = await ctx.raw()
    await b.subscribe(ch)

    def count_is(n):
        return lambda f: (f.get("event") == "pusher_internal:subscription_count"
                          and f.get("channel") == ch
                          and isinstance(f.get("data"), str)
                          and json.loads(f["data"]).get("subscription_count") == n)

    await a.wait_for(count_is(2), "subscription_count 2 (string-data) on the first subscriber",
                     include_ignorable=True)
    await b.close()
    await a.wait_for(count_is(1), "subscription_count 1 after the second left",
                     include_ignorable=True)
    pres = ctx.chan("presence-", "count")
    p1, p2 = await ctx.raw(), await ctx.raw()
    await p1.subscribe(pres, user=("1", None))
    await p2.subscribe(pres, user=("2", None))
    counted = [f for f in await p1.sync(include_ignorable=True)
               if f.get("event") == "pusher_internal:subscription_count"]
    check_eq(counted, [], "subscription_count frames on a presence channel")
