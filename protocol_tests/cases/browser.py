"""§16: a real browser (headless Chromium) running the pinned pusher-js web build (with
encryption) and Laravel Echo's IIFE build on a page served by the suite, with Laravel's
/broadcasting/auth flow (bearer token) served by the suite too."""

from __future__ import annotations

import asyncio
import json

from ..framework import CaseFailed, NotApplicable, case, check, check_eq

J = json.dumps


async def echo_page(ctx, page: str, broadcaster: str = "reverb", token: str | None = None,
                    extra: dict | None = None) -> None:
    await ctx.page(page)
    options = dict(extra or {})
    if token:
        options["bearerToken"] = token
    await ctx.in_page(page, f"window.e = makeEcho({J(broadcaster)}, {J(options)});")


async def subscribe(ctx, page: str, method: str, name: str, listens: dict[str, str]) -> None:
    binds = "".join(f"ch.listen({J(ev)}, (d) => __emit({J(page + ':' + tag)}, d));"
                    for tag, ev in listens.items())
    await ctx.in_page(page, f"""
      const ch = e.{method}({J(name)});
      {binds}
      await new Promise((res, rej) => {{ ch.subscribed(res);
        ch.error((err) => rej(new Error('subscription error ' + JSON.stringify(err)))); }});
    """)


for _b in ("reverb", "pusher"):

    def _make(broadcaster: str):
        @case(f"browser.{broadcaster}.connect-public", "16",
              f"Chromium + Echo (broadcaster '{broadcaster}'): connects, .listen('OrderShipped') "
              "and .listen('.attendance.updated') receive Python SDK triggers", browser=True,
              timeout=60)
        async def connect_public(ctx):
            node = await ctx.node()
            await echo_page(ctx, "a", broadcaster)
            ch = ctx.chan("", "browser")
            await subscribe(ctx, "a", "channel", ch,
                            {"ns": "OrderShipped", "dot": ".attendance.updated"})
            status = await ctx.in_page("a", "return e.connectionStatus();")
            check_eq(status, "connected", "Echo.connectionStatus()")
            states = [s["current"] for s in node.seen("a:state")]
            check_eq(states, ["connected"], "connection state changes after Echo was created")
            sid = await ctx.in_page("a", "return e.socketId();")
            check(isinstance(sid, str) and "." in sid, f"socketId {sid!r}")
            await ctx.py(ctx.sdk.trigger, ch, "App\\Events\\OrderShipped", {"id": 1})
            await ctx.py(ctx.sdk.trigger, ch, "attendance.updated", {"emp": "é"})
            check_eq(await node.event("a:ns"), {"id": 1}, "namespaced event")
            check_eq(await node.event("a:dot"), {"emp": "é"}, "dotted event")

    _make(_b)


for _b in ("reverb", "pusher"):

    def _make_private(broadcaster: str):
        @case(f"browser.{broadcaster}.private-bearer", "16",
              f"Chromium + Echo (broadcaster '{broadcaster}'): Echo.private() authorizes through "
              "/broadcasting/auth with the bearer token and CSRF header; a denied channel fires "
              ".error() with 403", browser=True, timeout=60)
        async def private_bearer(ctx):
            node = await ctx.node()
            await echo_page(ctx, "a", broadcaster, token="token-ada")
            name = ctx.chan("", "App.Models.User")
            await subscribe(ctx, "a", "private", name, {"ev": ".PrivateEvent"})
            auth = await ctx.auth_server()
            reqs = [r for r in auth.requests
                    if r["form"].get("channel_name") == "private-" + name]
            check(reqs, "no request reached /broadcasting/auth")
            check_eq(reqs[-1]["authorization"], "Bearer token-ada", "Authorization header")
            check_eq(reqs[-1]["csrf"], f"csrf-{ctx.run_id}",
                     "X-CSRF-TOKEN from <meta name=csrf-token>")
            sid = await ctx.in_page("a", "return e.socketId();")
            check_eq(reqs[-1]["form"].get("socket_id"), sid, "socket_id posted to the endpoint")
            await ctx.py(ctx.sdk.trigger, "private-" + name, "PrivateEvent", {"secret": 42})
            check_eq(await node.event("a:ev"), {"secret": 42}, "private event")
            denied = ctx.chan("", "forbidden")
            await ctx.in_page("a", f"""
              e.private({J(denied)}).error((err) => __emit('a:denied', err));""")
            err = await node.event("a:denied")
            check_eq(err.get("status"), 403, "error status")
            check_eq(await ctx.in_page("a", "return e.connectionStatus();"), "connected",
                     "still connected after a denied channel")

    _make_private(_b)


@case("browser.presence-two-pages", "16",
      "Chromium, two pages: Echo.join() here() / joining() / leaving() (leaving when the "
      "other tab closes)", browser=True, timeout=60)
