"""§10: user authentication (signin), #server-to-user-, sendToUser, terminate_connections."""

from __future__ import annotations

import json

from ..framework import NotApplicable, case, check, check_eq
from ..wire import is_event, sign
from .common import expect_rejected, short


async def signed_in(ctx, user_id: str, info: dict | None = None):
    c = await ctx.raw()
    user_data = json.dumps({"id": user_id, "user_info": info or {"name": user_id}})
    await c.signin(user_data)
    frame = await c.expect(is_event("pusher:signin_success"), "pusher:signin_success")
    return c, frame, user_data


async def expect_signin_refused(c, what: str) -> None:
    frames = await c.sync() if c.is_open else c.pending()
    check(not [f for f in frames if f.get("event") == "pusher:signin_success"],
          f"{what}: signin_success sent")
    errors = [f for f in frames if f.get("event") == "pusher:error"]
    check(errors, f"{what}: no pusher:error; got {short(frames)}")
    code = (errors[0].get("data") or {}).get("code")
    check(code in (4009, None), f"{what}: error code must be 4009 (or null), got {code!r}")


@case("signin.success", "10.1",
      "pusher:signin with a valid signature → pusher:signin_success {user_data: same string}")
async def signin_success(ctx):
    uid = ctx.uid("ok")
    c, frame, user_data = await signed_in(ctx, uid, {"name": "Zoë"})
    data = frame.get("data")
    check(isinstance(data, dict), f"signin_success data must be an object: {frame}")
    check_eq(data.get("user_data"), user_data, "user_data echoed verbatim")


@case("signin.string-data", "2", "pusher:signin whose data is a JSON string is accepted")
async def signin_string(ctx):
    c = await ctx.raw()
    user_data = json.dumps({"id": ctx.uid("str")})
    auth = f"{ctx.app_key}:" + sign(ctx.app_secret, f"{c.socket_id}::user::{user_data}")
    await c.send({"event": "pusher:signin",
                  "data": json.dumps({"auth": auth, "user_data": user_data})})
    frame = await c.expect(is_event("pusher:signin_success"), "pusher:signin_success")
    check_eq((frame.get("data") or {}).get("user_data"), user_data, "user_data")


@case("signin.bad-signature", "10.1", "signin with a bad signature is refused (4009)")
async def signin_bad(ctx):
    c = await ctx.raw()
    await c.signin('{"id":"x"}', auth=f"{ctx.app_key}:{sign('wrong', 'x')}")
    await expect_signin_refused(c, "bad signature")


@case("signin.no-id", "10.1", "signin whose user_data has no id (or a non-string id) is refused")
async def signin_no_id(ctx):
    for user_data in ('{"user_info":{"name":"x"}}', '{"id":""}'):
        c = await ctx.raw()
        await c.signin(user_data)
        await expect_signin_refused(c, f"user_data {user_data}")


@case("signin.second-user", "10.1",
      "a second signin as another user on the same socket is refused; the first identity stays")
async def signin_second(ctx):
    first, second = ctx.uid("first"), ctx.uid("second")
    c, _, _ = await signed_in(ctx, first)
    await c.signin(json.dumps({"id": second}))
    await expect_signin_refused(c, "second signin as another user")
    if c.is_open:
        await c.subscribe(f"#server-to-user-{first}")


@case("signin.server-to-user-channel", "10.1",
      "#server-to-user-X can be subscribed only by a socket signed in as X")
async def server_to_user_channel(ctx):
    x, y = ctx.uid("x"), ctx.uid("y")
    c, _, _ = await signed_in(ctx, x)
    frame = await c.subscribe(f"#server-to-user-{x}")
    check_eq(frame.get("data"), "{}", "subscription_succeeded data")
    ch = f"#server-to-user-{y}"
    await c.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": ch}})
    await expect_rejected(c, ch, "another user's channel")
    anon = await ctx.raw()
    ch = f"#server-to-user-{x}"
    await anon.send({"event": "pusher:subscribe", "data": {"auth": "", "channel": ch}})
    await expect_rejected(anon, ch, "socket not signed in")


@case("signin.send-to-user", "10.2",
      "Python SDK send_to_user reaches every socket signed in as that user and nobody else")
async def send_to_user(ctx):
    x, y = ctx.uid("x"), ctx.uid("y")
    x1, _, _ = await signed_in(ctx, x)
    await x1.subscribe(f"#server-to-user-{x}")
    x2, _, _ = await signed_in(ctx, x)
    y1, _, _ = await signed_in(ctx, y)
    await y1.subscribe(f"#server-to-user-{y}")
    await ctx.py(ctx.sdk.send_to_user, x, "notify", {"msg": "hi"})
    for sock in (x1, x2):
        frame = await sock.expect(is_event("notify", f"#server-to-user-{x}"), "notify to user")
        check_eq(frame.get("data"), '{"msg": "hi"}', "data verbatim (as the SDK encoded it)")
    await ctx.py(ctx.sdk.send_to_user, y, "marker", {})
    _, before = await y1.wait_for(is_event("marker"), "marker to y")
    check_eq([f for f in before if f.get("event") == "notify"], [], "y received x's event")


