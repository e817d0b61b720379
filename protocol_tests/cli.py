"""``python -m protocol_tests``: run the conformance cases against a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import cases  # noqa: F401  (registers every case)
from .context import Context
from .framework import FAIL, NA, PASS, REGISTRY, Case, CaseFailed, NotApplicable, Result, select
from .webhooks import WebhookReceiver
from .wire import RawClient, data_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m protocol_tests",
        description="Black-box Pusher protocol 7 conformance suite (real pusher-js, Laravel Echo, "
                    "official SDKs, headless Chromium).")
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int, action="append",
                   help="WebSocket port; repeat it for a cluster (several nodes on --host): "
                        "each new client connects to the next port, round robin")
    p.add_argument("--app-id", required=True)
    p.add_argument("--app-key", required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--api-host", help="send HTTP API requests here instead of --host (e.g. "
                   "another node of the same cluster)")
    p.add_argument("--api-port", type=int, help="HTTP API port, if not --port")
    p.add_argument("--tls", action="store_true", help="connect with wss:// and https://")
    p.add_argument("--tls-no-verify", action="store_true",
                   help="with --tls: do not verify the server certificate")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="with --tls: CA certificate(s) to verify the server with (Python, Node "
                        "and Chromium all trust it)")
    p.add_argument("--report", metavar="DIR", help="write report.md and report.json into DIR")
    p.add_argument("--no-browser", action="store_true", help="skip the headless Chromium cases")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only cases whose id matches (glob or substring); repeatable")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    p.add_argument("--max-idle-wait", type=float, default=120.0, metavar="SECONDS",
                   help="longest the suite waits for the server to drop a silent client (4201); "
                        "if activity_timeout + 60 s exceeds it, that case is N/A (default 120)")
    p.add_argument("--restart-command", metavar="CMD",
                   help="shell command that restarts the server on the same port and returns "
                        "once it accepts connections (reconnect cases)")
    p.add_argument("--stop-command", metavar="CMD",
                   help="shell command that stops the server; with --start-command also "
                        "enables the 'unavailable' browser case")
    p.add_argument("--start-command", metavar="CMD",
                   help="shell command that starts the server again on the same port and "
                        "returns once it accepts connections")
    p.add_argument("--client-events-disabled-app", metavar="ID:KEY:SECRET",
                   help="a second app on the server with client events disabled (§9 rule 1)")
    p.add_argument("--webhook-port", type=int, metavar="PORT",
                   help="receive the server's webhooks on this port (server configured to POST "
                        "to http://<this host>:PORT/); without it the webhook cases are N/A")
    p.add_argument("--http-fallback", action="store_true",
                   help="the server implements the xhr_streaming/xhr_polling transports (§15)")
    p.add_argument("--transport", choices=("ws", "xhr_streaming", "xhr_polling"), default="ws",
                   help="run every case over this transport: raw clients, pusher-js, Echo and "
                        "the browser pages all use it (the fallback ones imply "
                        "--http-fallback); cases that cannot apply say why (default ws)")
    p.add_argument("--http-path", default="/pusher",
                   help="pusher-js httpPath for the fallback transports (default /pusher)")
    p.add_argument("--watchlist", action="store_true",
                   help="the app sends watchlist events to signed-in users (§10.3)")
    p.add_argument("--quota-app", metavar="ID:KEY:SECRET:N",
                   help="an app limited to N simultaneous connections (close 4004 beyond)")
    p.add_argument("--disabled-app", metavar="ID:KEY:SECRET",
                   help="an app that exists but is disabled (close 4003, HTTP 403)")
    p.add_argument("--subscription-count", action="store_true",
                   help="the app has subscription_count enabled (§11.2)")
    p.add_argument("--client-event-rate", type=int, default=10,
                   help="client events per second the server allows per connection (default 10)")
    p.add_argument("--max-presence-members", type=int, default=100,
                   help="distinct members the server allows per presence channel (default 100)")
    p.add_argument("--max-event-data", type=int, default=10240,
                   help="largest event data in bytes the server accepts (default 10240)")
    args = p.parse_args(argv)
    args.ports, args.port = list(args.port), args.port[0]
    if args.transport != "ws":
        args.http_fallback = True
    return args


def line_for(r: Result) -> str:
    reason = " ".join(r.reason.split())
    return f"{r.result}  {r.case.id}  §{r.case.section}  {reason}"


async def run_case(ctx: Context, c: Case) -> Result:
    if c.browser and ctx.args.no_browser:
        return Result(c, NA, "browser cases disabled by --no-browser")
    tracked = ctx.begin_case()
    start = time.monotonic()
    try:
        await asyncio.wait_for(c.fn(ctx), c.timeout)
        result = Result(c, PASS, c.title)
    except NotApplicable as exc:
        result = Result(c, NA, str(exc))
    except CaseFailed as exc:
        result = Result(c, FAIL, str(exc))
    except TimeoutError:
        result = Result(c, FAIL, f"case did not finish within {c.timeout:g}s")
    except Exception as exc:  # a crash inside a case is a failure, with its cause
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        result = Result(c, FAIL, f"{type(exc).__name__}: {exc}{where}")
    finally:
        await ctx.end_case(tracked, node_cleanup=not c.background)
    result.seconds = time.monotonic() - start
    return result


async def probe(ctx: Context) -> str | None:
    """Read activity_timeout from one handshake; return an error text if the server is down."""
    tracked = ctx.begin_case()
    try:
        client = await RawClient.open(ctx)
        data = data_of(client.handshake or {})
        if isinstance(data, dict) and isinstance(data.get("activity_timeout"), int):
            ctx.activity_timeout = data["activity_timeout"]
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await ctx.end_case(tracked, node_cleanup=False)


async def run(args: argparse.Namespace) -> int:
    chosen = select(REGISTRY, args.only)
    if args.list:
        for c in chosen:
            print(f"{c.id}  §{c.section}  {c.title}")
        return 0
    ctx = Context(args)
    if args.webhook_port:
        ctx.webhook_receiver = WebhookReceiver(args.webhook_port)
        await ctx.webhook_receiver.start()
    down = await probe(ctx)
    if down is not None:
        print(f"cannot connect to {ctx.ws_servers} (/app/{args.app_key}): {down}",
              file=sys.stderr)
    results: list[Result] = []
    background = [asyncio.create_task(run_case(ctx, c)) for c in chosen if c.background]
    regular = [c for c in chosen if not c.background and not c.last]
    disruptive = [c for c in chosen if not c.background and c.last]
    try:
        for c in regular:
            results.append(await run_case(ctx, c))
            print(line_for(results[-1]), flush=True)
        for task in background:  # before disruptive cases such as a server restart
            results.append(await task)
            print(line_for(results[-1]), flush=True)
        for c in disruptive:
            results.append(await run_case(ctx, c))
            print(line_for(results[-1]), flush=True)
    finally:
        await ctx.close()
    passed = sum(r.result == PASS for r in results)
    failed = sum(r.result == FAIL for r in results)
    na = sum(r.result == NA for r in results)
    if args.report:
        write_report(Path(args.report), ctx, results)
    print(f"{na} not applicable")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def write_report(directory: Path, ctx: Context, results: list[Result]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    counts = {k: sum(r.result == k for r in results) for k in (PASS, FAIL, NA)}
    rows = [{"case": r.case.id, "section": r.case.section, "title": r.case.title,
             "result": r.result, "reason": r.reason, "seconds": round(r.seconds, 2)}
            for r in results]
    (directory / "report.json").write_text(json.dumps({
        "generated_at": now, "server": f"{ctx.ws_servers} (app {ctx.app_id})",
        "activity_timeout": ctx.activity_timeout,
        "passed": counts[PASS], "failed": counts[FAIL], "not_applicable": counts[NA],
        "cases": rows}, indent=2) + "\n")
    md = [f"# Pusher protocol conformance report ({now})", "",
          f"Server: `{ctx.ws_servers}`, app `{ctx.app_id}`. Clients: pusher-js 8.6.0, "
          "laravel-echo 2.5.0, node pusher 5.3.4, Python pusher 3.3.4, headless Chromium.", "",
          f"**{counts[PASS]} passed, {counts[FAIL]} failed, {counts[NA]} not applicable.**", "",
          "| case | § | result | reason |", "|---|---|---|---|"]
    for r in rows:
        reason = str(r["reason"]).replace("|", "\\|").replace("\n", " ")
        md.append(f"| `{r['case']}` | {r['section']} | {r['result']} | {reason} |")
    (directory / "report.md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run(args))
