"""§12-§13: the HTTP API (triggers, batches, channel queries, limits) and request signing."""

from __future__ import annotations

import asyncio
import json
import time

from ..framework import case, check, check_eq
from ..wire import is_event, md5_hex
from .common import short

EVENTS = "/apps/{}/events"


def events_path(ctx) -> str:
    return EVENTS.format(ctx.app_id)


@case("http.trigger.node-sdk", "12.1",
      "node SDK trigger → 200 {} and the subscriber gets data byte-identical")
async def trigger_node(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "node")
    await c.subscribe(ch)
    result = await ctx.js(f"""
      const r = await sdk().trigger({json.dumps(ch)}, 'App\\\\Events\\\\OrderShipped',
                                    {{id: 7, status: 'shipped'}});
      return {{status: r.status, body: await r.text()}};""")
    check_eq(result["status"], 200, "status")
    check_eq(json.loads(result["body"]), {}, "body")
    frame = await c.expect(is_event("App\\Events\\OrderShipped", ch), "the event")
    check_eq(frame.get("data"), '{"id":7,"status":"shipped"}', "data string")


@case("http.trigger.python-sdk-unicode", "12.1",
      "Python SDK trigger with unicode data: relayed verbatim (MD5 over raw bytes)")
async def trigger_python(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "py")
    await c.subscribe(ch)
    data = {"name": "Zoë 日本 🚀", "quote": "\"x\"/\\"}
    result = await ctx.py(ctx.sdk.trigger, ch, "attendance.updated", data)
    check_eq(result, {}, "response body")
    frame = await c.expect(is_event("attendance.updated", ch), "the event")
    check_eq(frame.get("data"), json.dumps(data, ensure_ascii=False), "data string")


@case("http.trigger.raw-unicode-body", "18",
      "a hand-signed body with raw UTF-8 (not \\u-escaped) is verified over its bytes")
async def trigger_raw_unicode(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "utf8")
    await c.subscribe(ch)
    body = json.dumps({"name": "e", "channels": [ch], "data": "é日本🚀"},
                      ensure_ascii=False).encode()
    r = await ctx.api("POST", events_path(ctx), body=body)
    check_eq(r.status, 200, r.describe())
    frame = await c.expect(is_event("e", ch), "event")
    check_eq(frame.get("data"), "é日本🚀", "data")


@case("http.trigger.channel-singular", "12.1",
      "PHP-style body with `channel` (singular) is accepted")
async def trigger_singular(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "single")
    await c.subscribe(ch)
    r = await ctx.api("POST", events_path(ctx), body={"name": "e", "channel": ch, "data": "1"})
    check_eq(r.status, 200, r.describe())
    await c.expect(is_event("e", ch), "event")


@case("http.trigger.multi-channel", "12.1", "one trigger to several channels reaches each")
async def trigger_multi(ctx):
    c = await ctx.raw()
    chs = [ctx.chan("", "multi") for _ in range(3)]
    for ch in chs:
        await c.subscribe(ch)
    r = await ctx.trigger(chs, "e", "x")
    check_eq(r.status, 200, r.describe())
    got = sorted([(await c.next()).get("channel") for _ in chs])
    check_eq(got, sorted(chs), "channels delivered")


@case("http.trigger.empty-data", "12.1", "data \"\" is accepted and delivered as \"\"")
async def trigger_empty(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "empty")
    await c.subscribe(ch)
    r = await ctx.trigger(ch, "e", "")
    check_eq(r.status, 200, r.describe())
    frame = await c.expect(is_event("e", ch), "event")
    check_eq(frame.get("data"), "", "data")


@case("http.trigger.response-json", "12", "successful trigger answers 200 with a JSON object")
async def trigger_response(ctx):
    r = await ctx.trigger(ctx.chan("", "resp"), "e", "{}")
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {}, "body")


@case("http.trigger.reserved-names", "12.1", "event names pusher:* / pusher_internal:* → 400")
async def reserved(ctx):
    for name in ("pusher:subscribe", "pusher_internal:member_added"):
        r = await ctx.trigger(ctx.chan("", "res"), name, "{}")
        check_eq(r.status, 400, f"{name} ({r.describe()})")


@case("http.trigger.validation", "12.2",
      "malformed JSON, missing name/data/channels, bad channel name → 400")