async def presence(ctx):
    node = await ctx.node()
    name = ctx.chan("", "room")
    await echo_page(ctx, "a", token="token-ada")
    await ctx.in_page("a", f"""
      await new Promise((res, rej) => e.join({J(name)})
        .here((users) => {{ __emit('a:here', users); res(); }})
        .joining((u) => __emit('a:joining', u))
        .leaving((u) => __emit('a:leaving', u))
        .error((err) => rej(new Error(JSON.stringify(err)))));""")
    check_eq(await node.event("a:here"), [{"name": "Ada"}], "a: here() alone")
    await echo_page(ctx, "b", token="token-linus")
    await ctx.in_page("b", f"""
      await new Promise((res) => e.join({J(name)})
        .here((users) => {{ __emit('b:here', users); res(); }}));""")
    here = await node.event("b:here")
    check_eq(sorted(u["name"] for u in here), ["Ada", "Linus"], "b: here()")
    check_eq(await node.event("a:joining"), {"name": "Linus"}, "a: joining()")
    await ctx.js("await closePage('b');")
    check_eq(await node.event("a:leaving", timeout=15), {"name": "Linus"}, "a: leaving()")


@case("browser.whisper", "16", "Chromium, two pages: whisper() / listenForWhisper()",
      browser=True, timeout=60)
async def whisper(ctx):
    node = await ctx.node()
    name = ctx.chan("", "chat")
    for page, token in (("a", "token-ada"), ("b", "token-linus")):
        await echo_page(ctx, page, token=token)
        await ctx.in_page(page, f"""
          const ch = e.private({J(name)});
          ch.listenForWhisper('typing', (d) => __emit({J(page + ':typing')}, d));
          await new Promise((res) => ch.subscribed(res));""")
    await ctx.in_page("a", f"e.private({J(name)}).whisper('typing', {{name: 'Ada'}});")
    check_eq(await node.event("b:typing"), {"name": "Ada"}, "whisper received by b")
    await ctx.in_page("b", f"e.private({J(name)}).whisper('typing', {{name: 'Linus'}});")
    check_eq(await node.event("a:typing"), {"name": "Linus"}, "whisper received by a")
    check_eq([d for d in node.seen("a:typing") if d == {"name": "Ada"}], [], "echo to sender")


@case("browser.encrypted", "7.2",
      "Chromium: Echo.encryptedPrivate() with pusher-with-encryption.js decrypts a Python SDK "
      "encrypted trigger", browser=True, timeout=60)
async def encrypted(ctx):
    node = await ctx.node()
    name = ctx.chan("", "vault")
    await echo_page(ctx, "a", token="token-ada")
    await subscribe(ctx, "a", "encryptedPrivate", name, {"secret": ".Secret"})
    await ctx.py(ctx.sdk.trigger, "private-encrypted-" + name, "Secret", {"pin": "0042 ü"})
    check_eq(await node.event("a:secret"), {"pin": "0042 ü"}, "decrypted payload")


async def shell(command: str, timeout: float = 60) -> None:
    proc = await asyncio.create_subprocess_shell(command)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        raise CaseFailed(f"command did not finish within {timeout:g}s: {command}") from None
    if code != 0:
        raise CaseFailed(f"command exited {code}: {command}")


def can_restart(ctx) -> None:
    if not (ctx.args.restart_command or (ctx.args.stop_command and ctx.args.start_command)):
        raise NotApplicable("needs --restart-command, or --stop-command and --start-command, "
                            "to restart the server")


async def restart_server(ctx) -> None:
    if ctx.args.stop_command and ctx.args.start_command:
        await shell(ctx.args.stop_command)
        await shell(ctx.args.start_command)
    else:
        await shell(ctx.args.restart_command)


@case("browser.reconnect-after-restart", "4.1",
      "Chromium: after a server restart Echo reconnects by itself (new socket id), "
      "resubscribes its channels and receives events again", browser=True, timeout=120,
      last=True)
async def reconnect(ctx):
    can_restart(ctx)
    node = await ctx.node()
    await echo_page(ctx, "a", token="token-ada")
    pub, priv = ctx.chan("", "back"), ctx.chan("", "back")
    await subscribe(ctx, "a", "channel", pub, {"pub": ".after"})
    await subscribe(ctx, "a", "private", priv, {"priv": ".after"})
    await ctx.in_page("a", """
      const p = e.connector.pusher;
      p.connection.bind('state_change', (s) => __emit('a:change', s.current));""")
    first_sid = await ctx.in_page("a", "return e.socketId();")
    await restart_server(ctx)
    await node.event("a:change", lambda s: s != "connected", timeout=30,
                     what="a state other than 'connected' after the restart")
    await node.event("a:change", lambda s: s == "connected", timeout=45,
                     what="'connected' again")
    sid = await ctx.in_page("a", "return e.socketId();")
    check(sid and sid != first_sid, f"new socket id after reconnect ({first_sid} → {sid})")
    await ctx.in_page("a", f"""
      for (const name of [{J(pub)}, {J("private-" + priv)}]) {{
        const ch = e.connector.pusher.channel(name);
        if (!ch.subscribed) await new Promise((res) =>
          ch.bind('pusher:subscription_succeeded', res));
      }}""")
    await ctx.py(ctx.sdk.trigger, pub, "after", {"back": "public"})
    await ctx.py(ctx.sdk.trigger, "private-" + priv, "after", {"back": "private"})
    check_eq(await node.event("a:pub"), {"back": "public"}, "public event after the restart")
    check_eq(await node.event("a:priv"), {"back": "private"}, "private event after the restart")


