"""§15: pusher-js's HTTP fallback transports in a real browser (headless Chromium).

Each page runs the pinned pusher-js web build under Laravel Echo, on a page served by the
suite (another origin than the server: every request is a CORS request), with channel
authorization through the suite's ``/broadcasting/auth``. N/A unless the run says the server
offers the fallback transports (``--http-fallback`` or a fallback ``--transport``).
"""

from __future__ import annotations

import json

from ..framework import NotApplicable, case, check, check_eq
from .browser import echo_page

J = json.dumps


def needs_fallback(ctx) -> None:
    if not ctx.args.http_fallback:
        raise NotApplicable("HTTP fallback transports are optional (§15, P2); pass "
                            "--http-fallback if the server implements them")


async def transport_of(ctx, page: str) -> str:
    """The name of the transport pusher-js connected with (once it is connected)."""
    return await ctx.in_page(page, """
      const c = e.connector.pusher.connection;
      if (c.state !== 'connected') await new Promise((res) => c.bind('connected', res));
      return c.connection.transport.name;""", timeout=40)


for _transport in ("xhr_streaming", "xhr_polling"):

    def _make(transport: str):
        @case(f"browser.fallback.{transport}", "15",
              f"Chromium + Echo over {transport} only: private and presence channels through "
              "/broadcasting/auth, triggered events, whispers both ways, members join and "
              "leave", browser=True, timeout=120)
        async def only_fallback(ctx):
            needs_fallback(ctx)
            node = await ctx.node()
            extra = {"enabledTransports": [transport]}
            await echo_page(ctx, "a", token="token-ada", extra=extra)
            check_eq(await transport_of(ctx, "a"), transport, "transport in use")
            private = ctx.chan("", "fb")
            await ctx.in_page("a", f"""
              const ch = e.private({J(private)});
              ch.listen('.Shipped', (d) => __emit('a:private', d));
              await new Promise((res, rej) => {{ ch.subscribed(res);
                ch.error((err) => rej(new Error(JSON.stringify(err)))); }});""")
            await ctx.py(ctx.sdk.trigger, "private-" + private, "Shipped", {"id": "é-1"})
            check_eq(await node.event("a:private", timeout=20), {"id": "é-1"}, "private event")

            room = ctx.chan("", "fbroom")
            await ctx.in_page("a", f"""
              const ch = e.join({J(room)});
              ch.listenForWhisper('typing', (d) => __emit('a:typing', d));
              ch.listen('.Note', (d) => __emit('a:note', d));
              await new Promise((res, rej) => ch
                .here((users) => {{ __emit('a:here', users); res(); }})
                .joining((u) => __emit('a:joining', u))
                .leaving((u) => __emit('a:leaving', u))
                .error((err) => rej(new Error(JSON.stringify(err)))));""")
            check_eq(await node.event("a:here"), [{"name": "Ada"}], "a: here() alone")
            await echo_page(ctx, "b", token="token-linus", extra=extra)
            check_eq(await transport_of(ctx, "b"), transport, "transport in use (b)")
            await ctx.in_page("b", f"""
              const ch = e.join({J(room)});
              ch.listenForWhisper('typing', (d) => __emit('b:typing', d));
              await new Promise((res) => ch.here((users) => {{
                __emit('b:here', users); res(); }}));""")
            here = await node.event("b:here", timeout=20)
            check_eq(sorted(u["name"] for u in here), ["Ada", "Linus"], "b: here()")
            check_eq(await node.event("a:joining", timeout=20), {"name": "Linus"},
                     "a: joining()")
            await ctx.py(ctx.sdk.trigger, "presence-" + room, "Note", {"n": 1})
            check_eq(await node.event("a:note", timeout=20), {"n": 1}, "presence event")
            await ctx.in_page("a", f"e.join({J(room)}).whisper('typing', {{name: 'Ada'}});")
            check_eq(await node.event("b:typing", timeout=20), {"name": "Ada"},
                     "whisper a → b")
            await ctx.in_page("b", f"e.join({J(room)}).whisper('typing', {{name: 'Linus'}});")
            check_eq(await node.event("a:typing", timeout=20), {"name": "Linus"},
                     "whisper b → a")
            check_eq([d for d in node.seen("a:typing") if d == {"name": "Ada"}], [],
                     "whisper echoed to its sender")
            # Closing the tab drops b's receive request; the server ends the session after
            # its session timeout, like a closed socket.
            await ctx.js("await closePage('b');")
            check_eq(await node.event("a:leaving", timeout=30), {"name": "Linus"},
                     "a: leaving() after b's tab closed")

    _make(_transport)


@case("browser.fallback.no-websocket", "15",
      "Chromium page without window.WebSocket, pusher-js on its default transports: it "
      "falls back to HTTP by itself, subscribes through /broadcasting/auth and receives "
      "events", browser=True, timeout=90)
async def no_websocket(ctx):
    needs_fallback(ctx)
    node = await ctx.node()
    await ctx.page("a", query="&nows=1")
    check_eq(await ctx.in_page("a", "return typeof window.WebSocket;"), "undefined",
             "window.WebSocket on the page")
    # enabledTransports null: pusher-js's own default strategy, every transport allowed.
    await ctx.in_page("a", """
      window.e = makeEcho('reverb', {bearerToken: 'token-ada', enabledTransports: null});""")
    await node.event("a:state", lambda s: s.get("current") == "connected", timeout=40,
                     what="'connected' without WebSocket")
    name = await transport_of(ctx, "a")
    check(name in ("xhr_streaming", "xhr_polling"), f"fell back to HTTP, got {name!r}")
    channel = ctx.chan("", "nows")
    await ctx.in_page("a", f"""
      const ch = e.private({J(channel)});
      ch.listen('.Ping', (d) => __emit('a:ping', d));
      await new Promise((res, rej) => {{ ch.subscribed(res);
        ch.error((err) => rej(new Error(JSON.stringify(err)))); }});""")
    await ctx.py(ctx.sdk.trigger, "private-" + channel, "Ping", {"via": name})
    check_eq(await node.event("a:ping", timeout=20), {"via": name}, "event over the fallback")