async def validation(ctx):
    ch = ctx.chan("", "v")
    bodies = {
        "malformed JSON": b"{not json",
        "missing name": {"data": "x", "channels": [ch]},
        "missing data": {"name": "e", "channels": [ch]},
        "missing channels": {"name": "e", "data": "x"},
        "bad channel name": {"name": "e", "data": "x", "channels": ["bad name"]},
        "201-char event name": {"name": "e" * 201, "data": "x", "channels": [ch]},
    }
    for what, body in bodies.items():
        r = await ctx.api("POST", events_path(ctx), body=body)
        check_eq(r.status, 400, f"{what} ({r.describe()})")


@case("http.trigger.101-channels", "12.2", "a trigger to 101 channels → 400; 100 → 200")
async def too_many_channels(ctx):
    chs = [f"c{ctx.run_id}-{i}" for i in range(101)]
    r = await ctx.trigger(chs, "e", "x")
    check_eq(r.status, 400, f"101 channels ({r.describe()})")
    r = await ctx.trigger(chs[:100], "e", "x")
    check_eq(r.status, 200, f"100 channels ({r.describe()})")


@case("http.trigger.size-limit", "12.2",
      "data of exactly 10 240 bytes → 200; 10 241 bytes → 413; counted in UTF-8 bytes")
async def size_limit(ctx):
    limit = ctx.args.max_event_data
    ch = ctx.chan("", "size")
    r = await ctx.trigger(ch, "e", "x" * limit)
    check_eq(r.status, 200, f"{limit} bytes ({r.describe()})")
    r = await ctx.trigger(ch, "e", "x" * (limit + 1))
    check_eq(r.status, 413, f"{limit + 1} bytes ({r.describe()})")
    r = await ctx.trigger(ch, "e", "é" * (limit // 2 + 1))
    check_eq(r.status, 413, f"{limit // 2 + 1} two-byte characters ({r.describe()})")


@case("http.trigger.socket-id-exclusion", "12.1",
      "socket_id excludes that connection only (Laravel toOthers())")
async def exclusion(ctx):
    ch = ctx.chan("", "excl")
    a = await ctx.raw()
    b = await ctx.raw()
    await a.subscribe(ch)
    await b.subscribe(ch)
    r = await ctx.trigger(ch, "e", "x", socket_id=a.socket_id)
    check_eq(r.status, 200, r.describe())
    await b.expect(is_event("e", ch), "event on the other socket")
    r = await ctx.trigger(ch, "marker", "{}")
    _, before = await a.wait_for(is_event("marker", ch), "marker")
    check_eq([f for f in before if f.get("event") == "e"], [], "event to the excluded socket")


@case("http.trigger.invalid-socket-id", "12.1", "a malformed socket_id → 400")
async def invalid_socket_id(ctx):
    for bad in ("abc", "1.2.3", "12", "1.x"):
        r = await ctx.trigger(ctx.chan("", "sid"), "e", "x", socket_id=bad)
        check_eq(r.status, 400, f"socket_id {bad!r} ({r.describe()})")


@case("http.trigger.info", "12.1",
      "trigger with info=user_count,subscription_count answers {channels:{ch:{attrs}}}")
async def trigger_info(ctx):
    pres = ctx.chan("presence-", "info")
    pub = ctx.chan("", "info")
    a = await ctx.raw()
    await a.subscribe(pres, user=("1", None))
    b = await ctx.raw()
    await b.subscribe(pres, user=("1", None))
    await a.subscribe(pub)
    await b.subscribe(pub)
    r = await ctx.api("POST", events_path(ctx), body={
        "name": "e", "data": "x", "channels": [pres], "info": "user_count"})
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {"channels": {pres: {"user_count": 1}}}, "presence info")
    r = await ctx.api("POST", events_path(ctx), body={
        "name": "e", "data": "x", "channels": [pub], "info": "subscription_count"})
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {"channels": {pub: {"subscription_count": 2}}}, "public info")