@case("browser.connection-status-restart", "4.1",
      "Chromium: Echo connection status goes connected → unavailable while the server is "
      "down → connected after it restarts, and the channel is resubscribed", browser=True,
      timeout=120, last=True)
async def restart(ctx):
    if not (ctx.args.stop_command and ctx.args.start_command):
        raise NotApplicable("needs --stop-command and --start-command: 'unavailable' shows only "
                            "while the server stays down (a single --restart-command is too "
                            "quick to observe it)")
    node = await ctx.node()
    await echo_page(ctx, "a", extra={"unavailableTimeout": 2000})
    ch = ctx.chan("", "restart")
    await subscribe(ctx, "a", "channel", ch, {"ev": ".after"})
    await ctx.in_page("a", """
      const p = e.connector.pusher;
      for (const s of ['connected', 'unavailable', 'disconnected', 'connecting'])
        p.connection.bind(s, () => __emit('a:status', s));
      e.connector.onConnectionChange((status) => __emit('a:echo-status', status));""")
    first_sid = await ctx.in_page("a", "return e.socketId();")
    await shell(ctx.args.stop_command)
    await node.event("a:status", lambda s: s == "unavailable", timeout=30,
                     what="'unavailable' while the server is down")
    check_eq(await ctx.in_page("a", "return e.connectionStatus();"), "failed",
             "Echo.connectionStatus() while unavailable")
    await shell(ctx.args.start_command)
    await node.event("a:status", lambda s: s == "connected", timeout=45,
                     what="'connected' after the restart")
    statuses = node.seen("a:echo-status")
    check("failed" in statuses and statuses[-1] == "connected",
          f"Echo onConnectionChange statuses {statuses}")
    sid = await ctx.in_page("a", "return e.socketId();")
    check(sid and sid != first_sid, f"new socket id after reconnect ({first_sid} → {sid})")
    await ctx.in_page("a", f"""
      const ch = e.connector.pusher.channel({J(ch)});
      if (!ch.subscribed) await new Promise((res) => ch.bind('pusher:subscription_succeeded', res));
    """)
    await ctx.py(ctx.sdk.trigger, ch, "after", {"back": True})
    check_eq(await node.event("a:ev"), {"back": True}, "event after the restart")


@case("browser.signin-send-to-user", "10.1",
      "Chromium: Echo.connector.signin() through /broadcasting/user-auth (bearer), then the "
      "Python SDK's send_to_user reaches pusher.user", browser=True, timeout=60)
async def signin(ctx):
    node = await ctx.node()
    await echo_page(ctx, "a", token="token-grace")
    await ctx.in_page("a", """
      const p = e.connector.pusher;
      p.user.bind('greet', (d) => __emit('a:greet', d));
      p.connection.bind('message', (m) => {
        if (m.event === 'pusher_internal:subscription_succeeded' &&
            m.channel === '#server-to-user-3') __emit('a:s2u', m.channel);
      });
      e.connector.signin();""")
    await node.event("a:s2u", what="#server-to-user-3 subscription_succeeded")
    auth = await ctx.auth_server()
    reqs = [r for r in auth.requests if r["path"] == "/broadcasting/user-auth"]
    check(reqs and reqs[-1]["authorization"] == "Bearer token-grace",
          f"user-auth request with the bearer token: {reqs[-1:] if reqs else 'none'}")
    await ctx.py(ctx.sdk.send_to_user, "3", "greet", {"hi": "Grace"})
    check_eq(await node.event("a:greet"), {"hi": "Grace"}, "event on pusher.user")


@case("restart.graceful-close-4200", "4.2",
      "stopping the server gracefully closes open sockets with 4200 (reconnect now), and "
      "pusher-js reconnects once it is back", timeout=120, last=True)
async def graceful(ctx):
    can_restart(ctx)
    node = await ctx.node()
    raw = await ctx.raw()
    await ctx.js("const c = pjs('g'); await connected(c);"
                 "c.connection.bind('connected', () => emit('g:again', c.connection.socket_id));")
    await restart_server(ctx)
    code, _ = await raw.closed(30)
    check_eq(code, 4200, "close code when the server shut down")
    sid = await node.event("g:again", timeout=30, what="pusher-js reconnected")
    check(sid, "no socket id after reconnecting")
