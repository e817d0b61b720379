"""§16 and §17.1: unmodified pusher-js 8.6.0 and Laravel Echo 2.5.0 clients in Node."""

from __future__ import annotations

import json

from ..framework import CaseFailed, case, check, check_eq

J = json.dumps


async def echo_channel(ctx, name: str, broadcaster: str, kind: str, channel: str,
                       listen: str, token: str | None = "token-ada") -> None:
    """Create Echo ``name`` and subscribe; its events are emitted as ``{name}:event``."""
    method = {"public": "channel", "private": "private", "presence": "join",
              "encrypted": "encryptedPrivate"}[kind]
    await ctx.js(f"""
      const e = await echo({J(name)}, {{broadcaster: {J(broadcaster)}, bearerToken: {J(token)}}});
      state[{J(name)}] = e;
      const ch = e.{method}({J(channel)});
      ch.listen({J(listen)}, (d) => emit({J(name)} + ':event', d));
      await new Promise((res, rej) => {{
        ch.subscribed(res);
        ch.error((err) => rej(new Error('subscription error ' + JSON.stringify(err))));
      }});
      return e.socketId();
    """)


for _b in ("reverb", "pusher"):

    def _make(broadcaster: str):
        @case(f"echo.{broadcaster}.public-namespaced", "16",
              f"Echo (broadcaster '{broadcaster}'): .listen('OrderShipped') receives "
              "App\\Events\\OrderShipped triggered by the Python SDK")
        async def namespaced(ctx):
            ch = ctx.chan("", "orders")
            await echo_channel(ctx, "e", broadcaster, "public", ch, "OrderShipped")
            await ctx.py(ctx.sdk.trigger, ch, "App\\Events\\OrderShipped", {"id": 7})
            check_eq(await (await ctx.node()).event("e:event"), {"id": 7}, "payload")

        @case(f"echo.{broadcaster}.dotted", "16",
              f"Echo (broadcaster '{broadcaster}'): .listen('.attendance.updated') receives "
              "attendance.updated")
        async def dotted(ctx):
            ch = ctx.chan("", "att")
            await echo_channel(ctx, "e", broadcaster, "public", ch, ".attendance.updated")
            await ctx.py(ctx.sdk.trigger, ch, "attendance.updated", {"status": "present"})
            check_eq(await (await ctx.node()).event("e:event"), {"status": "present"}, "payload")

        @case(f"echo.{broadcaster}.private-bearer", "16",
              f"Echo (broadcaster '{broadcaster}'): Echo.private() through /broadcasting/auth "
              "with a bearer token; event received")
        async def private(ctx):
            name = ctx.chan("", "App.Models.User")
            await echo_channel(ctx, "e", broadcaster, "private", name, ".Private")
            auth = await ctx.auth_server()
            seen = [r for r in auth.requests if r["form"].get("channel_name") == "private-" + name]
            check(seen, "no request reached /broadcasting/auth")
            check_eq(seen[-1]["authorization"], "Bearer token-ada", "Authorization header")
            await ctx.py(ctx.sdk.trigger, "private-" + name, "Private", {"ok": True})
            check_eq(await (await ctx.node()).event("e:event"), {"ok": True}, "payload")

    _make(_b)


@case("echo.private-denied", "7.3",
      "Echo.private(): a 403 from /broadcasting/auth (denied channel, or no token) fires "
      ".error() with status 403 and the connection stays connected")
async def private_denied(ctx):
    node = await ctx.node()
    for label, token in (("forbidden", "token-ada"), ("notoken", None)):
        name = ctx.chan("", label)
        await ctx.js(f"""
          const e = await echo('d', {{bearerToken: {J(token)}}}); state.d = e;
          e.private({J(name)}).error((err) => emit('d:error', err));""")
        err = await node.event("d:error")
        check_eq(err.get("status"), 403, f"{label}: error status")
        st = await ctx.js("await connected(state.d.connector.pusher); "
                          "return state.d.connector.pusher.connection.state;")
        check_eq(st, "connected", f"{label}: connection state")
        await ctx.js("await cleanup();")