@case("http.batch.basic", "12.1", "node SDK triggerBatch: every item delivered, 200 {}")
async def batch_basic(ctx):
    c = await ctx.raw()
    a, b = ctx.chan("", "ba"), ctx.chan("", "bb")
    await c.subscribe(a)
    await c.subscribe(b)
    result = await ctx.js(f"""
      const r = await sdk().triggerBatch([
        {{channel: {json.dumps(a)}, name: 'one', data: {{n: 1}}}},
        {{channel: {json.dumps(b)}, name: 'two', data: 'plain'}}]);
      return {{status: r.status, body: await r.text()}};""")
    check_eq(result["status"], 200, "status")
    check_eq(json.loads(result["body"]), {}, "body")
    f1, f2 = await c.next(), await c.next()
    check_eq({(f1["event"], f1["channel"], f1["data"]), (f2["event"], f2["channel"], f2["data"])},
             {("one", a, '{"n":1}'), ("two", b, "plain")}, "delivered items")


@case("http.batch.socket-id-exclusion", "12.1",
      "a batch item's socket_id excludes that connection for that item only")
async def batch_exclusion(ctx):
    ch = ctx.chan("", "bex")
    a, b = await ctx.raw(), await ctx.raw()
    await a.subscribe(ch)
    await b.subscribe(ch)
    r = await ctx.api("POST", f"/apps/{ctx.app_id}/batch_events", body={"batch": [
        {"channel": ch, "name": "one", "data": "1", "socket_id": a.socket_id},
        {"channel": ch, "name": "two", "data": "2"},
    ]})
    check_eq(r.status, 200, r.describe())
    got_b = sorted([(await b.next()).get("event"), (await b.next()).get("event")])
    check_eq(got_b, ["one", "two"], "events on the other socket")
    frame = await a.expect(is_event("two", ch), "the second item on the excluded socket")
    check_eq(frame.get("data"), "2", "data")
    r = await ctx.trigger(ch, "marker", "{}")
    _, before = await a.wait_for(is_event("marker", ch), "marker")
    check_eq([f for f in before if f.get("event") == "one"], [], "excluded item delivered")


@case("http.batch.python-sdk", "12.1", "Python SDK trigger_batch: items delivered in order")
async def batch_python(ctx):
    c = await ctx.raw()
    ch = ctx.chan("", "pybatch")
    await c.subscribe(ch)
    result = await ctx.py(ctx.sdk.trigger_batch, [
        {"channel": ch, "name": "first", "data": {"n": "é"}},
        {"channel": ch, "name": "second", "data": "raw"}])
    check_eq(result, {}, "response body")
    f1, f2 = await c.next(), await c.next()
    check_eq([(f1["event"], f1["data"]), (f2["event"], f2["data"])],
             [("first", '{"n": "é"}'), ("second", "raw")], "delivered items (verbatim)")


@case("http.batch.info", "12.1",
      "batch with info: {batch:[…]} index-aligned, {} for items without applicable info")
async def batch_info(ctx):
    pres = ctx.chan("presence-", "binfo")
    c = await ctx.raw()
    await c.subscribe(pres, user=("u1", None))
    pub = ctx.chan("", "binfo")
    r = await ctx.api("POST", f"/apps/{ctx.app_id}/batch_events", body={"batch": [
        {"channel": pres, "name": "e", "data": "1", "info": "user_count"},
        {"channel": pub, "name": "e", "data": "2"},
    ]})
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {"batch": [{"user_count": 1}, {}]}, "batch info")


@case("http.batch.limit", "12.2", "a batch of 11 items → 400; 10 → 200")
async def batch_limit(ctx):
    items = [{"channel": ctx.chan("", "bl"), "name": "e", "data": "x"} for _ in range(11)]
    r = await ctx.api("POST", f"/apps/{ctx.app_id}/batch_events", body={"batch": items})
    check_eq(r.status, 400, f"11 items ({r.describe()})")
    r = await ctx.api("POST", f"/apps/{ctx.app_id}/batch_events", body={"batch": items[:10]})
    check_eq(r.status, 200, f"10 items ({r.describe()})")


@case("http.batch.item-too-large", "12.2", "a batch item with 10 241 bytes of data → 413")
async def batch_large(ctx):
    items = [{"channel": ctx.chan("", "bs"), "name": "e",
              "data": "x" * (ctx.args.max_event_data + 1)}]
    r = await ctx.api("POST", f"/apps/{ctx.app_id}/batch_events", body={"batch": items})
    check_eq(r.status, 413, r.describe())