@case("signin.not-listed", "10.2", "#server-to-user- channels never appear in GET /channels")
async def not_listed(ctx):
    x = ctx.uid("hidden")
    c, _, _ = await signed_in(ctx, x)
    await c.subscribe(f"#server-to-user-{x}")
    r = await ctx.api("GET", f"/apps/{ctx.app_id}/channels")
    check_eq(r.status, 200, r.describe())
    listed = [ch for ch in r.json().get("channels", {}) if ch.startswith("#")]
    check_eq(listed, [], "#-channels listed")


@case("terminate.node-sdk", "10.4",
      "node SDK terminateUserConnections: every socket of that user gets pusher:error 4009 and "
      "close 4009; other users stay connected")
async def terminate_node(ctx):
    x, y = ctx.uid("x"), ctx.uid("y")
    x1, _, _ = await signed_in(ctx, x)
    x2, _, _ = await signed_in(ctx, x)
    y1, _, _ = await signed_in(ctx, y)
    result = await ctx.js(f"const r = await sdk().terminateUserConnections({json.dumps(x)}); "
                          "return {status: r.status, body: await r.text()};")
    check_eq(result["status"], 200, f"terminate status ({result})")
    check_eq(json.loads(result["body"]), {}, "terminate body")
    for sock in (x1, x2):
        frames = []
        while sock.is_open or not sock.queue.empty():
            try:
                frames.append(await sock.next(10))
            except Exception:
                break
        errors = [f for f in frames if f.get("event") == "pusher:error"]
        check(errors and (errors[-1].get("data") or {}).get("code") == 4009,
              f"pusher:error 4009 before the close; got {short(frames)}")
        code, _ = await sock.closed(10)
        check_eq(code, 4009, "close code")
    check_eq(await y1.sync(), [], "other user's socket unaffected")


@case("terminate.python-sdk-path", "13.4",
      "Python SDK terminate_user_connections (path /users/{id}/terminate_connections) works")
async def terminate_python(ctx):
    x = ctx.uid("py")
    x1, _, _ = await signed_in(ctx, x)
    result = await ctx.py(ctx.sdk.terminate_user_connections, x)
    check_eq(result, {}, "response body")
    code, _ = await x1.closed(10)
    check_eq(code, 4009, "close code")


@case("signin.pusher-js", "10.1",
      "pusher-js signin() via the node SDK's authenticateUser; node SDK sendToUser reaches "
      "pusher.user")
async def pjs_signin(ctx):
    uid = ctx.uid("pjs")
    node = await ctx.node()
    await ctx.js(f"""
      const c = pjs('u', {{userData: {{id: {json.dumps(uid)}, user_info: {{name: 'P'}}}}}});
      state.u = c;
      c.user.bind('greet', (d) => emit('u:greet', d));
      c.bind('pusher:signin_success', (d) => emit('u:signin', d));
      c.connection.bind('message', (ev) => {{
        if (ev.event === 'pusher_internal:subscription_succeeded' &&
            ev.channel === '#server-to-user-' + {json.dumps(uid)}) emit('u:s2u', ev.channel);
      }});
      c.signin();
      await connected(c);
    """)
    await node.event("u:signin", timeout=10)
    await node.event("u:s2u", timeout=10, what="#server-to-user- subscription_succeeded")
    await ctx.js(f"await sdk().sendToUser({json.dumps(uid)}, 'greet', {{hello: 'world'}});")
    got = await node.event("u:greet")
    check_eq(got, {"hello": "world"}, "event on pusher.user")


def watch_events(frame) -> dict[str, list[str]]:
    data = frame.get("data")
    check(isinstance(data, dict), f"watchlist_events data must be an object: {short(frame)}")
    out: dict[str, list[str]] = {}
    for ev in data.get("events", []):
        out.setdefault(ev.get("name"), []).extend(ev.get("user_ids", []))
    return out


@case("watchlist.online-offline", "10.3",
      "signin with a watchlist: pusher_internal:watchlist_events lists watched users online "
      "at signin, then online/offline changes")
async def watchlist(ctx):
    if not ctx.args.watchlist:
        raise NotApplicable("watchlist events are optional (hosted Pusher only); pass "
                            "--watchlist if the server sends them")
    me, friend, other = ctx.uid("me"), ctx.uid("friend"), ctx.uid("other")
    f1, _, _ = await signed_in(ctx, friend)
    c = await ctx.raw()
    await c.signin(json.dumps({"id": me, "watchlist": [friend, other]}))
    await c.expect(is_event("pusher:signin_success"), "signin_success")
    frame = await c.expect(is_event("pusher_internal:watchlist_events"), "watchlist_events")
    got = watch_events(frame)
    check_eq(sorted(got.get("online", [])), [friend], "online at signin")
    check(other not in got.get("online", []), "unseen user listed online")
    o1, _, _ = await signed_in(ctx, other)
    frame = await c.expect(is_event("pusher_internal:watchlist_events"), "online change")
    check_eq(watch_events(frame), {"online": [other]}, "event when a watched user signs in")
    await f1.close()
    frame = await c.expect(is_event("pusher_internal:watchlist_events"), "offline change",
                           timeout=10)
    check_eq(watch_events(frame), {"offline": [friend]}, "event when a watched user leaves")