@case("echo.presence", "16",
      "Echo.join(): here() lists both users, joining()/leaving() fire with user_info")
async def presence(ctx):
    node = await ctx.node()
    name = ctx.chan("", "room")
    await ctx.js(f"""
      const a = await echo('a', {{bearerToken: 'token-ada'}}); state.a = a;
      await new Promise((res, rej) => a.join({J(name)})
        .here((users) => {{ emit('a:here', users); res(); }})
        .joining((u) => emit('a:joining', u))
        .leaving((u) => emit('a:leaving', u))
        .error((e) => rej(new Error(JSON.stringify(e)))));""")
    check_eq(await node.event("a:here"), [{"name": "Ada"}], "a: here() alone")
    await ctx.js(f"""
      const b = await echo('b', {{bearerToken: 'token-linus'}}); state.b = b;
      await new Promise((res) => b.join({J(name)}).here((users) => {{ emit('b:here', users);
                                                                    res(); }}));""")
    here = await node.event("b:here")
    check_eq(sorted(u["name"] for u in here), ["Ada", "Linus"], "b: here()")
    check_eq(await node.event("a:joining"), {"name": "Linus"}, "a: joining()")
    await ctx.js(f"state.b.leave({J(name)});")
    check_eq(await node.event("a:leaving"), {"name": "Linus"}, "a: leaving()")


@case("echo.whisper", "16", "Echo whisper()/listenForWhisper() between two clients")
async def whisper(ctx):
    node = await ctx.node()
    name = ctx.chan("", "chat")
    for who, token in (("a", "token-ada"), ("b", "token-linus")):
        await ctx.js(f"""
          const e = await echo({J(who)}, {{bearerToken: {J(token)}}}); state.{who} = e;
          const ch = e.private({J(name)});
          ch.listenForWhisper('typing', (d) => emit({J(who)} + ':typing', d));
          await new Promise((res) => ch.subscribed(res));""")
    await ctx.js(f"state.a.private({J(name)}).whisper('typing', {{name: 'Ada'}});")
    check_eq(await node.event("b:typing"), {"name": "Ada"}, "whisper on b")
    await ctx.js(f"state.b.private({J(name)}).whisper('typing', {{name: 'Linus'}});")
    check_eq(await node.event("a:typing"), {"name": "Linus"}, "whisper on a")
    check_eq([d for d in node.seen("a:typing") if d == {"name": "Ada"}], [],
             "a heard its own whisper")


@case("echo.to-others", "12.1",
      "Echo.socketId() as socket_id (X-Socket-Id/toOthers) excludes that client only")
async def to_others(ctx):
    node = await ctx.node()
    ch = ctx.chan("", "others")
    await echo_channel(ctx, "a", "reverb", "public", ch, ".ev")
    await echo_channel(ctx, "b", "reverb", "public", ch, ".ev")
    sid = await ctx.js("return state.a.socketId();")
    await ctx.py(ctx.sdk.trigger, ch, "ev", {"n": 1}, sid)
    check_eq(await node.event("b:event"), {"n": 1}, "b receives")
    await ctx.py(ctx.sdk.trigger, ch, "ev", {"n": 2})
    check_eq(await node.event("a:event"), {"n": 2}, "a's first event is the second trigger")


@case("echo.encrypted", "7.2",
      "Echo.encryptedPrivate(): /broadcasting/auth returns shared_secret; Python SDK "
      "encrypted trigger is decrypted by pusher-js")
async def encrypted(ctx):
    name = ctx.chan("", "vault")
    await echo_channel(ctx, "e", "reverb", "encrypted", name, ".secret")
    await ctx.py(ctx.sdk.trigger, "private-encrypted-" + name, "secret", {"code": "1234 é"})
    check_eq(await (await ctx.node()).event("e:event"), {"code": "1234 é"}, "decrypted payload")