@case("http.channels.list", "12.1",
      "GET /channels lists occupied channels only; filter_by_prefix and info=user_count work "
      "(Python SDK)")
async def channels_list(ctx):
    c = await ctx.raw()
    pub = ctx.chan("", "list")
    pres = ctx.chan("presence-", "list")
    await c.subscribe(pub)
    await c.subscribe(pres, user=("1", None))
    body = await ctx.py(ctx.sdk.channels_info)
    check(pub in body.get("channels", {}), f"{pub} listed: {short(body)}")
    check(not [ch for ch in body["channels"] if "never" in ch], "unoccupied channels listed")
    body = await ctx.py(ctx.sdk.channels_info, "presence-", ["user_count"])
    check_eq(body["channels"].get(pres), {"user_count": 1}, "presence channel with user_count")
    check(pub not in body["channels"], "prefix filter ignored")
    await c.unsubscribe(pub)
    await c.sync()
    # An unsubscribe has no acknowledgement, and a cluster's nodes learn of one a moment
    # after the node that holds the socket (as hosted Pusher's channel queries trail):
    # the channel must be gone within a second.
    deadline = asyncio.get_running_loop().time() + 1.0
    while True:
        body = await ctx.py(ctx.sdk.channels_info, pub[:12])
        if pub not in body.get("channels", {}) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    check(pub not in body.get("channels", {}), f"vacated channel still listed: {short(body)}")


@case("http.channels.user-count-needs-presence-prefix", "12.1",
      "GET /channels?info=user_count without a presence- prefix → 400")
async def channels_user_count(ctx):
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels", params={"info": "user_count"})
    check_eq(r.status, 400, r.describe())
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels",
                      params={"info": "user_count", "filter_by_prefix": "private-"})
    check_eq(r.status, 400, r.describe())


@case("http.channel.info", "12.1",
      "GET /channels/{ch}: occupied + subscription_count; presence user_count (node SDK get)")
async def channel_info(ctx):
    pub = ctx.chan("", "ci")
    pres = ctx.chan("presence-", "ci")
    a, b = await ctx.raw(), await ctx.raw()
    for sock, uid in ((a, "1"), (b, "1")):
        await sock.subscribe(pub)
        await sock.subscribe(pres, user=(uid, None))
    body = await ctx.py(ctx.sdk.channel_info, pub, ["subscription_count"])
    check_eq(body, {"occupied": True, "subscription_count": 2}, "public channel info (Python SDK)")
    result = await ctx.js(f"""
      const r = await sdk().get({{path: '/channels/{pres}', params: {{info: 'user_count'}}}});
      return {{status: r.status, body: await r.json()}};""")
    check_eq(result["status"], 200, "node SDK status")
    check_eq(result["body"], {"occupied": True, "user_count": 1}, "presence channel info")


@case("http.channel.unoccupied", "12.1", "an unoccupied channel → {\"occupied\":false}")
async def unoccupied(ctx):
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ctx.chan('', 'never')}")
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {"occupied": False}, "body")


@case("http.channel.inapplicable-info", "12.1",
      "user_count on a public channel → 400; users of a public channel → 400")
async def inapplicable(ctx):
    ch = ctx.chan("", "inap")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}", params={"info": "user_count"})
    check_eq(r.status, 400, f"user_count on public ({r.describe()})")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}/users")
    check_eq(r.status, 400, f"users of public ({r.describe()})")


@case("http.channel.users", "12.1", "GET /channels/{presence}/users lists distinct ids "
      "(Python SDK)")
async def users(ctx):
    ch = ctx.chan("presence-", "users")
    for uid in ("a", "b", "a"):
        c = await ctx.raw()
        await c.subscribe(ch, user=(uid, None))
    body = await ctx.py(ctx.sdk.users_info, ch)
    check_eq(sorted(u["id"] for u in body["users"]), ["a", "b"], "users")


@case("http.unknown-app", "12.2", "an unknown app id → 404")
async def unknown_app(ctx):
    r = await ctx.api("POST", f"/apps/no-such-app-{ctx.run_id}/events",
                      body={"name": "e", "data": "x", "channels": ["c"]})
    check_eq(r.status, 404, r.describe())


# -- §13 request signing ----------------------------------------------------------------------

