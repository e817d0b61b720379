"""The live debug console (/console) in a real headless Chromium: per-app connections,
channels with subscriber and member counts, and the live event stream. The screenshot is
kept as a test artifact (reports/artifacts/console.png, or $PUSHERD_TEST_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.pusherd.conftest import StartServer
from tests.pusherd.wire import Client, call, channel_auth, http_request, sdk

TOKEN = "console-token-for-the-browser-test"
TOML = f"""
[server]
port = 0
shutdown_timeout = 1

[[apps]]
id = "1001"
key = "app-key"
secret = "app-secret"
name = "shop"

[console]
enabled = true
token = "{TOKEN}"
"""
REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "browser" / "console_page.cjs"
NODE = shutil.which("node")
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PUSHERD_TEST_ARTIFACTS", REPO / "reports" / "artifacts"))


async def test_the_console_needs_its_token(start_server: StartServer) -> None:
    server = await start_server(TOML)
    for path in ("/console", "/console/state", "/console/events?after=0"):
        assert (await http_request(server.port, "GET", path)).status == 401
        glue = "&" if "?" in path else "?"
        wrong = await http_request(server.port, "GET", f"{path}{glue}token=not-it")
        assert wrong.status == 401
    assert (await http_request(server.port, "GET", f"/console?token={TOKEN}")).status == 200


async def test_the_console_is_off_by_default(start_server: StartServer) -> None:
    server = await start_server(TOML.split("[console]")[0])
    assert (await http_request(server.port, "GET", f"/console?token={TOKEN}")).status == 404


@pytest.mark.skipif(NODE is None or not CHROMIUM.exists(),
                    reason="needs node and Chromium (the browser is the console's user)")
async def test_the_console_shows_apps_channels_and_live_events_in_chromium(
    start_server: StartServer,
) -> None:
    server = await start_server(TOML)
    port = server.port
    buyers = [await Client.open(port) for _ in range(2)]
    for buyer in buyers:
        await buyer.subscribe_ok("orders")
    member = json.dumps({"user_id": "ada"})
    await buyers[0].subscribe_ok("presence-lobby",
                                 channel_auth(buyers[0].socket_id, "presence-lobby", member),
                                 member)
    await call(sdk(port).trigger, "orders", "shipped", {"id": 7})

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "console.png"
    screenshot.unlink(missing_ok=True)
    assert NODE is not None
    browser = await asyncio.create_subprocess_exec(
        NODE, str(SCRIPT), f"http://127.0.0.1:{port}/console?token={TOKEN}", str(screenshot),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CHROMIUM": str(CHROMIUM)})
    assert browser.stdout is not None and browser.stdin is not None

    async def next_message() -> dict[str, Any]:
        assert browser.stdout is not None
        while True:
            line = await asyncio.wait_for(browser.stdout.readline(), 60)
            assert line, "the browser driver exited early"
            message: dict[str, Any] = json.loads(line)
            assert message["type"] not in ("fatal", "pageerror"), message
            return message

    try:
        shown = await next_message()
        assert shown["type"] == "ready"
        assert shown["status"] == "live"
        assert shown["connections"] == "2"
        assert shown["orders"] == ["orders", "public", "2", ""]
        assert shown["lobby"] == ["presence-lobby", "presence", "1", "1"]
        feed = " ".join(shown["feed"])
        for seen in ("connection_opened", "subscribed", "channel_occupied", "member_added",
                     "api_event", "shipped"):
            assert seen in feed, seen
        # Live: an event triggered now appears without reloading the page.
        await call(sdk(port).trigger, "orders", "live-event", {"id": 8})
        browser.stdin.write(b"triggered\n")
        await browser.stdin.drain()
        live = await next_message()
        assert live["type"] == "live" and "live-event" in live["entry"]
        assert "orders" in live["entry"]
    finally:
        if browser.returncode is None:
            browser.stdin.close()
            try:
                await asyncio.wait_for(browser.wait(), 30)
            except TimeoutError:
                browser.kill()
                await browser.wait()
    assert screenshot.stat().st_size > 10_000
    print(f"console screenshot: {screenshot}")
    for buyer in buyers:
        await buyer.close()