@case("pusher-js.rapid-resubscribe", "16",
      "subscribe → unsubscribe → subscribe in one tick (React StrictMode) ends subscribed; "
      "one event delivered once")
async def rapid(ctx):
    node = await ctx.node()
    ch = ctx.chan("private-", "strict")
    await ctx.js(f"""
      const c = pjs('r'); state.r = c; await connected(c);
      c.subscribe({J(ch)}); c.unsubscribe({J(ch)});
      const channel = c.subscribe({J(ch)});
      channel.bind('ev', (d) => emit('r:ev', d));
      if (!channel.subscribed) await new Promise((res) =>
        channel.bind('pusher:subscription_succeeded', res));""")
    await ctx.py(ctx.sdk.trigger, ch, "ev", {"n": 1})
    await ctx.py(ctx.sdk.trigger, ch, "ev", {"n": 2})
    check_eq(await node.event("r:ev"), {"n": 1}, "first event")
    check_eq(await node.event("r:ev"), {"n": 2}, "second event")
    check_eq(len(node.seen("r:ev")), 2, "events delivered exactly once")
    subscribed = await ctx.js(f"return state.r.channel({J(ch)}).subscribed;")
    check(subscribed is True, "channel not subscribed at the end")


@case("pusher-js.unknown-key", "4.1",
      "pusher-js with an unknown key ends 'disconnected' after the 4001 refusal (no retry loop)")
async def unknown_key(ctx):
    node = await ctx.node()
    await ctx.js(f"""
      const c = pjs('k', {{key: 'unknown-{ctx.run_id}'}});
      c.connection.bind('error', (e) => emit('k:err', (e && e.error && e.error.data) || null));
      c.connection.bind('disconnected', () => emit('k:disconnected', true));""")
    await node.event("k:disconnected", timeout=15)
    errors = node.seen("k:err")
    check(any(isinstance(e, dict) and e.get("code") == 4001 for e in errors),
          f"pusher-js saw no 4001 error: {errors}")
    states = [s["current"] for s in node.seen("k:state")]
    check_eq(states, ["disconnected"], "pusher-js states after connecting")
    # Absence of a retry can only be observed over a bounded window: pusher-js would retry
    # within 1 s (backoff) or at once (retry) if the close code allowed it.
    try:
        again = await node.event("k:state", lambda s: s["current"] == "connecting", timeout=2.5)
    except CaseFailed:
        return
    raise CaseFailed(f"pusher-js retried after the refusal: {again}")


@case("pusher-js.connect-state", "1.3",
      "pusher-js reaches 'connected' with a socket_id matching ^\\d+\\.\\d+$")
async def pjs_connect(ctx):
    sid = await ctx.js("const c = pjs('c'); return await connected(c);")
    check(isinstance(sid, str) and sid.replace(".", "", 1).isdigit() and "." in sid,
          f"socket_id {sid!r}")


@case("echo.notification", "16",
      "Echo .notification() on private-App.Models.User.{id} receives "
      "BroadcastNotificationCreated")
async def notification(ctx):
    name = f"App.Models.User.{ctx.run_id}"
    await ctx.js(f"""
      const e = await echo('n', {{bearerToken: 'token-ada'}}); state.n = e;
      const ch = e.private({J(name)});
      ch.notification((n) => emit('n:note', n));
      await new Promise((res) => ch.subscribed(res));""")
    payload = {"id": "b1e2", "type": "App\\Notifications\\InvoicePaid", "amount": 12}
    await ctx.py(ctx.sdk.trigger, "private-" + name,
                 "Illuminate\\Notifications\\Events\\BroadcastNotificationCreated", payload)
    check_eq(await (await ctx.node()).event("n:note"), payload, "notification payload")