def trigger_body(ctx) -> dict:
    return {"name": "e", "data": "x", "channels": [ctx.chan("", "sig")]}


@case("sign.bad-signature", "13.3", "a wrong auth_signature → 401")
async def bad_signature(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx), signature="0" * 64)
    check_eq(r.status, 401, r.describe())
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx), secret="wrong-secret")
    check_eq(r.status, 401, f"signed with another secret ({r.describe()})")


@case("sign.stale-timestamp", "13.3", "auth_timestamp 601 s in the past → 401")
async def stale(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx),
                      timestamp=int(time.time()) - 601)
    check_eq(r.status, 401, r.describe())


@case("sign.future-timestamp", "13.3", "auth_timestamp 601 s in the future → 401")
async def future(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx),
                      timestamp=int(time.time()) + 601)
    check_eq(r.status, 401, r.describe())


@case("sign.timestamp-window", "13.3", "auth_timestamp 300 s off is accepted")
async def window(ctx):
    for delta in (-300, 300):
        r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx),
                          timestamp=int(time.time()) + delta)
        check_eq(r.status, 200, f"{delta:+d} s ({r.describe()})")


@case("sign.unknown-key", "13.3", "an auth_key that is not the app's key → 401")
async def unknown_key(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx),
                      key="not-the-key", secret=ctx.app_secret)
    check_eq(r.status, 401, r.describe())


@case("sign.body-md5", "13.3",
      "body_md5 wrong, missing with a body, or body tampered after signing → 401")
async def body_md5(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx), body_md5="0" * 32)
    check_eq(r.status, 401, f"wrong body_md5 ({r.describe()})")
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx), body_md5=False)
    check_eq(r.status, 401, f"missing body_md5 ({r.describe()})")
    body = trigger_body(ctx)
    tampered = dict(body, data="tampered")
    r = await ctx.api("POST", events_path(ctx), body=tampered,
                      sign_body=json.dumps(body).encode())
    check_eq(r.status, 401, f"tampered body ({r.describe()})")


@case("sign.get-styles", "13.4",
      "GET signed node-style (no body_md5), python-style (body_md5 of empty) and "
      "php-style (%2C-encoded info) → 200")
async def get_styles(ctx):
    path = f"/apps/{ctx.app_id}/channels"
    params = {"filter_by_prefix": "presence-", "info": "user_count"}
    r = await ctx.api("GET", path, params=params, body_md5=False)
    check_eq(r.status, 200, f"node-style ({r.describe()})")
    r = await ctx.api("GET", path, params=params, body_md5=md5_hex(b""))
    check_eq(r.status, 200, f"python-style ({r.describe()})")
    r2 = await ctx.api("GET", f"/apps/{ctx.app_id}/channels",
                       params={"filter_by_prefix": "presence-",
                               "info": "user_count,subscription_count"},
                       encode_query=lambda v: v.replace(",", "%2C"))
    check(r2.status != 401, f"php-style %2C must verify: {r2.describe()}")


@case("sign.php-get-with-content-type", "13.4",
      "a GET with Content-Type: application/json and no body (PHP SDK) is accepted")
async def php_get(ctx):
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels",
                      headers={"Content-Type": "application/json"})
    check_eq(r.status, 200, r.describe())


@case("sign.percent-encoded-path", "13.3",
      "a client that percent-encodes @ ; , in the channel path but signs the plain path is "
      "accepted")
async def encoded_path(ctx):
    ch = f"pt{ctx.run_id}-a@b;c,d"
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels/{ch}", path_safe="/")
    check_eq(r.status, 200, r.describe())
    check_eq(r.json(), {"occupied": False}, "body")


@case("sign.duplicate-auth-params", "13.3",
      "a request with a duplicated auth_* parameter is refused (not 200)")
async def duplicate(ctx):
    r = await ctx.api("POST", events_path(ctx), body=trigger_body(ctx),
                      extra_query="&auth_key=other-key")
    check(r.status in (400, 401), f"expected 400 or 401, got {r.describe()}")


@case("sign.empty-body-md5-wrong", "13.3", "GET with a wrong body_md5 for the empty body → 401")
async def empty_md5(ctx):
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels", body_md5="0" * 32)
    check_eq(r.status, 401, r.describe())
