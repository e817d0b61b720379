"""Drive ``node/driver.js`` (pusher-js, Laravel Echo, the node SDK, Chromium) over JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .framework import CaseFailed, short

PACKAGE_DIR = Path(__file__).resolve().parent
DRIVER = PACKAGE_DIR / "node" / "driver.js"


class NodeError(CaseFailed):
    """JavaScript code run by the driver threw."""


class NodeDriver:
    def __init__(self, config: dict[str, Any], *, tls_ca: str | None = None,
                 tls_no_verify: bool = False) -> None:
        self.config = config
        self.tls_ca = tls_ca
        self.tls_no_verify = tls_no_verify
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[tuple[str, Any]] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.stderr: list[str] = []

    async def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed")
        if not (PACKAGE_DIR / "node_modules" / "pusher-js").is_dir():
            raise RuntimeError(f"run `npm ci --prefix {PACKAGE_DIR}` first")
        env = {**os.environ, "PT_CONFIG": json.dumps(self.config),
               "NODE_PATH": str(PACKAGE_DIR / "node_modules")}
        if self.tls_ca:
            env["NODE_EXTRA_CA_CERTS"] = self.tls_ca
        if self.tls_no_verify:
            env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"
        self.proc = await asyncio.create_subprocess_exec(
            node, str(DRIVER), cwd=str(PACKAGE_DIR), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if msg.get("ok"):
                        fut.set_result(msg.get("result"))
                    else:
                        fut.set_exception(NodeError(f"JS error: {msg.get('error')}"))
            elif "event" in msg:
                async with self._changed:
                    self.events.append((msg["event"], msg.get("data")))
                    self._changed.notify_all()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CaseFailed("node driver exited: " + "".join(self.stderr[-20:])))

    async def run(self, code: str, timeout: float = 20.0) -> Any:
        """Run ``code`` (an async function body) in the driver; return its JSON result."""
        assert self.proc and self.proc.stdin
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self.proc.stdin.write((json.dumps({"id": msg_id, "code": code}) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CaseFailed(f"node code did not finish within {timeout:g}s: {short(code, 120)}") \
                from None

    async def event(self, tag: str, pred: Callable[[Any], bool] | None = None,
                    timeout: float = 10.0, what: str | None = None) -> Any:
        """Wait for (and consume) the first unconsumed event ``tag`` whose data matches."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for i, (t, data) in enumerate(self.events):
                    if i in self._consumed or t != tag:
                        continue
                    if pred is None or pred(data):
                        self._consumed.add(i)
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [d for t, d in self.events if t == tag]
                    raise CaseFailed(f"{what or tag} not observed within {timeout:g}s"
                                     + (f"; saw {short(seen)}" if seen else ""))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def clear_events(self) -> None:
        self.events.clear()
        self._consumed.clear()

    def seen(self, tag: str) -> list[Any]:
        """All events ``tag`` so far (consumed or not)."""
        return [d for t, d in self.events if t == tag]

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader:
            self._reader.cancel()
